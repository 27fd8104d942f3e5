"""Deterministic, rank-aware batch samplers: by total duration (fast path) or by count (paper path).

Both build the whole epoch's batch list from ``seed + epoch`` alone, so every rank agrees on it without
communication and a resumed run can skip exactly the micro-batches it already trained on. The number of
batches per rank is trimmed to a multiple of ``multiple_of`` (the gradient-accumulation steps), so an
epoch always ends on an optimizer step and every rank takes the same number of steps (DDP needs that).

Placeholder until ``blsp_emo.data`` ships its duration sampler: the trainer uses that one when present.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


def duration_batches(
    durations: Sequence[float], batch_seconds: float, max_batch_size: int, rng: random.Random | None
) -> list[list[int]]:
    """Group indices into batches whose padded audio (longest x count) stays within ``batch_seconds``.

    Rows are sorted by duration (ties in a random order) so that each batch holds similar lengths, which
    keeps padding small; a row longer than the budget gets a batch of its own.
    """
    order = list(range(len(durations)))
    if rng is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: durations[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for i in order:
        longest_if_added = max(longest, durations[i])
        if current and (
            longest_if_added * (len(current) + 1) > batch_seconds or len(current) >= max_batch_size
        ):
            batches.append(current)
            current, longest_if_added = [], durations[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


class TrainBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (lists of dataset indices) for the current epoch."""

    def __init__(
        self,
        durations: Sequence[float],
        mode: str = "duration",
        batch_seconds: float = 60.0,
        batch_size: int = 8,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        multiple_of: int = 1,
    ):
        if mode not in ("duration", "count"):
            raise ValueError(f"batching mode must be 'duration' or 'count', got {mode!r}")
        self.durations = list(durations)
        self.mode, self.batch_seconds, self.batch_size = mode, batch_seconds, batch_size
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.shuffle, self.multiple_of = shuffle, multiple_of
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch (reshuffles) and how many of this rank's micro-batches to skip (resume)."""
        self.epoch, self.skip = epoch, skip

    def epoch_batches(self) -> list[list[int]]:
        """This rank's micro-batches of the current epoch, before skipping."""
        rng = random.Random(self.seed * 1_000_003 + self.epoch) if self.shuffle else None
        if self.mode == "duration":
            batches = duration_batches(self.durations, self.batch_seconds, self.batch_size, rng)
            if rng is not None:
                rng.shuffle(batches)
        else:
            order = list(range(len(self.durations)))
            if rng is not None:
                rng.shuffle(order)
            batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        group = self.num_replicas * self.multiple_of
        usable = len(batches) // group * group
        return batches[self.rank : usable : self.num_replicas]

    def __len__(self) -> int:
        return max(len(self.epoch_batches()) - self.skip, 0)

    def batches_per_epoch(self) -> int:
        """Micro-batches per rank in a full epoch (the same on every rank and, for count mode, every epoch)."""
        return len(self.epoch_batches())

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches()[self.skip :]
