"""The trainer's batch sampler: by total duration (fast path) or by count (paper path), rank-aware.

Duration batching is ``blsp_emo.data.dataset.DurationBatchSampler`` (bucketing by duration, rank-aware,
deterministic from ``seed + epoch``). This wrapper adds what training needs on top: a fixed-count mode
for the paper's path, trimming each rank's batches to a multiple of the gradient-accumulation steps (an
epoch always ends on an optimizer step, and every rank takes the same number of steps, as DDP needs),
and skipping the micro-batches a resumed run already trained on.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


def duration_buckets(rows: int, batch_size: int) -> int:
    """Duration buckets for ``rows``: at most 10, each holding about four full batches or more.

    A batch never spans two buckets, so on a small corpus many buckets would mean many small batches.
    """
    return max(1, min(10, rows // (4 * batch_size)))


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
        self.mode, self.batch_size = mode, batch_size
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.shuffle, self.multiple_of = shuffle, multiple_of
        self.epoch = 0
        self.skip = 0
        self.by_duration = None
        if mode == "duration":
            from blsp_emo.data.dataset import DurationBatchSampler

            self.by_duration = DurationBatchSampler(
                self.durations, max_seconds=batch_seconds, shuffle=shuffle, seed=seed, num_replicas=num_replicas,
                rank=rank, drop_last=True, max_items=batch_size, buckets=duration_buckets(len(self.durations), batch_size),
            )  # fmt: skip

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch (reshuffles) and how many of this rank's micro-batches to skip (resume)."""
        self.epoch, self.skip = epoch, skip

    def epoch_batches(self) -> list[list[int]]:
        """This rank's micro-batches of the current epoch, before skipping."""
        if self.by_duration is not None:
            self.by_duration.set_epoch(self.epoch)
            mine = list(self.by_duration)
        else:
            order = list(range(len(self.durations)))
            if self.shuffle:
                random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
            batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            batches = batches[: len(batches) // self.num_replicas * self.num_replicas]
            mine = batches[self.rank :: self.num_replicas]
        return mine[: len(mine) // self.multiple_of * self.multiple_of]

    def batches_per_epoch(self) -> int:
        """Micro-batches per rank in a full epoch (the same on every rank)."""
        return len(self.epoch_batches())

    def __len__(self) -> int:
        return max(len(self.epoch_batches()) - self.skip, 0)

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches()[self.skip :]
