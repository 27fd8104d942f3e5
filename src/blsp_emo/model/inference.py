"""``SpeechChat``: batched replies, streaming and emotion recognition over a loaded model.

This is the serving core's only dependency on the model: CLI generation, chat, the HTTP API and the
evaluation harness all call it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from blsp_emo.decoding import Decoding
from blsp_emo.model.processor import BlspEmoProcessor, Message, stop_token_ids
from blsp_emo.prompts import EMOTIONS


@dataclass
class Reply:
    """One generated assistant turn."""

    text: str
    emotion: str | None  # emotion-head label of the conversation's last speech segment
    emotion_scores: dict[str, float] | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn), "length" (token cap) or "cancelled" (stream cancelled)


def _emotion_dict(probs: torch.Tensor | None) -> tuple[str | None, dict[str, float] | None]:
    if probs is None:
        return None, None
    scores = {EMOTIONS[i]: round(float(p), 4) for i, p in enumerate(probs.tolist()[: len(EMOTIONS)])}
    return max(scores, key=scores.get), scores


class SpeechChat:
    """Replies to conversations (see docs/architecture.md for the message format)."""

    def __init__(self, model, processor: BlspEmoProcessor):
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
        tokens = ids.tolist()
        finish = "length"
        for i, t in enumerate(tokens):
            if t in self.stop_ids:
                tokens, finish = tokens[:i], "stop"
                break
        text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return text, len(tokens) + (finish == "stop"), finish

    def respond(
        self,
        conversations: Sequence[Sequence[Message]],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        repetition_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
    ) -> list[Reply]:
        """Generate one reply per conversation, in one batch (greedy when temperature is 0).

        The defaults are plain decoding (greedy, no penalties: :data:`blsp_emo.decoding.PLAIN`);
        conversation front ends pass :data:`~blsp_emo.decoding.CONVERSATION`'s settings
        (``**CONVERSATION.kwargs()``).
        """
        if not conversations:
            return []
        encoded, batch, last_segment = self._prepare(conversations)
        with self._lock:
            if seed is not None:
                torch.manual_seed(seed)
            ids, emotion = self.model.generate(
                batch,
                self.stop_ids,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                repetition_penalty=repetition_penalty,
                no_repeat_ngram_size=no_repeat_ngram_size,
                frequency_penalty=frequency_penalty,
                presence_penalty=presence_penalty,
            )
        replies = []
        for i, e in enumerate(encoded):
            text, n_tokens, finish = self._decode(ids[i])
            seg = last_segment[i]
            label, scores = _emotion_dict(emotion[seg] if emotion is not None and seg is not None else None)
            replies.append(Reply(text, label, scores, len(e.input_ids), n_tokens, finish))
        return replies

    def stream(
        self,
        messages: Sequence[Message],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        repetition_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
    ) -> ReplyStream:
        """Start generating one reply; iterate the result for text pieces, then read ``.reply``.
        Decoding settings as :meth:`respond`."""
        decoding = Decoding(
            temperature, top_p, repetition_penalty, no_repeat_ngram_size, frequency_penalty, presence_penalty
        )
        return ReplyStream(self, messages, max_new_tokens, decoding, seed)

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

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device
        )


class ReplyStream:
    """Iterator of text pieces of one reply, generated in a background thread."""

    def __init__(self, chat: SpeechChat, messages, max_new_tokens: int, decoding: Decoding, seed: int | None):
        from transformers import TextIteratorStreamer

        self.chat = chat
        self.reply: Reply | None = None
        # (label, scores) of the emotion head on the latest audio, set before the first token is generated
        self.heard: tuple[str | None, dict[str, float] | None] | None = None
        self.error: BaseException | None = None
        self._cancelled = threading.Event()
        encoded, batch, last_segment = chat._prepare([messages])
        self._prompt_tokens = len(encoded[0].input_ids)
        self._last_segment = last_segment[0]
        self._streamer = TextIteratorStreamer(
            chat.processor.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        self._thread = threading.Thread(
            target=self._run, args=(batch, max_new_tokens, decoding, seed), daemon=True
        )
        self._thread.start()

    def _run(self, batch, max_new_tokens: int, decoding: Decoding, seed: int | None) -> None:
        try:
            with self.chat._lock:
                if seed is not None:
                    torch.manual_seed(seed)
                ids, emotion = self.chat.model.generate(
                    batch,
                    self.chat.stop_ids,
                    max_new_tokens=max_new_tokens,
                    **decoding.kwargs(),
                    streamer=self._streamer,
                    stopping_criteria=[_CancelCriterion(self._cancelled)],
                    on_emotion=self._on_emotion,
                )
            text, n_tokens, finish = self.chat._decode(ids[0])
            if self._cancelled.is_set() and finish == "length":
                finish = "cancelled"
            seg = self._last_segment
            label, scores = _emotion_dict(emotion[seg] if emotion is not None and seg is not None else None)
            self.reply = Reply(text, label, scores, self._prompt_tokens, n_tokens, finish)
        except BaseException as exc:  # surfaced to the consumer in __iter__
            self.error = exc
            self._streamer.end()

    def _on_emotion(self, emotion: torch.Tensor) -> None:
        if self._last_segment is not None:
            self.heard = _emotion_dict(emotion[self._last_segment])

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
