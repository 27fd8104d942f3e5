"""Per-language breakdown of evaluation results (report.md, results.json and the comparison)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.evaluation.report import language_breakdown, language_lines, write_result
from blsp_emo.evaluation.tasks.common import TaskResult


def _utterances(languages: list[str]) -> list[Utterance]:
    return [Utterance(f"u{i}", Path(f"u{i}.wav"), "t", "happy", language=x) for i, x in enumerate(languages)]


def _result() -> TaskResult:
    return TaskResult("ser", {"name": "m"}, {"n": 4}, {}, {}, {"accuracy": 0.5})


def test_breakdown_means_each_languages_records() -> None:
    utterances = _utterances(["en", "zh", "zh", "en"])
    records = [
        {"id": "u0", "correct": True, "head": "happy", "emotion": "happy", "user_text": "x"},
        {"id": "u1", "correct": False, "head": "sad", "emotion": "happy"},
        {"id": "u2", "correct": True, "head": None, "emotion": "happy"},
        {"id": "u3", "correct": False, "head": "happy", "emotion": "happy", "recognition": {"correct": True}},
        {"id": "elsewhere", "correct": True},  # not an evaluated utterance: ignored
    ]
    table = language_breakdown(utterances, records)
    assert table["en"] == {"n": 2, "accuracy": 0.5, "head_accuracy": 1.0, "emotion_accuracy": 1.0}
    assert table["zh"] == {"n": 2, "accuracy": 0.5, "head_accuracy": 0.0}
    # One language: nothing to break down.
    assert language_breakdown(_utterances(["en", "en"]), records) == {}


def test_write_result_adds_the_breakdown_and_the_comparison_lists_it(tmp_path: Path) -> None:
    utterances = _utterances(["en", "zh", "zh"])
    rows = [{"id": "u0", "correct": True}, {"id": "u1", "correct": False}, {"id": "u2", "correct": True}]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = _result()
    write_result(result, tmp_path, utterances)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"]["languages"]["zh"] == {"n": 2, "accuracy": 0.5}
    report = (tmp_path / "report.md").read_text()
    assert "### Per language" in report and "| zh | 2 | 0.500 |" in report
    lines = language_lines({"m": {"ser": result}, "other": {"ser": _result()}})
    assert lines[0] == "ser.accuracy per language:"
    assert "| m | 1.000 | 0.500 |" in lines and not any(line.startswith("| other") for line in lines)
    # A single-language data set writes no breakdown.
    single = _result()
    write_result(single, tmp_path, _utterances(["zh", "zh", "zh"]))
    assert "languages" not in single.metrics and language_lines({"m": {"ser": single}}) == []


@pytest.mark.parametrize("field", ["cosine", "credit"])
def test_other_tasks_fields_are_named_like_their_headline(field: str) -> None:
    records = [{"id": "u0", field: 0.25}, {"id": "u1", field: 0.75}]
    table = language_breakdown(_utterances(["en", "zh"]), records)
    name = {"cosine": "cosine", "credit": "emotion_agreement"}[field]
    assert table == {"en": {"n": 1, name: 0.25}, "zh": {"n": 1, name: 0.75}}
