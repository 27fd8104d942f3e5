"""Manifests: one utterance per JSONL line, read lazily, written atomically, appended crash-safely.

A manifest row names an audio file (absolute, or relative to the manifest's folder), its transcript and,
for emotional corpora, its label. Target files (``data targets``) are manifests with more fields; unknown
fields are kept in ``extra`` so that every step can pass rows through without losing anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blsp_emo.errors import AudioError, UserError
from blsp_emo.io import atomic_write_jsonl
from blsp_emo.prompts import EMOTIONS, LANGUAGES

SPLITS: tuple[str, ...] = ("train", "dev", "test")
# Evaluation-only splits such as "heldout-flite" (data synth --holdout-engine: leave-one-engine-out).
HELDOUT_PREFIX = "heldout-"


@dataclass
class ManifestRow:
    """One utterance.

    ``audio`` is stored as written in the file; :attr:`audio_path` is the resolved path.
    """

    audio: str  # path to the audio file, absolute or relative to the manifest's folder
    text: str = ""  # transcript ("" when unknown)
    emotion: str | None = None  # one of prompts.EMOTIONS, or None for unlabelled speech
    language: str = "en"  # ISO 639-1 code (prompts.LANGUAGES); "en" when a manifest has no such field
    speaker: str = ""  # corpus-specific speaker id
    duration: float | None = None  # seconds; None when not measured
    split: str = "train"  # train | dev | test
    source_label: str | None = None  # the corpus's own label before mapping (e.g. "exc", "calm")
    corpus: str = ""  # corpus name (librispeech, iemocap, synth, ...)
    id: str = ""  # unique utterance id within the manifest
    extra: dict[str, Any] = field(default_factory=dict)  # any other fields (targets, provenance, ...)
    base_dir: Path | None = field(default=None, repr=False, compare=False)  # folder of the manifest

    @property
    def audio_path(self) -> Path:
        """The audio file's path, resolved against the manifest's folder when relative."""
        path = Path(self.audio)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written for this row (``extra`` fields are flattened in)."""
        out: dict[str, Any] = {}
        fields = dataclasses.asdict(self)
        for name in ("extra", "base_dir"):
            del fields[name]
        for name, value in fields.items():
            if value is None or (value == "" and name in ("id", "source_label")):
                continue
            out[name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path | None = None) -> ManifestRow:
        """Build a row from a decoded JSON object; raises ``ValueError`` naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"a row must be a JSON object, got {type(data).__name__}")
        if not isinstance(data.get("audio"), str) or not data["audio"]:
            raise ValueError("field 'audio' is missing or not a string")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "base_dir"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        duration = kwargs.get("duration")
        if duration is not None:
            if isinstance(duration, bool) or not isinstance(duration, (int, float)):
                raise ValueError(f"field 'duration' must be a number, got {duration!r}")
            kwargs["duration"] = float(duration)
        if "language" in kwargs and kwargs["language"] is None:  # null: not given, the default applies
            del kwargs["language"]
        for name in ("text", "language", "speaker", "split", "corpus", "id"):
            if name in kwargs and kwargs[name] is not None and not isinstance(kwargs[name], str):
                kwargs[name] = str(kwargs[name])
        return cls(**kwargs, extra=extra, base_dir=base_dir)


def read_manifest(path: str | os.PathLike, strict: bool = True) -> Iterator[ManifestRow]:
    """Yield the rows of a manifest lazily (one line at a time).

    Blank lines are skipped. With ``strict`` a malformed line raises :class:`UserError` naming
    ``file:line``; without it malformed lines are skipped silently (use :func:`check_manifest` to list them).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such manifest file")
    base = path.resolve().parent
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield ManifestRow.from_dict(json.loads(line), base_dir=base)
            except (ValueError, TypeError) as exc:
                if strict:
                    raise UserError(f"{path}:{number}: {exc}") from None


def relative_audio(audio: str | os.PathLike, manifest: str | os.PathLike) -> str:
    """Express an audio path relative to a manifest's folder when it lies inside it, else absolute."""
    audio_abs = Path(audio).resolve()
    folder = Path(manifest).resolve().parent
    try:
        return audio_abs.relative_to(folder).as_posix()
    except ValueError:
        return str(audio_abs)


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow | dict[str, Any]]) -> int:
    """Write a whole manifest atomically (temp file, fsync, rename); returns the number of rows."""
    return atomic_write_jsonl(path, (r.to_dict() if isinstance(r, ManifestRow) else r for r in rows))


@dataclass
class CheckReport:
    """Outcome of :func:`check_manifest`: the row count and one message per problem."""

    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row has a problem."""
        return not self.problems


def check_row(row: ManifestRow, read_audio: bool = True, max_seconds: float = 3600.0) -> list[str]:
    """Return the problems of one row (empty when it is usable)."""
    problems: list[str] = []
    if row.emotion is not None and row.emotion not in EMOTIONS:
        problems.append(f"unknown emotion label {row.emotion!r} (expected one of {', '.join(EMOTIONS)})")
    if row.language not in LANGUAGES:
        problems.append(
            f"unknown language code {row.language!r} (expected an ISO 639-1 code such as en, zh, el, fr, ru)"
        )
    duration_ok = row.duration is None or 0.0 < row.duration <= max_seconds
    if not duration_ok:
        problems.append(f"bad duration {row.duration!r} (must be > 0 and <= {max_seconds:g} s)")
    if row.split not in SPLITS and not (row.split.startswith(HELDOUT_PREFIX) and len(row.split) > 8):
        problems.append(f"unknown split {row.split!r} (expected one of {', '.join(SPLITS)} or heldout-NAME)")
    path = row.audio_path
    if not path.is_file():
        problems.append(f"audio file not found: {path}")
    elif read_audio:
        problems.extend(_check_audio(path, row.duration if duration_ok else None))
    return problems


def _check_audio(path: Path, duration: float | None) -> list[str]:
    import soundfile as sf

    try:
        info = sf.info(str(path))
        actual = info.frames / info.samplerate
    except Exception:
        from blsp_emo.audio import SAMPLE_RATE, load_audio

        try:
            actual = load_audio(path).size / SAMPLE_RATE
        except AudioError as exc:
            return [f"unreadable audio: {exc}"]
    if actual <= 0:
        return [f"audio has no samples: {path}"]
    if duration is not None and abs(actual - duration) > max(0.1, 0.02 * actual):
        return [f"duration {duration:.2f} s does not match the audio's {actual:.2f} s"]
    return []


def check_manifest(path: str | os.PathLike, read_audio: bool = True) -> CheckReport:
    """Validate every line of a manifest; each problem is reported as ``file:line: message``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such manifest file")
    base = path.resolve().parent
    report = CheckReport()
    seen_ids: dict[str, int] = {}
    # Bytes, decoded line by line: one badly encoded line is a problem at its file:line, not a crash.
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            report.rows += 1
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                report.problems.append(
                    f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "manifests are UTF-8 JSON lines"
                )
                continue
            try:
                row = ManifestRow.from_dict(json.loads(line), base_dir=base)
            except json.JSONDecodeError as exc:
                report.problems.append(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})")
                continue
            except (ValueError, TypeError) as exc:
                report.problems.append(f"{where}: {exc}")
                continue
            if row.id:
                if row.id in seen_ids:
                    report.problems.append(
                        f"{where}: duplicate id {row.id!r} (first on line {seen_ids[row.id]})"
                    )
                seen_ids.setdefault(row.id, number)
            report.problems.extend(f"{where}: {p}" for p in check_row(row, read_audio=read_audio))
    return report
