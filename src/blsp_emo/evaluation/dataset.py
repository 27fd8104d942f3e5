"""Evaluation utterances: manifest rows selected reproducibly, with their audio loaded on demand."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blsp_emo.audio import load_audio
from blsp_emo.data.manifest import ManifestRow, read_manifest
from blsp_emo.errors import UserError
from blsp_emo.io import sha256_file
from blsp_emo.prompts import EMOTIONS


@dataclass(frozen=True)
class Utterance:
    """One evaluation item: an audio file with its transcript and (optionally) its emotion label."""

    id: str
    audio_path: Path
    text: str
    emotion: str | None
    duration: float | None = None
    language: str = "en"
    speaker: str = ""
    engine: str = ""  # the synthesis engine of synthetic speech ("" for recordings)

    def load(self) -> np.ndarray:
        """The audio as 16 kHz mono float32."""
        return load_audio(self.audio_path)


def _utterance(row: ManifestRow, index: int) -> Utterance:
    return Utterance(
        id=row.id or f"{index:06d}",
        audio_path=row.audio_path,
        text=row.text or "",
        emotion=row.emotion,
        duration=row.duration,
        language=row.language,
        speaker=row.speaker,
        engine=str(row.extra.get("engine") or ""),
    )


def load_utterances(
    manifest: str | Path,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    need_emotion: bool = False,
    need_text: bool = False,
) -> list[Utterance]:
    """Read a manifest and select the rows to evaluate.

    ``split`` keeps only rows of that split. ``limit`` keeps a seeded random subset of that size (in
    manifest order), so a small run still covers every class and is the same for the same seed.
    ``need_emotion``/``need_text`` make rows without a label/transcript an error naming the line.
    """
    rows = list(read_manifest(manifest))
    selected: list[Utterance] = []
    for index, row in enumerate(rows):
        if split is not None and row.split != split:
            continue
        where = f"{manifest}: row {index + 1}"
        if need_emotion and row.emotion is None:
            raise UserError(f"{where}: this task needs an emotion label and the row has none")
        if row.emotion is not None and row.emotion not in EMOTIONS:
            raise UserError(
                f"{where}: unknown emotion {row.emotion!r} (expected one of {', '.join(EMOTIONS)})"
            )
        if need_text and not row.text.strip():
            raise UserError(f"{where}: this task needs a transcript and the row has none")
        if not row.audio_path.is_file():
            raise UserError(f"{where}: audio file not found: {row.audio_path}")
        selected.append(_utterance(row, index))
    if not selected:
        what = f" in split {split!r}" if split else ""
        raise UserError(f"{manifest}: no rows to evaluate{what}")
    ids = [u.id for u in selected]
    if len(set(ids)) != len(ids):
        raise UserError(f"{manifest}: utterance ids are not unique")
    return seeded_subset(selected, limit, seed)


def seeded_subset(utterances: list[Utterance], limit: int | None, seed: int = 0) -> list[Utterance]:
    """A seeded random subset of ``limit`` utterances, kept in their original order (all when None)."""
    if limit is None or limit >= len(utterances):
        return utterances
    if limit <= 0:
        raise UserError(f"--limit must be positive, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(utterances)), limit))
    return [utterances[i] for i in keep]


def manifest_fingerprint(path: str | Path) -> str:
    """sha256 of the manifest file (recorded in results so a number names its exact data)."""
    return sha256_file(path)


def emotion_labels(utterances: Sequence[Utterance]) -> list[str]:
    """The emotion label of every utterance (a task that scores emotions needs them all)."""
    labels = [u.emotion for u in utterances]
    missing = [u.id for u, label in zip(utterances, labels) if label is None]
    if missing:
        raise UserError(f"utterance {missing[0]!r} has no emotion label (this task scores emotions)")
    return [label for label in labels if label is not None]


def load_batch(utterances: list[Utterance]) -> list[np.ndarray]:
    """Load the audio of several utterances."""
    return [u.load() for u in utterances]
