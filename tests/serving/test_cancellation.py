"""Cooperative cancellation: a client that goes away or a request past its time limit stops generating
within a few tokens, streaming or not, and its batch-mates are unaffected.

The tiny model's decoding steps are counted (and slowed to about 10 ms each, so that a 600-token reply
takes several seconds): after a disconnect or timeout the count must stop growing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace

import httpx
import pytest

from blsp_emo.model.types import DecodingOptions
from blsp_emo.serving.api import create_app
from blsp_emo.serving.engine import EngineCancelled, ServingEngine
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.server import BackgroundServer

URL = "/v1/chat/completions"
LONG = 600  # tokens asked for; the random model never ends a turn by itself when decoding is plain greedy
LIMITS = ServingLimits(max_new_tokens=LONG, batch_wait_s=0.2, timeout_s=60)
# Plain greedy decoding (the defaults sample and block repeated 4-grams: the random model may then end a turn
# after a few dozen tokens, too soon for a hang-up to catch it generating).
PLAIN = {"temperature": 0, "repetition_penalty": 1, "no_repeat_ngram_size": 0}


class StepCounter:
    """Wraps the LLM's forward: counts decoding steps and makes each take at least ``delay`` seconds."""

    def __init__(self, llm, delay: float = 0.01) -> None:
        self.steps = 0
        self.delay = delay
        self._forward = llm.forward
        llm.forward = self

    def __call__(self, *args, **kwargs):
        self.steps += 1
        time.sleep(self.delay)
        return self._forward(*args, **kwargs)

    def settle(self, quiet: float = 0.5, limit: float = 10.0) -> int:
        """Wait until no step happened for ``quiet`` seconds; return the count."""
        until = time.monotonic() + limit
        last = self.steps
        while time.monotonic() < until:
            time.sleep(quiet)
            if self.steps == last:
                return last
            last = self.steps
        raise AssertionError(f"still generating after {limit} s ({self.steps} steps)")


@pytest.fixture(scope="module")
def counted():
    """A model session of its own (its forward is wrapped), with a step counter."""
    from blsp_emo.model import SpeechChat, load_model

    model, processor = load_model("random-tiny")
    counter = StepCounter(model.llm)
    return SpeechChat(model, processor), counter


@pytest.fixture()
def engine(counted):
    chat, _ = counted
    engine = ServingEngine(chat, model_name="cancel-test", limits=LIMITS)
    yield engine
    engine.close()


def _post_and_hang_up(server: BackgroundServer, body: dict, after: float) -> None:
    """Send a request on a raw socket and close it after ``after`` seconds without reading the answer."""
    payload = json.dumps(body).encode()
    head = (f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode()  # fmt: skip
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(head + payload)
    time.sleep(after)
    sock.close()


def _ask(text: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text}], **PLAIN, **extra}


def test_a_dropped_request_stops_generating(counted, engine) -> None:
    chat, counter = counted
    with BackgroundServer(create_app(engine, limits=LIMITS, default_system=None)) as server:
        counter.settle()
        start = counter.steps
        _post_and_hang_up(server, _ask("Tell me a long story.", max_tokens=LONG), after=1.0)
        gone = counter.steps
        total = counter.settle() - start
        assert gone - start > 5, "generation had not started"  # it was running when the client left
        assert total < LONG // 2, total
        assert counter.steps - gone < 60  # stopped within a few tokens of noticing (polled every 0.2 s)
        until = time.monotonic() + 5
        while engine.stats["cancelled"] < 1 and time.monotonic() < until:
            time.sleep(0.05)
        assert engine.stats["cancelled"] == 1
        # The server goes on answering.
        reply = httpx.post(server.url + URL, json=_ask("hi", max_tokens=3), timeout=30)
        assert reply.status_code == 200


def test_a_dropped_stream_stops_generating(counted, engine) -> None:
    chat, counter = counted
    with BackgroundServer(create_app(engine, limits=LIMITS, default_system=None)) as server:
        counter.settle()
        start = counter.steps
        _post_and_hang_up(server, _ask("Tell me a long story.", max_tokens=LONG, stream=True), after=1.0)
        total = counter.settle() - start
        assert 5 < total < LONG // 2, total


@pytest.mark.parametrize("stream", [False, True])
def test_a_timed_out_request_stops_generating(counted, engine, stream: bool) -> None:
    chat, counter = counted
    app = create_app(engine, limits=replace(LIMITS, timeout_s=1.0), default_system=None)
    with BackgroundServer(app) as server:
        counter.settle()
        start = counter.steps
        began = time.monotonic()
        response = httpx.post(server.url + URL, json=_ask("Tell me a long story.", max_tokens=LONG, stream=stream),
                              timeout=30)  # fmt: skip
        if stream:
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            assert json.loads(events[-2])["error"]["code"] == "timeout"
        else:
            assert response.status_code == 504, response.text
        assert time.monotonic() - began < 4.0
        answered = counter.steps
        total = counter.settle() - start
        assert total < LONG // 2 and counter.steps - answered < 20, (total, counter.steps - answered)


def test_cancelling_one_request_leaves_its_batch_mates_alone(counted, engine) -> None:
    chat, counter = counted
    params = DecodingOptions(max_new_tokens=80)  # PLAIN: greedy, no penalty, no n-gram block
    other = [{"role": "user", "content": "What a lovely morning."}]
    solo = engine.generate(other, params)
    doomed = engine.submit([{"role": "user", "content": "Tell me a long story."}], params)
    mate = engine.submit(other, params)  # within the 0.2 s batch window: one batch of two
    threading.Timer(0.6, doomed.cancel).start()
    result = mate.result(timeout=60)
    with pytest.raises(EngineCancelled):
        doomed.result(timeout=60)
    assert engine.stats["largest_batch"] == 2
    assert (result.text, result.completion_tokens) == (solo.text, solo.completion_tokens)
