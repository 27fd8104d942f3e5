"""Prompt size: a text cap checked before tokenising, prompt + max_tokens against the model's context and a
per-request token budget, all answered with a 400 before the request is queued."""

from __future__ import annotations

import time

import httpx
import pytest

from blsp_emo.serving.api import create_app
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.protocol import APIError, parse_chat_request
from blsp_emo.serving.server import BackgroundServer

URL = "/v1/chat/completions"
WORDS = "the quick brown fox jumps over the lazy dog "  # 23 tokens of the tiny tokenizer


def ask(text: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture(scope="module")
def limited(random_engine, speaker):
    """The random tiny model (context 4096) behind a server with a 200k-character text cap."""
    limits = ServingLimits(max_request_bytes=8 * 1024 * 1024, max_new_tokens=512, max_text_chars=200_000)
    with BackgroundServer(create_app(random_engine, limits=limits, speaker=speaker)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            yield http, random_engine


def test_context_length_comes_from_the_model(random_engine) -> None:
    assert random_engine.context_length == 4096  # LlamaConfig.max_position_embeddings of the tiny model


def test_a_prompt_over_the_context_is_refused_before_queueing(limited) -> None:
    http, engine = limited
    text = WORDS * 440  # about 10k tokens; the context is 4096
    assert engine.count_prompt_tokens([{"role": "user", "content": text}]) > 4096
    before = dict(engine.stats)
    started = time.monotonic()
    response = http.post(URL, json=ask(text, max_tokens=4))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "context_length_exceeded",
        "messages",
        "invalid_request_error",
    )
    assert "4096" in error["message"]
    assert time.monotonic() - started < 5.0
    assert engine.stats["requests"] == before["requests"]  # never reached the model


def test_prompt_plus_max_tokens_must_fit(limited) -> None:
    http, engine = limited
    text = WORDS * 165
    prompt = engine.count_prompt_tokens([{"role": "user", "content": text}])
    assert 3600 < prompt < 4000, prompt
    response = http.post(URL, json=ask(text, max_tokens=512))
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    # Without max_tokens the default (128) shrinks to what is left instead of failing.
    fits = http.post(URL, json=ask(WORDS * 170)).json()  # 4007 tokens with the system prompt
    assert fits["usage"]["prompt_tokens"] + fits["usage"]["completion_tokens"] <= 4096


def test_text_cap_is_checked_before_tokenising(limited) -> None:
    http, engine = limited
    text = "x" * 2_100_000  # the 2.1 MB prompt of the report
    started = time.monotonic()
    response = http.post(URL, json=ask(text, max_tokens=4))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "text_too_long"
    assert time.monotonic() - started < 3.0
    with pytest.raises(APIError) as info:  # the parser alone, split over parts and messages
        parse_chat_request(
            {"messages": [{"role": "system", "content": "y" * 60}, {"role": "user", "content": [
                {"type": "text", "text": "z" * 50}]}]},
            ServingLimits(max_text_chars=100),
        )  # fmt: skip
    assert info.value.code == "text_too_long"


def test_per_request_token_budget(random_engine, speaker) -> None:
    limits = ServingLimits(max_request_tokens=300, max_new_tokens=512)
    with BackgroundServer(create_app(random_engine, limits=limits, speaker=speaker)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            refused = http.post(URL, json=ask(WORDS * 4, max_tokens=290))  # 107 + 290 tokens
            assert refused.status_code == 400
            error = refused.json()["error"]
            assert error["code"] == "context_length_exceeded" and "budget is 300" in error["message"]
            ok = http.post(URL, json=ask(WORDS * 4, max_tokens=100))
            assert ok.status_code == 200
