"""``data import hf``: a Hugging Face ``datasets`` audio dataset into a manifest.

The source is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, a local data
folder or file that ``datasets.load_dataset`` reads (audiofolder: audio files + metadata.csv; parquet), or
a Hub name (``org/name``, with ``--config``). Every row's audio is decoded once (by this project's decoder:
``datasets`` is asked for the encoded bytes, so no extra decoding backend is needed) and written as a
16 kHz mono WAV under ``<manifest stem>_audio/<split>/<row>.wav``. A rerun (e.g. after an interruption)
keeps the WAVs already written and decodes only the rest; ``source.json`` in that folder records which
dataset the files came from, so another dataset never reuses them.

Dataset splits map to manifest splits by name: train; validation, valid, val, dev -> dev; test (a suffix
such as ``train.clean.100`` or a slice ``train[:10%]`` keeps its base name's mapping).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from blsp_emo.data.importers.common import ImportReport, normalize_label
from blsp_emo.data.manifest import ManifestRow
from blsp_emo.errors import AudioError, UserError
from blsp_emo.io import atomic_write_json
from blsp_emo.prompts import EMOTIONS, LANGUAGES

INSTALL = "pip install 'blsp-emo[ecosystem]' (scripts/setup.sh installs it)"
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
    "dev": "dev",
    "development": "dev",
    "test": "test",
    "testing": "test",
}
TEXT_COLUMNS = ("text", "transcription", "transcript", "sentence", "normalized_text")
LABEL_COLUMNS = ("emotion", "label", "emotion_label")
SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
LANGUAGE_COLUMNS = ("language", "locale", "lang")
NAME_TO_CODE = {name.lower(): code for code, name in LANGUAGES.items()}


def manifest_split(name: str) -> str:
    """The manifest split (train/dev/test) of a dataset split name; :class:`UserError` when it has none."""
    base = re.split(r"[\[._\-]", name.strip().lower(), maxsplit=1)[0]
    if base in SPLIT_NAMES:
        return SPLIT_NAMES[base]
    raise UserError(
        f"dataset split {name!r} has no manifest counterpart (train; validation/valid/dev -> dev; test): "
        "choose the splits to import with --split"
    )


def language_code(value: Any) -> str | None:
    """An ISO 639-1 code from a code or an English language name (``en``, ``English``); else the value as
    given (the import then drops the row, counted), or None when empty."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if text in LANGUAGES:
        return text
    short = text.lower().replace("_", "-").split("-")[0]  # en-US, en_gb
    if short in LANGUAGES:
        return short
    return NAME_TO_CODE.get(text.lower(), text)


def parse_label_map(pairs: list[str] | None) -> dict[str, str | None]:
    """``--label-map LABEL=EMOTION`` pairs (``LABEL=`` drops the label), keys lower-cased."""
    labels: dict[str, str | None] = {}
    for pair in pairs or []:
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not key:
            raise UserError(f"--label-map {pair!r}: expected LABEL=EMOTION (LABEL= drops the label)")
        if value and value not in EMOTIONS:
            raise UserError(
                f"--label-map {pair}: {value!r} is not one of {', '.join(EMOTIONS)} (empty = drop)"
            )
        labels[key.lower()] = value or None
    return labels


def unknown_labels_error(where: str, column: str, unknown: set[str]) -> UserError:
    shown = ", ".join(sorted(repr(label) for label in unknown)[:10])
    first = sorted(unknown)[0]
    return UserError(
        f"{where}: label(s) {shown} in {column!r} have no counterpart among the five emotions "
        f"({', '.join(EMOTIONS)}): map them with --label-map, e.g. --label-map {first}=neutral, "
        f"or --label-map {first}= to drop those rows"
    )


def _datasets():
    try:
        import datasets
    except ImportError:
        raise UserError(f"data import hf needs the Hugging Face `datasets` package: {INSTALL}") from None
    return datasets


AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm")


def _audiofolder(path: Path) -> dict[str, Any] | None:
    """An audiofolder (audio files with ``metadata.csv``/``metadata.jsonl``, at the root or per split
    folder; or audio files in one folder per label) as ``{split: Dataset}`` whose ``audio`` column holds
    absolute paths; None when ``path`` is not one.

    ``datasets`` itself reads audiofolders only through its audio encoder (the optional ``torchcodec``
    package); the layout is simple enough to read here, with ``datasets`` reading the metadata tables.
    """
    datasets = _datasets()
    tables: dict[str, Path] = {}
    for folder in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        for name in ("metadata.csv", "metadata.jsonl"):
            if (folder / name).is_file():
                tables.setdefault("train" if folder == path else folder.name, folder / name)
    if tables:
        out = {}
        for split_name, table in tables.items():
            kind = "csv" if table.suffix == ".csv" else "json"
            data = datasets.load_dataset(kind, data_files={split_name: str(table)}, split=split_name)
            if "file_name" not in data.column_names:
                raise UserError(f"{table}: an audiofolder metadata table needs a file_name column")
            files = [str((table.parent / f).resolve()) for f in data["file_name"]]
            out[split_name] = data.remove_columns("file_name").add_column("audio", files)
        return out
    audio = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not audio:
        return None
    if any(p.parent == path for p in audio):
        return {"train": datasets.Dataset.from_dict({"audio": [str(p.resolve()) for p in audio]})}
    rows = {"audio": [str(p.resolve()) for p in audio], "label": [p.parent.name for p in audio]}
    return {"train": datasets.Dataset.from_dict(rows)}


def _choose(loaded: dict[str, Any], split: str | None, source: str) -> dict[str, Any]:
    if split is None:
        return loaded
    if split in loaded:
        return {split: loaded[split]}
    same = [name for name in loaded if manifest_split(name) == manifest_split(split)]
    if len(same) == 1:
        return {same[0]: loaded[same[0]]}
    raise UserError(f"{source}: no split {split!r} (splits: {', '.join(loaded)})")


def load_splits(source: str, config: str | None = None, split: str | None = None) -> dict[str, Any]:
    """The dataset's splits as ``{split name: Dataset}`` (only ``split`` when given)."""
    datasets = _datasets()
    path = Path(source)
    try:
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
            if config:
                raise UserError(f"{source}: a save_to_disk folder has no configs; leave out --config")
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.Dataset):
                return {split or "train": loaded}
            return _choose(dict(loaded), split, source)
        if path.is_dir() and not config:
            folder = _audiofolder(path)
            if folder is not None:
                return _choose(folder, split, source)
        if path.is_file():
            kind = {".parquet": "parquet", ".arrow": "arrow"}.get(path.suffix.lower())
            if kind is None:
                raise UserError(
                    f"{source}: a {path.suffix or 'suffix-less'} file; data import hf takes a dataset folder, "
                    "a .parquet/.arrow file or a Hub name (a CSV/JSONL table: data import generic)"
                )
            loaded = datasets.load_dataset(kind, data_files={"train": str(path)}, split=split)
        else:
            loaded = datasets.load_dataset(source, config, split=split)
    except UserError:
        raise
    except Exception as exc:  # datasets raises many types (not found, offline, unknown split or config)
        where = "no such local folder or file, and the Hugging Face Hub could not provide it"
        if path.exists():
            where = "datasets could not read it"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{source}: {where}: {type(exc).__name__}: {detail}") from None
    if isinstance(loaded, datasets.Dataset):
        return {split or "train": loaded}
    return dict(loaded)


def _pick(columns: list[str], given: str | None, candidates: tuple[str, ...], what: str, where: str):
    if given is not None:
        if given not in columns:
            raise UserError(
                f"{where}: no column {given!r} ({what}; --{what}-column names it); its columns: {', '.join(columns)}"
            )
        return given
    return next((c for c in candidates if c in columns), None)


def _label_names(feature: Any) -> list[str] | None:
    """The class names of a label column (a ``ClassLabel``), else None."""
    from datasets import ClassLabel

    return list(feature.names) if isinstance(feature, ClassLabel) and feature.names else None


def _source_label(value: Any, names: list[str] | None) -> str | None:
    if value is None or value == "" or (names is not None and value == -1):
        return None
    if names is not None and isinstance(value, int):
        return names[value]
    return str(value)


def _audio_input(value: Any, base: Path | None):
    """What ``load_audio`` decodes for one audio cell, and a name for messages."""
    if isinstance(value, dict):
        if value.get("array") is not None:
            return ("array", value["array"], value.get("sampling_rate")), value.get("path") or "<array>"
        if value.get("bytes"):
            return ("bytes", value["bytes"], None), value.get("path") or "<bytes>"
        value = value.get("path")
    if isinstance(value, str) and value:
        path = Path(value)
        if not path.is_absolute() and base is not None and not path.exists():
            path = base / path
        return ("path", path, None), value
    return None, repr(value)


def _check_source(folder: Path, source: str, config: str | None, fingerprints: dict[str, str]) -> None:
    """Refuse WAVs of another dataset in the audio folder; record this one's splits."""
    marker = folder / "source.json"
    known: dict[str, Any] = {}
    if marker.is_file():
        known = json.loads(marker.read_text())
        for name, fingerprint in fingerprints.items():
            old = known.get("splits", {}).get(name)
            if old is not None and old != fingerprint:
                raise UserError(
                    f"{folder} holds audio of another dataset split {name!r} ({known.get('source')}, "
                    f"config {known.get('config')}); delete the folder or write the manifest elsewhere"
                )
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "source": source,
        "config": config,
        "splits": {**known.get("splits", {}), **fingerprints},
    }
    atomic_write_json(marker, data)


def import_hf(
    root: Path | str,
    out: Path,
    config: str | None = None,
    split: str | None = None,
    audio_column: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    label_map: list[str] | None = None,
    language: str | None = None,
    progress: bool = True,
    **_: object,
) -> ImportReport:
    """Import a Hugging Face audio dataset (see the module docstring); returns the report."""
    from tqdm.auto import tqdm

    from blsp_emo.audio import SAMPLE_RATE, load_audio, save_wav

    source = str(root)
    splits = load_splits(source, config, split)
    labels = parse_label_map(label_map)
    local = Path(source) if Path(source).exists() else None
    base = local if local is not None and local.is_dir() else (local.parent if local is not None else None)
    name = Path(source.rstrip("/")).name or source
    report = ImportReport(f"hf:{name}")
    plan = []
    for split_name, dataset in splits.items():
        where = f"{source} [{split_name}]"
        target_split = manifest_split(split_name)
        columns = list(dataset.column_names)
        audio_col = _pick(columns, audio_column or "audio", (), "audio", where)
        text_col = _pick(columns, text_column, TEXT_COLUMNS, "text", where)
        label_col = _pick(columns, label_column, LABEL_COLUMNS, "label", where)
        speaker_col = _pick(columns, None, SPEAKER_COLUMNS, "speaker", where)
        language_col = None if language else _pick(columns, None, LANGUAGE_COLUMNS, "language", where)
        names = _label_names(dataset.features[label_col]) if label_col else None
        if label_col:  # every label checked before any audio is decoded
            seen = {_source_label(v, names) for v in dataset.select_columns([label_col])[label_col]}
            unknown = {s for s in seen if s is not None and s.strip().lower() not in labels}
            unknown = {s for s in unknown if normalize_label(s) is None}
            if unknown:
                raise unknown_labels_error(where, label_col, unknown)
        feature = dataset.features[audio_col]
        fingerprint = dataset._fingerprint or ""
        if type(feature).__name__ == "Audio":  # encoded bytes/paths: this project decodes them
            dataset = dataset.cast_column(audio_col, type(feature)(decode=False))
        cols = {"audio": audio_col, "text": text_col, "label": label_col, "speaker": speaker_col,
                "language": language_col}  # fmt: skip
        dataset = dataset.select_columns(list(dict.fromkeys(c for c in cols.values() if c)))
        plan.append((split_name, target_split, dataset, fingerprint, cols, names))
        used = ", ".join(f"{k}={v}" for k, v in cols.items() if v)
        report.notes.append(f"split {split_name} -> {target_split}; columns {used}")
    folder = out.parent / f"{out.stem}_audio"
    _check_source(folder, source, config, {entry[0]: entry[3] for entry in plan})
    for split_name, target_split, dataset, _fingerprint, cols, names in plan:
        audio_col, text_col, label_col = cols["audio"], cols["text"], cols["label"]
        speaker_col, language_col = cols["speaker"], cols["language"]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", split_name)
        bar = tqdm(total=len(dataset), desc=f"{name} {split_name}", unit="clip", disable=not progress)
        decoded = reused = 0
        for index, record in enumerate(dataset):
            bar.update(1)
            row_id = f"{safe}-{index:06d}"
            wav = folder / safe / f"{index:06d}.wav"
            source_label = _source_label(record.get(label_col), names) if label_col else None
            emotion = normalize_label(source_label, labels) if source_label is not None else None
            if source_label is not None and emotion is None:  # mapped to nothing: --label-map X=
                report.drop(f"label {source_label!r} dropped by --label-map", example=row_id)
                continue
            duration = None
            if wav.is_file():
                reused += 1
            else:
                audio_input, shown = _audio_input(record.get(audio_col), base)
                if audio_input is None:
                    report.drop(f"no audio in column {audio_col!r}", example=f"{row_id} ({shown})")
                    continue
                kind, value, rate = audio_input
                try:
                    if kind == "array":
                        import numpy as np

                        samples = load_audio(np.asarray(value, dtype="float32"), sampling_rate=rate)
                    else:
                        samples = load_audio(value if kind == "bytes" else Path(value))
                except AudioError as exc:
                    report.drop("audio undecodable", example=f"{row_id} ({shown}: {exc})")
                    continue
                save_wav(wav, samples)
                duration = round(samples.size / SAMPLE_RATE, 3)
                decoded += 1
            lang = language or (language_code(record.get(language_col)) if language_col else None)
            report.keep(
                ManifestRow(
                    audio=str(wav),
                    text=str(record.get(text_col) or "").strip() if text_col else "",
                    emotion=emotion,
                    language=lang or "en",
                    speaker=str(record.get(speaker_col) or "") if speaker_col else "",
                    duration=duration,
                    split=target_split,
                    source_label=source_label,
                    corpus=name,
                    id=row_id,
                )
            )
        bar.close()
        report.notes.append(f"split {split_name}: {decoded} clips decoded, {reused} already written")
    return report
