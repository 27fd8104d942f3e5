"""Batched generation that each request can stop on its own: a client that went away, a request past its
deadline, or a stop string in its text ends that row within a token while its batch-mates go on.

:meth:`SpeechChat.respond` has no per-row hook, so :func:`respond` runs the same steps (encode, one
batched ``model.generate`` under the chat's lock, decode) with a stopping criterion that looks at every
row after every token. A chat object without those pieces (a stand-in in tests) is answered by its own
``respond``, without early stopping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from blsp_emo.decoding import Decoding

# How many of a row's newest tokens are decoded to look for a stop string: a stop string of n characters
# spans at most 4n byte-level tokens (one UTF-8 byte each) plus one partial token on either side.
_STOP_WINDOW_PER_CHAR = 4


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first occurrence of any stop string, and whether one was found."""
    first = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:first], True) if first >= 0 else (text, False)


class StopMatcher:
    """Finds stop strings in text that arrives in pieces (a stream), never emitting text that could turn
    out to be the start of one: the longest tail that is a prefix of a stop string is held back."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the text that is safe to emit now (empty once a stop string was seen)."""
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        text = self._held + piece
        cut, found = cut_at_stop(text, self.stops)
        if found:
            self.stopped, self._held = True, ""
            return cut
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:n]):
                    keep = n
                    break
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The held-back text, at the end of a reply that had no stop string."""
        held, self._held = self._held, ""
        return "" if self.stopped else held


class RowStopper:
    """A transformers stopping criterion: row ``i`` stops when ``should_stop[i]()`` says so (cancelled or
    out of time) or when one of ``stops[i]`` appears in its generated text."""

    def __init__(
        self,
        should_stop: Sequence[Callable[[], bool]],
        stops: Sequence[Sequence[str]],
        tokenizer: Any,
        end_ids: Sequence[int] = (),
    ) -> None:
        self.should_stop = list(should_stop)
        self.end_ids = torch.tensor(list(end_ids), dtype=torch.long)
        self.stops = [[s for s in row if s] for row in stops]
        self.tokenizer = tokenizer
        self.windows = [
            max((len(s) for s in row), default=0) * _STOP_WINDOW_PER_CHAR + 2 for row in self.stops
        ]
        self.hit = [False] * len(self.should_stop)  # rows ended by a stop string
        self.forced = [False] * len(self.should_stop)  # rows ended by should_stop (cancelled, timed out)

    def _ended(self, row: torch.Tensor) -> bool:
        """True when the row already ended its turn (an end-of-turn token is among its tokens)."""
        return bool(self.end_ids.numel()) and bool(torch.isin(row.cpu(), self.end_ids).any())

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        done = [bool(check()) for check in self.should_stop]
        for i, stop in enumerate(done):
            if stop and not (self.forced[i] or self.hit[i]) and not self._ended(input_ids[i]):
                self.forced[i] = True
        for i, row in enumerate(self.stops):
            if row and not done[i] and not self.hit[i]:
                tail = input_ids[i, -self.windows[i] :].tolist()
                if any(s in self.tokenizer.decode(tail, skip_special_tokens=True) for s in row):
                    self.hit[i] = True
            done[i] = done[i] or self.hit[i]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def respond(
    chat: Any,
    conversations: Sequence[Sequence[dict[str, Any]]],
    *,
    max_new_tokens: int,
    decoding: Decoding,
    seed: int | None,
    should_stop: Sequence[Callable[[], bool]],
    stops: Sequence[Sequence[str]],
) -> list[Any]:
    """One reply per conversation, generated as one batch; each row stops early on its own (see module).
    ``decoding``: temperature, top-p, penalties and n-gram block (:class:`blsp_emo.decoding.Decoding`).

    Returns :class:`blsp_emo.model.inference.Reply` objects; a reply cut by a stop string has its text cut
    there and ``finish_reason`` "stop"; a row ended by ``should_stop`` has ``finish_reason`` "cancelled".
    """
    from blsp_emo.model.inference import Reply, _emotion_dict

    if not all(hasattr(chat, name) for name in ("_prepare", "_decode", "_lock", "model", "processor")):
        replies = chat.respond(conversations, max_new_tokens=max_new_tokens, seed=seed, **decoding.kwargs())
        for reply, row in zip(replies, stops):
            reply.text, found = cut_at_stop(reply.text, row)
            if found:
                reply.finish_reason = "stop"
        return replies
    encoded, batch, last_segment = chat._prepare(conversations)
    stopper = RowStopper(should_stop, stops, chat.processor.tokenizer, chat.stop_ids)
    with chat._lock:  # one generate at a time on the shared model (streams take the same lock)
        if seed is not None:
            torch.manual_seed(seed)
        ids, emotion = chat.model.generate(
            batch,
            chat.stop_ids,
            max_new_tokens=max_new_tokens,
            **decoding.kwargs(),
            stopping_criteria=[stopper],
        )
    replies = []
    for i, e in enumerate(encoded):
        text, n_tokens, finish = chat._decode(ids[i])
        text, found = cut_at_stop(text, stops[i])
        if found or stopper.hit[i]:
            finish = "stop"
        if stopper.forced[i]:
            finish = "cancelled"
        seg = last_segment[i]
        label, scores = _emotion_dict(emotion[seg] if emotion is not None and seg is not None else None)
        replies.append(Reply(text, label, scores, len(e.input_ids), n_tokens, finish))
    return replies


def context_length(chat: Any) -> int | None:
    """The model's context in tokens: the LLM config's ``max_position_embeddings`` or the tokenizer's
    ``model_max_length``, whichever is set (the smaller when both are); None when neither is known."""
    sizes: list[int] = []
    llm = getattr(getattr(chat, "model", None), "llm", None)
    positions = getattr(getattr(llm, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        sizes.append(positions)
    tokenizer = getattr(getattr(chat, "processor", None), "tokenizer", None)
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, int) and 0 < length < 10**9:  # transformers' "unset" is a huge sentinel
        sizes.append(length)
    return min(sizes) if sizes else None


def prompt_tokens(chat: Any, messages: Sequence[dict[str, Any]]) -> int | None:
    """Tokens of the prompt (speech slots included) as the model will see it; None without a processor."""
    processor = getattr(chat, "processor", None)
    if processor is None or not hasattr(processor, "encode"):
        return None
    return len(processor.encode(messages, add_generation_prompt=True).input_ids)
