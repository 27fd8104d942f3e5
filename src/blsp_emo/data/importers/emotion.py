"""Importers for acted / conversational emotion corpora in their standard on-disk layouts.

Every importer maps the corpus's own labels onto the five classes (neutral, happy, angry, sad, surprise),
keeps the original label in ``source_label``, and counts what it drops and why.
"""

from __future__ import annotations

import re
from pathlib import Path

from blsp_emo.data.importers.common import ImportReport, normalize_label, require_columns, split_by_key
from blsp_emo.data.manifest import ManifestRow
from blsp_emo.errors import UserError

# --------------------------------------------------------------------------------------------- IEMOCAP

_IEMOCAP_LABEL = re.compile(r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<utt>\S+)\t(?P<label>\w+)\t")
# An utterance id: Ses{NN}{F|M}_{dialog}_{F|M}{NNN}; the session prefix and the last part's first letter
# (the speaker's gender) make the speaker id, everything before the last '_' names the dialog folder.
_IEMOCAP_UTT = re.compile(r"^(?P<session>Ses\d{2})\S*_(?P<turn>[^_\s]+)$")
_IEMOCAP_TEXT = re.compile(r"^(?P<utt>Ses\d{2}[FM]_\S+?)\s+\[[^\]]*\]:\s*(?P<text>.*)$")
IEMOCAP_LABELS = {"neu": "neutral", "hap": "happy", "ang": "angry", "sad": "sad", "sur": "surprise"}


def import_iemocap(root: Path, iemocap_excited: str = "happy", **_: object) -> ImportReport:
    """IEMOCAP: ``Session{1..5}/dialog/EmoEvaluation/*.txt`` (labels), ``dialog/transcriptions/*.txt``
    and ``sentences/wav/{dialog}/{utt}.wav``.

    Rule: ``exc`` (excited) is merged into happy by default (``--iemocap-excited drop`` to drop it), the
    usual practice for 4/5-class IEMOCAP; frustration, fear, disgust, other and no-agreement (xxx) are
    dropped. Session 5 is the test split, sessions 1-4 train.
    """
    if iemocap_excited not in ("happy", "drop"):
        raise UserError(f"--iemocap-excited {iemocap_excited!r}: expected 'happy' or 'drop'")
    sessions = sorted(p for p in root.glob("Session[1-5]") if p.is_dir())
    if not sessions:
        raise UserError(f"{root}: no Session1..Session5 folders found (IEMOCAP layout)")
    report = ImportReport("iemocap")
    for session in sessions:
        texts: dict[str, str] = {}
        for trans in sorted((session / "dialog" / "transcriptions").glob("*.txt")):
            for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
                m = _IEMOCAP_TEXT.match(line.strip())
                if m:
                    texts[m["utt"]] = m["text"].strip()
        evaluations = sorted((session / "dialog" / "EmoEvaluation").glob("*.txt"))
        for evaluation in evaluations:
            lines = evaluation.read_text(encoding="utf-8", errors="replace").splitlines()
            for number, line in enumerate(lines, 1):
                m = _IEMOCAP_LABEL.match(line)
                if not m:
                    continue
                utt, label = m["utt"], m["label"]
                utt_match = _IEMOCAP_UTT.match(utt)
                if utt_match is None:
                    report.drop("turn name is not an IEMOCAP utterance id", example=f"{evaluation}:{number}")
                    continue
                if label == "exc" and iemocap_excited == "happy":
                    emotion: str | None = "happy"
                else:
                    emotion = IEMOCAP_LABELS.get(label)
                if emotion is None:
                    report.drop(f"label '{label}' not among the five classes")
                    continue
                wav = session / "sentences" / "wav" / utt.rsplit("_", 1)[0] / f"{utt}.wav"
                if not wav.exists():
                    report.drop("audio file missing", example=wav)
                    continue
                report.keep(
                    ManifestRow(
                        audio=str(wav),
                        text=texts.get(utt, ""),
                        emotion=emotion,
                        language="en",
                        speaker=f"{utt_match['session']}{utt_match['turn'][0]}",
                        split="test" if session.name == "Session5" else "train",
                        source_label=label,
                        corpus="iemocap",
                        id=utt,
                    )
                )
    rule = "merged into happy" if iemocap_excited == "happy" else "dropped"
    report.notes.append(f"'exc' (excited) {rule}; Session5 = test, Sessions 1-4 = train")
    return report


# ------------------------------------------------------------------------------------------------ MELD

MELD_TABLES = {
    "train": ("train_sent_emo.csv", "train_splits"),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}


MELD_COLUMNS = ("Dialogue_ID", "Utterance_ID", "Emotion")  # required; Utterance and Speaker are optional


def _read_meld_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a MELD table; fails naming the file when a required column is missing."""
    import csv
    import io

    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # some MELD releases are cp1252
        text = raw.decode("cp1252", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    require_columns(path, reader.fieldnames, MELD_COLUMNS)
    return list(reader)


def extract_audio(video: Path, wav: Path) -> float:
    """Decode the audio track of a video with PyAV to a 16 kHz mono wav; returns its duration."""
    from blsp_emo.audio import SAMPLE_RATE, load_audio, save_wav

    audio = load_audio(video)
    save_wav(wav, audio, SAMPLE_RATE)
    return audio.size / SAMPLE_RATE


def import_meld(root: Path, out: Path | None = None, **_: object) -> ImportReport:
    """MELD (``MELD.Raw``): ``{train,dev,test}_sent_emo.csv`` + ``dia{D}_utt{U}.mp4`` in ``train_splits/``,
    ``dev_splits_complete/``, ``output_repeated_splits_test/``; the audio is extracted with PyAV to
    ``{OUT stem}_audio/{split}/`` next to the output manifest (already extracted files are reused).

    Labels: joy -> happy, anger -> angry, sadness -> sad; fear and disgust are dropped.
    """
    found = {s: t for s, t in MELD_TABLES.items() if (root / t[0]).exists()}
    if not found:
        raise UserError(
            f"{root}: none of {', '.join(t[0] for t in MELD_TABLES.values())} found (MELD layout)"
        )
    audio_dir = (out.parent / f"{out.stem}_audio") if out is not None else root / "audio16k"
    report = ImportReport("meld")
    from tqdm import tqdm

    for split, (table, video_dir) in found.items():
        rows = _read_meld_csv(root / table)
        for number, row in enumerate(tqdm(rows, desc=f"meld {split}", unit="utt", leave=False), 2):
            dia, utt, label = row["Dialogue_ID"], row["Utterance_ID"], row["Emotion"]
            if not dia or not utt:  # a short row: DictReader fills the missing cells with None
                report.drop("row without Dialogue_ID/Utterance_ID", example=f"{root / table}:{number}")
                continue
            emotion = normalize_label(label)
            if emotion is None:
                report.drop(f"label '{label}' not among the five classes")
                continue
            video = root / video_dir / f"dia{dia}_utt{utt}.mp4"
            if not video.exists():
                report.drop("video file missing", example=video)
                continue
            wav = audio_dir / split / f"dia{dia}_utt{utt}.wav"
            duration = None
            if not wav.exists():
                try:
                    duration = round(extract_audio(video, wav), 3)
                except UserError:  # no audio stream, or not a decodable video
                    report.drop("video has no readable audio track", example=video)
                    continue
            report.keep(
                ManifestRow(
                    audio=str(wav),
                    text=(row.get("Utterance") or "").strip(),
                    emotion=emotion,
                    language="en",
                    speaker=(row.get("Speaker") or "").strip(),
                    duration=duration,
                    split=split,
                    source_label=label,
                    corpus="meld",
                    id=f"{split}_dia{dia}_utt{utt}",
                )
            )
    report.notes.append(
        "joy->happy, anger->angry, sadness->sad; fear, disgust dropped; splits from the csv files"
    )
    return report


# --------------------------------------------------------------------------------------------- RAVDESS

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def import_ravdess(
    root: Path, ravdess_calm: str = "neutral", split: str | None = None, **_: object
) -> ImportReport:
    """RAVDESS: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.wav`` (modality, vocal channel, emotion, intensity,
    statement, repetition, actor).

    Rule: calm is mapped to neutral by default (``--ravdess-calm drop`` to drop it); fearful and disgust
    are dropped; songs (vocal channel 02) and video files are dropped. The whole corpus is the test split
    by default (it is the paper's out-of-domain test set).
    """
    if ravdess_calm not in ("neutral", "drop"):
        raise UserError(f"--ravdess-calm {ravdess_calm!r}: expected 'neutral' or 'drop'")
    files = sorted(root.rglob("*.wav"))
    if not files:
        raise UserError(f"{root}: no RAVDESS wav files found (expected Actor_NN/03-01-...wav)")
    report = ImportReport("ravdess")
    for wav in files:
        m = _RAVDESS_NAME.match(wav.stem)
        if not m:
            report.drop("file name is not a RAVDESS code", example=wav)
            continue
        modality, channel, code, intensity, statement, _rep, actor = m.groups()
        if modality != "03":
            report.drop("not an audio-only file (modality != 03)")
            continue
        if channel != "01":
            report.drop("song, not speech (vocal channel 02)")
            continue
        source = RAVDESS_EMOTIONS.get(code, code)
        emotion = "neutral" if source == "calm" and ravdess_calm == "neutral" else normalize_label(source)
        if emotion is None:
            report.drop(f"label '{source}' not among the five classes")
            continue
        if statement not in RAVDESS_STATEMENTS:
            report.drop(f"unknown statement code '{statement}'", example=wav)
            continue
        report.keep(
            ManifestRow(
                audio=str(wav),
                text=RAVDESS_STATEMENTS[statement],
                emotion=emotion,
                language="en",
                speaker=f"ravdess_{actor}",
                split=split or "test",
                source_label=source,
                corpus="ravdess",
                id=wav.stem,
                extra={"intensity": "strong" if intensity == "02" else "normal"},
            )
        )
    calm = "calm->neutral" if ravdess_calm == "neutral" else "calm dropped"
    report.notes.append(f"{calm}; fearful, disgust, songs, video files dropped; split={split or 'test'}")
    return report


# --------------------------------------------------------------------------------------------- CREMA-D

CREMAD_SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
CREMAD_EMOTIONS = {"NEU": "neutral", "HAP": "happy", "ANG": "angry", "SAD": "sad"}
_CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def import_cremad(root: Path, split: str | None = None, **_: object) -> ImportReport:
    """CREMA-D: ``AudioWAV/{actor}_{sentence}_{emotion}_{level}.wav``; the transcript comes from the
    corpus's table of its 12 sentences.

    Labels: NEU, HAP, ANG, SAD kept; DIS (disgust) and FEA (fear) dropped; CREMA-D has no surprise.
    Split by actor (stable hash: ~10% test, ~5% dev) unless ``--split`` is given.
    """
    folder = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise UserError(f"{root}: no CREMA-D wav files found (expected AudioWAV/1001_DFA_ANG_XX.wav)")
    report = ImportReport("cremad")
    for wav in files:
        m = _CREMAD_NAME.match(wav.stem)
        if not m:
            report.drop("file name is not a CREMA-D code", example=wav)
            continue
        actor, sentence, code, level = m.groups()
        emotion = CREMAD_EMOTIONS.get(code)
        if emotion is None:
            report.drop(f"label '{code}' not among the five classes")
            continue
        if sentence not in CREMAD_SENTENCES:
            report.drop(f"unknown sentence code '{sentence}'", example=wav)
            continue
        report.keep(
            ManifestRow(
                audio=str(wav),
                text=CREMAD_SENTENCES[sentence],
                emotion=emotion,
                language="en",
                speaker=f"cremad_{actor}",
                split=split or split_by_key(f"cremad_{actor}"),
                source_label=code,
                corpus="cremad",
                id=wav.stem,
                extra={"intensity": level},
            )
        )
    report.notes.append("DIS, FEA dropped; split by actor unless --split" if not split else f"split={split}")
    return report


# ------------------------------------------------------------------------------------------------- ESD


_ESD_NAME = re.compile(r"^\d{4}_(\d+)$")  # {speaker}_{utterance number}


def import_esd(root: Path, **_: object) -> ImportReport:
    """ESD: ``{speaker}/{speaker}.txt`` (``utt<TAB>text<TAB>label``) and ``{speaker}/{Emotion}/[split/]utt.wav``.

    Speakers 0001-0010 are Chinese, 0011-0020 English. The split comes from the ``train``/``evaluation``/
    ``test`` sub-folder when present (evaluation -> dev), else the corpus's own rule per 350-utterance
    emotion block: first 20 dev, next 30 test, the rest train.
    """
    speakers = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d{4}", p.name))
    if not speakers:
        raise UserError(f"{root}: no ESD speaker folders (0001..0020) found")
    report = ImportReport("esd")
    folder_split = {"train": "train", "evaluation": "dev", "test": "test"}
    for speaker in speakers:
        texts: dict[str, str] = {}
        table = speaker / f"{speaker.name}.txt"
        if table.exists():
            raw = table.read_bytes()
            for enc in ("utf-8", "utf-16", "gb18030"):
                try:
                    content = raw.decode(enc)
                    break
                except UnicodeDecodeError:
                    continue
            else:
                content = raw.decode("utf-8", errors="replace")
            for line in content.splitlines():
                parts = line.strip().split("\t")
                if len(parts) >= 2:
                    texts[parts[0].strip()] = parts[1].strip()
        language = "zh" if int(speaker.name) <= 10 else "en"
        for emotion_dir in sorted(p for p in speaker.iterdir() if p.is_dir()):
            emotion = normalize_label(emotion_dir.name)
            wavs = sorted(emotion_dir.rglob("*.wav"))
            if emotion is None:
                report.drop(f"label '{emotion_dir.name}' not among the five classes", len(wavs))
                continue
            for wav in wavs:
                number = _ESD_NAME.match(wav.stem)
                if number is None:
                    report.drop("file name is not an ESD utterance id", example=wav)
                    continue
                if wav.parent.name in folder_split:
                    row_split = folder_split[wav.parent.name]
                else:
                    index = (int(number[1]) - 1) % 350
                    row_split = "dev" if index < 20 else "test" if index < 50 else "train"
                if wav.stem not in texts:
                    report.drop("no transcript in the speaker's table", example=wav)
                    continue
                report.keep(
                    ManifestRow(
                        audio=str(wav),
                        text=texts[wav.stem],
                        emotion=emotion,
                        language=language,
                        speaker=f"esd_{speaker.name}",
                        split=row_split,
                        source_label=emotion_dir.name,
                        corpus="esd",
                        id=wav.stem,
                    )
                )
    report.notes.append("speakers 0001-0010 zh, 0011-0020 en; all five ESD emotions map one to one")
    return report
