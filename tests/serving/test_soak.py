"""Soak: one server (the tiny random model, its own process) and many concurrent clients for about a
minute, mixing valid requests with bad inputs, disconnects, slow audio URLs and slow clients.

Every valid request must be answered correctly and without waiting long behind hostile ones, and the
server's peak RSS must stay bounded. Traffic goes to 127.0.0.1 only; loops are bounded in count and time.
The figures are printed (``pytest -s``) for README's "Reliability and security" section.
Duration: ``BLSP_EMO_SOAK_SECONDS`` (default 60).
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from slowserver import SlowServer

from blsp_emo.audio import wav_bytes
from blsp_emo.serving.server import free_port

pytestmark = pytest.mark.soak

SECONDS = float(os.environ.get("BLSP_EMO_SOAK_SECONDS", "60"))
CLIENTS = 12  # concurrent client threads
MAX_REQUESTS = 4000  # a hard bound on the whole run, whatever the speed
URL = "/v1/chat/completions"
VALID_TOKENS = 8  # every valid request asks for this many: they share batches
MAX_VALID_LATENCY_S = 20.0  # no valid request may wait longer than this (the batch of a hostile one ends)
P95_VALID_LATENCY_S = 8.0
RSS_GROWTH_LIMIT = 1024**3  # peak RSS may grow by at most 1 GiB over the RSS at start


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _flac_silence(seconds: int) -> bytes:
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", 16_000, 1, format="FLAC", subtype="PCM_16") as handle:
        for _ in range(seconds // 60):
            handle.write(np.zeros(16_000 * 60, dtype=np.float32))
    return buffer.getvalue()


def _rss(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Soak:
    """Shared state of the run: the request budget, results and latencies."""

    def __init__(self, base: str, slow_url: str) -> None:
        self.base = base
        self.slow_url = slow_url
        self.until = time.monotonic() + SECONDS
        self.lock = threading.Lock()
        self.sent = 0
        self.outcomes: Counter[str] = Counter()  # class -> count
        self.failures: list[str] = []  # valid requests answered wrongly, hostile ones handled wrongly
        self.latencies: list[float] = []  # valid requests
        wav = wav_bytes((0.1 * np.sin(np.arange(16_000) / 7)).astype(np.float32))
        self.audio_part = {"type": "input_audio", "input_audio": {"data": _b64(wav), "format": "wav"}}
        bomb = _flac_silence(3600)  # an hour of silence, about 180 kB
        self.bomb_part = {"type": "input_audio", "input_audio": {"data": _b64(bomb), "format": "flac"}}

    def take(self) -> bool:
        """One more request, if time and the count allow."""
        with self.lock:
            if self.sent >= MAX_REQUESTS or time.monotonic() > self.until:
                return False
            self.sent += 1
            return True

    def record(self, name: str, ok: bool, detail: str = "", latency: float | None = None) -> None:
        with self.lock:
            self.outcomes[name if ok else name + " (WRONG)"] += 1
            if not ok:
                self.failures.append(f"{name}: {detail}"[:300])
            if latency is not None:
                self.latencies.append(latency)


def _valid(soak: Soak, http: httpx.Client, rng: random.Random) -> None:
    kind = rng.choice(["text", "text", "audio", "stream"])
    content: object = f"Please answer request {rng.randrange(10**6)}."
    if kind == "audio":
        content = [{"type": "text", "text": "How do I sound?"}, soak.audio_part]
    body = {"model": "soak", "messages": [{"role": "user", "content": content}], "max_tokens": VALID_TOKENS}
    started = time.monotonic()
    try:
        if kind == "stream":
            response = http.post(
                URL, json={**body, "stream": True, "stream_options": {"include_usage": True}}
            )
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            chunks = [json.loads(e) for e in events[:-1]]
            finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
            ok = (response.status_code == 200 and events[-1] == "[DONE]" and finishes[-1] in {"stop", "length"}
                  and 1 <= chunks[-1]["usage"]["completion_tokens"] <= VALID_TOKENS)  # fmt: skip
        else:
            response = http.post(URL, json=body)
            reply = response.json()
            usage = reply.get("usage", {})
            ok = (response.status_code == 200 and reply["model"] == "soak"
                  and isinstance(reply["choices"][0]["message"]["content"], str)
                  and reply["choices"][0]["finish_reason"] in {"stop", "length"}
                  and 1 <= usage["completion_tokens"] <= VALID_TOKENS
                  and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
                  and (reply["emotion"] is not None) == (kind == "audio"))  # fmt: skip
        soak.record(f"valid {kind}", ok, response.text[:200], time.monotonic() - started)
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        soak.record(f"valid {kind}", False, repr(exc), time.monotonic() - started)


def _bad(soak: Soak, http: httpx.Client, rng: random.Random) -> None:
    """One bad input; each must get its own 4xx, quickly."""
    text = {"role": "user", "content": "hi"}
    cases = {
        "invalid JSON": (dict(content=b'{"messages": [', headers={"content-type": "application/json"}), 400),
        "text/plain body": (dict(content=json.dumps({"messages": [text]}), headers={"content-type": "text/plain"}), 415),
        "unknown model": (dict(json={"model": "gpt-4o", "messages": [text]}), 404),
        "deep JSON": (dict(content=b'{"messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
                           headers={"content-type": "application/json"}), 400),
        "text over the cap": (dict(json={"messages": [{"role": "user", "content": "x" * 60_000}]}), 400),
        "over the context": (dict(json={"messages": [{"role": "user", "content": "the lazy dog " * 3000}],
                                        "max_tokens": 8}), 400),
        "audio bomb": (dict(json={"messages": [{"role": "user", "content": [soak.bomb_part]}]}), 400),
        "corrupt audio": (dict(json={"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": _b64(b"RIFF" + bytes(300)), "format": "wav"}}]}]}), 400),
        "foreign Host": (dict(json={"messages": [text]}, headers={"host": "rebind.example"}), 400),
        "logprobs": (dict(json={"messages": [text], "logprobs": True}), 400),
        "private audio URL": (dict(json={"messages": [{"role": "user", "content": [
            {"type": "audio_url", "audio_url": {"url": "http://10.0.0.1/a.wav"}}]}]}), 400),
    }  # fmt: skip
    name = rng.choice(sorted(cases))
    kwargs, status = cases[name]
    try:
        response = http.post(URL, **kwargs)
        soak.record(
            f"bad: {name}", response.status_code == status, f"{response.status_code} {response.text[:120]}"
        )
    except httpx.HTTPError as exc:
        soak.record(f"bad: {name}", False, repr(exc))


def _slow_audio_url(soak: Soak, http: httpx.Client, rng: random.Random) -> None:
    part = {"type": "audio_url", "audio_url": {"url": soak.slow_url}}
    started = time.monotonic()
    try:
        response = http.post(URL, json={"messages": [{"role": "user", "content": [part]}], "max_tokens": 4})
        code = response.json()["error"]["code"] if response.status_code != 200 else ""
        # 400: the 2 s download deadline hit; 503: the two fetch slots were busy for a second.
        ok = (response.status_code, code) in {(400, "audio_url_failed"), (503, "server_busy")}
        soak.record("slow audio URL", ok and time.monotonic() - started < 8, f"{response.status_code} {code}")
    except httpx.HTTPError as exc:
        soak.record("slow audio URL", False, repr(exc))


def _disconnect(soak: Soak, http: httpx.Client, rng: random.Random) -> None:
    """Ask for a long reply (streamed or not), then hang up. Plain greedy decoding: the random model then
    never ends its turn early (with the sampling defaults it may, before the hang-up)."""
    stream = rng.random() < 0.5
    body = json.dumps({"messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 256,
                       "stream": stream, "temperature": 0, "repetition_penalty": 1,
                       "no_repeat_ngram_size": 0}).encode()  # fmt: skip
    host, port = soak.base.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST {URL} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
            time.sleep(rng.uniform(0.05, 0.5))
        soak.record("disconnect" + (" (stream)" if stream else ""), True)
    except OSError as exc:
        soak.record("disconnect", False, repr(exc))


def _slow_client(soak: Soak, http: httpx.Client, rng: random.Random) -> None:
    """Send half the headers and stall: the server must hang up (header timeout 3 s)."""
    host, port = soak.base.removeprefix("http://").split(":")
    started = time.monotonic()
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST {URL} HTTP/1.1\r\nHost: {host}\r\n".encode())
            sock.settimeout(8)
            closed = sock.recv(1024) == b""
        soak.record("slow headers", closed and time.monotonic() - started < 6, "not closed in time")
    except OSError:
        soak.record("slow headers", time.monotonic() - started < 6, "reset late")


def _client(soak: Soak, seed: int) -> None:
    rng = random.Random(seed)
    actions = [
        (_valid, 0.55),
        (_bad, 0.25),
        (_disconnect, 0.1),
        (_slow_audio_url, 0.06),
        (_slow_client, 0.04),
    ]
    with httpx.Client(base_url=soak.base, timeout=60) as http:
        while soak.take():
            action = rng.choices([a for a, _ in actions], weights=[w for _, w in actions])[0]
            action(soak, http, rng)


def test_soak() -> None:
    port = free_port()
    here = Path(__file__).parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    server = subprocess.Popen([sys.executable, str(here / "soakserver.py"), str(port)], cwd=here, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        ready = server.stdout.readline()  # type: ignore[union-attr]
        assert ready.strip() == "ready", "the soak server did not start"
        rss_start = _rss(server.pid, "VmRSS")
        with SlowServer(b"RIFF" + bytes(4000)) as slow:
            soak = Soak(f"http://127.0.0.1:{port}", slow.url("/slow?gap=0.2&seconds=6"))
            began = time.monotonic()
            threads = [threading.Thread(target=_client, args=(soak, i), daemon=True) for i in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=SECONDS + 90)
            elapsed = time.monotonic() - began
            assert not any(t.is_alive() for t in threads), "a client is stuck"
        peak = _rss(server.pid, "VmHWM")
        with httpx.Client(base_url=soak.base, timeout=30) as http:  # still serving, and answering right
            stats = http.get("/health").json()["stats"]
            assert (
                http.post(
                    URL, json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
                ).status_code
                == 200
            )
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    latencies = sorted(soak.latencies)
    p50, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95)]
    valid = sum(v for k, v in soak.outcomes.items() if k.startswith("valid"))
    print(f"\nsoak: {soak.sent} requests in {elapsed:.0f} s from {CLIENTS} clients; valid {valid}, "
          f"hostile {soak.sent - valid}")  # fmt: skip
    for name, count in sorted(soak.outcomes.items()):
        print(f"  {name}: {count}")
    print(f"  valid latency p50 {p50:.2f} s, p95 {p95:.2f} s, max {latencies[-1]:.2f} s")
    print(f"  server RSS at start {rss_start / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB")
    print(f"  engine: {stats}")
    assert not soak.failures, soak.failures[:10]
    assert valid >= 50, soak.outcomes
    assert latencies[-1] < MAX_VALID_LATENCY_S and p95 < P95_VALID_LATENCY_S
    assert peak - rss_start < RSS_GROWTH_LIMIT
    assert stats["cancelled"] > 0  # the disconnects really stopped generations
