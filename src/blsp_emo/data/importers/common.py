"""Shared pieces of the corpus importers: label normalisation, durations, the per-import report."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from blsp_emo.audio import audio_duration
from blsp_emo.data.manifest import ManifestRow, relative_audio, write_manifest
from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTIONS

# Corpus label spellings that mean one of the five classes (lower-cased). Everything else is dropped.
LABEL_SYNONYMS: dict[str, str] = {
    **{e: e for e in EMOTIONS},
    "neu": "neutral",
    "neutrality": "neutral",
    "hap": "happy",
    "happiness": "happy",
    "joy": "happy",
    "joyful": "happy",
    "ang": "angry",
    "anger": "angry",
    "mad": "angry",
    "sadness": "sad",
    "sur": "surprise",
    "surprised": "surprise",
    "中立": "neutral",
    "快乐": "happy",
    "生气": "angry",
    "伤心": "sad",
    "惊喜": "surprise",
}


def normalize_label(label: str | None, extra: dict[str, str | None] | None = None) -> str | None:
    """Map a corpus label to one of ``EMOTIONS`` (``None`` when it has no counterpart).

    ``extra`` overrides the built-in synonyms; a value of ``None`` there drops the label.
    """
    if label is None:
        return None
    key = label.strip().lower()
    if extra is not None and key in extra:
        return extra[key]
    return LABEL_SYNONYMS.get(key)


def durations(paths: list[Path], workers: int = 4) -> list[float | None]:
    """Durations of many files; header reads are I/O bound, so a small thread pool helps."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(audio_duration, paths))


def read_text(path: Path) -> str:
    """A UTF-8 text file (a leading byte-order mark is ignored); other encodings fail naming file and line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); convert the file to UTF-8"
        ) from None


def require_columns(path: Path, columns: Iterable[str] | None, required: Iterable[str]) -> None:
    """Fail naming the table and the first required column its header lacks."""
    present = [c for c in (columns or []) if c is not None]
    for name in required:
        if name not in present:
            shown = ", ".join(repr(c) for c in present) or "none"
            raise UserError(f"{path}:1: column {name!r} is missing (the header has {shown})")


def split_by_key(key: str, dev_percent: int = 5, test_percent: int = 10) -> str:
    """A deterministic train/dev/test split from a stable hash of ``key`` (e.g. a speaker id)."""
    bucket = zlib.crc32(key.encode("utf-8")) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + dev_percent:
        return "dev"
    return "train"


@dataclass
class ImportReport:
    """What an importer kept (per label and split) and what it dropped, with reasons."""

    corpus: str
    rows: list[ManifestRow] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    notes: list[str] = field(default_factory=list)  # mapping rules the importer applied
    examples: dict[str, str] = field(default_factory=dict)  # reason -> the first file (or file:line) dropped

    def keep(self, row: ManifestRow) -> None:
        """Add a row to the output."""
        self.rows.append(row)

    def drop(self, reason: str, count: int = 1, example: str | Path | None = None) -> None:
        """Record ``count`` utterances dropped for ``reason``; ``example`` names one of them for the summary."""
        self.dropped[reason] += count
        if example is not None and reason not in self.examples:
            self.examples[reason] = str(example)

    def fill_durations(self, min_seconds: float = 0.0) -> None:
        """Measure missing durations; drop rows whose audio is empty (0 bytes), cannot be decoded or is too
        short. Rows whose duration came with the corpus (a duration table) are only checked for 0 bytes, so
        that large corpora are not decoded twice."""
        todo = [r for r in self.rows if r.duration is None]
        for row, seconds in zip(todo, durations([r.audio_path for r in todo])):
            row.duration = round(seconds, 3) if seconds is not None else None
        kept = []
        for row in self.rows:
            if _is_empty_file(row.audio_path):
                self.drop("audio file empty (0 bytes)", example=row.audio_path)
            elif row.duration is None:
                self.drop("audio unreadable (not a decodable audio file)", example=row.audio_path)
            elif not row.duration > min_seconds:  # also NaN
                self.drop("audio has no samples", example=row.audio_path)
            else:
                kept.append(row)
        self.rows = kept

    def write(self, out: Path) -> int:
        """Write the manifest (audio paths relative to its folder where possible)."""
        for row in self.rows:
            row.audio = relative_audio(row.audio_path, out)
            row.base_dir = out.resolve().parent
        return write_manifest(out, self.rows)

    def summary(self) -> str:
        """A readable table: kept rows per label and split, dropped rows per reason."""
        lines = [f"{self.corpus}: kept {len(self.rows)} utterances"]
        for note in self.notes:
            lines.append(f"  rule: {note}")
        labels = Counter(r.emotion or "(none)" for r in self.rows)
        splits = sorted({r.split for r in self.rows})
        by = Counter((r.emotion or "(none)", r.split) for r in self.rows)
        header = f"  {'label':<10}" + "".join(f"{s:>8}" for s in splits) + f"{'total':>8}"
        lines.append(header)
        order = [e for e in EMOTIONS if e in labels] + sorted(k for k in labels if k not in EMOTIONS)
        for label in order:
            cells = "".join(f"{by[(label, s)]:>8}" for s in splits)
            lines.append(f"  {label:<10}{cells}{labels[label]:>8}")
        if self.dropped:
            lines.append(f"  dropped {sum(self.dropped.values())}:")
            for reason, count in self.dropped.most_common():
                example = f" (e.g. {self.examples[reason]})" if reason in self.examples else ""
                lines.append(f"    {count:>6}  {reason}{example}")
        else:
            lines.append("  dropped 0")
        return "\n".join(lines)


def _is_empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


def first_existing(candidates: Iterable[Path]) -> Path | None:
    """The first path that exists, or ``None``."""
    for path in candidates:
        if path.exists():
            return path
    return None
