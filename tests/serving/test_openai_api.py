"""The real server on localhost driven by the official ``openai`` client: text, streaming, multi-turn, audio."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest
from servingfix import audio_message

from blsp_emo.audio import load_audio
from blsp_emo.prompts import EMOTIONS


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_and_health(client: openai.OpenAI, server) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["blsp-emo-random-tiny"]
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "blsp-emo-random-tiny"


def test_text_and_audio_request(client: openai.OpenAI, speech_clips: list[bytes]) -> None:
    messages = [audio_message(speech_clips[0], "Listen to this:")]
    reply = client.chat.completions.create(model="blsp-emo-random-tiny", messages=messages, max_tokens=12)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage.prompt_tokens > 10 and 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    emotion = reply.model_extra["emotion"]
    assert emotion["label"] in EMOTIONS
    assert abs(sum(emotion["scores"].values()) - 1.0) < 1e-2


def test_text_only_turn_reports_no_emotion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="blsp-emo", messages=[{"role": "user", "content": "hello"}], max_tokens=4, extra_body={"foo": 1}
    )
    assert reply.model_extra["emotion"] is None and reply.usage.completion_tokens <= 4


def test_stream_matches_plain_answer(client: openai.OpenAI, speech_clips: list[bytes]) -> None:
    messages = [audio_message(speech_clips[1])]
    plain = client.chat.completions.create(model="blsp-emo", messages=messages, max_tokens=16, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="blsp-emo",
            messages=messages,
            max_tokens=16,
            temperature=0,  # greedy both times (the default samples)
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == [plain.choices[0].finish_reason]
    assert finals[0].model_extra["emotion"] == plain.model_extra["emotion"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


def test_multi_turn_keeps_earlier_speech(client: openai.OpenAI, speech_clips: list[bytes]) -> None:
    first = [audio_message(speech_clips[2])]
    one = client.chat.completions.create(model="blsp-emo", messages=first, max_tokens=8)
    follow = [
        *first,
        {"role": "assistant", "content": one.choices[0].message.content},
        audio_message(speech_clips[3], "And this one?"),
    ]
    two = client.chat.completions.create(model="blsp-emo", messages=follow, max_tokens=8)
    # Both clips are in the prompt as speech embeddings, plus the first answer and the new text.
    assert two.usage.prompt_tokens > one.usage.prompt_tokens + 10
    alone = client.chat.completions.create(model="blsp-emo", messages=[follow[-1]], max_tokens=8)
    assert two.model_extra["emotion"] == alone.model_extra["emotion"]  # the latest user turn's audio


def test_sampling_options_shape_the_reply(client: openai.OpenAI, speech_clips: list[bytes]) -> None:
    """temperature, top_p and seed reach the sampler: the same seed repeats a sample, another seed, a
    temperature or a top_p changes it, and temperature 0 is greedy whatever the seed.

    The random tiny model's next-token distribution is nearly flat (400 tokens), so a sample is decided
    mostly by the seed's random numbers: a temperature has to be well under 0.5 (and top_p well under 1)
    to move a draw, and temperatures above 1 look like 1.
    Every call is seeded or greedy, so each outcome is fixed, not a matter of chance."""

    def reply(messages: list[dict], stream: bool = False, **options) -> str:
        kwargs = {"model": "blsp-emo", "messages": messages, "max_tokens": 16, **options}
        if not stream:
            return client.chat.completions.create(**kwargs).choices[0].message.content
        chunks = client.chat.completions.create(**kwargs, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    for clip in (speech_clips[4], speech_clips[6], speech_clips[7]):
        messages = [audio_message(clip)]
        greedy = {reply(messages, temperature=0, seed=seed) for seed in (1, 2, 3)}
        greedy.add(reply(messages, temperature=0))
        assert len(greedy) == 1, greedy  # temperature 0 ignores the seed
        samples = {}
        for seed in (1, 2, 3):
            samples[seed] = reply(messages, temperature=1.0, top_p=1.0, seed=seed)
            assert reply(messages, temperature=1.0, top_p=1.0, seed=seed) == samples[seed]  # repeats
        assert len(set(samples.values())) == 3, samples  # each seed draws its own reply
        assert greedy.isdisjoint(samples.values())  # the seeded replies were sampled, not greedy
        streamed = reply(messages, stream=True, temperature=1.0, top_p=1.0, seed=1)
        assert streamed.strip() == samples[1]  # streaming samples the same way (a reply is stripped)
        colder = {t: reply(messages, temperature=t, top_p=1.0, seed=1) for t in (0.05, 0.2)}
        assert len({*colder.values(), samples[1]}) == 3, colder  # the temperature changes the draw
        assert colder[0.05] == reply(messages, temperature=0.05, top_p=1.0, seed=1)
        narrow = reply(messages, temperature=1.0, top_p=0.01, seed=1)
        assert narrow != samples[1]  # so does top_p
        assert narrow == reply(messages, temperature=1.0, top_p=0.01, seed=1)
        nucleus = {reply(messages, temperature=1.0, top_p=0.9, seed=7) for _ in range(2)}
        assert len(nucleus) == 1  # the defaults' kind of sampling repeats under a seed too


def test_decoding_defaults_and_greedy(client: openai.OpenAI, speech_clips: list[bytes]) -> None:
    """Greedy (temperature 0) gives the same reply every time, with or without the repetition guards; the
    default decoding samples; the guards change what a looping greedy reply says."""
    messages = [audio_message(speech_clips[8])]
    kwargs = {"model": "blsp-emo", "messages": messages, "max_tokens": 40}
    greedy = [
        client.chat.completions.create(**kwargs, temperature=0).choices[0].message.content for _ in range(2)
    ]
    assert greedy[0] == greedy[1]
    plain = {"repetition_penalty": 1, "no_repeat_ngram_size": 0}
    looping = [client.chat.completions.create(**kwargs, temperature=0, extra_body=plain) for _ in range(2)]
    assert looping[0].choices[0].message.content == looping[1].choices[0].message.content
    assert looping[0].choices[0].message.content != greedy[0]
    sampled = {client.chat.completions.create(**kwargs).choices[0].message.content for _ in range(4)}
    assert len(sampled) > 1  # temperature 0.5 by default


def test_spoken_reply(client: openai.OpenAI, speech_clips: list[bytes]) -> None:
    reply = client.chat.completions.create(
        model="blsp-emo",
        messages=[audio_message(speech_clips[5])],
        max_tokens=8,
        temperature=0,  # a reply of known length to speak (a sample may end the turn at once)
        modalities=["text", "audio"],
        audio={"voice": "joe", "format": "wav"},
    )
    audio = reply.choices[0].message.audio
    assert audio.transcript and reply.choices[0].message.content is None  # as OpenAI: text in the transcript
    wav = base64.b64decode(audio.data)
    assert wav[:4] == b"RIFF" and load_audio(wav).size > 16_000 * 0.2
    assert reply.model_extra["speech_style"] in {"neutral", "consoling", "cheerful", "calming", "surprised"}


def test_spoken_reply_streamed(client: openai.OpenAI, speech_clips: list[bytes]) -> None:
    chunks = list(
        client.chat.completions.create(
            model="blsp-emo",
            messages=[audio_message(speech_clips[6])],
            max_tokens=8,
            temperature=0,
            stream=True,
            modalities=["text", "audio"],
            audio={"voice": "joe", "format": "wav"},
        )
    )
    audio = [c.choices[0].delta.audio for c in chunks if c.choices and c.choices[0].delta.audio]
    files = [a.data for a in audio if a.data]  # wav: one whole file once spoken (pcm16 streams in pieces)
    assert len(files) == 1 and base64.b64decode(files[0])[:4] == b"RIFF"


def test_client_leaving_mid_stream_does_not_stall_the_server(server, speech_clips: list[bytes]) -> None:
    body = {"messages": [audio_message(speech_clips[7])], "max_tokens": 64, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")  # then hang up without reading the rest
    after = httpx.post(
        server.url + "/v1/chat/completions", json={**body, "stream": False, "max_tokens": 4}, timeout=60
    )
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] <= 4
