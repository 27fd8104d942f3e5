"""OpenAI semantics the server used to drop silently: unknown models, ``stop``, unsupported fields, empty
content, and JSON too deep or too big for a request."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

URL = "/v1/chat/completions"
MODEL = "blsp-emo-random-tiny"


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def body(**extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about the sea."}], **extra}


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_unknown_model_is_404_and_served_names_work(http: httpx.Client) -> None:
    error = error_of(http.post(URL, json=body(model="gpt-4o", max_tokens=2)), 404)
    assert (error["code"], error["param"], error["type"]) == (
        "model_not_found",
        "model",
        "invalid_request_error",
    )
    for name in [MODEL, "blsp-emo", "default"]:  # the served name and the documented aliases
        assert http.post(URL, json=body(model=name, max_tokens=2)).status_code == 200, name
    no_model = body(max_tokens=2)
    del no_model["model"]
    assert http.post(URL, json=no_model).status_code == 200
    assert error_of(http.post(URL, json=body(model=5, max_tokens=2)), 400)["param"] == "model"


def test_stop_cuts_the_reply(server, http: httpx.Client) -> None:
    greedy = {"max_tokens": 24, "temperature": 0}  # the same reply every time (the default samples)
    plain = http.post(URL, json=body(**greedy)).json()["choices"][0]["message"]["content"]
    stop = plain[6:9]
    assert len(plain) > 12 and stop and stop not in plain[:6]
    expected = plain[: plain.index(stop)]
    for form in [stop, [stop], ["never-appears-here", stop]]:
        reply = http.post(URL, json=body(**greedy, stop=form)).json()
        choice = reply["choices"][0]
        assert choice["message"]["content"] == expected, form
        assert choice["finish_reason"] == "stop"
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=60)
    chunks = list(client.chat.completions.create(**body(**greedy, stop=stop), stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    unmatched = http.post(URL, json=body(**greedy, stop="never-appears-here")).json()
    assert unmatched["choices"][0]["message"]["content"] == plain


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"stop": 5}, "stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop[0]"),  # the empty string itself is named
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
    ],
)
def test_unsupported_fields_are_named(http: httpx.Client, extra: dict, param: str) -> None:
    error = error_of(http.post(URL, json=body(max_tokens=2, **extra)), 400)
    assert error["param"] == param, error


def test_neutral_values_of_unsupported_fields_are_accepted(http: httpx.Client) -> None:
    neutral = {"logprobs": False, "response_format": {"type": "text"}, "tools": [], "tool_choice": "none",
               "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "stop": None}  # fmt: skip
    assert http.post(URL, json=body(max_tokens=2, **neutral)).status_code == 200


def test_penalties_and_the_ngram_block_are_implemented(http: httpx.Client) -> None:
    settings = {"presence_penalty": 0.5, "frequency_penalty": -1, "repetition_penalty": 1.3,
                "no_repeat_ngram_size": 3, "temperature": 0}  # fmt: skip
    assert http.post(URL, json=body(max_tokens=4, **settings)).status_code == 200
    for name, value in [("presence_penalty", 2.5), ("frequency_penalty", -3), ("repetition_penalty", 3),
                        ("no_repeat_ngram_size", 1.5), ("no_repeat_ngram_size", 99)]:  # fmt: skip
        error = error_of(http.post(URL, json=body(max_tokens=2, **{name: value})), 400)
        assert (error["param"], error["type"]) == (name, "invalid_request_error"), error
        assert error["code"] in {"invalid_value", "invalid_type"} and name in error["message"]


def test_empty_content_list_is_refused(http: httpx.Client) -> None:
    error = error_of(http.post(URL, json={"messages": [{"role": "user", "content": []}]}), 400)
    assert error["param"] == "messages[0].content"


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deep_json_is_a_400_not_a_crash(http: httpx.Client, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    raw = '{"messages": [{"role": "user", "content": "hi"}], "metadata": ' + nested + "}"
    response = http.post(URL, content=raw, headers={"content-type": "application/json"})
    error = error_of(response, 400)
    assert error["code"] == "invalid_json" and "deep" in error["message"]
    assert http.post(URL, json=body(max_tokens=2)).status_code == 200  # the server is fine


def test_json_with_too_many_items_is_a_400(http: httpx.Client) -> None:
    raw = json.dumps({**body(max_tokens=2), "metadata": {"x": list(range(50_000))}})
    error = error_of(http.post(URL, content=raw, headers={"content-type": "application/json"}), 400)
    assert error["code"] == "invalid_json" and "items" in error["message"]
