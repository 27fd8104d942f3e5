"""Stopping a reply early: stop strings (found in text that arrives in pieces too) and a per-row stopping
criterion, so that each row of a batch can end on its own (a client that went away, a request past its
deadline, a stop string in its text) while its batch-mates go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

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
