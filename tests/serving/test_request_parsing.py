"""Request parsing and validation (no model needed): every field a client can get wrong."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from blsp_emo.audio import wav_bytes
from blsp_emo.model.types import CONVERSATION, Conversation, DecodingOptions
from blsp_emo.prompts import SYSTEM_PROMPTS
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.protocol import APIError, parse_chat_request

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


@pytest.fixture(scope="module")
def speech_wav() -> bytes:
    clips = sorted(LIBRIVOX.glob("*.wav"))
    if not clips:
        pytest.fail(
            f"no recorded speech under {LIBRIVOX}: pocketsphinx-testdata is a promised test dependency, "
            "install it with apt-get install -y pocketsphinx-testdata (make setup)"
        )
    return clips[0].read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def audio_part(data: bytes, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": b64(data), "format": fmt}}


def user(*parts: dict) -> dict:
    return {"role": "user", "content": list(parts)}


def error_of(body: object, **kwargs) -> APIError:
    with pytest.raises(APIError) as info:
        parse_chat_request(body, **kwargs)
    return info.value


def test_text_and_audio_parts_become_the_internal_format(speech_wav: bytes) -> None:
    body = {
        "model": "blsp-emo-tiny",
        "messages": [user({"type": "text", "text": "How do I sound?"}, audio_part(speech_wav))],
        "max_tokens": 20,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 3,
        "unknown_field": {"ignored": True},
    }
    request = parse_chat_request(body)
    assert request.messages[0] == {"role": "system", "content": SYSTEM_PROMPTS["empathetic"]}
    parts = request.messages[1]["content"]
    assert parts[0] == {"type": "text", "text": "How do I sound?"}
    assert parts[1]["type"] == "audio" and parts[1]["audio"].dtype == np.float32
    assert 1.0 < request.audio_seconds[0] < 30.0
    assert (request.options.max_new_tokens, request.options.temperature, request.options.top_p, request.options.seed) == (
        20, 0.7, 0.9, 3,
    )  # fmt: skip
    assert not request.stream and not request.want_audio


def test_decoding_defaults_are_the_conversation_defaults() -> None:
    params = parse_chat_request({"messages": [{"role": "user", "content": "hi"}]}).options
    assert params == CONVERSATION
    assert (params.temperature, params.top_p, params.repetition_penalty, params.no_repeat_ngram_size,
            params.frequency_penalty, params.presence_penalty, params.seed, params.max_new_tokens) == (
        0.5, 0.9, 1.1, 4, 0, 0, None, 128,
    )  # fmt: skip
    assert not params.greedy and params.stop == ()


def test_decoding_fields_are_taken() -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0,
        "repetition_penalty": 1,
        "no_repeat_ngram_size": 0,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.25,
    }
    params = parse_chat_request(body).options
    assert params.greedy and params.top_p == 0.9  # top_p keeps its default (unused when greedy)
    assert params == DecodingOptions(128, 0.0, 0.9, 1.0, 0, 0.5, -0.25)
    edges = {"temperature": 2, "top_p": 1, "repetition_penalty": 2, "no_repeat_ngram_size": 32,
             "frequency_penalty": -2, "presence_penalty": 2}  # fmt: skip
    params = parse_chat_request({"messages": [{"role": "user", "content": "hi"}], **edges}).options
    assert params == DecodingOptions(128, 2.0, 1.0, 2.0, 32, -2.0, 2.0)
    nulls = dict.fromkeys(edges)  # null is "not set": the defaults
    assert (
        parse_chat_request({"messages": [{"role": "user", "content": "hi"}], **nulls}).options == CONVERSATION
    )


def test_invalid_decoding_fields_name_the_field_in_the_message() -> None:
    error = error_of({"messages": [{"role": "user", "content": "x"}], "no_repeat_ngram_size": 40})
    assert error.message == "'no_repeat_ngram_size' must be between 0 and 32, got 40"
    error = error_of({"messages": [{"role": "user", "content": "x"}], "repetition_penalty": 0})
    assert "'repetition_penalty' must be greater than 0" in error.message


def test_multi_turn_data_url_and_roles(speech_wav: bytes) -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            user({"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64," + b64(speech_wav)}}),
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}],
            },
            {"role": "assistant", "content": None, "audio": {"id": "a1", "transcript": "Spoken before."}},
            {"role": "user", "content": "And now?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "modalities": ["text", "audio"],
        "audio": {"voice": "joe", "format": "wav"},
    }
    request = parse_chat_request(body)
    roles = [m["role"] for m in request.messages]
    assert roles == ["system", "user", "assistant", "assistant", "user"]  # no default system added
    assert request.messages[0]["content"] == "Be brief."
    assert request.messages[2]["content"] == "Hello there"
    assert request.messages[3]["content"] == "Spoken before."
    assert request.stream and request.include_usage and request.want_audio and request.voice == "joe"


def test_no_default_system_when_disabled() -> None:
    request = parse_chat_request({"messages": [{"role": "user", "content": "hi"}]}, default_system=None)
    assert request.messages == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ([], None, "invalid_type"),
        ({}, "messages", "missing_required_parameter"),
        ({"messages": "hi"}, "messages", "invalid_type"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0].type",
         "unsupported_content_type"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature", "invalid_type"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "repetition_penalty": 0}, "repetition_penalty",
         "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "repetition_penalty": 2.5}, "repetition_penalty",
         "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "repetition_penalty": "1.1"}, "repetition_penalty",
         "invalid_type"),
        ({"messages": [{"role": "user", "content": "x"}], "no_repeat_ngram_size": -1}, "no_repeat_ngram_size",
         "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "no_repeat_ngram_size": 33}, "no_repeat_ngram_size",
         "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "no_repeat_ngram_size": 3.5}, "no_repeat_ngram_size",
         "invalid_type"),
        ({"messages": [{"role": "user", "content": "x"}], "no_repeat_ngram_size": True}, "no_repeat_ngram_size",
         "invalid_type"),
        ({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 2.5}, "frequency_penalty",
         "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "presence_penalty": -3}, "presence_penalty",
         "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "presence_penalty": [1]}, "presence_penalty",
         "invalid_type"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6}, "max_tokens", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}, "max_tokens", "invalid_type"),
        ({"messages": [{"role": "user", "content": "x"}], "seed": "s"}, "seed", "invalid_type"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n", "unsupported_value"),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream", "invalid_type"),
        ({"messages": [{"role": "user", "content": "x"}], "modalities": ["video"]}, "modalities", "unsupported_value"),
        ({"messages": [{"role": "user", "content": "x"}], "modalities": ["text", "audio"],
          "audio": {"format": "midi"}}, "audio.format", "unsupported_value"),
    ],
)  # fmt: skip
def test_invalid_fields_are_named(body: object, param: str | None, code: str) -> None:
    error = error_of(body)
    assert (error.status, error.param, error.code) == (400, param, code)
    assert error.to_dict()["error"]["type"] == "invalid_request_error"


def test_bad_audio_is_refused_with_the_part_named(speech_wav: bytes) -> None:
    where = "messages[0].content[0].input_audio"
    cases = [
        (
            {"type": "input_audio", "input_audio": {"data": "@@not base64@@", "format": "wav"}},
            "invalid_base64",
        ),
        (audio_part(b"RIFF0000WAVEjunk" * 40), "invalid_audio"),
        (audio_part(speech_wav, fmt="midi"), "unsupported_audio_format"),
        ({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, "invalid_value"),
        ({"type": "input_audio", "input_audio": "abc"}, "invalid_type"),  # a string where an object belongs
    ]
    for part, code in cases:
        error = error_of({"messages": [user(part)]})
        assert error.code == code, (part, error.message)
        assert error.param.startswith(where)
    corrupt = error_of({"messages": [user(audio_part(bytes(range(256)) * 50))]})
    assert "unreadable or unsupported audio" in corrupt.message


def test_audio_limits(speech_wav: bytes) -> None:
    long_audio = wav_bytes(np.zeros(16_000 * 5, dtype=np.float32))
    error = error_of(
        {"messages": [user(audio_part(long_audio))]}, limits=ServingLimits(max_audio_seconds=2.0)
    )
    assert error.code == "audio_too_long" and "limit is 2 s" in error.message
    many = user(*[audio_part(speech_wav)] * 3)
    error = error_of({"messages": [many]}, limits=ServingLimits(max_audio_parts=2))
    assert error.code == "too_many_audio_parts" and error.param == "messages[0].content[2]"
    total = ServingLimits(max_total_audio_seconds=1.5 * 5.0)
    error = error_of({"messages": [user(*[audio_part(long_audio)] * 2)]}, limits=total)
    assert error.code == "audio_too_long"


def test_audio_only_from_users(speech_wav: bytes) -> None:
    body = {
        "messages": [
            {"role": "assistant", "content": [audio_part(speech_wav)]},
            user({"type": "text", "text": "x"}),
        ]
    }
    assert error_of(body).param == "messages[0].content[0]"


def test_audio_urls_data_only_by_default(speech_wav: bytes) -> None:
    def url_part(url: str) -> dict:
        return user({"type": "audio_url", "audio_url": {"url": url}})

    for url, code in [
        ("file:///etc/passwd", "url_not_allowed"),
        ("/etc/passwd", "url_not_allowed"),
        ("ftp://example.org/a.wav", "url_not_allowed"),
        ("http://127.0.0.1:9/a.wav", "url_not_allowed"),
        ("https://example.org/a.wav", "url_not_allowed"),
        ("data:audio/wav,notbase64", "invalid_value"),
        ("data:image/png;base64," + b64(speech_wav), "unsupported_audio_format"),
    ]:
        error = error_of({"messages": [url_part(url)]})
        assert (error.code, error.param) == (code, "messages[0].content[0].audio_url.url"), url
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return speech_wav

    request = parse_chat_request({"messages": [url_part("https://example.org/a.wav")]}, fetch_url=fetch)
    assert fetched == ["https://example.org/a.wav"] and request.audio_seconds
    assert error_of({"messages": [url_part("file:///etc/passwd")]}, fetch_url=fetch).code == "url_not_allowed"


@pytest.mark.parametrize(("container", "subtype", "fmt"), [("FLAC", None, "flac"), ("OGG", "VORBIS", "ogg"),
                                                            ("MP3", "MPEG_LAYER_III", "mp3")])  # fmt: skip
def test_compressed_formats(speech_wav: bytes, container: str, subtype: str | None, fmt: str) -> None:
    import io

    import soundfile as sf

    audio, rate = sf.read(io.BytesIO(speech_wav), dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=container, subtype=subtype)
    request = parse_chat_request({"messages": [user(audio_part(buffer.getvalue(), fmt))]})
    assert abs(request.audio_seconds[0] - len(audio) / rate) < 0.1


def test_the_result_is_a_conversation(speech_wav: bytes) -> None:
    body = {"messages": [{"role": "developer", "content": "Be brief."}, user(audio_part(speech_wav))]}
    request = parse_chat_request(body)
    assert isinstance(request.messages, Conversation)
    assert [m["role"] for m in request.messages] == ["system", "user"]
    with_default = parse_chat_request({"messages": [{"role": "user", "content": "hi"}]}).messages
    assert isinstance(with_default, Conversation)
    assert with_default == Conversation(system=SYSTEM_PROMPTS["empathetic"]).user("hi")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"temperature": True}, "'temperature' must be a number, got boolean"),  # no coercion
        ({"temperature": "0.5"}, "'temperature' must be a number, got string"),
        ({"seed": 2.0}, "'seed' must be an integer, got number"),
        ({"top_p": 0}, "'top_p' must be greater than 0 and at most 1, got 0"),
        ({"max_tokens": 0}, "'max_tokens' must be between 1 and 1024, got 0"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "'stop' must hold at most 4 items"),
        ({"stream_options": {"include_usage": "yes"}}, "'stream_options.include_usage' must be a boolean, got string"),
        ({"tools": [{"type": "function"}]}, "'tools' is not supported by this server"),
        ({"n": 2}, "'n' must be 1"),
    ],
)  # fmt: skip
def test_messages_name_the_field_first(extra: dict, message: str) -> None:
    error = error_of({"messages": [{"role": "user", "content": "x"}], **extra})
    assert error.message.startswith(message), error.message


def test_unknown_fields_are_ignored_at_every_level() -> None:
    body = {
        "messages": [
            {"role": "user", "name": "ann", "content": [{"type": "text", "text": "hi", "cache": 1}]}
        ],
        "audio": {"voice": "joe", "speed": 2},
        "metadata": {"a": "b"},
    }
    request = parse_chat_request(body, default_system=None)
    assert request.messages == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    error = error_of({"messages": [{"role": "user", "content": [{"type": 5}]}]})
    assert (error.param, error.code) == ("messages[0].content[0].type", "unsupported_content_type")


def test_formats_are_read_in_any_case_and_nan_is_out_of_range() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "modalities": ["text", "audio"]}
    assert parse_chat_request({**body, "audio": {"format": "MP3"}}).audio_format == "mp3"
    for name in ["temperature", "top_p", "repetition_penalty", "frequency_penalty"]:
        error = error_of({**body, name: float("nan")})  # json.loads reads NaN
        assert (error.param, error.code) == (name, "invalid_value"), name
