"""EvalOptions from the command line, its checks, the systems' typed pieces and the text-answer cache key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from blsp_emo.cli import build_parser
from blsp_emo.errors import UserError
from blsp_emo.evaluation.commands import eval_options
from blsp_emo.evaluation.options import DEFAULT_TASKS, EvalOptions
from blsp_emo.evaluation.systems import emotion_from_prediction
from blsp_emo.model.types import DecodingOptions


def _options(*argv: str) -> EvalOptions:
    return eval_options(build_parser().parse_args(["eval", *argv]))


def test_eval_all_flags_reach_the_options(tmp_path: Path) -> None:
    options = _options(
        "all", "--model", "random-tiny", "cascade-asr@random-tiny", "--data", "m.jsonl",
        "--semantic-data", "s.jsonl", "--tasks", "semantic", "multiturn", "--turns", "4",
        "--batch-size", "2", "--max-new-tokens", "9", "--temperature", "0.5", "--top-p", "0.8",
        "--seed", "3", "--limit", "7", "--split", "test", "--teacher-targets", "a.jsonl", "b.jsonl",
        "--judge-url", "http://j/v1", "--judge-model", "judge", "--recompute", "--cache-dir", str(tmp_path),
        "-o", "out", "--llm", "random-tiny", "--asr", "base",
    )  # fmt: skip
    assert options.models == ("random-tiny", "cascade-asr@random-tiny")
    assert options.tasks == ("semantic", "multiturn") and options.turns == 4
    assert options.manifest("semantic") == Path("s.jsonl") and options.manifest("multiturn") == Path(
        "m.jsonl"
    )
    assert options.teacher_targets == (Path("a.jsonl"), Path("b.jsonl"))
    assert (options.batch_size, options.limit, options.split, options.seed) == (2, 7, "test", 3)
    assert options.recompute and options.cache_dir == tmp_path and options.output == Path("out")
    assert (options.llm, options.asr, options.judge_model) == ("random-tiny", "base", "judge")
    # Decoding is a DecodingOptions; the batch size is not part of it.
    assert options.decoding == DecodingOptions(max_new_tokens=9, temperature=0.5, top_p=0.8, seed=3)


def test_eval_task_options_and_defaults() -> None:
    options = _options("instructions", "--model", "random-tiny", "--data", "spoken.jsonl")
    assert options.tasks == ("instructions",) and options.models == ("random-tiny",)
    assert options.manifest("instructions") == Path("spoken.jsonl")
    assert options.max_new_tokens is None and options.decoding.max_new_tokens == 128  # tasks pick their own
    assert options.decoding.greedy and options.turns == 3 and options.teacher_targets == ()
    every = _options("all", "--model", "random-tiny", "--data", "m.jsonl")
    assert every.tasks == DEFAULT_TASKS
    with_instructions = _options("all", "--data", "m.jsonl", "--instructions-data", "i.jsonl")
    assert with_instructions.tasks == (*DEFAULT_TASKS, "instructions")
    assert len(with_instructions.models) == 1  # the default model


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"max_new_tokens": 0}, "--max-new-tokens must be at least 1"),
        ({"teacher_max_new_tokens": 0}, "--teacher-max-new-tokens must be at least 1"),
        ({"turns": 5}, "--turns must be between 2 and 4"),
        ({"judge_url": "http://x/v1"}, "needs both --judge-url and --judge-model"),
        ({"models": ("random-tiny", "random-tiny")}, "each --model may be given once"),
        ({"tasks": ("instructions",)}, "--instructions-data"),
        ({"tasks": ("sre",)}, "unknown task 'sre'"),
        ({"ser_train": Path("/no/such/train.jsonl")}, "--ser-train"),
    ],
)
def test_check_refuses_bad_options(emotion_manifest: Path, changes: dict, message: str) -> None:
    options = EvalOptions(models=("random-tiny",), tasks=("ser",), data=emotion_manifest)
    options.check()  # the base options are fine
    with pytest.raises(UserError, match=message):
        dataclasses.replace(options, **changes).check()


def test_emotion_from_prediction_takes_labels_scores_and_none() -> None:
    assert emotion_from_prediction("sad") == "sad"
    assert emotion_from_prediction("joy") is None  # not one of the five emotions
    assert emotion_from_prediction({"happy": 0.2, "angry": 0.7, "sad": 0.1}) == "angry"
    assert emotion_from_prediction({}) is None and emotion_from_prediction(None) is None


def test_text_answer_cache_key_keeps_earlier_keys_and_separates_penalties(tmp_path: Path) -> None:
    from blsp_emo.evaluation.tasks.common import cached_text_answers
    from blsp_emo.model.types import Reply

    class Llm:  # a System stand-in: counts what it is asked
        llm_name = "llm"

        def __init__(self) -> None:
            self.asked: list[str] = []

        def text_answers(self, prompt, texts, options, batch_size, desc=""):
            self.asked += texts
            return [Reply(f"{t}!") for t in texts]

    llm = Llm()
    plain = DecodingOptions(max_new_tokens=6, seed=0)
    assert [r.text for r in cached_text_answers(llm, "sys", ["hi"], plain, 2, tmp_path, "")] == ["hi!"]
    [row] = [json.loads(line) for line in (tmp_path / "text-llm.jsonl").read_text().splitlines()]
    # the key of the earlier GenerationSettings: [llm, prompt, text, max_new_tokens, temperature, top_p, seed]
    assert row["key"] == hashlib.sha256(json.dumps(["llm", "sys", "hi", 6, 0.0, 1.0, 0]).encode()).hexdigest()
    cached_text_answers(llm, "sys", ["hi"], plain, 2, tmp_path, "")
    assert llm.asked == ["hi"]  # answered from the cache
    cached_text_answers(llm, "sys", ["hi"], plain.replace(repetition_penalty=1.1), 2, tmp_path, "")
    assert llm.asked == ["hi", "hi"]  # other decoding: another key
