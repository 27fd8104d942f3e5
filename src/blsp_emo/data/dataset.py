"""Training data: a torch Dataset over target rows, a duration-bucketing batch sampler, an encoder cache.

The sampler batches by total seconds, not by count: a batch of 2 s clips holds many more utterances than a
batch of 25 s clips, so memory use stays flat and little compute goes to padding.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from blsp_emo.data.manifest import ManifestRow, read_manifest
from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTION_TO_ID


class TargetDataset(Dataset):
    """Rows of a target JSONL (``data targets`` output) as training examples.

    Each item is a dict: ``audio`` (16 kHz mono float32), ``text`` (transcript), ``target`` (the teacher's
    continuation), ``truncated``, ``emotion`` (label or None), ``emotion_id`` (0..4, or -1 when
    unlabelled), ``target_emotion``, ``duration`` (seconds), ``id``, ``index``.

    With ``matching_emotion_only`` (default) rows written for another emotion than their own label
    (``--all-emotions`` output) are left out: for stage 2 a model must learn the continuation for the
    emotion it hears.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[ManifestRow],
        load_audio: bool = True,
        matching_emotion_only: bool = True,
        require_target: bool = True,
    ) -> None:
        rows = list(read_manifest(source)) if isinstance(source, (str, os.PathLike)) else list(source)
        where = str(source) if isinstance(source, (str, os.PathLike)) else "rows"
        kept: list[ManifestRow] = []
        for number, row in enumerate(rows, 1):
            target_emotion = row.extra.get("target_emotion")
            if matching_emotion_only and target_emotion is not None and target_emotion != row.emotion:
                continue
            if require_target and not isinstance(row.extra.get("target"), str):
                raise UserError(f"{where}: row {number} ({row.id or row.audio}) has no 'target' field")
            kept.append(row)
        self.rows = kept
        self.load_audio = load_audio
        self._durations: list[float] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def durations(self) -> list[float]:
        """Seconds per item (from the rows; measured from the file header where missing)."""
        if self._durations is None:
            from blsp_emo.data.importers.common import audio_duration

            self._durations = [
                r.duration if r.duration is not None else (audio_duration(r.audio_path) or 0.0)
                for r in self.rows
            ]
        return self._durations

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        item: dict[str, Any] = {
            "index": index,
            "id": row.id,
            "text": row.text,
            "target": row.extra.get("target", ""),
            "truncated": bool(row.extra.get("truncated", False)),
            "emotion": row.emotion,
            "emotion_id": EMOTION_TO_ID.get(row.emotion, -1) if row.emotion else -1,
            "target_emotion": row.extra.get("target_emotion"),
            "duration": self.durations[index],
            "language": row.language,
        }
        if self.load_audio:
            from blsp_emo.audio import load_audio

            item["audio"] = load_audio(row.audio_path)
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Group a batch's items field by field (audio stays a list of arrays: the processor pads it)."""
    batch = {key: [item[key] for item in items] for key in items[0]}
    batch["emotion_id"] = torch.tensor(batch["emotion_id"], dtype=torch.long)
    return batch


class DurationBatchSampler(Sampler[list[int]]):
    """Batches whose padded length x size stays within ``max_seconds``; bucketed by duration.

    Items are sorted into ``buckets`` equal-count duration buckets; each epoch shuffles inside the buckets,
    cuts them into batches of at most ``max_seconds`` of padded audio (``len(batch) * longest``), and
    shuffles the batch order, all from ``seed + epoch``. With ``num_replicas`` > 1 every rank computes the
    same batch list and takes every ``num_replicas``-th batch; the list is padded by repeating batches (or
    cut, with ``drop_last``) so that every rank gets the same number of batches.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_seconds: float,
        buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        max_items: int | None = None,
    ) -> None:
        if max_seconds <= 0:
            raise UserError(f"max_seconds must be positive, got {max_seconds}")
        if num_replicas is None or rank is None:
            world, this = _distributed_rank()
            num_replicas = world if num_replicas is None else num_replicas
            rank = this if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise UserError(f"rank {rank} is outside world size {num_replicas}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_seconds, self.buckets, self.shuffle, self.seed = max_seconds, max(1, buckets), shuffle, seed
        self.num_replicas, self.rank, self.drop_last, self.max_items = (
            num_replicas,
            rank,
            drop_last,
            max_items,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use a new shuffle for ``epoch`` (call before iterating, as with DistributedSampler)."""
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = np.argsort(self.durations, kind="stable")
        batches: list[list[int]] = []
        for bucket in np.array_split(order, min(self.buckets, max(1, len(order)))):
            indices = bucket.tolist()
            if self.shuffle:
                rng.shuffle(indices)
                indices.sort(key=lambda i: self.durations[i])  # keep a batch's lengths close
            batch: list[int] = []
            longest = 0.0
            for i in indices:
                longer = max(longest, float(self.durations[i]))
                full = self.max_items is not None and len(batch) >= self.max_items
                if batch and (longer * (len(batch) + 1) > self.max_seconds or full):
                    batches.append(batch)
                    batch, longer = [], float(self.durations[i])
                batch.append(i)
                longest = longer
            if batch:
                batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        if self.num_replicas > 1 and batches:
            remainder = len(batches) % self.num_replicas
            if remainder and self.drop_last and len(batches) >= self.num_replicas:
                batches = batches[: len(batches) - remainder]
            elif remainder:
                extra = self.num_replicas - remainder
                batches += [batches[i % len(batches)] for i in range(extra)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return len(self._all_batches()[self.rank :: self.num_replicas])


def _distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))


class EncoderCache:
    """Encoder outputs on disk, keyed by sha256(key_prefix + audio samples), as safetensors files.

    ``key_prefix`` must name everything besides the audio that changes the output: the encoder (model name
    or checkpoint hash) and the encoding mode (e.g. "variable" vs "pad30"), e.g.
    ``EncoderCache(folder, "whisper-base|variable")``. Only valid while the encoder is frozen.
    """

    def __init__(self, folder: str | os.PathLike, key_prefix: str) -> None:
        if not key_prefix:
            raise UserError("EncoderCache needs a key_prefix naming the encoder and the encoding mode")
        self.folder = Path(folder)
        self.key_prefix = key_prefix
        self.hits = 0
        self.misses = 0

    def key(self, audio: np.ndarray) -> str:
        """The cache key of one audio array (content, dtype and shape included)."""
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        digest = hashlib.sha256()
        digest.update(self.key_prefix.encode("utf-8") + b"\0" + str(samples.shape).encode() + b"\0")
        digest.update(samples.tobytes())
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives (two-level fan-out keeps folders small)."""
        return self.folder / key[:2] / f"{key}.safetensors"

    def __contains__(self, audio: np.ndarray) -> bool:
        return self.path(self.key(audio)).is_file()

    def get_or_compute(
        self, audio: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor]
    ) -> torch.Tensor:
        """The cached encoder output for ``audio``, computing and storing it on a miss."""
        from safetensors.torch import load_file, save_file

        path = self.path(self.key(audio))
        if path.is_file():
            try:
                tensor = load_file(str(path))["encoder_output"]
                self.hits += 1
                return tensor
            except Exception:  # a damaged entry is recomputed, not trusted
                path.unlink(missing_ok=True)
        tensor = compute(audio)
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"compute must return a torch.Tensor, got {type(tensor).__name__}")
        self.misses += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        save_file(
            {"encoder_output": tensor.detach().cpu().contiguous()},
            str(tmp),
            metadata={"key": self.key_prefix},
        )
        os.replace(tmp, path)
        return tensor
