"""Training rows: a torch Dataset over target rows, how they are read and filtered, recognition copies.

:func:`load_target_dataset` reads a target JSONL (``data targets`` output), keeps the rows of a split and
a duration range (docs/method.md §3) and returns a :class:`TargetDataset`; :class:`RecognitionMix` adds
emotion-recognition copies of labelled rows for stage 2. Batching is
:class:`blsp_emo.training.sampler.TrainBatchSampler`; the model inputs are built by
:class:`blsp_emo.training.data.TrainingCollator`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from blsp_emo.audio import audio_duration
from blsp_emo.audio import load_audio as read_audio
from blsp_emo.data.manifest import ManifestRow, read_manifest
from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTION_TO_ID


class TargetDataset(Dataset):
    """Rows of a target JSONL (``data targets`` output) as training examples.

    Each item is a dict: ``audio`` (16 kHz mono float32), ``text`` (transcript), ``target`` (the teacher's
    continuation), ``truncated``, ``emotion`` (label or None), ``emotion_id`` (0..4, or -1 when
    unlabelled), ``target_emotion``, ``duration`` (seconds), ``language``, ``id``, ``index``.

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
            item["audio"] = read_audio(row.audio_path)
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Group a batch's items field by field (audio stays a list of arrays: the processor pads it)."""
    batch: dict[str, Any] = {key: [item[key] for item in items] for key in items[0]}
    batch["emotion_id"] = torch.tensor(batch["emotion_id"], dtype=torch.long)
    return batch


def use_clean_audio(row: ManifestRow, path: Path) -> None:
    """Point ``row`` at its recording before augmentation (its ``clean_audio`` field) and drop the
    augmented copy's duration. A relative ``clean_audio`` is relative to the corpus folder: the target
    file's folder, or the first folder above the augmented copy that holds it."""
    clean = row.extra.get("clean_audio")
    if not clean:
        return
    candidates = [Path(clean)] if Path(clean).is_absolute() else [path.parent / clean]
    candidates += [parent / clean for parent in row.audio_path.parents]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise UserError(f"{path}: row {row.id}: clean_audio {clean} not found")
    row.audio, row.base_dir, row.duration = str(found.resolve()), None, None


def load_target_dataset(
    path: str | Path,
    min_seconds: float = 0.0,
    max_seconds: float = float("inf"),
    max_rows: int = 0,
    split: str = "",
    require_target: bool = True,
    audio_field: str = "audio",
) -> TargetDataset:
    """The training rows of a target JSONL (``data targets`` output) as a :class:`TargetDataset`.

    Keeps rows of ``split`` (rows without one are kept) whose audio lasts ``min_seconds``..``max_seconds``
    (docs/method.md §3), at most ``max_rows`` of them; the dataset itself drops rows whose continuation
    was written for another emotion than the utterance's. Bad rows raise :class:`UserError` naming
    file:line. ``audio_field="clean_audio"`` trains on each row's recording before augmentation (see
    :func:`use_clean_audio`).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such training file")
    rows = []
    for row in read_manifest(path):
        if split and row.split != split:  # rows without a split field count as "train"
            continue
        if audio_field == "clean_audio":
            use_clean_audio(row, path)
        elif audio_field != "audio":
            raise UserError(f"data.audio_field {audio_field!r}: expected audio or clean_audio")
        if row.duration is None:
            if not row.audio_path.is_file():
                raise UserError(f"{path}: audio file {row.audio_path} not found")
            row.duration = audio_duration(row.audio_path) or 0.0
        if min_seconds <= row.duration <= max_seconds:
            rows.append(row)
        if max_rows and len(rows) >= max_rows:
            break
    dataset = TargetDataset(rows, require_target=require_target)
    if len(dataset) == 0:
        wanted = "a target" if require_target else "a transcript"
        raise UserError(
            f"{path}: no usable rows (need {min_seconds:g}-{max_seconds:g} s audio with {wanted})"
        )
    missing = next((r.audio_path for r in dataset.rows if not r.audio_path.is_file()), None)
    if missing is not None:
        raise UserError(f"{path}: audio file {missing} not found")
    return dataset


class RecognitionMix(Dataset):
    """A stage-2 dataset plus recognition copies of a share of its labelled utterances.

    Items ``0..len(base)-1`` are the base items; after them come copies of ``share`` of the labelled
    utterances (a fixed draw from ``seed``) with ``task`` "recognition" and the emotion word as the
    target: the collator asks them the emotion-recognition question (docs/method.md §5) instead of the
    continuation prompt, so the model learns to name the emotion it hears in words, not only in its head.
    """

    def __init__(self, base: TargetDataset, share: float, seed: int = 0) -> None:
        self.base = base
        labelled = [i for i, row in enumerate(base.rows) if row.emotion is not None]
        count = int(round(share * len(labelled)))
        self.copies = sorted(random.Random(seed).sample(labelled, count))
        self.rows = base.rows + [base.rows[i] for i in self.copies]

    def __len__(self) -> int:
        return len(self.base) + len(self.copies)

    @property
    def durations(self) -> list[float]:
        """Seconds per item (a copy lasts as long as its utterance)."""
        durations = self.base.durations
        return durations + [durations[i] for i in self.copies]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < len(self.base):
            return self.base[index]
        item = dict(self.base[self.copies[index - len(self.base)]])
        item.update(task="recognition", target=item["emotion"], truncated=False)
        return item
