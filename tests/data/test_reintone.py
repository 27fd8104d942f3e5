"""Re-intoned real speech (evaluation only): a human recording rendered in each emotion's prosody."""

from __future__ import annotations

import json
from pathlib import Path

from blsp_emo.audio import load_audio
from blsp_emo.data.prosody import measure
from blsp_emo.data.reintone import ENGINE, build_reintoned

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def test_a_real_clip_reintoned_moves_its_prosody_the_way_each_emotion_does(tmp_path: Path) -> None:
    wav = sorted(LIBRIVOX.glob("*.wav"))[0]
    assert wav.is_file(), "pocketsphinx-testdata is part of the set-up (scripts/setup.sh installs it)"
    source = tmp_path / "real.jsonl"
    text = "and mister john dashwood had then leisure to consider"
    source.write_text(json.dumps({"id": "real0", "audio": str(wav), "text": text, "split": "test"}) + "\n")
    manifest = build_reintoned(source, tmp_path / "out")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["emotion"] for r in rows] == ["neutral", "happy", "angry", "sad", "surprise"]
    assert {r["split"] for r in rows} == {"test"} and {r["engine"] for r in rows} == {ENGINE}
    assert all(r["text"] == text and r["source"] == str(wav) for r in rows)
    p = {
        r["emotion"]: measure(load_audio(tmp_path / "out" / r["audio"]), 16000, words=len(text.split()))
        for r in rows
    }
    assert p["happy"].f0_mean > p["neutral"].f0_mean > p["sad"].f0_mean
    assert p["surprise"].f0_mean > p["neutral"].f0_mean
    assert p["sad"].f0_range < p["neutral"].f0_range < p["happy"].f0_range
    assert p["angry"].rms > p["neutral"].rms > p["sad"].rms
    assert p["sad"].rate < p["neutral"].rate < p["angry"].rate
    # resumable: a second run keeps the files it finds
    stamp = (tmp_path / "out" / rows[0]["audio"]).stat().st_mtime_ns
    build_reintoned(source, tmp_path / "out")
    assert (tmp_path / "out" / rows[0]["audio"]).stat().st_mtime_ns == stamp


def test_data_reintone_command_writes_the_test_set_and_names_a_missing_manifest(
    tmp_path: Path, capsys
) -> None:
    from blsp_emo.cli import main

    wav = sorted(LIBRIVOX.glob("*.wav"))[1]
    source = tmp_path / "real.jsonl"
    source.write_text(
        json.dumps({"id": "r1", "audio": str(wav), "text": "a few words here", "split": "test"}) + "\n"
    )
    assert main(["data", "reintone", str(source), "-o", str(tmp_path / "out")]) == 0
    assert "evaluation only" in capsys.readouterr().out
    assert len((tmp_path / "out" / "reintoned.jsonl").read_text().splitlines()) == 5
    assert main(["data", "reintone", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "x")]) == 2
    assert "no such manifest" in capsys.readouterr().err
