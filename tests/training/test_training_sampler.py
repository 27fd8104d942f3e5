"""The trainer's batch sampler: duration budget, rank sharding, accumulation multiple, exact resume."""

import random

import pytest

from blsp_emo.errors import UserError
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
def test_epochs_reshuffle_deterministically(mode):
    durations = [1 + (i % 9) * 0.5 for i in range(40)]
    sampler = TrainBatchSampler(durations, mode, batch_seconds=10, batch_size=4, seed=5)
    first = list(sampler)
    assert list(sampler) == first  # a whole pass leaves the sampler at the start of the same epoch
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second
    again = TrainBatchSampler(durations, mode, batch_seconds=10, batch_size=4, seed=5)
    assert list(again) == first


@pytest.mark.parametrize("mode", ["duration", "count"])
@pytest.mark.parametrize("taken", [0, 1, 3])
def test_state_dict_resumes_with_exactly_the_remaining_batches(mode, taken):
    durations = [1 + (i * 7 % 11) * 0.4 for i in range(60)]

    def sampler(rank: int = 0) -> TrainBatchSampler:
        return TrainBatchSampler(durations, mode, 9, 4, num_replicas=2, rank=rank, seed=11, multiple_of=2)

    running = sampler(rank=1)
    running.set_epoch(2)
    whole = running.epoch_batches()
    batches = iter(running)
    for _ in range(taken):
        next(batches)
    state = running.state_dict()
    assert (state["epoch"], state["position"], state["seed"]) == (2, taken, 11)

    fresh = sampler(rank=1)
    fresh.load_state_dict(state)
    assert len(fresh) == len(whole) - taken
    assert list(fresh) == whole[taken:] == list(batches)
    # the next epoch is the one an uninterrupted sampler would give
    fresh.set_epoch(3)
    running.set_epoch(3)
    assert list(fresh) == list(running)
    # every rank is at the same position: the state of one rank resumes the others
    other = sampler(rank=0)
    other.load_state_dict(state)
    reference = sampler(rank=0)
    reference.set_epoch(2)
    assert list(other) == reference.epoch_batches()[taken:] != whole[taken:]


def test_state_dict_restores_the_seed_and_refuses_other_batching():
    durations = [1.0 + i % 5 for i in range(30)]
    taken = TrainBatchSampler(durations, "count", batch_size=3, seed=4)
    next(iter(taken))
    fresh = TrainBatchSampler(durations, "count", batch_size=3, seed=99)
    fresh.load_state_dict(taken.state_dict())
    assert (
        fresh.seed == 4
        and list(fresh) == TrainBatchSampler(durations, "count", batch_size=3, seed=4).epoch_batches()[1:]
    )
    with pytest.raises(ValueError, match="mode='count'"):
        TrainBatchSampler(durations, "duration", 10, 3).load_state_dict(taken.state_dict())
    with pytest.raises(ValueError, match="rows=30"):
        TrainBatchSampler(durations[:20], "count", batch_size=3).load_state_dict(taken.state_dict())
    with pytest.raises(ValueError, match="num_replicas=1"):
        TrainBatchSampler(durations, "count", batch_size=3, num_replicas=2, rank=0).load_state_dict(
            taken.state_dict()
        )
    with pytest.raises(ValueError, match="position"):
        fresh.load_state_dict({"epoch": 0})


def test_bad_settings_are_named():
    with pytest.raises(UserError, match="batching mode"):
        TrainBatchSampler([1.0], "random")
    with pytest.raises(UserError, match="outside world size"):
        TrainBatchSampler([1.0], num_replicas=2, rank=2)
    with pytest.raises(UserError, match="batch_size"):
        TrainBatchSampler([1.0], "count", batch_size=None)


def test_a_checkpoint_written_before_the_sampler_state_resumes_at_its_position(tmp_path):
    import json

    from blsp_emo.training.checkpoint import load_trainer_state

    old = {"global_step": 4, "epoch": 1, "micro_batches_in_epoch": 2, "samples_seen": 16, "total_steps": 7}
    (tmp_path / "trainer_state.json").write_text(json.dumps(old))
    state = load_trainer_state(tmp_path)
    assert state.sampler == {"epoch": 1, "position": 2} and state.global_step == 4
    durations = [1.0 + i % 4 for i in range(24)]
    sampler = TrainBatchSampler(durations, "count", batch_size=4, num_replicas=1, rank=0)
    sampler.load_state_dict(state.sampler)
    sampler_epoch1 = TrainBatchSampler(durations, "count", batch_size=4, num_replicas=1, rank=0)
    sampler_epoch1.set_epoch(1)
    assert list(sampler) == sampler_epoch1.epoch_batches()[2:]
