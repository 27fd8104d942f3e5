"""Target dataset, the duration-bucketing batch sampler (incl. ranks), the encoder-output cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from blsp_emo.data.manifest import ManifestRow, write_manifest
from blsp_emo.errors import UserError
from blsp_emo.training.dataset import TargetDataset, collate
from blsp_emo.training.encoder_cache import EncoderCache
from blsp_emo.training.sampler import TrainBatchSampler


def write_wav(path: Path, seconds: float) -> None:
    t = np.arange(int(16_000 * seconds)) / 16_000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)


def by_duration(durations, max_seconds: float, **options) -> TrainBatchSampler:
    """Duration batching without a row limit, over 10 buckets."""
    return TrainBatchSampler(durations, "duration", max_seconds, batch_size=None, buckets=10, **options)


def _targets(tmp_path: Path) -> Path:
    rows = []
    for i, (emotion, target_emotion) in enumerate(
        [("sad", "sad"), ("sad", "happy"), (None, None), ("angry", "angry")]
    ):
        write_wav(tmp_path / f"{i}.wav", 0.2 + 0.1 * i)
        extra = {"target": f"continuation {i}", "truncated": i == 3}
        if target_emotion:
            extra["target_emotion"] = target_emotion
        rows.append(ManifestRow(audio=f"{i}.wav", text=f"text {i}", emotion=emotion, id=f"u{i}", extra=extra))
    path = tmp_path / "targets.jsonl"
    write_manifest(path, rows)
    return path


def test_dataset_items_and_loader(tmp_path: Path) -> None:
    dataset = TargetDataset(_targets(tmp_path))
    assert [r.id for r in dataset.rows] == ["u0", "u2", "u3"]  # u1 was written for another emotion
    item = dataset[2]
    assert item["audio"].dtype == np.float32 and item["audio"].size == int(0.5 * 16000)
    assert item["emotion_id"] == 2 and item["truncated"] and item["target"] == "continuation 3"
    assert dataset[1]["emotion_id"] == -1 and abs(dataset.durations[1] - 0.4) < 1e-3
    sampler = by_duration(dataset.durations, 1.0, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    batches = list(loader)
    assert sum(len(b["id"]) for b in batches) == 3
    assert isinstance(batches[0]["emotion_id"], torch.Tensor)
    assert len(TargetDataset(_targets(tmp_path), matching_emotion_only=False)) == 4


def test_dataset_requires_targets(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write_manifest(path, [ManifestRow(audio="a.wav", text="x")])
    with pytest.raises(UserError, match="has no 'target'"):
        TargetDataset(path)


def test_sampler_respects_budget_and_covers_everything() -> None:
    rng = np.random.default_rng(0)
    durations = rng.uniform(1, 20, size=300)
    sampler = by_duration(durations, 60, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(300))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * durations[batch].max() <= 60
    spread = np.mean([np.ptp(durations[b]) for b in batches if len(b) > 1])
    assert spread < 3.0  # bucketed: lengths in a batch are close
    assert batches == list(by_duration(durations, 60, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new shuffle each epoch
    assert list(by_duration([100.0, 1.0], 10, shuffle=False)) == [[1], [0]]


@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_gives_every_rank_the_same_number_of_batches(drop_last: bool) -> None:
    durations = np.random.default_rng(1).uniform(1, 10, size=101)
    ranks = [
        list(by_duration(durations, 25, seed=5, num_replicas=4, rank=r, drop_last=drop_last))
        for r in range(4)
    ]
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) == len(
        by_duration(durations, 25, seed=5, num_replicas=4, rank=0, drop_last=drop_last)
    )
    seen = [i for r in ranks for b in r for i in b]
    if not drop_last:
        assert set(seen) == set(range(101))
    with pytest.raises(UserError, match="outside world size"):
        by_duration(durations, 25, num_replicas=2, rank=2)


def test_encoder_cache_keys_by_content_and_prefix(tmp_path: Path) -> None:
    calls = []

    def encode(audio: np.ndarray) -> torch.Tensor:
        calls.append(audio.size)
        return torch.from_numpy(np.stack([audio[:4], audio[:4] * 2]))

    audio = np.linspace(-1, 1, 1600, dtype=np.float32)
    cache = EncoderCache(tmp_path / "cache", "whisper-base|variable")
    first = cache.get_or_compute(audio, encode)
    second = cache.get_or_compute(audio.copy(), encode)
    assert torch.equal(first, second) and calls == [1600] and cache.hits == 1
    assert audio in cache
    other_mode = EncoderCache(tmp_path / "cache", "whisper-base|pad30")
    other_mode.get_or_compute(audio, encode)
    changed = audio.copy()
    changed[0] += 1e-3
    cache.get_or_compute(changed, encode)
    assert calls == [1600, 1600, 1600]
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 3
    with pytest.raises(UserError):
        EncoderCache(tmp_path, "")
