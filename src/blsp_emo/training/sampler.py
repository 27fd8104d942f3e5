"""The training batch sampler: by total duration (fast path) or by count (paper path), rank-aware, resumable.

Duration batching keeps the padded audio of a micro-batch (``len(batch) * longest``) within
``batch_seconds``: a batch of 2 s clips holds many more utterances than a batch of 25 s clips, so memory
use stays flat and little compute goes to padding. Items are sorted into equal-count duration buckets; each
epoch shuffles inside the buckets, cuts them into batches and shuffles the batch order, all from
``seed + epoch``. Count batching takes ``batch_size`` rows at a time from a shuffled order.

With ``num_replicas`` > 1 every rank computes the same batch list and takes every ``num_replicas``-th
batch; the list is cut (``drop_last``) or padded by repeating batches so that every rank gets the same
number. Each rank's batches are then trimmed to a multiple of ``multiple_of`` (the gradient-accumulation
steps: an epoch always ends on an optimizer step, and every rank takes the same number of steps, as DDP
needs).

The sampler knows how far into its epoch it is: :meth:`TrainBatchSampler.state_dict` (epoch, position,
seed, lhotse style) taken after k batches, loaded into a fresh sampler, makes it yield exactly the batches
that were still to come. The trainer stores it in every checkpoint for exact resume.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from blsp_emo.errors import UserError

MODES = ("duration", "count")


def duration_buckets(rows: int, batch_size: int) -> int:
    """Duration buckets for ``rows``: at most 10, each holding about four full batches or more.

    A batch never spans two buckets, so on a small corpus many buckets would mean many small batches.
    """
    return max(1, min(10, rows // (4 * batch_size)))


def distributed_rank() -> tuple[int, int]:
    """(world size, rank) of this process: from torch.distributed when initialised, else the launcher's
    ``WORLD_SIZE`` / ``RANK`` environment (1, 0 when absent)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))


class TrainBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (lists of dataset indices) of the current epoch.

    ``mode`` "duration": batches of at most ``batch_seconds`` padded audio and at most ``batch_size`` rows
    (None: no row limit) from ``buckets`` duration buckets (None: :func:`duration_buckets`); "count":
    ``batch_size`` rows per batch. ``num_replicas`` / ``rank`` None: taken from the process group or the
    launcher's environment.
    """

    def __init__(
        self,
        durations: Sequence[float] | np.ndarray,
        mode: str = "duration",
        batch_seconds: float = 60.0,
        batch_size: int | None = 8,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        multiple_of: int = 1,
        buckets: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise UserError(f"batching mode must be 'duration' or 'count', got {mode!r}")
        if mode == "duration" and batch_seconds <= 0:
            raise UserError(f"batch_seconds must be positive, got {batch_seconds}")
        if (batch_size is not None and batch_size < 1) or (mode == "count" and batch_size is None):
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        if multiple_of < 1:
            raise UserError(f"multiple_of must be >= 1, got {multiple_of}")
        if num_replicas is None or rank is None:
            world, this = distributed_rank()
            num_replicas = world if num_replicas is None else num_replicas
            rank = this if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise UserError(f"rank {rank} is outside world size {num_replicas}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.mode, self.batch_seconds, self.batch_size = mode, batch_seconds, batch_size
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.shuffle, self.drop_last, self.multiple_of = shuffle, drop_last, multiple_of
        if buckets is None:
            buckets = duration_buckets(len(self.durations), batch_size) if batch_size else 10
        self.buckets = max(1, buckets)
        self.epoch = 0
        self.position = 0  # batches of this epoch already handed out (on this rank)

    # ---- the batches ---------------------------------------------------------------------------------

    def _duration_batches(self, rng: random.Random) -> list[list[int]]:
        order = np.argsort(self.durations, kind="stable")
        batches: list[list[int]] = []
        for bucket in np.array_split(order, min(self.buckets, max(1, len(order)))):
            indices: list[int] = bucket.tolist()
            if self.shuffle:
                rng.shuffle(indices)
                indices.sort(key=lambda i: self.durations[i])  # keep a batch's lengths close
            batch: list[int] = []
            longest = 0.0
            for i in indices:
                longer = max(longest, float(self.durations[i]))
                full = self.batch_size is not None and len(batch) >= self.batch_size
                if batch and (longer * (len(batch) + 1) > self.batch_seconds or full):
                    batches.append(batch)
                    batch, longer = [], float(self.durations[i])
                batch.append(i)
                longest = longer
            if batch:
                batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def _count_batches(self) -> list[list[int]]:
        assert self.batch_size is not None  # checked in __init__
        order = list(range(len(self.durations)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def all_batches(self) -> list[list[int]]:
        """Every rank's batches of the current epoch, in order, evened out across the ranks."""
        if self.mode == "duration":
            batches = self._duration_batches(random.Random(self.seed + self.epoch))
        else:
            batches = self._count_batches()
        n = self.num_replicas
        remainder = len(batches) % n
        if n > 1 and remainder:
            if self.drop_last and len(batches) >= n:
                batches = batches[: len(batches) - remainder]
            else:
                batches += [batches[i % len(batches)] for i in range(n - remainder)]
        return batches

    def epoch_batches(self) -> list[list[int]]:
        """This rank's micro-batches of the current epoch (from its start, whatever the position)."""
        mine = self.all_batches()[self.rank :: self.num_replicas]
        return mine[: len(mine) // self.multiple_of * self.multiple_of]

    def batches_per_epoch(self) -> int:
        """Micro-batches per rank in a full epoch (the same on every rank)."""
        return len(self.epoch_batches())

    # ---- iteration and state -------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (a new shuffle), as with DistributedSampler."""
        self.epoch, self.position = epoch, 0

    def __len__(self) -> int:
        """The batches still to come in this epoch."""
        return max(self.batches_per_epoch() - self.position, 0)

    def __iter__(self) -> Iterator[list[int]]:
        """This rank's batches of the epoch from the current position. A pass that runs to the end leaves
        the sampler at the start of the same epoch again (call :meth:`set_epoch` for the next one)."""
        batches = self.epoch_batches()
        while self.position < len(batches):
            self.position += 1
            yield batches[self.position - 1]
        self.position = 0

    def state_dict(self) -> dict[str, Any]:
        """Where the sampler stands: ``epoch``, ``position`` (batches of the epoch already handed out on
        this rank, the same number on every rank), ``seed``; and what fixes the batches (mode, world size,
        rows), which :meth:`load_state_dict` checks."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "mode": self.mode,
            "num_replicas": self.num_replicas,
            "rows": len(self.durations),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state``: the next pass yields the batches of its epoch
        after its position. ``ValueError`` when it was taken with another batching mode, world size or
        number of rows (the batches would differ), or lacks the epoch or position."""
        for key in ("epoch", "position"):
            if not isinstance(state.get(key), int) or state[key] < 0:
                raise ValueError(
                    f"sampler state: {key} must be a non-negative integer, got {state.get(key)!r}"
                )
        now = {"mode": self.mode, "num_replicas": self.num_replicas, "rows": len(self.durations)}
        for key, value in now.items():
            if key in state and state[key] != value:
                raise ValueError(
                    f"sampler state was taken with {key}={state[key]!r}, this sampler has {value!r}"
                )
        self.seed = int(state.get("seed", self.seed))
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
