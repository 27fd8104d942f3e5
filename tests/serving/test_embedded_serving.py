"""The server on the real embedded models (Whisper base + SmolLM2): streamed English, spoken reply, web page."""

from __future__ import annotations

import base64
import re

import openai
import pytest
from servingfix import audio_message
from webfix import artifacts_dir, run_page_conversation, streamed_prefixes

from blsp_emo.audio import load_audio

pytestmark = pytest.mark.integration


def test_streamed_english_reply_and_spoken_answer(embedded_server, speech_clips: list[bytes]) -> None:
    client = openai.OpenAI(base_url=embedded_server.url + "/v1", api_key="x", max_retries=0, timeout=300)
    messages = [audio_message(speech_clips[1])]  # "he was not an ill disposed young man"
    greedy = {"max_tokens": 24, "temperature": 0}  # the same reply streamed and not (the default samples)
    chunks = list(
        client.chat.completions.create(model="blsp-emo-tiny", messages=messages, stream=True, **greedy)
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3  # the reply really arrives piece by piece
    text = "".join(pieces)
    assert len(re.findall(r"[A-Za-z]{2,}", text)) >= 4, text  # words from SmolLM2, not bytes
    spoken = client.chat.completions.create(
        model="blsp-emo-tiny", messages=messages, modalities=["text", "audio"],
        audio={"voice": "joe", "format": "wav"}, **greedy,
    )  # fmt: skip
    assert (
        spoken.choices[0].message.audio.transcript == text.strip()
    )  # greedy: the same answer with or without streaming
    assert load_audio(base64.b64decode(spoken.choices[0].message.audio.data)).size > 16_000  # > 1 s of speech


def test_web_page_on_the_embedded_model(embedded_server, speech_files) -> None:
    screenshot = artifacts_dir() / "web_page_tiny.png"
    shown = run_page_conversation(embedded_server.url, speech_files[2], speech_files[4], screenshot)
    assert not shown["errors"] and len(shown["badges"]) == 2
    assert all(len(re.findall(r"[A-Za-z]{2,}", reply)) >= 3 for reply in shown["replies"])
    # Each reply was drawn as it streamed in: the page showed at least 3 ever longer beginnings of it.
    assert len(shown["reply_texts"]) == 2
    for texts, final in zip(shown["reply_texts"], shown["replies"]):
        assert len(streamed_prefixes(texts, final)) >= 3, texts
    assert screenshot.stat().st_size > 10_000
