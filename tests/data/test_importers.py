"""Each importer on a tiny fixture tree in its corpus's real layout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from datafix import write_mp4, write_wav

from blsp_emo.cli import main
from blsp_emo.data.importers import run_import
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
