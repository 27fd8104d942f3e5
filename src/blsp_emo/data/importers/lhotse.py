"""``data import lhotse``: a lhotse CutSet manifest (``cuts.jsonl.gz``) into a manifest.

Each cut is one utterance: its recording's audio (the cut's time span of it) and its supervisions. The
text is the supervisions' text joined in time order; the emotion label, the split and the language come
from the supervision's ``custom`` fields (or the cut's), ``custom["emotion"]`` unless ``--label-column``
names another field; the language from the supervision's ``language`` (an ISO 639-1 code or an English
name) unless ``--language`` is given; the speaker from the supervision's ``speaker``.

A cut that covers a whole single-channel audio file is used in place; any other cut (a span of a longer
recording, several channels, audio in memory or from a URL) is decoded once by lhotse and written as a
16 kHz mono WAV under ``<manifest stem>_audio/``; a rerun keeps those already written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from blsp_emo.data.importers.common import ImportReport, normalize_label
from blsp_emo.data.importers.hf import language_code, parse_label_map, unknown_labels_error
from blsp_emo.data.manifest import SPLITS, ManifestRow
from blsp_emo.errors import UserError

INSTALL = "pip install 'blsp-emo[ecosystem]' (scripts/setup.sh installs it)"


def _custom(cut: Any, supervisions: Any, field: str) -> Any:
    """A custom field of the first supervision that has it, else of the cut (a mixed cut has none)."""
    from lhotse.cut import PaddingCut
    from lhotse.cut.data import DataCut

    for sup in supervisions:
        if sup.custom and sup.custom.get(field) not in (None, ""):
            return sup.custom[field]
    custom = cut.custom if isinstance(cut, (DataCut, PaddingCut)) else None
    return (custom or {}).get(field)


def _whole_file(cut) -> Path | None:
    """The audio file a cut covers entirely (one source file, one channel), or None."""
    recording = cut.recording
    if recording is None or len(recording.sources) != 1 or recording.sources[0].type != "file":
        return None
    if recording.num_channels != 1 or cut.start > 1e-3 or abs(cut.duration - recording.duration) > 1e-3:
        return None
    return Path(recording.sources[0].source)


def import_lhotse(
    root: Path,
    out: Path,
    label_column: str | None = None,
    label_map: list[str] | None = None,
    split: str | None = None,
    language: str | None = None,
    progress: bool = True,
    **_: object,
) -> ImportReport:
    """Import a lhotse CutSet manifest (see the module docstring); returns the report."""
    try:
        from lhotse import CutSet
        from lhotse.cut import MonoCut
    except ImportError:
        raise UserError(f"data import lhotse needs the `lhotse` package: {INSTALL}") from None
    from tqdm.auto import tqdm

    from blsp_emo.audio import SAMPLE_RATE, load_audio, save_wav

    if not root.is_file():
        raise UserError(f"{root}: data import lhotse takes a CutSet manifest file (cuts.jsonl.gz)")
    field = label_column or "emotion"
    labels = parse_label_map(label_map)
    try:
        cuts = list(CutSet.from_file(root))
    except Exception as exc:
        raise UserError(f"{root}: not a lhotse CutSet manifest ({type(exc).__name__}: {exc})") from None
    if cuts and not all(hasattr(c, "supervisions") for c in cuts):
        raise UserError(
            f"{root}: not a CutSet manifest (a RecordingSet or SupervisionSet?); lhotse cuts needed"
        )
    unknown = set()
    for cut in cuts:
        value = _custom(cut, cut.supervisions, field)
        if (
            value is not None
            and str(value).strip().lower() not in labels
            and normalize_label(str(value)) is None
        ):
            unknown.add(str(value))
    if unknown:
        raise unknown_labels_error(str(root), f"custom field {field}", unknown)
    report = ImportReport(f"lhotse:{root.name}")
    report.notes.append(f"label from supervision/cut custom field {field!r}")
    folder = out.parent / f"{out.stem}_audio"
    decoded = reused = in_place = 0
    for cut in tqdm(cuts, desc=f"lhotse {root.name}", unit="cut", disable=not progress):
        if not isinstance(cut, MonoCut):
            report.drop(f"{type(cut).__name__} (not a single-recording cut)", example=cut.id)
            continue
        sups = sorted(cut.supervisions, key=lambda s: s.start)
        source_label = _custom(cut, sups, field)
        source_label = None if source_label is None else str(source_label)
        emotion = normalize_label(source_label, labels) if source_label is not None else None
        if source_label is not None and emotion is None:
            report.drop(f"label {source_label!r} dropped by --label-map", example=cut.id)
            continue
        row_split = split or str(_custom(cut, sups, "split") or "train")
        if row_split not in SPLITS:
            raise UserError(f"{root}: cut {cut.id}: split {row_split!r} is not one of {', '.join(SPLITS)}")
        duration = None
        audio = _whole_file(cut)
        if audio is not None and not audio.is_absolute() and not audio.exists():
            audio = root.parent / audio  # lhotse keeps paths as written: relative to where it ran
        if audio is not None and audio.is_file():
            in_place += 1
        else:
            audio = folder / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', cut.id)}.wav"
            if audio.is_file():
                reused += 1
            else:
                if not cut.has_recording:
                    report.drop("cut without a recording", example=cut.id)
                    continue
                try:
                    samples = load_audio(cut.load_audio(), sampling_rate=cut.sampling_rate)
                except Exception as exc:  # lhotse's backends raise many types
                    report.drop("audio undecodable", example=f"{cut.id} ({type(exc).__name__}: {exc})")
                    continue
                save_wav(audio, samples)
                duration = round(samples.size / SAMPLE_RATE, 3)
                decoded += 1
        lang = language or next((language_code(s.language) for s in sups if s.language), None)
        report.keep(
            ManifestRow(
                audio=str(audio),
                text=" ".join(s.text.strip() for s in sups if s.text and s.text.strip()),
                emotion=emotion,
                language=lang or "en",
                speaker=next((str(s.speaker) for s in sups if s.speaker), ""),
                duration=duration,
                split=row_split,
                source_label=source_label,
                corpus="lhotse",
                id=cut.id,
            )
        )
    report.notes.append(f"{in_place} cuts use their audio file in place, {decoded} decoded, {reused} reused")
    return report
