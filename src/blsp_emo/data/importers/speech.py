"""Importers for transcribed speech without emotion labels (stage 1: LibriSpeech, Common Voice, Sphinx
transcriptions) and for any CSV/JSONL table."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

from blsp_emo.data.importers.common import (
    ImportReport,
    first_existing,
    normalize_label,
    read_text,
    require_columns,
)
from blsp_emo.data.manifest import SPLITS, ManifestRow
from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTIONS


def import_librispeech(root: Path, **_options: object) -> ImportReport:
    """LibriSpeech: ``{subset}/{speaker}/{chapter}/{speaker}-{chapter}.trans.txt`` + ``*.flac``.

    The split comes from the subset folder name (``train-*``, ``dev-*``, ``test-*``).
    """
    report = ImportReport("librispeech")
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise UserError(f"{root}: no LibriSpeech '*.trans.txt' files found")
    for trans in transcripts:
        chapter_dir = trans.parent
        subset = chapter_dir.parent.parent.name
        split = next((s for s in SPLITS if subset.startswith(s)), "train")
        for number, line in enumerate(read_text(trans).splitlines(), 1):
            if not line.strip():
                continue
            utt, _, text = line.partition(" ")
            if not text:
                report.drop(f"no transcript ({trans.name}:{number})")
                continue
            audio = chapter_dir / f"{utt}.flac"
            if not audio.exists():
                report.drop("audio file missing", example=audio)
                continue
            speaker = utt.split("-")[0]
            report.keep(
                ManifestRow(
                    audio=str(audio),
                    text=text.strip().capitalize(),
                    language="en",
                    speaker=speaker,
                    split=split,
                    corpus="librispeech",
                    id=utt,
                )
            )
    report.notes.append("split from the subset folder name (train-*, dev-*, test-*)")
    return report


SPHINX_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<utt>[^()\s]+)\)\s*$")
SPHINX_MARKUP = re.compile(r"</?s>|<sil>|\+\+[^+\s]*\+\+|\[[^\]\s]*\]")  # sentence tags, fillers, noises
AUDIO_SUFFIXES = (".wav", ".flac", ".sph", ".ogg", ".mp3")


def import_sphinx(
    root: Path, split: str | None = None, language: str | None = None, **_: object
) -> ImportReport:
    """CMU Sphinx transcriptions (pocketsphinx test data, AN4, ...): lines ``<s> text </s> (utt-id)`` in
    ``transcription`` or ``*.transcription`` files; the audio is ``<fileid>.wav|flac|sph|ogg|mp3`` where a
    ``fileids`` / ``*.fileids`` list beside the transcription names it (same order; paths relative to the
    transcription's folder, or as in AN4 to ``wav/`` beside it), else ``<utt-id>.*`` in that folder.
    ``root`` may be the folder or one transcription file. The split comes from the file name (``*train*``, ``*dev*``, ``*test*``) unless ``split`` is given; default train.
    """
    report = ImportReport("sphinx")
    if root.is_file():
        transcripts = [root]
    else:
        transcripts = sorted({*root.rglob("transcription"), *root.rglob("*.transcription")})
    if not transcripts:
        raise UserError(f"{root}: no Sphinx 'transcription' or '*.transcription' files found")
    for trans in transcripts:
        folder = trans.parent
        fileids = first_existing([folder / "fileids", trans.with_suffix(".fileids")])
        ids = read_text(fileids).split() if fileids else []
        file_split = split or next((s for s in SPLITS if s in trans.name), "train")
        # (line number in the file, line) of the non-blank lines: fileids follow their order.
        lines = [(n, line) for n, line in enumerate(read_text(trans).splitlines(), 1) if line.strip()]
        for index, (number, line) in enumerate(lines):
            match = SPHINX_LINE.match(line)
            if match is None:
                raise UserError(f"{trans}:{number}: not a Sphinx transcription line '<s> text </s> (utt-id)'")
            utt = match["utt"]
            text = " ".join(SPHINX_MARKUP.sub(" ", match["text"]).split())
            if not text:
                report.drop("no transcript")
                continue
            # fileids name the audio in the transcription's order; an id list that disagrees is not used.
            stem = ids[index] if len(ids) == len(lines) and Path(ids[index]).name == utt else utt
            bases = (folder, folder.parent / "wav", folder.parent)
            audio = first_existing(base / f"{stem}{suffix}" for base in bases for suffix in AUDIO_SUFFIXES)
            if audio is None:
                report.drop("audio file missing", example=f"{trans}:{number}")
                continue
            report.keep(
                ManifestRow(
                    audio=str(audio),
                    text=text[0].upper() + text[1:].lower(),
                    language=language or "en",
                    split=file_split,
                    corpus="sphinx",
                    id=utt,
                )
            )
    report.notes.append("split from the transcription file name (*train*, *dev*, *test*; else train)")
    return report


def _read_tsv(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """The rows of a UTF-8 TSV table; fails naming the file when a ``required`` column is missing."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    require_columns(path, reader.fieldnames, required)
    return list(reader)


COMMON_VOICE_COLUMNS = ("path", "sentence")  # required; client_id and locale are optional


def import_common_voice(root: Path, **_: object) -> ImportReport:
    """Common Voice: ``{train,dev,test}.tsv`` (columns ``path``, ``sentence``, ``client_id``, ``locale``)
    with the clips in ``clips/``; ``clip_durations.tsv`` is used when present."""
    report = ImportReport("common_voice")
    tables = {s: root / f"{s}.tsv" for s in SPLITS if (root / f"{s}.tsv").exists()}
    if not tables:
        raise UserError(f"{root}: none of train.tsv, dev.tsv, test.tsv found (Common Voice layout)")
    known: dict[str, float] = {}
    durations_tsv = root / "clip_durations.tsv"
    if durations_tsv.exists():
        for row in _read_tsv(durations_tsv):
            try:
                known[row["clip"]] = float(row["duration[ms]"]) / 1000.0
            except (KeyError, ValueError):
                continue
    language = root.name if len(root.name) <= 5 else "en"
    for split, table in tables.items():
        for number, row in enumerate(_read_tsv(table, COMMON_VOICE_COLUMNS), 2):
            clip, sentence = row.get("path"), (row.get("sentence") or "").strip()
            if not clip:
                raise UserError(f"{table}:{number}: column 'path' is missing or empty")
            if not sentence:
                report.drop("empty sentence")
                continue
            audio = root / "clips" / clip
            if not audio.exists():
                report.drop("audio file missing", example=audio)
                continue
            report.keep(
                ManifestRow(
                    audio=str(audio),
                    text=sentence,
                    language=(row.get("locale") or language).split("-")[0],
                    speaker=(row.get("client_id") or "")[:16],
                    duration=known.get(clip),
                    split=split,
                    corpus="common_voice",
                    id=Path(clip).stem,
                )
            )
    report.notes.append("splits from train.tsv/dev.tsv/test.tsv; other tables (validated, other) ignored")
    return report


def _parse_mapping(pairs: list[str] | None, what: str, allow_empty: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not key or (not value and not allow_empty):
            raise UserError(f"--{what} {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


GENERIC_FIELDS = ("audio", "text", "emotion", "language", "speaker", "duration", "split", "id")


def import_generic(
    root: Path,
    column_map: list[str] | None = None,
    label_map: list[str] | None = None,
    split: str | None = None,
    language: str | None = None,
    **_: object,
) -> ImportReport:
    """Any CSV, TSV or JSONL table: ``--map field=column`` for each manifest field whose column is named
    differently (``audio`` is required); ``--label-map corpus_label=emotion`` (empty value = drop).

    Relative audio paths are resolved against the table's folder.
    """
    if not root.is_file():
        raise UserError(f"{root}: the generic importer takes a CSV/TSV/JSONL file, not a folder")
    mapping = {f: f for f in GENERIC_FIELDS}
    user_map = _parse_mapping(column_map, "map")
    for key in user_map:
        if key not in GENERIC_FIELDS:
            raise UserError(
                f"--map {key}=...: unknown manifest field (expected one of {', '.join(GENERIC_FIELDS)})"
            )
    mapping.update(user_map)
    labels: dict[str, str | None] = {}
    for key, value in _parse_mapping(label_map, "label-map", allow_empty=True).items():
        if value and value not in EMOTIONS:
            raise UserError(
                f"--label-map {key}={value}: {value!r} is not one of {', '.join(EMOTIONS)} (empty = drop)"
            )
        labels[key.lower()] = value or None
    report = ImportReport("generic")
    columns, records = _read_table(root)
    # A column the table lacks: for --map that is a typo (fail); of the default names only audio is required.
    for field_name in [*user_map, "audio"]:
        column = mapping[field_name]
        if column not in columns:
            where = f"--map {field_name}={column}: " if field_name in user_map else ""
            shown = ", ".join(repr(c) for c in columns) or "none"
            raise UserError(f"{where}{root} has no column {column!r} ({field_name}); its columns: {shown}")
    for number, record in records:
        audio_value = record.get(mapping["audio"])
        if not audio_value:
            raise UserError(f"{root}:{number}: column {mapping['audio']!r} (audio) is missing or empty")
        if not isinstance(audio_value, str):
            raise UserError(
                f"{root}:{number}: column {mapping['audio']!r} (audio) must be a path string, "
                f"got {type(audio_value).__name__}"
            )
        audio = Path(audio_value)
        if not audio.is_absolute():
            audio = root.parent / audio
        if not audio.is_file():
            report.drop("audio file missing", example=f"{root}:{number}")
            continue
        source_label = record.get(mapping["emotion"])
        emotion = None
        if source_label not in (None, ""):
            emotion = normalize_label(str(source_label), labels)
            if emotion is None:
                report.drop(f"label {source_label!r} has no counterpart among the five emotions")
                continue
        duration = record.get(mapping["duration"])
        try:
            duration = float(duration) if duration not in (None, "") else None
        except (TypeError, ValueError):
            duration = math.nan
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise UserError(
                f"{root}:{number}: column {mapping['duration']!r} (duration) is not a positive number: "
                f"{record.get(mapping['duration'])!r}"
            )
        row_split = split or str(record.get(mapping["split"]) or "train")
        if row_split not in SPLITS:
            raise UserError(
                f"{root}:{number}: unknown split {row_split!r} (expected one of {', '.join(SPLITS)})"
            )
        report.keep(
            ManifestRow(
                audio=str(audio),
                text=str(record.get(mapping["text"]) or ""),
                emotion=emotion,
                language=str(language or record.get(mapping["language"]) or "en"),
                speaker=str(record.get(mapping["speaker"]) or ""),
                duration=duration,
                split=row_split,
                source_label=str(source_label) if source_label not in (None, "") else None,
                corpus="generic",
                id=str(record.get(mapping["id"]) or ""),
            )
        )
    return report


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The column names (CSV/TSV header; JSONL: every key seen) and the ``(line number, record)`` pairs."""
    suffix = path.suffix.lower()
    text = read_text(path)
    records: list[tuple[int, dict]] = []
    if suffix in (".jsonl", ".json", ".ndjson"):
        columns: dict[str, None] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise UserError(
                    f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}"
                )
            columns.update(dict.fromkeys(record))
            records.append((number, record))
        return list(columns), records
    delimiter = "\t" if suffix == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    for record in reader:  # line_num: the line the record ends on (blank lines and quoted newlines count)
        records.append((reader.line_num, record))
    return [c for c in reader.fieldnames or [] if c is not None], records
