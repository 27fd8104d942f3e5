"""The LLM judge: prompt file, score parsing, and a real round trip through an OpenAI-compatible server.

The server is this project's own ``blsp-emo serve`` on the tiny random model: its answers are noise, so
every score is unusable, which is exactly what the harness must count and report.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from blsp_emo.cli import main
from blsp_emo.errors import UserError
from blsp_emo.evaluation.judge import Judge, build_judge_prompt, judge_prompt_template, parse_scores


def test_prompt_file_has_the_placeholders() -> None:
    template = judge_prompt_template()
    for name in ("{transcript}", "{emotion}", "{response}"):
        assert name in template
    prompt = build_judge_prompt("I lost my keys.", "sad", "Oh no, let's retrace your steps.")
    assert "I lost my keys." in prompt and "Oh no, let's retrace" in prompt
    assert '{"quality": 7, "empathy": 5}' in prompt  # literal braces survive formatting


@pytest.mark.parametrize(
    ("answer", "scores"),
    [
        ('{"quality": 8, "empathy": 6}', {"quality": 8.0, "empathy": 6.0}),
        ('Sure! {"quality": 7.5, "empathy": 9}\nThanks', {"quality": 7.5, "empathy": 9.0}),
        ("Quality: 4\nEmpathy: 3", {"quality": 4.0, "empathy": 3.0}),
        ('{"quality": 8}', None),  # a scale missing
        ('{"quality": 11, "empathy": 5}', None),  # out of range
        ('{"quality": true, "empathy": 5}', None),
        ("no idea", None),
        ("", None),
    ],
)
def test_parse_scores(answer: str, scores: dict | None) -> None:
    assert parse_scores(answer) == scores


def test_unreachable_endpoint_is_a_user_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="unreachable"):
        Judge(f"http://127.0.0.1:{port}/v1", "m", timeout=5).complete("hi")


@pytest.fixture(scope="module")
def served_random_tiny(tmp_path_factory: pytest.TempPathFactory):
    """``blsp-emo serve --model random-tiny`` on a free local port, stopped after the module."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "blsp_emo.cli", "serve", "--model", "random-tiny", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"blsp-emo serve exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    model = json.loads(r.read())["data"][0]["id"]
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("blsp-emo serve did not start in 120 s")
        yield url, model
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_judge_round_trip_and_cache(served_random_tiny, tmp_path: Path) -> None:
    url, model = served_random_tiny
    judge = Judge(url, model, max_tokens=4)
    assert isinstance(judge.complete("Rate this."), str)
    cache = tmp_path / "judge.jsonl"
    items = [("I won the match!", "happy", "Congratulations!"), ("My cat is ill.", "sad", "I'm sorry.")]
    scores = judge.score(items, cache_path=cache)
    assert scores == [None, None]  # noise from a random model is never a valid score
    assert len(cache.read_text().splitlines()) == 2
    judge.score(items, cache_path=cache)  # answered from the cache
    assert len(cache.read_text().splitlines()) == 2


def test_empathy_with_judge_reports_unusable(
    served_random_tiny, emotion_manifest: Path, tmp_path: Path
) -> None:
    url, model = served_random_tiny
    out = tmp_path / "emp"
    argv = [
        "eval",
        "empathy",
        "--model",
        "random-tiny",
        "--data",
        str(emotion_manifest),
        "--limit",
        "2",
        "-o",
        str(out),
    ]
    argv += [
        "--max-new-tokens",
        "4",
        "--teacher-max-new-tokens",
        "4",
        "--judge-url",
        url,
        "--judge-model",
        model,
    ]
    assert main(argv) == 0
    judge = json.loads((out / "results.json").read_text())["metrics"]["judge"]
    assert judge["judged"] == 0 and judge["unusable"] == 2 and judge["judge_model"] == model
