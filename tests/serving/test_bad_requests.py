"""Every bad input, sent as raw HTTP to the real server: OpenAI-style error JSON with the field named."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from servingfix import audio_message, b64

from blsp_emo.audio import wav_bytes
from blsp_emo.serving.api import create_app
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.server import BackgroundServer

URL = "/v1/chat/completions"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def check_error(response: httpx.Response, status: int, code: str | None, param: str | None = "any") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["code"] == code
    if param != "any":
        assert error["param"] == param
    return error


def test_bad_json(http: httpx.Client) -> None:
    response = http.post(URL, content=b'{"messages": [', headers={"content-type": "application/json"})
    error = check_error(response, 400, "invalid_json", None)
    assert error["type"] == "invalid_request_error"
    check_error(http.post(URL, content=b"\xff\xfe", headers=JSON), 400, "invalid_json")
    check_error(http.post(URL, json=["not", "an", "object"]), 400, "invalid_type")
    check_error(http.post(URL, json={"model": "blsp-emo"}), 400, "missing_required_parameter", "messages")


def test_request_too_large(http: httpx.Client) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "x" * (3 * 1024 * 1024)}]})
    check_error(http.post(URL, content=body, headers=JSON), 413, "request_too_large")

    def chunked():  # no Content-Length: the limit must hold while reading
        for _ in range(40):
            yield b" " * 100_000

    check_error(http.post(URL, content=chunked(), headers=JSON), 413, "request_too_large")


def test_audio_too_long(http: httpx.Client) -> None:
    long = wav_bytes(np.zeros(16_000 * 25, dtype=np.float32))  # limit in the test server: 20 s
    error = check_error(
        http.post(URL, json={"messages": [audio_message(long)]}), 400, "audio_too_long",
        "messages[0].content[0].input_audio.data",
    )  # fmt: skip
    assert "25.0 s long, the limit is 20 s" in error["message"]


def test_too_many_audio_parts(http: httpx.Client, silence_wav: bytes) -> None:
    messages = [audio_message(silence_wav) for _ in range(3)] + [audio_message(silence_wav, "two at once")]
    messages[3]["content"].append(messages[3]["content"][-1])  # 5 parts, the limit is 4
    check_error(
        http.post(URL, json={"messages": messages}), 400, "too_many_audio_parts", "messages[3].content[2]"
    )


def test_corrupt_and_unsupported_audio(http: httpx.Client, silence_wav: bytes) -> None:
    where = "messages[0].content[0].input_audio"
    corrupt = {
        "type": "input_audio",
        "input_audio": {"data": b64(b"RIFF" + bytes(range(256)) * 8), "format": "wav"},
    }
    error = check_error(http.post(URL, json={"messages": [{"role": "user", "content": [corrupt]}]}), 400,
                        "invalid_audio", where + ".data")  # fmt: skip
    assert "unreadable or unsupported audio" in error["message"]
    truncated = {"type": "input_audio", "input_audio": {"data": b64(silence_wav[:30]), "format": "wav"}}
    check_error(
        http.post(URL, json={"messages": [{"role": "user", "content": [truncated]}]}), 400, "invalid_audio"
    )
    midi = {"type": "input_audio", "input_audio": {"data": b64(silence_wav), "format": "midi"}}
    check_error(http.post(URL, json={"messages": [{"role": "user", "content": [midi]}]}), 400,
                "unsupported_audio_format", where + ".format")  # fmt: skip
    not_b64 = {"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}
    check_error(
        http.post(URL, json={"messages": [{"role": "user", "content": [not_b64]}]}), 400, "invalid_base64"
    )
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    check_error(http.post(URL, json={"messages": [{"role": "user", "content": [image]}]}), 400,
                "unsupported_content_type", "messages[0].content[0].type")  # fmt: skip


def test_audio_urls(http: httpx.Client, silence_wav: bytes) -> None:
    def body(url: str) -> dict:
        return {"messages": [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": url}}]}]}

    for url in ["file:///etc/passwd", "http://127.0.0.1:1/x.wav", "https://example.org/x.wav", "/etc/hosts"]:
        check_error(
            http.post(URL, json=body(url)), 400, "url_not_allowed", "messages[0].content[0].audio_url.url"
        )
    ok = http.post(URL, json={**body("data:audio/wav;base64," + b64(silence_wav)), "max_tokens": 2})
    assert ok.status_code == 200, ok.text


def test_bad_parameters(http: httpx.Client) -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    for extra, param in [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 100_000}, "max_completion_tokens"),
        ({"n": 3}, "n"),
        ({"seed": 1.5}, "seed"),
    ]:
        response = http.post(URL, json={**base, **extra})
        assert response.status_code == 400 and response.json()["error"]["param"] == param, extra
    check_error(http.post(URL, json={"messages": [{"role": "tool", "content": "x"}]}), 400, "invalid_value",
                "messages[0].role")  # fmt: skip


def test_unknown_fields_are_ignored(http: httpx.Client) -> None:
    body = {
        "model": "blsp-emo",
        "messages": [{"role": "user", "content": "hi", "name": "ann", "extra": 1}],
        "max_tokens": 2,
        "presence_penalty": 0,
        "user": "someone",
        "metadata": {"a": "b"},
        "brand_new_option": [1, 2],
    }
    response = http.post(URL, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


def test_unknown_routes_and_methods(http: httpx.Client) -> None:
    check_error(http.get("/v1/nothing"), 404, "not_found_error")
    check_error(http.get(URL), 405, "invalid_request_error")


def test_api_key_and_timeout(random_engine, speaker) -> None:
    app = create_app(random_engine, api_key="s3cret", speaker=speaker, limits=ServingLimits(timeout_s=1e-4))
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        check_error(http.post(URL, json=body), 401, "invalid_api_key")
        check_error(
            http.post(URL, json=body, headers={"Authorization": "Bearer wrong"}), 401, "invalid_api_key"
        )
        check_error(http.get("/v1/models", headers={"Authorization": "s3cret"}), 401, "invalid_api_key")
        assert http.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert (
            http.get("/health").status_code == 200 and http.get("/").status_code == 200
        )  # page and probe open
        # The time limit (0.1 ms here) is over before the worker picks the request up.
        error = check_error(
            http.post(URL, json=body, headers={"Authorization": "Bearer s3cret"}), 504, "timeout"
        )
        assert error["type"] == "timeout_error"
        streamed = http.post(URL, json={**body, "stream": True}, headers={"Authorization": "Bearer s3cret"})
        events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "timeout"
