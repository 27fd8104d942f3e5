"""``data import hf`` (Hugging Face datasets) and ``data import lhotse`` on small datasets made here.

The datasets hold a few short synthetic tones; they are built with the real ``datasets`` and ``lhotse``
libraries (save_to_disk folders, parquet, an audiofolder, a CutSet manifest) and imported through the CLI.
Loading by Hub name cannot run offline: only its error is tested.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from blsp_emo.cli import main
from blsp_emo.data.manifest import read_manifest


def _require(name: str):
    try:
        return __import__(name)
    except ImportError:
        pytest.fail(
            f"{name} is a promised dependency of data import: run scripts/setup.sh (the [ecosystem] extra)"
        )


def _tone(i: int, rate: int = 22050) -> np.ndarray:
    t = np.arange(int(rate * (0.4 + 0.1 * i))) / rate
    return (0.3 * np.sin(2 * np.pi * (180 + 25 * i) * t)).astype(np.float32)


def _wav_bytes(i: int, rate: int = 22050) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, _tone(i, rate), rate, format="WAV")
    return buffer.getvalue()


def _split(rows: list[tuple[int, int]], names: list[str], bad: int | None = None):
    """A Dataset of (clip number, label index) rows: Audio (encoded WAV bytes), sentence, ClassLabel."""
    hf = _require("datasets")
    features = hf.Features(
        {
            "audio": hf.Audio(),
            "sentence": hf.Value("string"),
            "emotion": hf.ClassLabel(names=names),
            "speaker_id": hf.Value("string"),
            "locale": hf.Value("string"),
        }
    )
    data = {
        "audio": [
            {"bytes": b"not audio at all" if i == bad else _wav_bytes(i), "path": f"clip{i}.wav"}
            for i, _ in rows
        ],
        "sentence": [f"sentence number {i}" for i, _ in rows],
        "emotion": [label for _, label in rows],
        "speaker_id": [f"spk{i % 2}" for i, _ in rows],
        "locale": ["fr-FR" if i % 2 else "English" for i, _ in rows],
    }
    # Built as plain structs and cast: Audio's own encoder needs the optional torchcodec package.
    return hf.Dataset.from_dict(data).cast(features)


NAMES = ["neu", "hap", "ang", "sad", "fear"]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A DatasetDict (train: 4 rows, validation: 2) written with save_to_disk."""
    hf = _require("datasets")
    folder = tmp_path / "saved"
    hf.DatasetDict(
        {
            "train": _split([(0, 0), (1, 1), (2, 2), (3, 3)], NAMES),
            "validation": _split([(4, 1), (5, 2)], NAMES),
        }
    ).save_to_disk(str(folder))
    return folder


def _run(*args: str, capsys=None) -> tuple[int, str]:
    code = main(["data", "import", *args])
    out = capsys.readouterr() if capsys is not None else None
    return code, (out.out + out.err) if out else ""


def test_hf_save_to_disk_folder_imports_every_split(saved, tmp_path, capsys):
    out = tmp_path / "m" / "hf.jsonl"
    code, printed = _run("hf", str(saved), "-o", str(out), capsys=capsys)
    assert code == 0
    rows = list(read_manifest(out))
    assert [(r.split, r.emotion, r.source_label) for r in rows] == [
        ("train", "neutral", "neu"),
        ("train", "happy", "hap"),
        ("train", "angry", "ang"),
        ("train", "sad", "sad"),
        ("dev", "happy", "hap"),
        ("dev", "angry", "ang"),
    ]
    assert rows[1].text == "sentence number 1" and rows[1].speaker == "spk1"
    assert [r.language for r in rows[:2]] == ["en", "fr"]  # a language name and a locale, as codes
    for number, row in zip([0, 1, 2, 3, 4, 5], rows):
        audio, rate = sf.read(row.audio_path)
        assert rate == 16000 and row.audio_path.parent.parent == out.parent / "hf_audio"
        assert row.duration == pytest.approx((0.4 + 0.1 * number), abs=2e-3)
        assert audio.size == pytest.approx(16000 * (0.4 + 0.1 * number), abs=2)
        # the decoded tone: its strongest frequency is the one written
        peak = np.argmax(np.abs(np.fft.rfft(audio))) * rate / audio.size
        assert peak == pytest.approx(180 + 25 * number, abs=3)
    assert "validation -> dev" in printed and "4 clips decoded, 0 already written" in printed
    assert "saved train: 100%" in printed and "4/4" in printed  # the progress bar (stderr)


def test_hf_import_resumes_without_decoding_again(saved, tmp_path, capsys):
    out = tmp_path / "hf.jsonl"
    assert _run("hf", str(saved), "-o", str(out), "--split", "train", capsys=capsys)[0] == 0
    folder = tmp_path / "hf_audio" / "train"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.wav")}
    assert len(stamps) == 4
    # An interrupted run: one clip never written, a half-written temporary file left behind.
    (folder / "000002.wav").unlink()
    (folder / ".000002.wav.tmp999").write_bytes(b"RIFF")
    out.unlink()
    code, printed = _run("hf", str(saved), "-o", str(out), "--split", "train", capsys=capsys)
    assert code == 0
    assert "1 clips decoded, 3 already written" in printed
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.wav")}
    assert {k: v for k, v in after.items() if k != "000002.wav"} == {
        k: v for k, v in stamps.items() if k != "000002.wav"
    }
    assert len(list(read_manifest(out))) == 4
    assert sf.read(folder / "000002.wav")[0].size > 0


def test_hf_audio_folder_of_another_dataset_is_refused(saved, tmp_path, capsys):
    hf = _require("datasets")
    out = tmp_path / "hf.jsonl"
    assert _run("hf", str(saved), "-o", str(out), "--split", "train", capsys=capsys)[0] == 0
    other = tmp_path / "other"
    hf.DatasetDict({"train": _split([(7, 0), (8, 1)], NAMES)}).save_to_disk(str(other))
    code, printed = _run("hf", str(other), "-o", str(out), capsys=capsys)
    assert code != 0 and "holds audio of another dataset split 'train'" in printed


def test_hf_parquet_file_and_audiofolder(saved, tmp_path, capsys):
    hf = _require("datasets")
    parquet = tmp_path / "train.parquet"
    hf.load_from_disk(str(saved))["validation"].to_parquet(str(parquet))
    out = tmp_path / "pq.jsonl"
    assert _run("hf", str(parquet), "-o", str(out), capsys=capsys)[0] == 0
    assert [(r.emotion, r.text) for r in read_manifest(out)] == [
        ("happy", "sentence number 4"),
        ("angry", "sentence number 5"),
    ]
    # audiofolder: audio files + metadata.csv (file_name, transcription, label)
    folder = tmp_path / "af"
    (folder / "clips").mkdir(parents=True)
    for i in range(3):
        sf.write(folder / "clips" / f"c{i}.flac", _tone(i, 16000), 16000)
    (folder / "metadata.csv").write_text(
        "file_name,transcription,label\nclips/c0.flac,hello,neutral\nclips/c1.flac,good day,joy\n"
        "clips/c2.flac,go away,anger\n"
    )
    out = tmp_path / "af.jsonl"
    code, printed = _run("hf", str(folder), "-o", str(out), "--language", "de", capsys=capsys)
    assert code == 0, printed
    rows = list(read_manifest(out))
    assert [(r.emotion, r.text, r.language) for r in rows] == [
        ("neutral", "hello", "de"),
        ("happy", "good day", "de"),
        ("angry", "go away", "de"),
    ]


def test_hf_bad_input_is_named(saved, tmp_path, capsys):
    hf = _require("datasets")
    out = tmp_path / "bad.jsonl"
    # a column that is not there
    code, printed = _run("hf", str(saved), "-o", str(out), "--text-column", "words", capsys=capsys)
    assert (
        code != 0 and "no column 'words' (text; --text-column names it)" in printed and "sentence" in printed
    )
    # a label without a counterpart, and no map: every unknown label is named, before any decoding
    odd = tmp_path / "odd"
    hf.DatasetDict({"train": _split([(0, 0), (1, 4)], NAMES)}).save_to_disk(str(odd))
    code, printed = _run("hf", str(odd), "-o", str(out), capsys=capsys)
    assert code != 0 and "'fear'" in printed and "--label-map fear=" in printed
    assert not (tmp_path / "bad_audio").exists()
    code, printed = _run("hf", str(odd), "-o", str(out), "--label-map", "fear=", capsys=capsys)
    assert code == 0 and "label 'fear' dropped by --label-map" in printed
    assert [r.emotion for r in read_manifest(out)] == ["neutral"]
    # undecodable audio: that row is dropped and named; nothing decodable at all is an error
    broken = tmp_path / "broken"
    hf.DatasetDict({"train": _split([(0, 0), (1, 1), (2, 2)], NAMES, bad=1)}).save_to_disk(str(broken))
    out2 = tmp_path / "broken.jsonl"
    code, printed = _run("hf", str(broken), "-o", str(out2), capsys=capsys)
    assert code == 0 and "audio undecodable" in printed and "train-000001 (clip1.wav" in printed
    assert [r.id for r in read_manifest(out2)] == ["train-000000", "train-000002"]
    all_bad = tmp_path / "all_bad"
    hf.DatasetDict({"train": _split([(3, 0)], NAMES, bad=3)}).save_to_disk(str(all_bad))
    code, printed = _run("hf", str(all_bad), "-o", str(tmp_path / "x.jsonl"), capsys=capsys)
    assert code != 0 and "no usable utterances" in printed and "audio undecodable" in printed
    # a split the dataset does not have
    code, printed = _run("hf", str(saved), "-o", str(out), "--split", "test", capsys=capsys)
    assert code != 0 and "no split 'test' (splits: train, validation)" in printed


def test_hf_hub_name_offline_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, printed = _run(
        "hf",
        "nobody-here/no-such-dataset-xyz",
        "-o",
        str(tmp_path / "h.jsonl"),
        "--config",
        "c",
        capsys=capsys,
    )
    assert code != 0
    assert (
        "nobody-here/no-such-dataset-xyz: no such local folder or file, and the Hugging Face Hub" in printed
    )


def _cuts(tmp_path: Path) -> Path:
    """A CutSet: 3 whole-file cuts (one per WAV) and 1 cut of the middle of a longer 2-channel recording."""
    lhotse = _require("lhotse")
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

    cuts = []
    labels = ["neutral", "joy", "sad"]
    for i in range(3):
        path = tmp_path / "wav" / f"u{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, _tone(i, 16000), 16000)
        rec = Recording.from_file(path)
        sup = SupervisionSegment(
            id=f"s{i}", recording_id=rec.id, start=0, duration=rec.duration, text=f"words {i}",
            language="English", speaker=f"spk{i}", custom={"emotion": labels[i], "split": "train" if i else "dev"},
        )  # fmt: skip
        cuts.append(
            MonoCut(
                id=f"cut{i}", start=0, duration=rec.duration, channel=0, recording=rec, supervisions=[sup]
            )
        )
    long = tmp_path / "wav" / "long.wav"
    stereo = np.stack([_tone(5, 16000)[:16000], _tone(5, 16000)[:16000]], axis=1)
    stereo = np.concatenate([np.zeros((8000, 2), np.float32), stereo, np.zeros((8000, 2), np.float32)])
    sf.write(long, stereo, 16000)
    rec = Recording.from_file(long)
    sup = SupervisionSegment(
        id="s9", recording_id=rec.id, start=0.5, duration=1.0, channel=[0, 1], text="the middle", language="de",
        custom={"emotion": "angry"},
    )  # fmt: skip
    cuts.append(
        MonoCut(id="cut9", start=0.5, duration=1.0, channel=[0, 1], recording=rec, supervisions=[sup])
    )
    path = tmp_path / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    assert lhotse.load_manifest(path) is not None
    return path


def test_lhotse_cuts_import_in_place_and_decoded(tmp_path, capsys):
    cuts = _cuts(tmp_path)
    out = tmp_path / "out" / "l.jsonl"
    code, printed = _run("lhotse", str(cuts), "-o", str(out), capsys=capsys)
    assert code == 0, printed
    rows = list(read_manifest(out))
    assert [(r.id, r.emotion, r.split, r.language, r.text) for r in rows] == [
        ("cut0", "neutral", "dev", "en", "words 0"),
        ("cut1", "happy", "train", "en", "words 1"),
        ("cut2", "sad", "train", "en", "words 2"),
        ("cut9", "angry", "train", "de", "the middle"),
    ]
    assert rows[0].audio_path.resolve() == (tmp_path / "wav" / "u0.wav").resolve()  # whole file: in place
    assert rows[1].speaker == "spk1" and rows[1].source_label == "joy"
    middle = rows[3].audio_path
    assert middle.parent == out.parent / "l_audio"
    audio, rate = sf.read(middle)
    assert rate == 16000 and audio.ndim == 1 and audio.size == 16000  # the 1 s span, channels mixed
    assert np.abs(audio[:800]).max() > 0.1  # the tone, not the silence around it
    assert "3 cuts use their audio file in place, 1 decoded, 0 reused" in printed
    stamp = middle.stat().st_mtime_ns
    out.unlink()
    code, printed = _run("lhotse", str(cuts), "-o", str(out), capsys=capsys)
    assert code == 0 and "0 decoded, 1 reused" in printed and middle.stat().st_mtime_ns == stamp


def test_lhotse_bad_input_is_named(tmp_path, capsys):
    cuts = _cuts(tmp_path)
    code, printed = _run(
        "lhotse", str(cuts), "-o", str(tmp_path / "o.jsonl"), "--label-column", "mood", capsys=capsys
    )
    assert code == 0 and "kept 4" in printed and "(none)" in printed  # no such field: unlabelled
    code, printed = _run(
        "lhotse",
        str(cuts),
        "-o",
        str(tmp_path / "o.jsonl"),
        "--label-map",
        "joy=",
        "--split",
        "test",
        capsys=capsys,
    )
    assert code == 0 and "label 'joy' dropped by --label-map" in printed
    assert {r.split for r in read_manifest(tmp_path / "o.jsonl")} == {"test"}
    # an unknown label without a map
    from lhotse import CutSet

    odd = CutSet.from_file(cuts).map(
        lambda c: c.map_supervisions(lambda s: s.with_custom("emotion", "disgust")) if c.id == "cut2" else c
    )
    odd_path = tmp_path / "odd.jsonl.gz"
    odd.to_file(odd_path)
    code, printed = _run("lhotse", str(odd_path), "-o", str(tmp_path / "o.jsonl"), capsys=capsys)
    assert code != 0 and "'disgust'" in printed and "--label-map disgust=" in printed
    # not a cuts manifest
    junk = tmp_path / "junk.jsonl.gz"
    junk.write_bytes(b"no gzip here")
    code, printed = _run("lhotse", str(junk), "-o", str(tmp_path / "o.jsonl"), capsys=capsys)
    assert code != 0 and "not a lhotse CutSet manifest" in printed
    # a recording file that cannot be decoded (the cut spans part of it, so it must be decoded)
    (tmp_path / "wav" / "long.wav").write_bytes(b"RIFF garbage")
    code, printed = _run("lhotse", str(cuts), "-o", str(tmp_path / "o2.jsonl"), capsys=capsys)
    assert code == 0 and "audio undecodable" in printed and "cut9" in printed
    assert [r.id for r in read_manifest(tmp_path / "o2.jsonl")] == ["cut0", "cut1", "cut2"]


def test_split_names_a_dataset_split_only_for_hf(saved, tmp_path, capsys):
    # For the corpus importers --split forces train, dev or test; for hf it picks the dataset's split
    # (validation -> dev in the manifest).
    table = tmp_path / "t.csv"
    table.write_text("audio\nx.wav\n")
    code, printed = _run(
        "generic", str(table), "-o", str(tmp_path / "g.jsonl"), "--split", "validation", capsys=capsys
    )
    assert code != 0 and "--split validation: expected one of train, dev, test" in printed
    out = tmp_path / "v.jsonl"
    assert _run("hf", str(saved), "-o", str(out), "--split", "validation", capsys=capsys)[0] == 0
    assert [r.split for r in read_manifest(out)] == ["dev", "dev"]
    assert _run("hf", str(saved), "-o", str(out), "--split", "dev", capsys=capsys)[0] == 0  # the same split
    assert [r.id for r in read_manifest(out)] == ["validation-000000", "validation-000001"]
