"""Selecting evaluation utterances from a manifest: seeded subsets, splits, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blsp_emo.errors import UserError
from blsp_emo.evaluation.dataset import load_utterances, manifest_fingerprint


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    (tmp_path / "a.wav").write_bytes(b"RIFF")  # existence is all that selection checks
    rows = [
        {
            "audio": "a.wav",
            "text": f"sentence {i}",
            "emotion": ["sad", "happy"][i % 2],
            "id": f"u{i}",
            "split": "test" if i < 8 else "train",
        }
        for i in range(10)
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_seeded_subset_is_repeatable_and_ordered(manifest: Path) -> None:
    a = [u.id for u in load_utterances(manifest, limit=4, seed=1)]
    assert a == [u.id for u in load_utterances(manifest, limit=4, seed=1)]
    assert a == sorted(a, key=lambda x: int(x[1:]))
    assert a != [u.id for u in load_utterances(manifest, limit=4, seed=2)]
    assert len(load_utterances(manifest, limit=100)) == 10


def test_split_and_fields(manifest: Path) -> None:
    test = load_utterances(manifest, split="test")
    assert len(test) == 8 and test[0].audio_path == manifest.parent / "a.wav"
    assert test[1].emotion == "happy" and test[1].text == "sentence 1"
    with pytest.raises(UserError, match="no rows to evaluate in split 'dev'"):
        load_utterances(manifest, split="dev")
    assert len(manifest_fingerprint(manifest)) == 64


def test_bad_rows_name_the_row(manifest: Path, tmp_path: Path) -> None:
    lines = manifest.read_text().splitlines()
    row = json.loads(lines[2])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], json.dumps({**row, "text": ""})]) + "\n")
    with pytest.raises(UserError, match="row 2: this task needs a transcript"):
        load_utterances(bad, need_text=True)
    bad.write_text("\n".join([lines[0], json.dumps({**row, "emotion": "joy"})]) + "\n")
    with pytest.raises(UserError, match="row 2: unknown emotion 'joy'"):
        load_utterances(bad)
    bad.write_text("\n".join([lines[0], json.dumps({**row, "audio": "missing.wav"})]) + "\n")
    with pytest.raises(UserError, match="row 2: audio file not found"):
        load_utterances(bad)
    bad.write_text("\n".join([lines[0], lines[0]]) + "\n")
    with pytest.raises(UserError, match="not unique"):
        load_utterances(bad)
