"""``blsp-emo serve`` as a user runs it: a subprocess on a free localhost port, answering HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
from servingfix import audio_message

from blsp_emo.serving.server import free_port


def test_serve_command_answers_with_api_key(speech_clips: list[bytes]) -> None:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "blsp_emo.cli", "serve", "--model", "random-tiny", "--port", str(port),
               "--api-key", "k1", "--max-audio-seconds", "10"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        until = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < until, "server did not start"
            time.sleep(0.5)
        headers = {"Authorization": "Bearer k1"}
        assert (
            httpx.get(url + "/v1/models", headers=headers).json()["data"][0]["id"] == "blsp-emo-random-tiny"
        )
        body = {"messages": [audio_message(speech_clips[0])], "max_tokens": 4}
        assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 401
        reply = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] <= 4
        assert "<html" in httpx.get(url + "/").text.lower()
        assert httpx.get(url + "/static/app.js").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
