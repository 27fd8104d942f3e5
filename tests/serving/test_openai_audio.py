"""Spoken replies as OpenAI clients expect them, through the official ``openai`` client against the real
server on localhost: every output format at 24 kHz, ``content`` null, the conversation going on with an
assistant turn that names its audio by id, and (on the real embedded SmolLM2) pcm16 streamed sentence by
sentence while the text is still being generated."""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from servingfix import audio_message

from blsp_emo.serving.speech import (
    OUTPUT_RATE,
    REPLY_FORMATS,
    ReplyStore,
    SentenceSplitter,
    reply_tone,
    to_output_rate,
)


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """Audio of ``fmt`` back to float samples and their rate: soundfile, PyAV for AAC, numpy for pcm16."""
    if fmt == "pcm16":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, OUTPUT_RATE
    if fmt == "aac":
        import av

        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
            return np.concatenate(frames).astype(np.float32), int(stream.rate)
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    return audio, int(rate)


def test_sentence_splitter_cuts_at_sentence_ends_only_when_complete() -> None:
    splitter = SentenceSplitter(soft_chars=60, hard_chars=90)
    assert splitter.feed("I'm sorry to hear that") == []
    assert splitter.feed(".") == []  # "that." ends a sentence only once a space follows ("3.5" goes on)
    assert splitter.feed(" It must") == ["I'm sorry to hear that."]
    assert splitter.feed(" be hard! Version 3.5 is out") == ["It must be hard!"]
    assert splitter.feed("?\nNext") == ["Version 3.5 is out?"]  # no cut inside "3.5"
    assert splitter.flush() == "Next" and splitter.flush() == ""
    # A reply without full stops is still cut, at a clause mark past soft_chars or a space past hard_chars.
    run_on = "and then we walked along the river, and the sun was low over the hills, and we talked on"
    pieces = [p for word in run_on.split(" ") for p in splitter.feed(word + " ")]
    assert pieces and all(len(p) <= 90 for p in pieces)
    assert " ".join([*pieces, splitter.flush()]) == run_on
    # The first piece may end at a clause mark past first_chars (spoken sooner); later ones wait for more.
    early = SentenceSplitter(soft_chars=60, hard_chars=90, first_chars=20)
    assert early.feed("Oh, the story of a young woman, who") == ["Oh, the story of a young woman,"]
    assert early.feed(" was born, and grew up") == []
    assert early.flush() == "who was born, and grew up"


def test_reply_store_keeps_transcripts_for_a_bounded_time_and_count() -> None:
    store = ReplyStore(ttl_s=10, max_entries=3)
    first, expires = store.add("one", now=1000.0)
    assert first.startswith("audio_") and expires == 1010
    assert store.get(first, now=1009.0) == "one"
    assert store.get(first, now=1010.0) is None  # expired at expires_at
    ids = [store.add(f"reply {i}", now=2000.0 + i)[0] for i in range(5)]
    assert len(store) == 3 and store.get(ids[0], now=2005.0) is None  # only the latest 3 are kept
    assert [store.get(i, now=2005.0) for i in ids[2:]] == ["reply 2", "reply 3", "reply 4"]
    assert store.get("audio_unknown") is None
    with pytest.raises(ValueError):
        ReplyStore(ttl_s=0)


def test_voice_output_is_resampled_to_24khz(speaker) -> None:
    rate = 22050  # Piper's and espeak-ng's rate
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    out = to_output_rate(tone, rate)
    assert out.size == OUTPUT_RATE and out.dtype == np.float32  # one second, now at 24 kHz
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) * OUTPUT_RATE / out.size - 440) < 2  # same pitch
    info = sf.info(io.BytesIO(speaker.speak_wav("Hello there.")))
    assert info.samplerate == OUTPUT_RATE and info.channels == 1 and info.duration > 0.3


def test_every_format_decodes_to_the_same_24khz_reply(
    client: openai.OpenAI, speech_clips: list[bytes]
) -> None:
    request = {
        "model": "blsp-emo",
        "messages": [audio_message(speech_clips[9])],
        "max_tokens": 10,
        "temperature": 0,  # the same reply text in every format
        "modalities": ["text", "audio"],
    }
    seconds, transcripts = {}, set()
    for fmt in REPLY_FORMATS:
        reply = client.chat.completions.create(**request, audio={"voice": "joe", "format": fmt})
        message = reply.choices[0].message
        assert message.content is None  # as OpenAI: the text is the audio's transcript
        assert message.audio.id.startswith("audio_") and message.audio.expires_at > time.time() + 60
        transcripts.add(message.audio.transcript)
        audio, rate = decode(base64.b64decode(message.audio.data), fmt)
        assert rate == OUTPUT_RATE, fmt
        assert audio.ndim == 1 and np.abs(audio).max() > 0.05, fmt  # speech, not silence
        seconds[fmt] = audio.size / rate
    assert len(transcripts) == 1 and transcripts.pop().strip()
    assert seconds["wav"] > 0.3
    # Piper draws durations with noise (a few percent per synthesis); codecs pad a few frames.
    for fmt, length in seconds.items():
        assert abs(length - seconds["wav"]) < 0.2 * seconds["wav"] + 0.1, (fmt, seconds)


def test_unsupported_reply_format_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="blsp-emo",
            messages=[{"role": "user", "content": "hello"}],
            modalities=["text", "audio"],
            audio={"voice": "joe", "format": "aiff"},
        )
    error = caught.value.body
    assert error["param"] == "audio.format" and "'aiff'" in error["message"]
    assert all(fmt in error["message"] for fmt in REPLY_FORMATS)


def test_conversation_goes_on_with_the_reply_audio_id(
    client: openai.OpenAI, speech_clips: list[bytes]
) -> None:
    first = [audio_message(speech_clips[10])]
    spoken = client.chat.completions.create(
        model="blsp-emo",
        messages=first,
        max_tokens=8,
        temperature=0,
        modalities=["text", "audio"],
        audio={"voice": "joe", "format": "mp3"},
    )
    audio = spoken.choices[0].message.audio
    follow_up = {"role": "user", "content": "Say that again, please."}

    def prompt_tokens(assistant: dict) -> int:
        reply = client.chat.completions.create(
            model="blsp-emo", messages=[*first, assistant, follow_up], max_tokens=2, temperature=0
        )
        return reply.usage.prompt_tokens

    by_text = prompt_tokens({"role": "assistant", "content": audio.transcript})
    assert prompt_tokens({"role": "assistant", "audio": {"id": audio.id}}) == by_text  # the kept transcript
    assert prompt_tokens({"role": "assistant", "content": None, "audio": {"id": audio.id}}) == by_text
    # An id the server does not know: a 400 that names it, unless the turn carries its transcript.
    with pytest.raises(openai.BadRequestError) as caught:
        prompt_tokens({"role": "assistant", "audio": {"id": "audio_gone"}})
    assert caught.value.body["param"] == "messages[1].audio.id"
    assert caught.value.body["code"] == "audio_not_found" and "'audio_gone'" in caught.value.body["message"]
    fallback = {"role": "assistant", "audio": {"id": "audio_gone", "transcript": audio.transcript}}
    assert prompt_tokens(fallback) == by_text
    with_content = prompt_tokens({"role": "assistant", "content": "Yes.", "audio": {"id": "audio_gone"}})
    assert with_content == prompt_tokens({"role": "assistant", "content": "Yes."})  # content wins


def test_streamed_wav_reply_on_the_random_model(client: openai.OpenAI, speech_clips: list[bytes]) -> None:
    """A format other than pcm16 streams its transcript, then the whole file once the reply is spoken."""
    chunks = list(
        client.chat.completions.create(
            model="blsp-emo",
            messages=[audio_message(speech_clips[11])],
            max_tokens=8,
            temperature=0,
            stream=True,
            modalities=["text", "audio"],
            audio={"voice": "joe", "format": "flac"},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.content for d in deltas)  # the text is the transcript
    audio = [d.audio for d in deltas if d.audio]
    assert audio[0].id.startswith("audio_") and all(a.id is None for a in audio[1:])
    files = [base64.b64decode(a.data) for a in audio if a.data]
    assert len(files) == 1 and decode(files[0], "flac")[1] == OUTPUT_RATE
    assert audio[-1].expires_at > time.time() and audio[-1].data is None
    plain = client.chat.completions.create(
        model="blsp-emo", messages=[audio_message(speech_clips[11])], max_tokens=8, temperature=0
    )
    transcript = "".join(a.transcript or "" for a in audio)
    assert transcript.strip() == plain.choices[0].message.content
    # Spoken in the tone the words or, without cues, the heard emotion call for, as an unstreamed reply.
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason][0].model_extra
    assert finish["emotion"]["label"] != "neutral"  # else the tone would be neutral either way
    assert finish["speech_style"] == reply_tone(transcript, finish["emotion"]["label"]) != "neutral"


def test_client_leaving_a_spoken_stream_does_not_stall_the_server(server, speech_clips: list[bytes]) -> None:
    body = {
        "messages": [audio_message(speech_clips[12])],
        "max_tokens": 64,
        "stream": True,
        "modalities": ["text", "audio"],
        "audio": {"voice": "joe", "format": "pcm16"},
    }
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert first.startswith("data: ")  # then hang up without reading the rest
    after = httpx.post(
        server.url + "/v1/chat/completions", json={**body, "stream": False, "max_tokens": 4}, timeout=60
    )
    assert after.status_code == 200 and after.json()["choices"][0]["message"]["audio"]["transcript"]


@pytest.mark.integration
def test_pcm16_streams_sentence_by_sentence_while_generating(
    embedded_server, speech_clips: list[bytes]
) -> None:
    """On the real embedded SmolLM2: speech for the first sentences arrives while the text is still being
    generated; the pcm16 chunks join into one 24 kHz reply as long as its transcript wants."""
    client = openai.OpenAI(base_url=embedded_server.url + "/v1", api_key="x", max_retries=0, timeout=300)
    request = {
        "model": "blsp-emo-tiny",
        "messages": [audio_message(speech_clips[1], "Tell me a short story about this.")],
        "max_tokens": 48,
        "temperature": 0,
        "modalities": ["text", "audio"],
        "audio": {"voice": "joe", "format": "pcm16"},
    }
    arrivals: list[tuple[float, object]] = []
    start = time.monotonic()
    for chunk in client.chat.completions.create(**request, stream=True):
        arrivals.append((time.monotonic() - start, chunk))
    deltas = [(t, c.choices[0].delta) for t, c in arrivals if c.choices]
    audio = [(t, d.audio) for t, d in deltas if d.audio]
    data_at = [t for t, a in audio if a.data]
    transcript_at = [t for t, a in audio if a.transcript]
    assert len(data_at) >= 2 and len(transcript_at) >= 3
    # Speech of the first sentence came while later text was still arriving: not all at the end.
    assert data_at[0] < transcript_at[-1], (data_at[0], transcript_at[-1])
    transcript = "".join(a.transcript or "" for _, a in audio)
    pcm = b"".join(base64.b64decode(a.data) for _, a in audio if a.data)
    samples = np.frombuffer(pcm, dtype="<i2")
    seconds = samples.size / OUTPUT_RATE
    words = len(transcript.split())
    print(f"\n{words} words, {seconds:.1f} s of speech, first text at {transcript_at[0]:.2f} s, first audio at {data_at[0]:.2f} s, "
          f"last text at {transcript_at[-1]:.2f} s, done at {arrivals[-1][0]:.2f} s")  # fmt: skip
    assert words >= 8, transcript
    assert 0.15 * words < seconds < 1.0 * words + 1, (words, seconds)  # Piper speaks ~2.5 words a second
    assert np.abs(samples).max() > 3000  # speech, not silence
    assert audio[0][1].id.startswith("audio_") and audio[-1][1].expires_at > time.time()
    finish = [c for _, c in arrivals if c.choices and c.choices[0].finish_reason]
    assert finish[0].model_extra["speech_style"] in {
        "neutral",
        "consoling",
        "cheerful",
        "calming",
        "surprised",
    }
    # The transcript deltas join into the reply's text: the same as unstreamed (greedy), and kept by id.
    plain = client.chat.completions.create(**{**request, "audio": {"voice": "joe", "format": "wav"}})
    assert transcript.strip() == plain.choices[0].message.audio.transcript
    follow = [
        *request["messages"],
        {"role": "assistant", "audio": {"id": audio[0][1].id}},
        {"role": "user", "content": "Why?"},
    ]
    same = [
        *request["messages"],
        {"role": "assistant", "content": transcript.strip()},
        {"role": "user", "content": "Why?"},
    ]
    by_id = client.chat.completions.create(model="blsp-emo-tiny", messages=follow, max_tokens=1)
    by_text = client.chat.completions.create(model="blsp-emo-tiny", messages=same, max_tokens=1)
    assert by_id.usage.prompt_tokens == by_text.usage.prompt_tokens
