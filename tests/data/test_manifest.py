"""Manifest schema, lazy reading, atomic writing, crash-safe appending and ``data check``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datafix import write_wav

from blsp_emo.cli import main
from blsp_emo.data.manifest import (
    ManifestRow,
    check_manifest,
    read_manifest,
    write_manifest,
)
from blsp_emo.errors import UserError
from blsp_emo.io import JsonlAppender, read_jsonl_dicts


def test_roundtrip_relative_paths_and_extra_fields(tmp_path: Path) -> None:
    write_wav(tmp_path / "audio" / "a.wav", 0.5)
    rows = [
        ManifestRow(
            audio="audio/a.wav", text="hi", emotion="sad", duration=0.5, id="a", extra={"target": "x"}
        )
    ]
    out = tmp_path / "m.jsonl"
    assert write_manifest(out, rows) == 1
    (back,) = list(read_manifest(out))
    assert back.audio_path == tmp_path.resolve() / "audio" / "a.wav"
    assert back.audio_path.is_file()
    assert back.emotion == "sad" and back.extra == {"target": "x"}
    assert json.loads(out.read_text())["target"] == "x"
    assert not list(tmp_path.glob(".*tmp*"))


def test_read_is_lazy_and_strict_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav"}\n{not json\n')
    rows = read_manifest(path)
    assert next(rows).audio == "a.wav"  # first row comes before the bad line is read
    with pytest.raises(UserError, match=r"m\.jsonl:2"):
        next(rows)


def test_appender_cuts_partial_line_left_by_crash(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"audio": "a.wav"}\n{"audio": "b.w')  # a crash mid-line
    with JsonlAppender(path) as out:
        out.write({"audio": "c.wav"})
    assert [d["audio"] for _, d in read_jsonl_dicts(path)] == ["a.wav", "c.wav"]


def test_check_names_file_and_line_of_every_bad_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_wav(tmp_path / "good.wav", 0.5)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....garbage")
    lines = [
        {"audio": "good.wav", "text": "ok", "emotion": "happy", "duration": 0.5},
        {"audio": "missing.wav", "text": "x"},
        {"audio": "good.wav", "emotion": "joyful"},
        {"audio": "good.wav", "duration": -1},
        "{this is not json",
        {"audio": "broken.wav"},
        {"audio": "good.wav", "duration": 3.0},
        {"text": "no audio"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    report = check_manifest(path)
    assert report.rows == 8
    text = "\n".join(report.problems)
    for number, needle in [
        (2, "audio file not found"),
        (3, "unknown emotion label 'joyful'"),
        (4, "bad duration"),
        (5, "malformed JSON"),
        (6, "unreadable audio"),
        (7, "duration 3.00 s does not match"),
        (8, "field 'audio' is missing"),
    ]:
        assert f"m.jsonl:{number}: {needle}" in text, text
    assert ":1:" not in text and len(report.problems) == 7
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "m.jsonl:3" in out and "7 problem" in out


def test_check_ok_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_wav(tmp_path / "good.wav", 0.5)
    path = tmp_path / "m.jsonl"
    write_manifest(path, [ManifestRow(audio="good.wav", duration=0.5)])
    assert main(["data", "check", str(path)]) == 0
    assert main(["data", "check", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: no such manifest file" in capsys.readouterr().err


def test_check_reports_bad_encoding_at_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_wav(tmp_path / "good.wav", 0.5)
    path = tmp_path / "latin1.jsonl"
    good = json.dumps({"audio": "good.wav", "text": "ok", "duration": 0.5}).encode()
    bad = '{"audio": "good.wav", "text": "caf\u00e9"}'.encode("latin-1")  # 0xe9 is not UTF-8
    path.write_bytes(good + b"\n" + bad + b"\n" + good + b"\n")
    report = check_manifest(path)
    assert report.rows == 3
    assert len(report.problems) == 1 and report.problems[0].startswith(f"{path}:2: not valid UTF-8")
    assert main(["data", "check", str(path)]) == 1
    assert "latin1.jsonl:2: not valid UTF-8" in capsys.readouterr().out
