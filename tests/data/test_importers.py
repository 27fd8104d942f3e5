"""Each importer on a tiny fixture tree in its corpus's real layout."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from datafix import write_m4a, write_mp4, write_wav

from blsp_emo.cli import main
from blsp_emo.data.importers import run_import
from blsp_emo.data.importers.common import split_by_key
from blsp_emo.data.manifest import check_manifest, read_manifest
from blsp_emo.errors import UserError


def _labels(out: Path) -> Counter:
    return Counter(r.emotion for r in read_manifest(out))


def test_librispeech(tmp_path: Path) -> None:
    root = tmp_path / "LibriSpeech"
    for subset, spk in [("train-clean-100", "19"), ("test-clean", "61")]:
        chapter = root / subset / spk / "198"
        write_wav(chapter / f"{spk}-198-0000.flac", 0.4, fmt="FLAC")
        write_wav(chapter / f"{spk}-198-0001.flac", 0.4, fmt="FLAC")
        (chapter / f"{spk}-198.trans.txt").write_text(
            f"{spk}-198-0000 NORTHANGER ABBEY\n{spk}-198-0001 THIS LITTLE WORK\n{spk}-198-0002 NO AUDIO HERE\n"
        )
    out = tmp_path / "out" / "libri.jsonl"
    report = run_import("librispeech", root, out)
    rows = list(read_manifest(out))
    assert len(rows) == 4 and report.dropped["audio file missing"] == 2
    assert {r.split for r in rows} == {"train", "test"}
    first = {r.id: r for r in rows}["19-198-0000"]
    assert first.text == "Northanger abbey" and first.speaker == "19" and first.split == "train"
    assert abs(first.duration - 0.4) < 0.01
    assert check_manifest(out).ok


def test_sphinx_transcriptions(tmp_path: Path) -> None:
    # AN4 layout: etc/an4_train.{transcription,fileids} with the fileids relative to wav/, NIST SPHERE
    # audio, fillers and noise marks in the text; and a pocketsphinx-testdata-style folder with a bare
    # `transcription` beside its wav files.
    root = tmp_path / "an4"
    write_wav(root / "wav" / "an4_clstk" / "fash" / "an251-fash-b.sph", 0.3, fmt="NIST")
    write_wav(root / "wav" / "an4_clstk" / "fash" / "an253-fash-b.flac", 0.3, fmt="FLAC")
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "an4_train.transcription").write_text(
        "<s> YES ++NOISE++ </s> (an251-fash-b)\n\n<s> GO <sil> FORWARD TEN </s> (an253-fash-b)\n"
        "<s> <sil> </s> (an254-fash-b)\n<s> NO AUDIO </s> (an255-fash-b)\n"
    )
    (root / "etc" / "an4_train.fileids").write_text(
        "".join(f"an4_clstk/fash/an{n}-fash-b\n" for n in (251, 253, 254, 255))
    )
    clips = tmp_path / "librivox"
    write_wav(clips / "austen-0880.wav", 0.4)
    (clips / "transcription").write_text("<s> he was not an ill disposed young man </s> (austen-0880)\n")
    out = tmp_path / "out" / "sphinx.jsonl"
    report = run_import("sphinx", tmp_path, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert set(rows) == {"an251-fash-b", "an253-fash-b", "austen-0880"}
    assert rows["an251-fash-b"].text == "Yes" and rows["an251-fash-b"].split == "train"
    assert abs(rows["an251-fash-b"].duration - 0.3) < 0.01  # the SPHERE file was read
    assert rows["an253-fash-b"].text == "Go forward ten" and rows["an253-fash-b"].audio_path.suffix == ".flac"
    assert rows["austen-0880"].text == "He was not an ill disposed young man"
    assert rows["austen-0880"].language == "en" and rows["austen-0880"].emotion is None
    assert report.dropped == Counter({"no transcript": 1, "audio file missing": 1})
    assert check_manifest(out).ok
    # One file as the root, a forced split; a line that is not in the format names its file and line.
    run_import("sphinx", clips / "transcription", out, split="test")
    assert [r.split for r in read_manifest(out)] == ["test"]
    (clips / "transcription").write_text("<s> fine </s> (austen-0880)\n\nhe was not\n")
    with pytest.raises(UserError, match=r"transcription:3: not a Sphinx transcription line"):
        run_import("sphinx", clips, tmp_path / "bad.jsonl")
    assert not (tmp_path / "bad.jsonl").exists()


def test_common_voice(tmp_path: Path) -> None:
    root = tmp_path / "cv-corpus" / "en"
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    write_wav(root / "clips" / "common_voice_en_1.wav", 0.3)
    write_wav(root / "clips" / "common_voice_en_2.wav", 0.3)
    (root / "train.tsv").write_text(
        header + "abc\tcommon_voice_en_1.wav\tHello there.\t2\t0\t\t\t\ten\t\n"
        "abd\tcommon_voice_en_9.wav\tGone.\t2\t0\t\t\t\ten\t\n"
    )
    (root / "test.tsv").write_text(header + 'xyz\tcommon_voice_en_2.wav\tSay "hi".\t2\t0\t\t\t\ten\t\n')
    (root / "clip_durations.tsv").write_text("clip\tduration[ms]\ncommon_voice_en_1.wav\t300\n")
    out = tmp_path / "cv.jsonl"
    report = run_import("common_voice", root, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert set(rows) == {"common_voice_en_1", "common_voice_en_2"}
    assert rows["common_voice_en_2"].text == 'Say "hi".' and rows["common_voice_en_2"].split == "test"
    assert report.dropped["audio file missing"] == 1


def test_iemocap_excited_rule_and_session5_test(tmp_path: Path) -> None:
    root = tmp_path / "IEMOCAP_full_release"
    labels = {1: [("F000", "neu"), ("M000", "exc"), ("F001", "fru")], 5: [("F000", "ang"), ("M001", "sur")]}
    for session, items in labels.items():
        dialog = f"Ses0{session}F_impro01"
        evaluation = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        trans = []
        for i, (utt, label) in enumerate(items):
            name = f"{dialog}_{utt}"
            write_wav(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{name}.wav", 0.3)
            evaluation += [f"[{i}.0 - {i}.3]\t{name}\t{label}\t[2.5, 2.5, 2.5]", f"C-E1:\t{label};\t()", ""]
            trans.append(f"{name} [00{i}.0000-00{i}.3000]: Utterance {i} of session {session}.")
        (root / f"Session{session}" / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (root / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text(
            "\n".join(evaluation)
        )
        (root / f"Session{session}" / "dialog" / "transcriptions").mkdir(parents=True)
        (root / f"Session{session}" / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(
            "\n".join(trans)
        )
    out = tmp_path / "iemocap.jsonl"
    report = run_import("iemocap", root, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert (
        rows["Ses01F_impro01_M000"].emotion == "happy" and rows["Ses01F_impro01_M000"].source_label == "exc"
    )
    assert rows["Ses01F_impro01_M000"].speaker == "Ses01M"
    assert rows["Ses05F_impro01_M001"].split == "test" and rows["Ses01F_impro01_F000"].split == "train"
    assert rows["Ses01F_impro01_F000"].text == "Utterance 0 of session 1."
    assert report.dropped["label 'fru' not among the five classes"] == 1
    assert "merged into happy" in report.summary()
    run_import("iemocap", root, out, iemocap_excited="drop")
    assert _labels(out) == Counter({"neutral": 1, "angry": 1, "surprise": 1})


def test_meld_extracts_audio_from_mp4(tmp_path: Path) -> None:
    root = tmp_path / "MELD.Raw"
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    (root / "train_sent_emo.csv").parent.mkdir(parents=True)
    (root / "train_sent_emo.csv").write_text(
        header
        + '1,"Oh my God, he\'s lost it.",Phoebe,surprise,negative,0,0,4,7,"00:20:57,256","00:20:58,840"\n'
        "2,I hate this.,Ross,disgust,negative,0,1,4,7,x,y\n"
        "3,Great news!,Monica,joy,positive,0,2,4,7,x,y\n"
    )
    (root / "test_sent_emo.csv").write_text(header + "1,Fine.,Joey,anger,negative,3,0,1,1,x,y\n")
    write_mp4(root / "train_splits" / "dia0_utt0.mp4")
    write_mp4(root / "output_repeated_splits_test" / "dia3_utt0.mp4")
    out = tmp_path / "meld.jsonl"
    report = run_import("meld", root, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert rows["train_dia0_utt0"].emotion == "surprise" and rows["test_dia3_utt0"].emotion == "angry"
    assert (
        rows["train_dia0_utt0"].audio_path.suffix == ".wav" and rows["train_dia0_utt0"].audio_path.is_file()
    )
    assert 0.4 < rows["train_dia0_utt0"].duration < 0.7
    assert report.dropped["label 'disgust' not among the five classes"] == 1
    assert report.dropped["video file missing"] == 1  # dia0_utt2 (joy) has no mp4
    assert check_manifest(out).ok


def test_ravdess_calm_rule(tmp_path: Path) -> None:
    actor = tmp_path / "Audio_Speech_Actors_01-24" / "Actor_01"
    for code in ["01", "02", "03", "04", "05", "06", "07", "08"]:
        write_wav(actor / f"03-01-{code}-01-01-01-01.wav", 0.2)
    write_wav(actor / "03-02-03-01-01-01-01.wav", 0.2)  # song
    out = tmp_path / "ravdess.jsonl"
    report = run_import("ravdess", tmp_path, out)
    assert _labels(out) == Counter({"neutral": 2, "happy": 1, "sad": 1, "angry": 1, "surprise": 1})
    assert report.dropped["song, not speech (vocal channel 02)"] == 1
    assert {r.split for r in read_manifest(out)} == {"test"}
    assert next(iter(read_manifest(out))).text == "Kids are talking by the door."
    run_import("ravdess", tmp_path, out, ravdess_calm="drop")
    assert _labels(out)["neutral"] == 1


def test_cremad(tmp_path: Path) -> None:
    for name in [
        "1001_DFA_ANG_XX",
        "1001_IEO_HAP_HI",
        "1002_TIE_NEU_XX",
        "1002_ITS_DIS_XX",
        "1003_WSI_FEA_LO",
    ]:
        write_wav(tmp_path / "AudioWAV" / f"{name}.wav", 0.2)
    out = tmp_path / "cremad.jsonl"
    report = run_import("crema-d", tmp_path, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert (
        rows["1001_IEO_HAP_HI"].text == "It's eleven o'clock." and rows["1001_DFA_ANG_XX"].emotion == "angry"
    )
    assert sum(report.dropped.values()) == 2
    assert rows["1001_DFA_ANG_XX"].split == rows["1001_IEO_HAP_HI"].split  # split by actor


@pytest.mark.parametrize("with_split_folders", [True, False])
def test_esd_english_and_chinese(tmp_path: Path, with_split_folders: bool) -> None:
    root = tmp_path / "Emotional Speech Dataset (ESD)"
    spk_zh, spk_en = root / "0001", root / "0011"
    spk_zh.mkdir(parents=True)
    spk_en.mkdir(parents=True)
    (spk_zh / "0001.txt").write_text("0001_000001\t打远一看，它们的确很是美丽，\t中立\n", encoding="utf-8")
    (spk_en / "0011.txt").write_text(
        "0011_000001\tThe nine the eggs.\tNeutral\n0011_000371\tI know.\tAngry\n", encoding="utf-8"
    )
    sub = "evaluation" if with_split_folders else ""
    write_wav(spk_zh / "Neutral" / sub / "0001_000001.wav", 0.2)
    write_wav(spk_en / "Neutral" / sub / "0011_000001.wav", 0.2)
    write_wav(spk_en / "Angry" / ("test" if with_split_folders else "") / "0011_000371.wav", 0.2)
    out = tmp_path / "esd.jsonl"
    run_import("esd", root, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert rows["0001_000001"].language == "zh" and rows["0001_000001"].text.startswith("打远一看")
    assert rows["0011_000001"].language == "en" and rows["0011_000001"].emotion == "neutral"
    assert rows["0011_000001"].split == "dev"
    assert rows["0011_000371"].split == "test" and rows["0011_000371"].emotion == "angry"


def test_generic_csv_and_jsonl_with_mapping(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_wav(tmp_path / "clips" / "a.wav", 0.2)
    write_wav(tmp_path / "clips" / "b.wav", 0.2)
    table = tmp_path / "mine.csv"
    table.write_text(
        "file,words,feeling\nclips/a.wav,Hello,Joy\nclips/b.wav,Bye,boredom\nclips/c.wav,x,sad\n"
    )
    out = tmp_path / "out.jsonl"
    code = main(
        ["data", "import", "generic", str(table), "-o", str(out), "--map", "audio=file", "--map", "text=words",
         "--map", "emotion=feeling", "--label-map", "boredom=neutral"]
    )  # fmt: skip
    assert code == 0
    assert [(r.text, r.emotion, r.source_label) for r in read_manifest(out)] == [
        ("Hello", "happy", "Joy"),
        ("Bye", "neutral", "boredom"),
    ]
    printed = capsys.readouterr().out
    assert "happy" in printed and "audio file missing" in printed
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text(json.dumps({"wav": "clips/a.wav", "label": "anger"}) + "\n{broken\n")
    with pytest.raises(UserError, match=r"mine\.jsonl:2: malformed JSON"):
        run_import("generic", jsonl, out, column_map=["audio=wav", "emotion=label"])


def test_unknown_corpus_and_bad_root(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown corpus"):
        run_import("timit", tmp_path, tmp_path / "o.jsonl")
    with pytest.raises(UserError, match="no Session1"):
        run_import("iemocap", tmp_path, tmp_path / "o.jsonl")


# ------------------------------------------------------------------------------------------ bad input
# A malformed item among good ones is skipped and counted (the summary says how many and why, naming
# one); a problem with the whole import (no root, a missing column, a bad option) fails with a UserError
# that names the file, line or option. Either way nothing is written to the output before the import has
# succeeded, so an earlier manifest there survives a failed run.


def _bad_audio(folder: Path, empty: str, garbage: str) -> None:
    """A 0-byte file and a file of random bytes, both named like audio."""
    (folder / empty).parent.mkdir(parents=True, exist_ok=True)
    (folder / empty).write_bytes(b"")
    (folder / garbage).write_bytes(b"RIFF\x00\x01garbage" * 64)


@pytest.mark.parametrize("corpus", ["ravdess", "cremad", "librispeech", "generic"])
def test_unreadable_audio_is_dropped_and_counted(tmp_path: Path, corpus: str) -> None:
    root = tmp_path / "corpus"
    if corpus == "ravdess":
        actor = root / "Actor_01"
        write_wav(actor / "03-01-01-01-01-01-01.wav")
        _bad_audio(actor, "03-01-03-01-01-01-01.wav", "03-01-04-01-01-01-01.wav")
    elif corpus == "cremad":
        write_wav(root / "AudioWAV" / "1001_DFA_ANG_XX.wav")
        _bad_audio(root / "AudioWAV", "1001_IEO_HAP_HI.wav", "1002_TIE_NEU_XX.wav")
    elif corpus == "librispeech":
        chapter = root / "train-clean-100" / "19" / "198"
        write_wav(chapter / "19-198-0000.flac", fmt="FLAC")
        _bad_audio(chapter, "19-198-0001.flac", "19-198-0002.flac")
        (chapter / "19-198.trans.txt").write_text("19-198-0000 ONE\n19-198-0001 TWO\n19-198-0002 THREE\n")
    else:
        write_wav(root / "good.wav")
        _bad_audio(root, "empty.wav", "garbage.wav")
        (root / "t.csv").write_text("audio,text\ngood.wav,a\nempty.wav,b\ngarbage.wav,c\n")
        root = root / "t.csv"
    out = tmp_path / "out.jsonl"
    report = run_import(corpus, root, out)
    assert len(list(read_manifest(out))) == 1 and check_manifest(out).ok
    assert report.dropped == Counter(
        {"audio file empty (0 bytes)": 1, "audio unreadable (not a decodable audio file)": 1}
    )
    summary = report.summary()
    assert "dropped 2:" in summary
    assert "1  audio file empty (0 bytes) (e.g. " in summary  # names the file
    empty_name = {"ravdess": "03-01-03", "cremad": "1001_IEO", "librispeech": "19-198-0001"}.get(
        corpus, "empty"
    )
    assert empty_name in report.examples["audio file empty (0 bytes)"]


def test_import_of_only_unreadable_audio_fails_and_keeps_the_old_manifest(tmp_path: Path) -> None:
    actor = tmp_path / "ravdess" / "Actor_01"
    write_wav(actor / "03-01-01-01-01-01-01.wav")
    out = tmp_path / "ravdess.jsonl"
    run_import("ravdess", tmp_path / "ravdess", out)
    before = out.read_bytes()
    (actor / "03-01-01-01-01-01-01.wav").write_bytes(b"not audio at all")
    with pytest.raises(
        UserError, match=r"(?s)no usable utterances.*audio unreadable.*03-01-01-01-01-01-01\.wav"
    ):
        run_import("ravdess", tmp_path / "ravdess", out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_common_voice_missing_column_fails_naming_table_and_column(tmp_path: Path) -> None:
    root = tmp_path / "en"
    write_wav(root / "clips" / "a.wav")
    (root / "train.tsv").write_text("client_id\tpath\nabc\ta.wav\n")  # no 'sentence' column
    out = tmp_path / "cv.jsonl"
    out.write_text("earlier\n")
    with pytest.raises(UserError, match=r"train\.tsv:1: column 'sentence' is missing \(the header has"):
        run_import("common_voice", root, out)
    assert out.read_text() == "earlier\n"


def test_meld_missing_column_fails_naming_table_and_column(tmp_path: Path) -> None:
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    (root / "dev_sent_emo.csv").write_text(
        "Sr No.,Utterance,Speaker,Dialogue_ID,Utterance_ID\n1,Hi,Ross,0,0\n"
    )
    with pytest.raises(UserError, match=r"dev_sent_emo\.csv:1: column 'Emotion' is missing"):
        run_import("meld", root, tmp_path / "meld.jsonl")
    assert not (tmp_path / "meld.jsonl").exists()


def test_meld_video_without_audio_is_dropped_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    (root / "train_sent_emo.csv").write_text(
        "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"
        "1,Hi.,Ross,joy,positive,0,0\n2,Silent.,Ross,anger,negative,0,1\n3,Broken.,Ross,sadness,negative,0,2\n"
    )
    write_mp4(root / "train_splits" / "dia0_utt0.mp4")
    write_mp4(root / "train_splits" / "dia0_utt1.mp4", audio_track=False)
    (root / "train_splits" / "dia0_utt2.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    out = tmp_path / "meld.jsonl"
    report = run_import("meld", root, out)
    assert [r.id for r in read_manifest(out)] == ["train_dia0_utt0"]
    assert report.dropped == Counter({"video has no readable audio track": 2})
    assert report.examples["video has no readable audio track"].endswith("dia0_utt1.mp4")
    assert not (tmp_path / "meld_audio" / "train" / "dia0_utt1.wav").exists()


@pytest.mark.parametrize(
    ("corpus", "good", "bad", "reason"),
    [
        (
            "ravdess",
            "Actor_01/03-01-05-01-01-01-01.wav",
            ["Actor_01/03-01-05.wav", "Actor_01/notes.wav", "Actor_01/03-01-05-01-07-01-01.wav"],
            "file name is not a RAVDESS code",
        ),
        (
            "cremad",
            "AudioWAV/1001_DFA_ANG_XX.wav",
            ["AudioWAV/1001_DFA.wav", "AudioWAV/1001_DFA_ANG.wav", "AudioWAV/readme.wav"],
            "file name is not a CREMA-D code",
        ),
        (
            "esd",
            "0011/Angry/0011_000371.wav",
            ["0011/Angry/0011_x.wav", "0011/Angry/take2.wav", "0011/Angry/0011.wav"],
            "file name is not an ESD utterance id",
        ),
    ],
)
def test_malformed_file_names_are_dropped_and_counted(
    tmp_path: Path, corpus: str, good: str, bad: list[str], reason: str
) -> None:
    for name in [good, *bad]:
        write_wav(tmp_path / name, 0.2)
    (tmp_path / "0011").mkdir(exist_ok=True)
    (tmp_path / "0011" / "0011.txt").write_text("0011_000371\tI know.\tAngry\n")  # ESD's table
    report = run_import(corpus, tmp_path, tmp_path / "out.jsonl")
    assert [r.id for r in read_manifest(tmp_path / "out.jsonl")] == [Path(good).stem]
    if corpus == "ravdess":  # a well-formed code whose statement number RAVDESS does not have
        assert report.dropped.pop("unknown statement code '07'") == 1
        bad = bad[:2]
    assert report.dropped == Counter({reason: len(bad)})
    assert f"{len(bad)}  {reason} (e.g. " in report.summary()


def test_iemocap_malformed_turn_name_is_dropped_and_counted(tmp_path: Path) -> None:
    session = tmp_path / "Session1"
    (session / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (session / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(
        "[0.0 - 1.0]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]\n"
        "[1.0 - 2.0]\tgarbage\tang\t[2.5, 2.5, 2.5]\n"
        "[2.0 - 3.0]\tSes01F_impro01_\tsad\t[2.5, 2.5, 2.5]\n"
    )
    write_wav(session / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_F000.wav")
    report = run_import("iemocap", tmp_path, tmp_path / "out.jsonl")
    rows = list(read_manifest(tmp_path / "out.jsonl"))
    assert [(r.id, r.speaker) for r in rows] == [("Ses01F_impro01_F000", "Ses01F")]
    assert report.dropped == Counter({"turn name is not an IEMOCAP utterance id": 2})
    assert report.examples["turn name is not an IEMOCAP utterance id"].endswith("Ses01F_impro01.txt:2")


@pytest.mark.parametrize("line", ['["clips/a.wav", "happy"]', '"clips/a.wav"', "42", "null"])
def test_generic_jsonl_line_that_is_not_an_object_fails_naming_the_line(tmp_path: Path, line: str) -> None:
    write_wav(tmp_path / "clips" / "a.wav")
    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"audio": "clips/a.wav"}) + "\n\n" + line + "\n")
    with pytest.raises(UserError, match=r"t\.jsonl:3: expected a JSON object per line, got "):
        run_import("generic", table, tmp_path / "out.jsonl")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"audio": ["clips/a.wav"]}, r"t\.jsonl:1: column 'audio' \(audio\) must be a path string, got list"),
        (
            {"audio": "clips/a.wav", "duration": [1]},
            r"t\.jsonl:1: column 'duration' .* not a positive number",
        ),
        ({"audio": "clips/a.wav", "duration": -2}, r"t\.jsonl:1: column 'duration' .* not a positive number"),
        (
            {"audio": "clips/a.wav", "duration": "nan"},
            r"t\.jsonl:1: column 'duration' .* not a positive number",
        ),
    ],
)
def test_generic_bad_field_values_fail_naming_line_and_column(
    tmp_path: Path, record: dict, message: str
) -> None:
    write_wav(tmp_path / "clips" / "a.wav")
    (tmp_path / "t.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(UserError, match=message):
        run_import("generic", tmp_path / "t.jsonl", tmp_path / "out.jsonl")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--map", "audio"], r"--map 'audio': expected KEY=VALUE"),
        (["--map", "=file"], r"--map '=file': expected KEY=VALUE"),
        (["--map", "audio="], r"--map 'audio=': expected KEY=VALUE"),
        (["--map", "wav=file"], r"--map wav=\.\.\.: unknown manifest field"),
        (
            ["--map", "text=words"],
            r"--map text=words: .*mine\.csv has no column 'words' \(text\); its columns: 'file'",
        ),
        (["--map", "audio=path"], r"--map audio=path: .*has no column 'path' \(audio\)"),
        ([], r"mine\.csv has no column 'audio' \(audio\); its columns: 'file', 'feeling'"),
        (["--map", "audio=file", "--label-map", "joy=glad"], r"--label-map joy=glad: 'glad' is not one of"),
        (["--map", "audio=file", "--label-map", "=happy"], r"--label-map '=happy': expected KEY=VALUE"),
    ],
)
def test_generic_bad_map_arguments_fail_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture, options: list[str], message: str
) -> None:
    write_wav(tmp_path / "a.wav")
    table = tmp_path / "mine.csv"
    table.write_text("file,feeling\na.wav,joy\n")
    out = tmp_path / "out.jsonl"
    assert main(["data", "import", "generic", str(table), "-o", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("corpus", ["ravdess", "common_voice", "meld", "generic"])
def test_missing_root_fails(tmp_path: Path, capsys: pytest.CaptureFixture, corpus: str) -> None:
    out = tmp_path / "out.jsonl"
    assert main(["data", "import", corpus, str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    assert f"{tmp_path / 'nowhere'}: no such file or folder" in capsys.readouterr().err
    assert not out.exists()


def test_root_that_is_a_file_or_output_that_is_a_folder_fails(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "03-01-01-01-01-01-01.wav")
    with pytest.raises(UserError, match=r"03-01-01-01-01-01-01\.wav: a file; esd takes the corpus folder"):
        run_import("esd", wav, tmp_path / "out.jsonl")
    with pytest.raises(UserError, match=r": a folder; -o/--output names the manifest file"):
        run_import("ravdess", tmp_path, tmp_path)


@pytest.mark.parametrize("corpus", ["librispeech", "common_voice", "sphinx", "generic"])
def test_table_not_in_utf8_fails_naming_file_and_line(tmp_path: Path, corpus: str) -> None:
    latin1 = "Caf\xe9 au lait".encode("latin-1")
    root = tmp_path / "corpus"
    if corpus == "librispeech":
        chapter = root / "train-clean-100" / "19" / "198"
        write_wav(chapter / "19-198-0000.flac", fmt="FLAC")
        table = chapter / "19-198.trans.txt"
        table.write_bytes(b"19-198-0000 FINE\n19-198-0001 " + latin1.upper() + b"\n")
        where = r"19-198\.trans\.txt:2"
    elif corpus == "common_voice":
        write_wav(root / "clips" / "a.wav")
        table = root / "train.tsv"
        table.write_bytes(b"client_id\tpath\tsentence\nabc\ta.wav\t" + latin1 + b"\n")
        where = r"train\.tsv:2"
    elif corpus == "sphinx":
        write_wav(root / "u1.wav")
        table = root / "transcription"
        table.write_bytes(b"<s> " + latin1 + b" </s> (u1)\n")
        where = r"transcription:1"
    else:
        write_wav(root / "a.wav")
        table = root / "t.csv"
        table.write_bytes(b"audio,text\n\na.wav," + latin1 + b"\n")
        where, root = r"t\.csv:3", table
    with pytest.raises(UserError, match=where + r": not UTF-8 text \(byte 0xe9\)"):
        run_import(corpus, root, tmp_path / "out.jsonl")


# ---------------------------------------------------------- MOSEI, MEAD and the evaluation-only sets

MOSEI_HEADER = "video_id,clip_id,start,end,text,sentiment,happy,sad,anger,surprise,disgust,fear,split\n"


def _mosei_root(tmp_path: Path) -> Path:
    """The release's audio folders (segment wavs, one full-video wav) and a label table with folds."""
    root = tmp_path / "CMU_MOSEI"
    for segment in ["vidA_0", "vidA_1", "vidA_2", "vidB_0", "vidB_1", "vidB_2", "vidC_0", "vidC_2"]:
        write_wav(root / "Audio" / "Segmented" / f"{segment}.wav", 0.2)
    write_wav(root / "Audio" / "Full" / "WAV_16000" / "vidC.wav", 1.0)
    (root / "mosei_labels.csv").write_text(
        MOSEI_HEADER + "vidA,0,0.0,2.1,I loved it,2.0,2.0,0,0,0,0,0,train\n"
        "vidA,1,2.0,4.0,It is a film,0.2,0,0,0,0,0,0,train\n"
        "vidA,2,4.0,6.0,Best ever,1.5,0,0,0,0,0,0,train\n"  # no emotion but clearly positive
        "vidB,0,0.0,3.0,So sad,-1.0,0,1.3333333,0,0,0,0.3333333,valid\n"
        "vidB,1,3.0,5.0,Meh,-0.6,0,0,0.6666667,0,0,0,valid\n"  # below the threshold
        "vidB,2,5.0,7.0,Gross,-2.0,0,0,1.0,0,2.0,0,valid\n"  # disgust strongest
        "vidC,0,0.0,2.0,Well,0.5,1.0,0,0,1.0,0,0,test\n"  # happiness and surprise tie
        "vidC,1,0.1,0.4,Wow,1.0,0,0,0,1.6666667,0,0,test\n"  # no segment wav: cut from vidC.wav
        "vidC,2,2.0,3.0,Hidden,0.0,0,0,0,0,0,0,\n"  # not in the standard folds
        "vidD,0,0.0,1.0,Gone,2.0,3.0,0,0,0,0,0,train\n"  # no audio at all
    )
    return root


def test_mosei_label_rule_standard_folds_and_cut_segments(tmp_path: Path) -> None:
    root = _mosei_root(tmp_path)
    out = tmp_path / "mosei.jsonl"
    report = run_import("cmu-mosei", root, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert {k: (r.emotion, r.split) for k, r in rows.items()} == {
        "mosei_vidA_0": ("happy", "train"),
        "mosei_vidA_1": ("neutral", "train"),
        "mosei_vidB_0": ("sad", "dev"),
        "mosei_vidC_1": ("surprise", "test"),
    }
    assert report.dropped == Counter(
        {
            "no emotion marked but |sentiment| >= 0.5": 1,
            "strongest emotion below --mosei-threshold": 1,
            "disgust or fear at least as strong as the four kept emotions": 1,
            "tie between the strongest emotions": 1,
            "video not in the standard folds (empty fold cell)": 1,
            "segment audio missing": 1,
        }
    )
    assert report.examples["segment audio missing"].endswith("mosei_labels.csv:11")
    sad = rows["mosei_vidB_0"]
    assert sad.text == "So sad" and sad.speaker == "mosei_vidB" and sad.source_label == "sadness"
    assert sad.extra["sentiment"] == -1.0 and sad.extra["emotion_intensities"]["fear"] == 0.3333
    assert rows["mosei_vidA_1"].source_label == "none" and rows["mosei_vidA_1"].language == "en"
    cut = rows["mosei_vidC_1"]
    assert cut.audio_path == tmp_path / "mosei_audio" / "vidC_1.wav" and abs(cut.duration - 0.3) < 0.01
    assert check_manifest(out).ok
    # A lower threshold labels the weak anger; the CLI passes the option through.
    assert main(["data", "import", "mosei", str(root), "-o", str(out), "--mosei-threshold", "0.5"]) == 0
    assert {r.id: r.emotion for r in read_manifest(out)}["mosei_vidB_1"] == "angry"


def test_mosei_other_spellings_release_transcripts_and_split_by_video(tmp_path: Path) -> None:
    # A TSV with other column spellings and no text or fold column: the transcript comes from the
    # release's Transcript/Segmented/Combined files, the split from a hash of the video id.
    root = tmp_path / "mosei"
    lines = [
        "Video\tSegment_ID\tsentiment_score\temo_happy\temo_sad\temo_anger\temo_surprise\temo_disgust\temo_fear"
    ]
    transcripts: dict[str, list[str]] = {}
    for v in range(20):
        for clip, cells in [(0, "1.0\t2.0\t0\t0\t0\t0\t0"), (1, "-2.0\t0\t0\t2.3333333\t0\t0\t0")]:
            lines.append(f"v{v:02d}\t{clip}\t{cells}")
            write_wav(root / "Audio" / "Segmented" / f"v{v:02d}_{clip}.wav", 0.1)
            transcripts.setdefault(f"v{v:02d}", []).append(
                f"v{v:02d}___{clip}___0.0___1.0___words of {v} {clip}"
            )
    (root / "labels.tsv").write_text("\n".join(lines) + "\n")
    for video, segs in transcripts.items():
        folder = root / "Transcript" / "Segmented" / "Combined"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{video}.txt").write_text("\n".join(segs) + "\n")
    out = tmp_path / "mosei.jsonl"
    report = run_import("mosei", root, out)
    rows = list(read_manifest(out))
    assert len(rows) == 40 and not report.dropped
    assert Counter(r.emotion for r in rows) == Counter({"happy": 20, "angry": 20})
    assert {r.id: r.text for r in rows}["mosei_v07_1"] == "words of 7 1"
    by_speaker: dict[str, set[str]] = {}
    for row in rows:
        by_speaker.setdefault(row.speaker, set()).add(row.split)
    assert all(len(splits) == 1 for splits in by_speaker.values())  # a video never straddles splits
    assert len({r.split for r in rows}) > 1


@pytest.mark.parametrize(
    ("table", "options", "message"),
    [
        (
            "video_id,clip_id,sentiment,happy,sad,anger,surprise,disgust\nvidA,0,1,1,0,0,0,0\n",
            {},
            r"mosei_labels\.csv:1: no column for MOSEI's 'fear' \(accepted: fear, fearful\)",
        ),
        (
            "video_id,sentiment,happy,sad,anger,surprise,disgust,fear\nvidA,1,1,0,0,0,0,0\n",
            {},
            r"mosei_labels\.csv:1: no segment column",
        ),
        (
            MOSEI_HEADER + "vidA,0,0,2,x,1.0,high,0,0,0,0,0,train\n",
            {},
            r"mosei_labels\.csv:2: column 'happy'",
        ),
        (MOSEI_HEADER + "vidA,0,0,2,x,1.0,4.5,0,0,0,0,0,train\n", {}, r"mosei_labels\.csv:2: column 'happy'"),
        (MOSEI_HEADER + "vidA,0,0,2,x,7,1,0,0,0,0,0,train\n", {}, r"mosei_labels\.csv:2: column 'sentiment'"),
        (
            MOSEI_HEADER + "vidA,0,0,2,x,1,1,0,0,0,0,0,holdout\n",
            {},
            r"mosei_labels\.csv:2: .*unknown fold 'holdout'",
        ),
        (  # a good row whose segment would be cut, then a bad one: the error comes before any cut
            MOSEI_HEADER + "vidB,0,0,0.5,x,1,2,0,0,0,0,0,train\nvidA,0,0,2,x,1,1,0,0,0,0,0,holdout\n",
            {},
            r"mosei_labels\.csv:3: .*unknown fold 'holdout'",
        ),
        (MOSEI_HEADER, {"mosei_threshold": 0}, r"--mosei-threshold 0: expected a number in \(0, 3\]"),
        (MOSEI_HEADER, {"mosei_labels": "nowhere.csv"}, r"--mosei-labels nowhere\.csv: no such file"),
    ],
)
def test_mosei_bad_table_fails_naming_file_line_and_column(
    tmp_path: Path, table: str, options: dict, message: str
) -> None:
    root = tmp_path / "mosei"
    write_wav(root / "Audio" / "Segmented" / "vidA_0.wav", 0.2)
    write_wav(root / "Audio" / "Full" / "WAV_16000" / "vidB.wav", 1.0)
    (root / "mosei_labels.csv").write_text(table)
    out = tmp_path / "mosei.jsonl"
    out.write_text("earlier\n")
    with pytest.raises(UserError, match=message):
        run_import("mosei", root, out, **options)
    assert out.read_text() == "earlier\n"
    assert not (tmp_path / "mosei_audio").exists()


def test_mosei_label_table_must_be_one_at_the_root(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(MOSEI_HEADER)
    (tmp_path / "b.tsv").write_text(MOSEI_HEADER)
    with pytest.raises(
        UserError, match=r"several label tables \(a\.csv, b\.tsv\); choose one with --mosei-labels"
    ):
        run_import("mosei", tmp_path, tmp_path / "out.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: no label table \(\*\.csv or \*\.tsv\)"):
        run_import("mosei", tmp_path / "empty", tmp_path / "out.jsonl")


def _mead_root(tmp_path: Path) -> Path:
    root = tmp_path / "MEAD"
    for rel in [
        "M003/audio/angry/level_1/001.m4a",
        "M003/audio/happy/level_3/002.m4a",
        "M003/audio/neutral/level_1/001.m4a",
        "M003/audio/surprised/level_2/001.m4a",
        "M003/audio/contempt/level_1/001.m4a",
        "M003/audio/disgusted/level_2/001.m4a",
        "W009/audio/sad/level_2/003.m4a",
        "W009/audio/fear/level_3/001.m4a",
        "W009/audio/sad/level_9/004.m4a",  # no such level
        "W009/audio/sad/level_1/take.m4a",  # not a sentence number
    ]:
        write_m4a(root / rel, 0.3)
    (root / "W009" / "audio" / "sad" / "level_1" / "005.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A garbage")
    return root


def test_mead_decodes_m4a_keeps_levels_and_splits_by_speaker(tmp_path: Path) -> None:
    root = _mead_root(tmp_path)
    sentences = tmp_path / "mead_sentences.tsv"
    sentences.write_text(
        "# emotion, number, sentence\nangry\t001\tShe had your dark suit.\nsad\t3\tDon't ask me.\n"
    )
    out = tmp_path / "mead.jsonl"
    report = run_import("mead", root, out, mead_sentences=sentences)
    rows = {r.id: r for r in read_manifest(out)}
    assert {k: (r.emotion, r.extra["intensity"]) for k, r in rows.items()} == {
        "M003_angry_level1_001": ("angry", 1),
        "M003_happy_level3_002": ("happy", 3),
        "M003_neutral_level1_001": ("neutral", 1),
        "M003_surprised_level2_001": ("surprise", 2),
        "W009_sad_level2_003": ("sad", 2),
    }
    assert report.dropped == Counter(
        {
            "label 'contempt' not among the five classes": 1,
            "label 'disgusted' not among the five classes": 1,
            "label 'fear' not among the five classes": 1,
            "path is not MEAD's audio/{emotion}/level_{1-3}/{NNN}": 2,
            "audio unreadable (not a decodable audio file)": 1,
        }
    )
    assert report.examples["audio unreadable (not a decodable audio file)"].endswith("005.m4a")
    angry = rows["M003_angry_level1_001"]
    assert angry.text == "She had your dark suit." and rows["W009_sad_level2_003"].text == "Don't ask me."
    assert rows["M003_happy_level3_002"].text == "" and angry.source_label == "angry"
    assert angry.audio_path == tmp_path / "mead_audio" / "M003" / "angry" / "level_1" / "001.wav"
    assert 0.25 < angry.duration < 0.4 and angry.language == "en" and angry.speaker == "mead_M003"
    for speaker in ("M003", "W009"):
        assert {r.split for r in rows.values() if r.speaker == f"mead_{speaker}"} == {
            split_by_key(f"mead_{speaker}")
        }
    assert check_manifest(out).ok
    # Decoded wavs are reused on a second run; --split forces one split.
    before = angry.audio_path.stat().st_mtime_ns
    run_import("mead", root, out, split="test")
    assert {r.split for r in read_manifest(out)} == {"test"}
    assert angry.audio_path.stat().st_mtime_ns == before


def test_mead_bad_sentence_list_fails_naming_the_line(tmp_path: Path) -> None:
    write_m4a(tmp_path / "MEAD" / "M003" / "audio" / "angry" / "level_1" / "001.m4a")
    sentences = tmp_path / "s.tsv"
    sentences.write_text("angry\t001\tFine.\nangry 002 No tabs here.\n")
    with pytest.raises(UserError, match=r"s\.tsv:2: expected 'EMOTION<TAB>NUMBER<TAB>sentence'"):
        run_import("mead", tmp_path / "MEAD", tmp_path / "out.jsonl", mead_sentences=sentences)
    sentences.write_text("bored\t001\tFine.\n")
    with pytest.raises(UserError, match=r"s\.tsv:1: unknown MEAD emotion 'bored'"):
        run_import("mead", tmp_path / "MEAD", tmp_path / "out.jsonl", mead_sentences=sentences)
    with pytest.raises(UserError, match=r"no MEAD speaker folders"):
        run_import("mead", tmp_path, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def _evaluation_only(rows: list, language: str) -> None:
    assert {r.split for r in rows} == {"test"} and {r.language for r in rows} == {language}
    assert all(r.extra["evaluation_only"] is True for r in rows)


def test_aesdd_greek_evaluation_only(tmp_path: Path) -> None:
    root = tmp_path / "Acted Emotional Speech Dynamic Database"
    for rel in [
        "anger/a01 (1).wav",
        "happiness/h02 (2).wav",
        "sadness/s05 (5)b.wav",
        "sadness/s12 (01).wav",
        "disgust/d01 (1).wav",
        "fear/f03 (3).wav",
        "anger/h04 (1).wav",  # a happiness file in the anger folder
        "anger/readme.wav",
        "anger/a02.wav",
    ]:
        write_wav(root / rel, 0.2)
    (root / "anger" / "a03 (2).wav").write_bytes(b"")
    out = tmp_path / "aesdd.jsonl"
    report = run_import("aesdd", root, out)
    rows = list(read_manifest(out))
    assert {r.id: (r.emotion, r.speaker) for r in rows} == {
        "aesdd_a01_1": ("angry", "aesdd_1"),
        "aesdd_h02_2": ("happy", "aesdd_2"),
        "aesdd_s05_5b": ("sad", "aesdd_5"),
        "aesdd_s12_01": ("sad", "aesdd_1"),
    }
    _evaluation_only(rows, "el")
    assert report.dropped == Counter(
        {
            "label 'disgust' not among the five classes": 1,
            "label 'fear' not among the five classes": 1,
            "emotion letter disagrees with the emotion folder": 1,
            "file name is not an AESDD code 'xAA (B)'": 2,
            "audio file empty (0 bytes)": 1,
        }
    )
    assert report.examples["emotion letter disagrees with the emotion folder"].endswith("h04 (1).wav")
    assert check_manifest(out).ok


def test_cafe_french_evaluation_only_both_layouts(tmp_path: Path) -> None:
    root = tmp_path / "CaFE_48k"
    for rel in [
        "Colère/Faible/01-C-1-1.wav",
        "Joie/Fort/02-J-2-3.wav",
        "Neutre/03-N-1-6.wav",
        "Surprise/Fort/04-S-2-2.wav",
        "Tristesse/Faible/05-T-1-4.wav",
        "Dégoût/Fort/06-D-2-1.wav",
        "Peur/Faible/07-P-1-5.wav",
        "08-C-2-2.wav",  # the flat layout
        "01-X-1-1.wav",  # no such emotion letter
        "01-C-1-9.wav",  # no such sentence
        "notes.wav",
    ]:
        write_wav(root / rel, 0.2)
    out = tmp_path / "cafe.jsonl"
    report = run_import("cafe", root, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert {k: (r.emotion, r.extra["intensity"]) for k, r in rows.items()} == {
        "cafe_01-C-1-1": ("angry", "low"),
        "cafe_02-J-2-3": ("happy", "high"),
        "cafe_03-N-1-6": ("neutral", "low"),
        "cafe_04-S-2-2": ("surprise", "high"),
        "cafe_05-T-1-4": ("sad", "low"),
        "cafe_08-C-2-2": ("angry", "high"),
    }
    assert rows["cafe_02-J-2-3"].text == "Trois cygnes aveugles au bord du lac."
    assert rows["cafe_02-J-2-3"].speaker == "cafe_02" and rows["cafe_02-J-2-3"].source_label == "joie"
    _evaluation_only(list(rows.values()), "fr")
    assert report.dropped == Counter(
        {
            "label 'dégoût' not among the five classes": 1,
            "label 'peur' not among the five classes": 1,
            "unknown emotion letter 'X'": 1,
            "unknown intensity or sentence number": 1,
            "file name is not a CaFE code 'AA-E-I-S'": 1,
        }
    )
    assert check_manifest(out).ok


def _resd_root(tmp_path: Path) -> Path:
    root = tmp_path / "resd"
    header = "name,path,emotion,text\n"
    train = [
        ("32_happiness_enthusiasm_h_120", "happiness", "Привет!"),
        ("32_happiness_enthusiasm_e_121", "enthusiasm", "Давай!"),
        ("33_anger_sadness_a_001", "anger", "Хватит."),
        ("33_anger_sadness_s_002", "sadness", "Мне грустно."),
        ("34_disgust_fear_d_001", "disgust", "Фу."),
        ("34_disgust_fear_f_002", "fear", "Страшно."),
    ]
    test = [
        ("35_neutral_neutral_n_001", "neutral", "Хорошо."),
        ("35_neutral_neutral_n_002", "boredom", "Скучно."),
    ]
    for split, items in (("train", train), ("test", test)):
        for name, _, _ in items:
            write_wav(root / split / f"{name}.wav", 0.2)
        lines = [f"{name},{split}/{name}.wav,{emotion},{text}" for name, emotion, text in items]
        (root / f"{split}.csv").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    with (root / "test.csv").open("a", encoding="utf-8") as table:
        table.write("35_neutral_neutral_n_003,test/missing.wav,neutral,Нет.\n")
    return root


def test_resd_russian_evaluation_only_and_enthusiasm_rule(tmp_path: Path) -> None:
    root = _resd_root(tmp_path)
    out = tmp_path / "resd.jsonl"
    report = run_import("resd", root, out)
    rows = {r.id: r for r in read_manifest(out)}
    assert {k: r.emotion for k, r in rows.items()} == {
        "resd_32_happiness_enthusiasm_h_120": "happy",
        "resd_32_happiness_enthusiasm_e_121": "happy",
        "resd_33_anger_sadness_a_001": "angry",
        "resd_33_anger_sadness_s_002": "sad",
        "resd_35_neutral_neutral_n_001": "neutral",
    }
    first = rows["resd_32_happiness_enthusiasm_h_120"]
    assert first.text == "Привет!" and first.speaker == "resd_32_h" and first.extra["source_split"] == "train"
    assert rows["resd_35_neutral_neutral_n_001"].extra["source_split"] == "test"
    assert rows["resd_32_happiness_enthusiasm_e_121"].source_label == "enthusiasm"
    _evaluation_only(list(rows.values()), "ru")
    assert report.dropped == Counter(
        {
            "label 'disgust' not among the five classes": 1,
            "label 'fear' not among the five classes": 1,
            "unknown RESD emotion 'boredom'": 1,
            "audio file missing": 1,
        }
    )
    assert report.examples["audio file missing"].endswith("test.csv:4")
    assert check_manifest(out).ok
    assert main(["data", "import", "resd", str(root), "-o", str(out), "--resd-enthusiasm", "drop"]) == 0
    assert "resd_32_happiness_enthusiasm_e_121" not in {r.id for r in read_manifest(out)}


def test_resd_table_without_emotion_column_fails_naming_it(tmp_path: Path) -> None:
    root = _resd_root(tmp_path)
    (root / "test.csv").write_text("name,path,label\nx,test/x.wav,neutral\n")
    out = tmp_path / "resd.jsonl"
    with pytest.raises(
        UserError,
        match=r"test\.csv:1: column 'emotion' is missing \(the header has 'name', 'path', 'label'\)",
    ):
        run_import("resd", root, out)
    assert not out.exists()
