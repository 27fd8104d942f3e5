"""Importers for acted emotional speech in other languages, used only to evaluate: AESDD (Greek), CaFE
(Canadian French) and RESD (Russian).

Every row of these corpora goes to split ``test`` and carries ``evaluation_only: true``: they measure how
emotion recognition carries over to languages the model was not trained on, so they must never be
trained on. As in :mod:`blsp_emo.data.importers.emotion`, labels are mapped onto the five classes, the
corpus's own label is kept in ``source_label`` and what is dropped is counted by reason.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from blsp_emo.data.importers.common import ImportReport, read_text
from blsp_emo.data.manifest import ManifestRow
from blsp_emo.errors import UserError

EVALUATION_ONLY = {"evaluation_only": True}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a")

# ----------------------------------------------------------------------------------------------- AESDD

AESDD_EMOTIONS = {"a": "anger", "d": "disgust", "f": "fear", "h": "happiness", "s": "sadness"}
AESDD_LABELS = {"anger": "angry", "happiness": "happy", "sadness": "sad"}
# xAA (B)[t]: emotion letter, utterance number, actor number, an optional letter for an extra take.
_AESDD_NAME = re.compile(r"^([a-z])(\d{1,2}) ?\((\d{1,2})\)([a-z]?)$")


def import_aesdd(root: Path, **_: object) -> ImportReport:
    """AESDD (Acted Emotional Speech Dynamic Database, Greek): five folders ``anger/``, ``disgust/``,
    ``fear/``, ``happiness/``, ``sadness/`` of files ``xAA (B).wav``: x the emotion's first letter, AA the
    utterance number, B the actor (a trailing letter, ``a01 (5)b.wav``, marks an extra take).

    Labels: anger -> angry, happiness -> happy, sadness -> sad; disgust and fear dropped (AESDD has no
    neutral or surprise). The letter in the name is the label; a file whose letter disagrees with its
    emotion folder is dropped and counted. Evaluation only: every row is split test, language ``el``,
    with ``evaluation_only: true``; the transcript is empty (the corpus ships none).
    """
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav")
    if not files:
        raise UserError(f"{root}: no AESDD wav files found (expected anger/a01 (1).wav, ...)")
    report = ImportReport("aesdd")
    for wav in files:
        m = _AESDD_NAME.match(wav.stem)
        if m is None or m[1] not in AESDD_EMOTIONS:
            report.drop("file name is not an AESDD code 'xAA (B)'", example=wav)
            continue
        letter, utterance, actor, take = m.groups()
        source = AESDD_EMOTIONS[letter]
        folder = wav.parent.name.lower()
        if folder in AESDD_EMOTIONS.values() and folder != source:
            report.drop("emotion letter disagrees with the emotion folder", example=wav)
            continue
        emotion = AESDD_LABELS.get(source)
        if emotion is None:
            report.drop(f"label '{source}' not among the five classes")
            continue
        report.keep(
            ManifestRow(
                audio=str(wav),
                text="",
                emotion=emotion,
                language="el",
                speaker=f"aesdd_{int(actor)}",
                split="test",
                source_label=source,
                corpus="aesdd",
                id=f"aesdd_{letter}{utterance}_{actor}{take}",
                extra=dict(EVALUATION_ONLY),
            )
        )
    report.notes.append("anger->angry, happiness->happy, sadness->sad; disgust, fear dropped; all test")
    return report


# ------------------------------------------------------------------------------------------------ CaFE

CAFE_EMOTIONS = {
    "C": "colère",
    "D": "dégoût",
    "J": "joie",
    "N": "neutre",
    "P": "peur",
    "S": "surprise",
    "T": "tristesse",
}
CAFE_LABELS = {
    "colère": "angry",
    "joie": "happy",
    "neutre": "neutral",
    "surprise": "surprise",
    "tristesse": "sad",
}
CAFE_INTENSITIES = {"1": "low", "2": "high"}  # Faible, Fort
CAFE_SENTENCES = {
    "1": "Un cheval fou dans mon jardin.",
    "2": "Deux ânes aigris au pelage brun.",
    "3": "Trois cygnes aveugles au bord du lac.",
    "4": "Quatre vieilles truies éléphantesques.",
    "5": "Cinq pumas fiers et passionnés.",
    "6": "Six ours aimants domestiqués.",
}
_CAFE_NAME = re.compile(r"^(\d{2})-([A-Z])-(\d)-(\d)$")  # actor-emotion-intensity-sentence


def import_cafe(root: Path, **_: object) -> ImportReport:
    """CaFE (Canadian French Emotional speech): ``AA-E-I-S.wav`` (actor, emotion letter, intensity 1 low /
    2 high, sentence 1-6), in the release's ``{Emotion}/{Faible|Fort}/`` folders (``Neutre/`` has none) or
    all in one folder; the transcript is the corpus's sentence.

    Labels: C colère -> angry, J joie -> happy, N neutre -> neutral, S surprise -> surprise, T tristesse ->
    sad; D dégoût and P peur dropped. The intensity is kept in the manifest field ``intensity`` (low/high).
    Evaluation only: every row is split test, language ``fr``, with ``evaluation_only: true``.
    """
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav")
    if not files:
        raise UserError(f"{root}: no CaFE wav files found (expected Colère/Faible/01-C-1-1.wav, ...)")
    report = ImportReport("cafe")
    for wav in files:
        m = _CAFE_NAME.match(wav.stem)
        if m is None:
            report.drop("file name is not a CaFE code 'AA-E-I-S'", example=wav)
            continue
        actor, letter, intensity, sentence = m.groups()
        if letter not in CAFE_EMOTIONS:
            report.drop(f"unknown emotion letter '{letter}'", example=wav)
            continue
        if intensity not in CAFE_INTENSITIES or sentence not in CAFE_SENTENCES:
            report.drop("unknown intensity or sentence number", example=wav)
            continue
        source = CAFE_EMOTIONS[letter]
        emotion = CAFE_LABELS.get(source)
        if emotion is None:
            report.drop(f"label '{source}' not among the five classes")
            continue
        report.keep(
            ManifestRow(
                audio=str(wav),
                text=CAFE_SENTENCES[sentence],
                emotion=emotion,
                language="fr",
                speaker=f"cafe_{actor}",
                split="test",
                source_label=source,
                corpus="cafe",
                id=f"cafe_{wav.stem}",
                extra={"intensity": CAFE_INTENSITIES[intensity], **EVALUATION_ONLY},
            )
        )
    report.notes.append(
        "colère->angry, joie->happy, neutre, surprise, tristesse->sad; dégoût, peur dropped; all test"
    )
    return report


# ------------------------------------------------------------------------------------------------ RESD

RESD_LABELS: dict[str, str | None] = {
    "anger": "angry",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "enthusiasm": "happy",
    "disgust": None,
    "fear": None,
}
# {dialog}_{emotion of one actor}_{emotion of the other}_{the speaking actor's letter}_{clip}
_RESD_NAME = re.compile(r"^(\d+)_[a-z]+_[a-z]+_([a-z])_\d+$")


def _resd_tables(root: Path) -> list[Path]:
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not tables:
        raise UserError(
            f"{root}: no RESD table (*.csv with name, path, emotion columns) at the top of the folder"
        )
    return tables


def _resd_audio(value: str, table: Path, root: Path, by_name: dict[str, Path]) -> Path | None:
    """The audio file a ``path``/``speech`` cell names: as given, relative to the table or the root, or
    a file of that name anywhere under the root."""
    if not value or value.startswith("{"):  # a serialised audio dict, not a path
        return None
    candidate = Path(value)
    for path in (candidate, table.parent / candidate, root / candidate):
        if path.is_file():
            return path
    return by_name.get(candidate.name)


def import_resd(root: Path, resd_enthusiasm: str = "happy", **_: object) -> ImportReport:
    """RESD (Russian Emotional Speech Dialogs): the release's tables ``train.csv``/``test.csv`` (any
    ``*.csv`` at the top of ``root``) with columns ``name``, ``path``, ``emotion`` and optionally ``speech``
    (the audio file, when ``path`` is not) and ``text`` (the transcript); the audio is the file ``path``
    names, relative to the table or ``root``, or a file of that name (or ``{name}.wav``) anywhere below.

    Labels: anger -> angry, happiness -> happy, sadness -> sad, neutral kept; enthusiasm -> happy by
    default (a positive, high-arousal state whose nearest class is happy, as IEMOCAP's excited is merged
    into happy; ``--resd-enthusiasm drop`` drops it); disgust and fear dropped. Evaluation only: every
    row of both tables is split test (the table it came from is kept as ``source_split``), language
    ``ru``, with ``evaluation_only: true``. A table without an ``emotion`` column fails naming it.
    """
    if resd_enthusiasm not in ("happy", "drop"):
        raise UserError(f"--resd-enthusiasm {resd_enthusiasm!r}: expected 'happy' or 'drop'")
    labels = dict(RESD_LABELS, enthusiasm="happy" if resd_enthusiasm == "happy" else None)
    tables = _resd_tables(root)
    by_name = {p.name: p for p in sorted(root.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES}
    report = ImportReport("resd")
    seen: set[str] = set()
    for table in tables:
        reader = csv.DictReader(io.StringIO(read_text(table), newline=""))
        header = [c.strip().lower() for c in reader.fieldnames or [] if c is not None]
        reader.fieldnames = header
        if "emotion" not in header:
            shown = ", ".join(repr(c) for c in header) or "none"
            raise UserError(f"{table}:1: column 'emotion' is missing (the header has {shown})")
        if not {"path", "speech", "name"} & set(header):
            raise UserError(f"{table}:1: no audio column: RESD needs 'path', 'speech' or 'name'")
        for record in reader:
            line = reader.line_num
            name = (record.get("name") or "").strip()
            source = (record.get("emotion") or "").strip().lower()
            if not source:
                report.drop("row without an emotion", example=f"{table}:{line}")
                continue
            if source not in labels:
                report.drop(f"unknown RESD emotion '{source}'", example=f"{table}:{line}")
                continue
            emotion = labels[source]
            if emotion is None:
                report.drop(f"label '{source}' not among the five classes")
                continue
            audio = _resd_audio((record.get("path") or "").strip(), table, root, by_name) or _resd_audio(
                (record.get("speech") or "").strip(), table, root, by_name
            )
            if audio is None and name:
                audio = next((by_name[name + s] for s in AUDIO_SUFFIXES if name + s in by_name), None)
            if audio is None:
                report.drop("audio file missing", example=f"{table}:{line}")
                continue
            utt = name or audio.stem
            if utt in seen:
                report.drop("duplicate clip name", example=f"{table}:{line}")
                continue
            seen.add(utt)
            speaker = _RESD_NAME.match(utt)
            report.keep(
                ManifestRow(
                    audio=str(audio),
                    text=(record.get("text") or "").strip(),
                    emotion=emotion,
                    language="ru",
                    speaker=f"resd_{speaker[1]}_{speaker[2]}" if speaker else "",
                    split="test",
                    source_label=source,
                    corpus="resd",
                    id=f"resd_{utt}",
                    extra={"source_split": table.stem, **EVALUATION_ONLY},
                )
            )
    rule = "enthusiasm->happy" if resd_enthusiasm == "happy" else "enthusiasm dropped"
    report.notes.append(
        f"anger->angry, happiness->happy, sadness->sad, neutral; {rule}; disgust, fear dropped; all test"
    )
    return report
