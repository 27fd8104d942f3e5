"""The trainer's batch sampler: duration budget, rank sharding, accumulation multiple, resume skipping."""

import random

import pytest

from blsp_emo.training.sampler import TrainBatchSampler


def test_duration_batches_respect_the_budget():
    rng = random.Random(0)
    durations = [rng.uniform(1, 10) for _ in range(200)]
    batches = TrainBatchSampler(durations, "duration", batch_seconds=30, batch_size=16).epoch_batches()
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) <= 16
        assert max(durations[i] for i in b) * len(b) <= 30 or len(b) == 1


@pytest.mark.parametrize("mode", ["duration", "count"])
def test_ranks_split_the_epoch_evenly_and_disjointly(mode):
    durations = [1 + (i % 7) for i in range(101)]
    shards = [
        TrainBatchSampler(durations, mode, 12, 4, num_replicas=2, rank=r, seed=3, multiple_of=2)
        for r in range(2)
    ]
    a, b = (s.epoch_batches() for s in shards)
    assert len(a) == len(b) and len(a) % 2 == 0 and a
    assert not {i for x in a for i in x} & {i for x in b for i in x}


@pytest.mark.parametrize("mode", ["duration", "count"])
def test_epochs_reshuffle_deterministically_and_skip_resumes(mode):
    durations = [1 + (i % 9) * 0.5 for i in range(40)]
    sampler = TrainBatchSampler(durations, mode, batch_seconds=10, batch_size=4, seed=5)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second
    sampler.set_epoch(1, skip=3)
    assert list(sampler) == second[3:] and len(sampler) == len(second) - 3
    again = TrainBatchSampler(durations, mode, batch_seconds=10, batch_size=4, seed=5)
    assert list(again) == first
