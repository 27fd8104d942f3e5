"""16 concurrent requests with different audio: all answered, batched together, never mixed up."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from servingfix import audio_message

from blsp_emo.serving.api import create_app
from blsp_emo.serving.engine import ServingEngine
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.server import BackgroundServer


@pytest.fixture(scope="module")
def batching_server(random_engine, speaker):
    """A second engine on the same model session, waiting 50 ms for batch-mates."""
    limits = ServingLimits(max_batch_size=16, batch_wait_s=0.05)
    engine = ServingEngine(random_engine.chat, model_name="batching", limits=limits)
    with BackgroundServer(create_app(engine, speaker=speaker)) as server:
        yield server, engine
    engine.close()


def emotion_of(response) -> tuple:
    emotion = response.model_extra["emotion"]
    return emotion["label"], tuple(sorted(emotion["scores"].items()))


def ask(client: openai.OpenAI, wav: bytes, stream: bool) -> tuple[str, tuple, int]:
    """One greedy request; returns (text, emotion label and scores, completion tokens)."""
    kwargs = {"model": "blsp-emo", "messages": [audio_message(wav)], "max_tokens": 20, "temperature": 0.0}
    if not stream:
        reply = client.chat.completions.create(**kwargs)
        return reply.choices[0].message.content, emotion_of(reply), reply.usage.completion_tokens
    text, label, tokens = "", None, 0
    for chunk in client.chat.completions.create(
        **kwargs, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            if chunk.choices[0].finish_reason:
                label = emotion_of(chunk)
    return text, label, tokens


def test_sixteen_concurrent_requests_match_their_solo_answers(
    batching_server, speech_clips: list[bytes]
) -> None:
    server, engine = batching_server
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
    streamed = [i % 4 == 3 for i in range(16)]  # a quarter of the clients stream
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda i: ask(client, speech_clips[i], streamed[i]), range(16)))
    assert engine.stats["largest_batch"] > 1, engine.stats  # concurrent requests really shared a batch
    alone = [ask(client, speech_clips[i], False) for i in range(16)]
    for i, ((text, (label, scores), tokens), (text1, (label1, scores1), tokens1)) in enumerate(
        zip(together, alone)
    ):
        assert (text, label, tokens) == (text1, label1, tokens1), i
        # Emotion scores come from a padded batch: equal up to float rounding.
        assert max(abs(a[1] - b[1]) for a, b in zip(scores, scores1)) < 2e-3, i
    assert len(set(alone)) >= 8, alone  # the answers differ, so a mix-up would show
