"""The LLM judge: prompt file, score parsing, and round trips through OpenAI-compatible servers.

A stub server on 127.0.0.1 answers with known scores, so that parsing, the cache and the averaging in
the empathy task are checked against numbers, and its request log against what must be sent. This
project's own ``blsp-emo serve`` on the tiny random model is the other server: its answers are noise,
so every score is unusable, which is exactly what the harness must count and report.
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


def test_http_errors_name_the_judge_endpoint_and_5xx_is_retried() -> None:
    # A real server on 127.0.0.1: first a 503 (retried by the client), then a 400 whose message is shown.
    import http.server
    import threading

    statuses: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            status = 503 if not statuses else 400
            statuses.append(status)
            data = json.dumps({"error": {"message": f"model 'm' not served ({status})"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        with pytest.raises(UserError) as error:
            Judge(url, "m", timeout=5, max_retries=1).complete("hi")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert statuses == [503, 400]
    assert str(error.value) == f"judge {url}/chat/completions: HTTP 400: model 'm' not served (400)"


class StubJudge:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 that gives fixed answers in turn (a JSON
    score line, a "Quality: q / Empathy: e" text, then an unusable answer) and logs every request."""

    ANSWERS = ('{"quality": 8, "empathy": 6}', "Quality: 4\nEmpathy: 9.5", "I would rather not rate this.")

    def __init__(self) -> None:
        import http.server
        import threading

        stub = self
        self.requests: list[dict] = []  # (body, authorization header) in arrival order
        self.answered: dict[str, str] = {}  # prompt -> the answer it got

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({**body, "path": self.path, "auth": self.headers.get("Authorization")})
                answer = stub.ANSWERS[(len(stub.requests) - 1) % len(stub.ANSWERS)]
                stub.answered[body["messages"][-1]["content"]] = answer
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def stub_judge():
    stub = StubJudge()
    yield stub
    stub.close()


def test_judge_scores_from_a_stub_server(
    stub_judge: StubJudge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_JUDGE_KEY", "sk-test")
    judge = Judge(stub_judge.url, "judge-model", api_key_env="STUB_JUDGE_KEY", seed=7, max_tokens=32)
    items = [
        ("I won the match!", "happy", "Congratulations!"),
        ("My cat is ill.", "sad", "I'm sorry."),
        ("The bus is late.", "angry", "Buses."),
        ("We moved house.", "neutral", "How was it?"),
    ]
    cache = tmp_path / "judge.jsonl"
    scores = judge.score(items, cache_path=cache)
    assert scores == [
        {"quality": 8.0, "empathy": 6.0},
        {"quality": 4.0, "empathy": 9.5},
        None,
        {"quality": 8.0, "empathy": 6.0},
    ]
    assert len(stub_judge.requests) == 4  # one request per reply
    first = stub_judge.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["model"] == "judge-model" and first["temperature"] == 0 and first["seed"] == 7
    assert first["max_tokens"] == 32
    assert first["messages"] == [{"role": "user", "content": build_judge_prompt(*items[0])}]
    # A rerun is answered from the cache; a new reply costs one request.
    assert judge.score(items, cache_path=cache) == scores and len(stub_judge.requests) == 4
    assert judge.score([*items, ("Hi.", "happy", "Hello!")], cache_path=cache)[4] == {
        "quality": 4.0,
        "empathy": 9.5,
    }
    assert len(stub_judge.requests) == 5 and len(cache.read_text().splitlines()) == 5


def test_empathy_with_a_stub_judge_averages_its_scores(
    stub_judge: StubJudge, emotion_manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "emp"
    argv = ["eval", "empathy", "--model", "random-tiny", "--data", str(emotion_manifest), "--limit", "4"]
    argv += ["-o", str(out), "--max-new-tokens", "4", "--teacher-max-new-tokens", "4", "--batch-size", "4"]
    argv += ["--judge-url", stub_judge.url, "--judge-model", "stub"]
    assert main(argv) == 0
    assert len(stub_judge.requests) == 4  # one per reply, none for the teacher texts
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for row in rows:  # each row carries the parse of the answer its own prompt got
        prompt = build_judge_prompt(row["text"], row["emotion"], row["reply"])
        assert row["judge"] == parse_scores(stub_judge.answered[prompt])
    valid = [r["judge"] for r in rows if r["judge"] is not None]
    assert len(valid) == 3  # answers 1, 2 and 4 are scores, answer 3 is not
    results = json.loads((out / "results.json").read_text())
    judge = results["metrics"]["judge"]
    assert judge["judged"] == 3 and judge["unusable"] == 1 and judge["judge_model"] == "stub"
    assert judge["quality"]["mean"] == pytest.approx((8 + 4 + 8) / 3, abs=1e-6)
    assert judge["empathy"]["mean"] == pytest.approx((6 + 9.5 + 6) / 3, abs=1e-6)
    assert results["headline"]["judge_quality"] == judge["quality"]["mean"]
    assert results["headline"]["judge_empathy"] == judge["empathy"]["mean"]
    assert "quality **6.67**" in (out / "report.md").read_text()
    # The rerun finds every score in the cache: no request reaches the judge.
    assert main(argv) == 0 and len(stub_judge.requests) == 4
    assert json.loads((out / "results.json").read_text())["metrics"]["judge"] == judge


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
