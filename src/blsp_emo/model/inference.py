"""``SpeechChat``: batched replies, streaming and emotion recognition over a loaded model.

This is the serving core's only dependency on the model: CLI generation, chat, the HTTP API and the
evaluation harness all call it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from blsp_emo.model.processor import BlspEmoProcessor, EncodedConversation, stop_token_ids
from blsp_emo.model.stopping import RowStopper, cut_at_stop
from blsp_emo.model.types import PLAIN, DecodingOptions, Message, Reply
from blsp_emo.prompts import EMOTIONS

if TYPE_CHECKING:
    from blsp_emo.model.modeling import BlspEmoModel


def _emotion_dict(probs: torch.Tensor | None) -> tuple[str | None, dict[str, float] | None]:
    if probs is None:
        return None, None
    scores = {EMOTIONS[i]: round(float(p), 4) for i, p in enumerate(probs.tolist()[: len(EMOTIONS)])}
    return max(scores, key=lambda k: scores[k]), scores


def _segment_emotion(
    emotion: torch.Tensor | None, segment: int | None
) -> tuple[str | None, dict[str, float] | None]:
    """(label, scores) of one conversation's last speech segment; (None, None) without one or a head."""
    return _emotion_dict(emotion[segment] if emotion is not None and segment is not None else None)


def decode_reply(tokenizer: Any, stop_ids: Sequence[int], ids: torch.Tensor) -> tuple[str, int, str]:
    """One row of generated ids -> (reply text up to the first stop token, tokens used including that stop
    token, finish reason "stop" or "length")."""
    tokens = ids.tolist()
    finish = "length"
    for i, t in enumerate(tokens):
        if t in stop_ids:
            tokens, finish = tokens[:i], "stop"
            break
    text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return text, len(tokens) + (finish == "stop"), finish


class SpeechChat:
    """Replies to conversations (see docs/architecture.md for the message format)."""

    def __init__(self, model: BlspEmoModel, processor: BlspEmoProcessor):
        self.model = model
        self.processor = processor
        self.stop_ids = stop_token_ids(processor.tokenizer)
        self._lock = threading.Lock()  # one generate at a time on a shared model

    def _prepare(self, conversations: Sequence[Sequence[Message]]):
        encoded = [self.processor.encode(conv, add_generation_prompt=True) for conv in conversations]
        # Index of each conversation's last speech segment in the batch's segment order.
        last_segment: list[int | None] = []
        seen = 0
        for e in encoded:
            seen += len(e.audios)
            last_segment.append(seen - 1 if e.audios else None)
        return encoded, self.processor.collate(encoded), last_segment

    def _decode(self, ids: torch.Tensor) -> tuple[str, int, str]:
        return decode_reply(self.processor.tokenizer, self.stop_ids, ids)

    def respond(
        self,
        conversations: Sequence[Sequence[Message]],
        options: DecodingOptions = PLAIN,
        *,
        stops: Sequence[Sequence[str]] | None = None,
        should_stop: Sequence[Callable[[], bool]] | None = None,
    ) -> list[Reply]:
        """Generate one reply per conversation, in one batch (greedy when the temperature is 0).

        ``options`` default to plain decoding (greedy, no penalties: :data:`~blsp_emo.model.types.PLAIN`);
        conversation front ends pass :data:`~blsp_emo.model.types.CONVERSATION`. Each row can end early on
        its own: ``stops[i]`` (default: ``options.stop``) are stop strings (the reply is cut before the
        first; ``finish_reason`` "stop"), and ``should_stop[i]()`` is asked after every token (a client
        that went away, a deadline; ``finish_reason`` "cancelled").
        """
        if not conversations:
            return []
        n = len(conversations)
        rows = [list(r) for r in stops] if stops is not None else [list(options.stop)] * n
        checks = list(should_stop) if should_stop is not None else [lambda: False] * n
        encoded, batch, last_segment = self._prepare(conversations)
        stopper = RowStopper(checks, rows, self.processor.tokenizer, self.stop_ids)
        with self._lock:
            if options.seed is not None:
                torch.manual_seed(options.seed)
            ids, emotion = self.model.generate(batch, self.stop_ids, options, stopping_criteria=[stopper])
        replies = []
        for i, e in enumerate(encoded):
            text, n_tokens, finish = self._decode(ids[i])
            text, found = cut_at_stop(text, rows[i])
            if found or stopper.hit[i]:
                finish = "stop"
            if stopper.forced[i]:
                finish = "cancelled"
            label, scores = _segment_emotion(emotion, last_segment[i])
            replies.append(Reply(text, label, scores, self._prompt_length(e), n_tokens, finish))
        return replies

    def stream(self, messages: Sequence[Message], options: DecodingOptions = PLAIN) -> ReplyStream:
        """Start generating one reply; iterate the result for text pieces, then read ``.reply``.
        (Stop strings are the caller's: :class:`~blsp_emo.model.stopping.StopMatcher` finds them in pieces.)"""
        return ReplyStream(self, messages, options)

    def context_length(self) -> int | None:
        """The model's context in tokens: the LLM config's ``max_position_embeddings`` or the tokenizer's
        ``model_max_length``, whichever is set (the smaller when both are); None when neither is known."""
        sizes: list[int] = []
        positions = self.model.llm.config.max_position_embeddings
        if isinstance(positions, int) and positions > 0:
            sizes.append(positions)
        length = self.processor.tokenizer.model_max_length
        if isinstance(length, int) and 0 < length < 10**9:  # transformers' "unset" is a huge sentinel
            sizes.append(length)
        return min(sizes) if sizes else None

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of the prompt (speech slots included) as the model will see it."""
        return self._prompt_length(self.processor.encode(messages, add_generation_prompt=True))

    def _prompt_length(self, encoded: EncodedConversation) -> int:
        """Positions the LLM reads for an encoded prompt: its ids, plus the emotion token after each speech
        segment when the model has one (the token bridge's count depends on what is heard: not added)."""
        extra = len(encoded.audios) if self.model.emotion_token is not None else 0
        return len(encoded.input_ids) + extra

    @torch.no_grad()
    def recognize_emotion(self, audios: Sequence[np.ndarray]) -> list[dict[str, float] | None]:
        """Emotion-head probabilities per audio (None entries when the model has no emotion head)."""
        if self.model.emotion_head is None:
            return [None] * len(audios)
        feats = self.processor.audio_features(list(audios))
        with self._lock:
            probs = self.model.predict_emotion(feats)
        return [_emotion_dict(p)[1] for p in probs]


class _CancelCriterion:
    """A transformers stopping criterion that fires once the stream is cancelled."""

    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device
        )


class ReplyStream:
    """Iterator of text pieces of one reply, generated in a background thread."""

    def __init__(self, chat: SpeechChat, messages: Sequence[Message], options: DecodingOptions):
        from transformers import TextIteratorStreamer

        self.chat = chat
        self.reply: Reply | None = None
        # (label, scores) of the emotion head on the latest audio, set before the first token is generated
        self.heard: tuple[str | None, dict[str, float] | None] | None = None
        self.error: BaseException | None = None
        self._cancelled = threading.Event()
        encoded, batch, last_segment = chat._prepare([messages])
        self._prompt_tokens = chat._prompt_length(encoded[0])
        self._last_segment = last_segment[0]
        self._streamer = TextIteratorStreamer(
            chat.processor.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        self._thread = threading.Thread(target=self._run, args=(batch, options), daemon=True)
        self._thread.start()

    def _run(self, batch: dict, options: DecodingOptions) -> None:
        try:
            with self.chat._lock:
                if options.seed is not None:
                    torch.manual_seed(options.seed)
                ids, emotion = self.chat.model.generate(
                    batch,
                    self.chat.stop_ids,
                    options,
                    streamer=self._streamer,
                    stopping_criteria=[_CancelCriterion(self._cancelled)],
                    on_emotion=self._on_emotion,
                )
            text, n_tokens, finish = self.chat._decode(ids[0])
            if self._cancelled.is_set() and finish == "length":
                finish = "cancelled"
            label, scores = _segment_emotion(emotion, self._last_segment)
            self.reply = Reply(text, label, scores, self._prompt_tokens, n_tokens, finish)
        except BaseException as exc:  # surfaced to the consumer in __iter__
            self.error = exc
            self._streamer.end()

    def _on_emotion(self, emotion: torch.Tensor) -> None:
        if self._last_segment is not None:
            self.heard = _segment_emotion(emotion, self._last_segment)

    def cancel(self) -> None:
        """Stop generating at the next token (e.g. the client went away); frees the model early."""
        self._cancelled.set()

    def close(self, timeout: float | None = 60.0) -> None:
        """Cancel and wait for the generating thread, so that nothing of this reply outlives the call."""
        self.cancel()
        self._thread.join(timeout)

    def __iter__(self) -> Iterator[str]:
        for piece in self._streamer:
            if piece:
                yield piece
        self._thread.join()
        if self.error is not None:
            raise self.error
