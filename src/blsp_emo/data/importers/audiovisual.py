"""Importers for the audio of two audio-visual emotion corpora: CMU-MOSEI (YouTube opinion monologues with
sentiment and six emotion intensities per segment) and MEAD (acted talking faces, eight emotions at three
intensity levels, audio as m4a).

As in :mod:`blsp_emo.data.importers.emotion`, each maps the corpus's labels onto the five classes, keeps the
original in ``source_label`` and counts what it drops and why.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from blsp_emo.data.importers.common import ImportReport, read_text, split_by_key
from blsp_emo.data.importers.emotion import extract_audio
from blsp_emo.data.manifest import ManifestRow
from blsp_emo.errors import UserError

# ------------------------------------------------------------------------------------------- CMU-MOSEI

# The six MOSEI emotions (intensity 0-3: the mean of the annotators' 0 no evidence ... 3 high) and the
# spellings of their columns in the label tables people export from the SDK's CMU_MOSEI_Labels.csd.
# Column names are compared lower-cased with everything but letters and digits removed, and an optional
# 'emo'/'emotion' prefix or 'intensity'/'score' suffix (emo_happy, Happy_Intensity, ...) is accepted too.
MOSEI_EMOTIONS: dict[str, tuple[str, ...]] = {
    "happiness": ("happiness", "happy", "joy"),
    "sadness": ("sadness", "sad"),
    "anger": ("anger", "angry"),
    "surprise": ("surprise", "surprised"),
    "disgust": ("disgust", "disgusted"),
    "fear": ("fear", "fearful"),
}
MOSEI_COLUMNS: dict[str, tuple[str, ...]] = {
    "video": ("video_id", "video", "vid", "videoid", "file", "youtube_id"),
    "clip": ("clip_id", "clip", "segment_id", "segment", "seg_id", "seg_idx", "segment_index", "index"),
    "start": ("start", "start_time", "begin", "onset"),
    "end": ("end", "end_time", "stop", "offset"),
    "text": ("text", "transcript", "transcription", "utterance", "sentence", "text_content", "words"),
    "sentiment": ("sentiment", "sentiment_score", "senti", "label_sentiment"),
    "fold": ("fold", "split", "mode", "set", "partition", "standard_fold"),
}
# The four MOSEI emotions that have a counterpart among the five classes.
MOSEI_KEPT = {"happiness": "happy", "sadness": "sad", "anger": "angry", "surprise": "surprise"}
MOSEI_FOLDS = {
    "train": "train",
    "training": "train",
    "valid": "dev",
    "val": "dev",
    "validation": "dev",
    "dev": "dev",
    "test": "test",
}
MOSEI_NEUTRAL_SENTIMENT = 0.5  # |sentiment| below this (scale -3..3) with no emotion marked = neutral
# ``Transcript/Segmented/Combined/{video}.txt``: one segment a line, ``video___clip___start___end___text``.
_MOSEI_TRANSCRIPT_DIRS = ("Transcript/Segmented/Combined", "Raw/Transcript/Segmented/Combined")


def _squash(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _mosei_header(path: Path, header: list[str]) -> dict[str, str]:
    """The table's column for each MOSEI field (``video``, ``clip``, ..., one per emotion) it has."""
    squashed = {_squash(c): c for c in header}
    found: dict[str, str] = {}
    for field_name, spellings in MOSEI_COLUMNS.items():
        for spelling in spellings:
            if _squash(spelling) in squashed:
                found[field_name] = squashed[_squash(spelling)]
                break
    for emotion, spellings in MOSEI_EMOTIONS.items():
        for spelling in spellings:
            base = _squash(spelling)
            forms = (base, f"emo{base}", f"emotion{base}", f"{base}intensity", f"{base}score")
            column = next((squashed[f] for f in forms if f in squashed), None)
            if column is not None:
                found[emotion] = column
                break
    shown = ", ".join(repr(c) for c in header) or "none"
    required = ["video", "sentiment", *MOSEI_EMOTIONS]
    for name in required:
        if name not in found:
            spellings = MOSEI_EMOTIONS.get(name) or MOSEI_COLUMNS[name]
            raise UserError(
                f"{path}:1: no column for MOSEI's {name!r} (accepted: {', '.join(spellings)}); "
                f"the header has {shown}"
            )
    if "clip" not in found and not ("start" in found and "end" in found):
        raise UserError(
            f"{path}:1: no segment column: MOSEI needs a clip/segment id ({', '.join(MOSEI_COLUMNS['clip'])}) "
            f"or start and end times; the header has {shown}"
        )
    return found


def _number(path: Path, line: int, column: str, value: str, low: float, high: float) -> float:
    """A table cell as a float in [low, high]; anything else fails naming file, line and column."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise UserError(f"{path}:{line}: column {column!r} is not a number in [{low:g}, {high:g}]: {value!r}")
    return number


def mosei_label(
    sentiment: float, intensities: dict[str, float], threshold: float = 1.0
) -> tuple[str | None, str]:
    """The five-class label of a MOSEI segment, or ``None`` and the reason it has none.

    * neutral: all six intensities are 0 (no annotator marked any emotion) and |sentiment| < 0.5;
    * happy / sad / angry / surprise: the strongest of happiness, sadness, anger, surprise, when it is
      at least ``threshold``, is the only one at that intensity, and beats both disgust and fear;
    * anything else has no single counterpart among the five classes and is dropped.
    """
    if all(v <= 0 for v in intensities.values()):
        if abs(sentiment) < MOSEI_NEUTRAL_SENTIMENT:
            return "neutral", ""
        return None, f"no emotion marked but |sentiment| >= {MOSEI_NEUTRAL_SENTIMENT}"
    best = max(intensities[e] for e in MOSEI_KEPT)
    if max(intensities["disgust"], intensities["fear"]) >= best:
        return None, "disgust or fear at least as strong as the four kept emotions"
    top = [e for e in MOSEI_KEPT if intensities[e] == best]
    if len(top) > 1:
        return None, "tie between the strongest emotions"
    if best < threshold:
        return None, "strongest emotion below --mosei-threshold"
    return MOSEI_KEPT[top[0]], ""


def _mosei_table(root: Path, labels: Path | None) -> Path:
    if labels is not None:
        if not labels.is_file():
            raise UserError(f"--mosei-labels {labels}: no such file")
        return labels
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".tsv"))
    if not tables:
        raise UserError(
            f"{root}: no label table (*.csv or *.tsv) at the top of the folder; MOSEI needs one with video id, "
            "segment id or start/end, sentiment and the six emotion intensities (or pass --mosei-labels FILE)"
        )
    if len(tables) > 1:
        names = ", ".join(p.name for p in tables)
        raise UserError(f"{root}: several label tables ({names}); choose one with --mosei-labels FILE")
    return tables[0]


def _mosei_transcripts(root: Path) -> dict[tuple[str, str], str]:
    """``(video, clip) -> text`` from the release's segmented transcripts, when the folder is there."""
    texts: dict[tuple[str, str], str] = {}
    for sub in _MOSEI_TRANSCRIPT_DIRS:
        folder = root / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.txt")):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.strip().split("___", 4)
                if len(parts) == 5:
                    texts[(parts[0], parts[1])] = parts[4].strip()
        break
    return texts


@dataclass
class _MoseiSegment:
    """A labelled row of the MOSEI table whose audio is still to be found (or cut)."""

    where: str  # table:line
    video: str
    segment: str  # {video}_{clip}, or {video}_{start}-{end} without a clip id
    start: float | None
    end: float | None
    text: str
    emotion: str
    split: str
    sentiment: float
    intensities: dict[str, float]


def _cut_segment(full: Path, start: float, end: float, wav: Path) -> float:
    """Cut ``[start, end)`` seconds of a long wav into a 16 kHz mono wav; returns its duration."""
    import soundfile as sf

    from blsp_emo.audio import SAMPLE_RATE, resample, save_wav

    info = sf.info(str(full))
    first = max(0, int(round(start * info.samplerate)))  # MOSEI has a few slightly negative starts
    last = min(info.frames, int(round(end * info.samplerate)))
    if last <= first:
        raise UserError(f"{full}: segment {start:g}-{end:g} s lies outside its {info.duration:.3f} s")
    audio, rate = sf.read(str(full), start=first, stop=last, dtype="float32", always_2d=True)
    mono = resample(audio.mean(axis=1), rate)
    save_wav(wav, mono, SAMPLE_RATE)
    return mono.size / SAMPLE_RATE


def import_mosei(
    root: Path,
    out: Path | None = None,
    mosei_threshold: float = 1.0,
    mosei_labels: Path | str | None = None,
    **_: object,
) -> ImportReport:
    """CMU-MOSEI from a label table plus segment audio.

    Layout: one label table (``*.csv``/``*.tsv`` at the top of ``root``, or ``--mosei-labels FILE``) with
    a row per segment: video id, clip/segment id and/or start and end seconds, optionally the transcript,
    the sentiment (-3..3) and the six emotion intensities (happiness, sadness, anger, surprise, disgust,
    fear; 0..3), as exported from the SDK's ``CMU_MOSEI_Labels.csd``; common column spellings are accepted
    (``video_id``/``video``, ``clip_id``/``segment_id``/``index``, ``happy``/``happiness``/``emo_happy``,
    ...). The audio of a segment is ``{video}_{clip}.wav`` anywhere under ``root`` (e.g.
    ``Audio/Segmented/``); failing that, with start/end columns, it is cut from the full-video
    ``{video}.wav`` (the release's ``Audio/Full/WAV_16000/``) into ``{OUT stem}_audio/`` next to the
    output manifest. Without a text column the transcript comes from the release's
    ``Transcript/Segmented/Combined/{video}.txt`` when present, else it is empty.

    Label rule (:func:`mosei_label`): neutral when all six intensities are 0 and |sentiment| < 0.5; else
    the strongest of happiness/sadness/anger/surprise (-> happy/sad/angry/surprise) when it is at least
    ``--mosei-threshold`` (default 1.0: on average 'weakly present' or more), unique, and stronger than
    both disgust and fear; every other segment is dropped and counted by reason.

    Split: the table's fold column (``split``/``fold``/``mode``: train, valid/dev, test), i.e. MOSEI's
    standard folds, when it has one (rows with an empty fold are dropped); else by video id (stable hash,
    ~10% test, ~5% dev). MOSEI has no speaker ids; the video, one YouTube speaker, is the speaker here.
    A non-numeric or out-of-range label cell or an unknown fold fails naming file, line and column.
    """
    try:
        threshold = float(mosei_threshold)
    except (TypeError, ValueError):
        threshold = math.nan
    if not 0 < threshold <= 3:
        raise UserError(f"--mosei-threshold {mosei_threshold!r}: expected a number in (0, 3]")
    table = _mosei_table(root, Path(mosei_labels) if mosei_labels else None)
    delimiter = "\t" if table.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(read_text(table), newline=""), delimiter=delimiter)
    columns = _mosei_header(table, [c for c in reader.fieldnames or [] if c is not None])
    transcripts = {} if "text" in columns else _mosei_transcripts(root)
    audio_files = {p.stem: p for p in sorted(root.rglob("*.wav"))}
    audio_dir = (out.parent / f"{out.stem}_audio") if out is not None else root / "segments16k"
    report = ImportReport("mosei")
    # First the whole table is read and checked (a bad cell fails before any audio is cut), then the
    # labelled segments' audio is found or cut.
    segments: list[_MoseiSegment] = []
    seen: set[str] = set()
    for record in reader:
        line = reader.line_num

        def cell(name: str, record: dict = record) -> str:
            return (record.get(columns[name]) or "").strip() if name in columns else ""

        video, clip = cell("video"), cell("clip")
        if not video:
            report.drop("row without a video id", example=f"{table}:{line}")
            continue
        cells = {name: cell(name) for name in ("sentiment", *MOSEI_EMOTIONS)}
        if any(value == "" for value in cells.values()):
            report.drop("row with an empty sentiment or emotion cell", example=f"{table}:{line}")
            continue
        sentiment = _number(table, line, columns["sentiment"], cells["sentiment"], -3.0, 3.0)
        intensities = {e: _number(table, line, columns[e], cells[e], 0.0, 3.0) for e in MOSEI_EMOTIONS}
        start = end = None
        if cell("start") and cell("end"):
            start = _number(table, line, columns["start"], cell("start"), -math.inf, math.inf)
            end = _number(table, line, columns["end"], cell("end"), -math.inf, math.inf)
        if not clip and start is None:
            report.drop("row without a clip id or start/end times", example=f"{table}:{line}")
            continue
        fold = cell("fold").lower()
        if "fold" in columns:
            if not fold:
                report.drop("video not in the standard folds (empty fold cell)", example=f"{table}:{line}")
                continue
            if fold not in MOSEI_FOLDS:
                raise UserError(
                    f"{table}:{line}: column {columns['fold']!r}: unknown fold {cell('fold')!r} "
                    "(expected train, valid/dev or test)"
                )
        segment = f"{video}_{clip}" if clip else f"{video}_{start:.3f}-{end:.3f}"
        if segment in seen:
            report.drop("duplicate segment (same video and clip)", example=f"{table}:{line}")
            continue
        seen.add(segment)
        emotion, reason = mosei_label(sentiment, intensities, threshold)
        if emotion is None:
            report.drop(reason)
            continue
        text = cell("text") or transcripts.get((video, clip), "")
        split = MOSEI_FOLDS[fold] if fold else split_by_key(f"mosei_{video}")
        segments.append(
            _MoseiSegment(
                f"{table}:{line}", video, segment, start, end, text, emotion, split, sentiment, intensities
            )
        )
    for seg in segments:
        duration = None
        wav = audio_files.get(seg.segment)
        if wav is None:
            full = audio_files.get(seg.video)
            if full is None or seg.start is None or seg.end is None:
                report.drop("segment audio missing", example=seg.where)
                continue
            wav = audio_dir / f"{seg.segment}.wav"
            if not wav.exists():
                try:
                    duration = round(_cut_segment(full, seg.start, seg.end, wav), 3)
                except UserError:
                    report.drop("segment outside the video's audio", example=seg.where)
                    continue
                except Exception:  # the full-video wav cannot be read
                    report.drop("audio unreadable (not a decodable audio file)", example=full)
                    continue
        strongest = max(seg.intensities, key=lambda e: seg.intensities[e])
        report.keep(
            ManifestRow(
                audio=str(wav),
                text=seg.text,
                emotion=seg.emotion,
                language="en",
                speaker=f"mosei_{seg.video}",
                duration=duration,
                split=seg.split,
                source_label=strongest if seg.intensities[strongest] > 0 else "none",
                corpus="mosei",
                id=f"mosei_{seg.segment}",
                extra={
                    "sentiment": round(seg.sentiment, 4),
                    "emotion_intensities": {e: round(v, 4) for e, v in seg.intensities.items()},
                },
            )
        )
    split_rule = "standard folds from the table" if "fold" in columns else "split by video id"
    report.notes.append(
        f"neutral = no emotion marked and |sentiment| < {MOSEI_NEUTRAL_SENTIMENT}; else the strongest of "
        f"happiness/sadness/anger/surprise if unique, >= {threshold:g} and above disgust and fear; "
        f"{split_rule}"
    )
    return report


# ------------------------------------------------------------------------------------------------ MEAD

MEAD_EMOTIONS = ("neutral", "happy", "angry", "sad", "surprised", "contempt", "disgusted", "fear")
MEAD_LABELS = {
    "neutral": "neutral",
    "happy": "happy",
    "angry": "angry",
    "sad": "sad",
    "surprised": "surprise",
}
MEAD_SUFFIXES = (".m4a", ".wav")
_MEAD_LEVEL = re.compile(r"^level_([1-3])$")


def _read_mead_sentences(path: Path) -> dict[tuple[str, int], str]:
    """``(emotion folder, number) -> sentence`` from lines ``EMOTION<TAB>NUMBER<TAB>sentence``."""
    if not path.is_file():
        raise UserError(f"--mead-sentences {path}: no such file")
    sentences: dict[tuple[str, int], str] = {}
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].strip().isdigit() or not parts[2].strip():
            raise UserError(
                f"{path}:{number}: expected 'EMOTION<TAB>NUMBER<TAB>sentence', e.g. 'happy\\t001\\t...'"
            )
        emotion = parts[0].strip().lower()
        if emotion not in MEAD_EMOTIONS:
            raise UserError(
                f"{path}:{number}: unknown MEAD emotion {parts[0].strip()!r} "
                f"(expected one of {', '.join(MEAD_EMOTIONS)})"
            )
        sentences[(emotion, int(parts[1]))] = parts[2].strip()
    return sentences


def import_mead(
    root: Path,
    out: Path | None = None,
    split: str | None = None,
    mead_sentences: Path | str | None = None,
    **_: object,
) -> ImportReport:
    """MEAD: ``{speaker}/audio/{emotion}/level_{1,2,3}/{NNN}.m4a`` (the unpacked ``audio.tar`` of each
    speaker folder, e.g. ``M003``, ``W009``; ``root`` may also be one speaker's folder). The m4a (AAC)
    audio is decoded with PyAV into 16 kHz wavs in ``{OUT stem}_audio/`` next to the output manifest
    (already decoded files are reused); ``.wav`` files in the same layout are used as they are.

    Labels: neutral, happy, angry, sad kept, surprised -> surprise; contempt, disgusted, fear dropped. The
    intensity level (1-3; neutral has only level 1) is kept in the manifest field ``intensity``. The
    transcript is empty unless ``--mead-sentences FILE`` gives the sentence list as lines
    ``EMOTION<TAB>NUMBER<TAB>sentence`` (MEAD numbers its sentences per emotion).
    Split by speaker (stable hash: ~10% test, ~5% dev; speakers never straddle splits) unless ``--split``.
    """
    sentences = _read_mead_sentences(Path(mead_sentences)) if mead_sentences else {}
    if (root / "audio").is_dir():
        speakers = [root]
    else:
        speakers = sorted(p for p in root.iterdir() if p.is_dir() and (p / "audio").is_dir())
    if not speakers:
        raise UserError(
            f"{root}: no MEAD speaker folders with audio/ found (expected M003/audio/angry/level_1/001.m4a)"
        )
    audio_dir = (out.parent / f"{out.stem}_audio") if out is not None else root / "audio16k"
    report = ImportReport("mead")
    from tqdm import tqdm

    for speaker_dir in speakers:
        speaker = speaker_dir.name
        files = sorted(p for p in (speaker_dir / "audio").rglob("*") if p.suffix.lower() in MEAD_SUFFIXES)
        for path in tqdm(files, desc=f"mead {speaker}", unit="utt", leave=False):
            parts = path.relative_to(speaker_dir / "audio").parts
            level = _MEAD_LEVEL.match(parts[1]) if len(parts) == 3 else None
            if level is None or not path.stem.isdigit():
                report.drop("path is not MEAD's audio/{emotion}/level_{1-3}/{NNN}", example=path)
                continue
            source = parts[0].lower()
            if source not in MEAD_EMOTIONS:
                report.drop(f"unknown MEAD emotion folder '{parts[0]}'", example=path)
                continue
            emotion = MEAD_LABELS.get(source)
            if emotion is None:
                report.drop(f"label '{source}' not among the five classes")
                continue
            utt = f"{speaker}_{source}_level{level[1]}_{path.stem}"
            duration = None
            wav = path
            if path.stat().st_size == 0:
                report.drop("audio file empty (0 bytes)", example=path)
                continue
            if path.suffix.lower() != ".wav":
                wav = audio_dir / speaker / source / f"level_{level[1]}" / f"{path.stem}.wav"
                if not wav.exists():
                    try:
                        duration = round(extract_audio(path, wav), 3)
                    except UserError:  # not decodable audio (or no audio stream)
                        report.drop("audio unreadable (not a decodable audio file)", example=path)
                        continue
            report.keep(
                ManifestRow(
                    audio=str(wav),
                    text=sentences.get((source, int(path.stem)), ""),
                    emotion=emotion,
                    language="en",
                    speaker=f"mead_{speaker}",
                    duration=duration,
                    split=split or split_by_key(f"mead_{speaker}"),
                    source_label=source,
                    corpus="mead",
                    id=utt,
                    extra={"intensity": int(level[1])},
                )
            )
    rule = f"split={split}" if split else "split by speaker"
    report.notes.append(f"surprised->surprise; contempt, disgusted, fear dropped; {rule}")
    return report
