"""Corpus importers: read a corpus in its standard on-disk layout, write a manifest.

``IMPORTERS`` maps the ``data import NAME`` names to functions ``(root, **options) -> ImportReport``; each
takes the :class:`ImportOptions` fields it uses as keywords and ignores the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blsp_emo.data.importers.audiovisual import import_mead, import_mosei
from blsp_emo.data.importers.common import ImportReport, normalize_label
from blsp_emo.data.importers.emotion import (
    import_cremad,
    import_esd,
    import_iemocap,
    import_meld,
    import_ravdess,
)
from blsp_emo.data.importers.evaluation_only import import_aesdd, import_cafe, import_resd
from blsp_emo.data.importers.hf import import_hf
from blsp_emo.data.importers.lhotse import import_lhotse
from blsp_emo.data.importers.speech import (
    import_common_voice,
    import_generic,
    import_librispeech,
    import_sphinx,
)
from blsp_emo.data.manifest import SPLITS
from blsp_emo.errors import UserError
from blsp_emo.prompts import LANGUAGES, check_language

IMPORTERS: dict[str, Callable[..., ImportReport]] = {
    "librispeech": import_librispeech,
    "common_voice": import_common_voice,
    "sphinx": import_sphinx,
    "iemocap": import_iemocap,
    "meld": import_meld,
    "ravdess": import_ravdess,
    "cremad": import_cremad,
    "esd": import_esd,
    "mosei": import_mosei,
    "mead": import_mead,
    "aesdd": import_aesdd,
    "cafe": import_cafe,
    "resd": import_resd,
    "generic": import_generic,
    "hf": import_hf,
    "lhotse": import_lhotse,
}
FILE_ROOTS = ("sphinx", "generic", "hf", "lhotse")  # importers whose root may be a file (others: a folder)
REMOTE_ROOTS = ("hf",)  # importers whose root may also be a name to fetch (a Hugging Face Hub dataset)
ALIASES = {
    "commonvoice": "common_voice",
    "cv": "common_voice",
    "crema-d": "cremad",
    "crema_d": "cremad",
    "cmu-mosei": "mosei",
    "cmu_mosei": "mosei",
    "huggingface": "hf",
    "datasets": "hf",
}


@dataclass
class ImportOptions:
    """How ``data import`` reads a corpus (``data import --help`` describes each option; an importer uses
    the ones that concern it)."""

    iemocap_excited: str = "happy"  # IEMOCAP 'exc': happy | drop
    ravdess_calm: str = "neutral"  # RAVDESS calm: neutral | drop
    mosei_threshold: float = 1.0  # MOSEI: least intensity (0-3) of the strongest emotion for a label
    mosei_labels: Path | str | None = None  # MOSEI: the label table (default: the one at the root)
    mead_sentences: Path | str | None = None  # MEAD: transcripts, EMOTION<TAB>NUMBER<TAB>sentence
    resd_enthusiasm: str = "happy"  # RESD enthusiasm: happy | drop
    split: str | None = None  # one split for every row (hf: the dataset split to import)
    language: str | None = None  # ISO 639-1 code for every row
    column_map: list[str] | None = None  # generic: FIELD=COLUMN
    label_map: list[str] | None = None  # generic, hf, lhotse: LABEL=EMOTION (empty: drop)
    config: str | None = None  # hf: the dataset configuration
    audio_column: str | None = None  # hf
    text_column: str | None = None  # hf
    label_column: str | None = None  # hf: the emotion column; lhotse: the custom field
    progress: bool = True  # hf, lhotse: progress bar


def drop_unknown_languages(report: ImportReport) -> None:
    """Drop (and count, per code) rows whose language is not a known ISO 639-1 code, e.g. a Common Voice
    locale such as ``yue`` or ``ckb`` that Whisper has no ISO 639-1 token for, or a generic table's
    language column holding names instead of codes."""
    kept = []
    for row in report.rows:
        if row.language in LANGUAGES:
            kept.append(row)
        else:
            report.drop(f"unknown language code {row.language!r} (not ISO 639-1)", example=row.audio_path)
    report.rows = kept


def run_import(
    name: str, root: str | Path, out: str | Path, options: ImportOptions | None = None, **changes: Any
) -> ImportReport:
    """Import corpus ``name`` from ``root`` into the manifest ``out`` with ``options`` (default
    :class:`ImportOptions`; ``changes``: fields replaced by keyword); returns the report (already written)."""
    try:
        chosen = dataclasses.replace(options or ImportOptions(), **changes)
    except TypeError:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(ImportOptions)})
        raise TypeError(f"run_import: unknown import options {', '.join(unknown)}") from None
    key = ALIASES.get(name.lower(), name.lower())
    if key not in IMPORTERS:
        raise UserError(f"unknown corpus {name!r} (known: {', '.join(IMPORTERS)})")
    root, out = Path(root), Path(out)
    if not root.exists() and key not in REMOTE_ROOTS:
        raise UserError(f"{root}: no such file or folder")
    split = chosen.split
    if split is not None and key not in REMOTE_ROOTS and split not in SPLITS:  # hf: the dataset's split
        raise UserError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    if root.is_file() and key not in FILE_ROOTS:
        raise UserError(f"{root}: a file; {key} takes the corpus folder")
    if out.is_dir():
        raise UserError(f"{out}: a folder; -o/--output names the manifest file to write")
    if chosen.language is not None:
        check_language(chosen.language)  # --language: an ISO 639-1 code (prompts.LANGUAGES)
    # Nothing is written to ``out`` before the whole import has succeeded (then atomically), so a failed
    # import leaves an earlier manifest there as it was.
    report = IMPORTERS[key](root, out=out, **dataclasses.asdict(chosen))
    drop_unknown_languages(report)
    report.fill_durations()
    if not report.rows:
        raise UserError(f"{root}: no usable utterances found for {key}\n{report.summary()}")
    report.write(out)
    return report


__all__ = ["IMPORTERS", "ImportOptions", "ImportReport", "normalize_label", "run_import"]
