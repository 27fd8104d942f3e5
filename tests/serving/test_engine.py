"""The serving core on the tiny random model: batching, isolation, timeouts, cancellation, shutdown."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from blsp_emo.audio import load_audio
from blsp_emo.errors import UserError
from blsp_emo.model import SpeechChat
from blsp_emo.model.types import CONVERSATION, Reply
from blsp_emo.serving.engine import EngineClosed, EngineTimeout, ServingEngine, _Request
from blsp_emo.serving.limits import ServingLimits

GREEDY = CONVERSATION.replace(max_new_tokens=6, temperature=0.0)  # with the default penalty and n-gram block


@pytest.fixture()
def engine(random_engine):
    """A fresh engine on the shared model session, waiting 100 ms for batch-mates."""
    engine = ServingEngine(random_engine.chat, limits=ServingLimits(max_batch_size=8, batch_wait_s=0.1))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def conversations(speech_files) -> list[list[dict]]:
    return [
        [{"role": "user", "content": [{"type": "audio", "audio": load_audio(path)}]}]
        for path in speech_files[:6]
    ]


def test_concurrent_requests_share_batches_by_settings(engine, conversations) -> None:
    futures = [engine.submit(c, GREEDY) for c in conversations[:4]]
    futures.append(engine.submit(conversations[4], replace(GREEDY, max_new_tokens=3)))
    futures.append(engine.submit(conversations[5], replace(GREEDY, no_repeat_ngram_size=0)))
    results = [f.result(timeout=60) for f in futures]
    assert engine.stats["batches"] == 3 and engine.stats["largest_batch"] == 4
    assert results[4].completion_tokens <= 3
    solo = [engine.generate(c, GREEDY) for c in conversations[:4]]
    assert [r.text for r in results[:4]] == [r.text for r in solo]


def test_batch_keys_hold_every_decoding_setting() -> None:
    def key(**changes):
        return _Request([], replace(GREEDY, **changes), deadline=0.0).batch_key()

    assert key() == key(top_p=0.5) == key(seed=3)  # greedy: top_p and seed do not matter
    for change in [{"max_new_tokens": 7}, {"repetition_penalty": 1.0}, {"no_repeat_ngram_size": 3},
                   {"frequency_penalty": 0.5}, {"presence_penalty": 0.5}, {"temperature": 0.5}]:  # fmt: skip
        assert key(**change) != key(), change
    sample = {"temperature": 0.5}
    assert key(**sample) == key(**sample)
    for change in [
        {"top_p": 0.5},
        {"temperature": 0.7},
        {"no_repeat_ngram_size": 0},
        {"repetition_penalty": 1.2},
    ]:
        assert key(**{**sample, **change}) != key(**sample), change
    assert key(**sample, seed=1) != key(**sample, seed=1)  # a seeded sample is generated alone
    assert key(**sample, stop=("x",)) == key(**sample)  # stop strings are per row


class _RecordingChat(SpeechChat):
    """The shared model and processor, recording the options of every generation."""

    def __init__(self, chat: SpeechChat) -> None:
        super().__init__(chat.model, chat.processor)
        self.options: list = []

    def respond(self, conversations, options=CONVERSATION, *, stops=None, should_stop=None):
        self.options.append(options)
        return super().respond(conversations, options, stops=stops, should_stop=should_stop)

    def stream(self, messages, options=CONVERSATION):
        self.options.append(options)
        return super().stream(messages, options)


def test_requests_default_to_the_conversation_options(random_engine, conversations) -> None:
    recording = _RecordingChat(random_engine.chat)
    engine = ServingEngine(recording, limits=ServingLimits(batch_wait_s=0.0))
    try:
        engine.generate(conversations[0])
        list(engine.open_stream(conversations[0]))
        engine.generate(conversations[0], GREEDY)
    finally:
        engine.close()
    assert recording.options == [CONVERSATION, CONVERSATION, GREEDY]


def test_a_broken_conversation_does_not_fail_its_batch(engine, conversations) -> None:
    broken = [{"role": "user", "content": [{"type": "audio"}]}]  # no samples
    good = engine.submit(conversations[0], GREEDY)
    bad = engine.submit(broken, GREEDY)
    assert good.result(timeout=60).text == engine.generate(conversations[0], GREEDY).text
    with pytest.raises(UserError):  # only this request fails
        bad.result(timeout=60)


def test_timeouts(engine, conversations) -> None:
    with pytest.raises(EngineTimeout):
        engine.generate(conversations[0], GREEDY, timeout=0.0)
    stream = engine.open_stream(conversations[0], GREEDY, timeout=0.0)
    with pytest.raises(EngineTimeout):
        list(stream)
    assert engine.stats["timeouts"] == 2
    assert engine.generate(conversations[0], GREEDY).completion_tokens > 0  # still serving


def test_stream_gives_pieces_then_the_reply(engine, conversations) -> None:
    events = list(engine.open_stream(conversations[1], GREEDY))
    kinds = [e.kind for e in events]
    # the emotion heard comes once, before the first piece (a spoken reply takes its tone from it)
    assert kinds[0] == "emotion" and kinds[-1] == "done" and all(k == "text" for k in kinds[1:-1])
    done = events[-1].value
    assert events[0].value == (done.emotion, done.emotion_scores) and done.emotion is not None
    assert "".join(e.value for e in events[1:-1]).strip() == done.text
    assert done.text == engine.generate(conversations[1], GREEDY).text and done.emotion is not None
    cancelled = engine.open_stream(conversations[2], GREEDY)
    cancelled.cancel()
    assert engine.generate(conversations[2], GREEDY).text  # a cancelled stream does not block the queue


def test_a_finished_stream_leaves_no_thread_behind(engine, conversations, monkeypatch) -> None:
    """By the time "done" arrives, the reply's generating thread and its deadline timer have ended: a thread
    still holding the reply's tensors when the interpreter exits aborts the process. The timer here is slow to
    wind down, as a loaded machine makes it."""
    timers: list[threading.Timer] = []

    class SlowTimer(threading.Timer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            timers.append(self)

        def run(self) -> None:
            super().run()
            time.sleep(0.3)

    monkeypatch.setattr(threading, "Timer", SlowTimer)
    before = set(threading.enumerate())
    for event in engine.open_stream(conversations[1], GREEDY):
        if event.kind == "done":
            left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
            assert len(timers) == 1 and left == [], left


def test_text_only_turn_has_no_emotion(engine, conversations) -> None:
    follow = [*conversations[0], {"role": "assistant", "content": "ok"}, {"role": "user", "content": "and?"}]
    reply = engine.generate(follow, GREEDY)
    assert isinstance(reply, Reply) and reply.emotion is None and reply.emotion_scores is None
    events = list(engine.open_stream(follow, GREEDY))
    assert "emotion" not in [e.kind for e in events] and events[-1].value.emotion is None
    heard = engine.generate(conversations[0], GREEDY)  # the same model hears the audio turn
    assert heard.emotion is not None and heard.emotion_scores


def test_a_stop_string_ends_a_streamed_and_a_batched_reply(engine, conversations) -> None:
    plain = engine.generate(conversations[1], GREEDY.replace(max_new_tokens=24)).text
    stop = plain[4:7]
    assert len(plain) > 10 and stop and stop not in plain[:4]
    options = GREEDY.replace(max_new_tokens=24, stop=(stop,))
    batched = engine.generate(conversations[1], options)
    # the text up to the stop string, as OpenAI's API cuts it (a space before the stop string stays)
    assert (batched.text, batched.finish_reason) == (plain[: plain.index(stop)], "stop")
    done = list(engine.open_stream(conversations[1], options))[-1].value
    assert isinstance(done, Reply) and done.finish_reason == "stop" and stop not in done.text
    assert done.text.strip() == batched.text.strip()


class _GatedChat(SpeechChat):
    """The shared model and processor behind a gate: a batched generation starts, then waits until the test
    opens it; every generation (batched or streamed) is counted."""

    def __init__(self, chat: SpeechChat) -> None:
        super().__init__(chat.model, chat.processor)
        self.started = threading.Event()
        self.gate = threading.Event()
        self.calls = 0

    def respond(self, conversations, options=CONVERSATION, *, stops=None, should_stop=None):
        self.calls += 1
        self.started.set()
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        return super().respond(conversations, options, stops=stops, should_stop=should_stop)

    def stream(self, messages, options=CONVERSATION):
        self.calls += 1
        return super().stream(messages, options)


def test_close_fails_queued_requests(random_engine, conversations) -> None:
    gated = _GatedChat(random_engine.chat)
    engine = ServingEngine(gated, limits=ServingLimits(batch_wait_s=0.0))
    busy = engine.submit(conversations[0], GREEDY)
    assert gated.started.wait(timeout=30)  # the worker is generating (and holds) the first request
    queued = [engine.submit(c, GREEDY) for c in conversations[1:3]]
    stream = engine.open_stream(conversations[3], GREEDY)
    assert engine.queued == 3  # three requests wait behind the busy one
    closer = threading.Thread(target=engine.close)
    closer.start()
    deadline = time.monotonic() + 10
    while not engine._closed.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine._closed.is_set() and engine.queued >= 3  # closed while they were still queued
    gated.gate.set()
    closer.join(timeout=60)
    assert not closer.is_alive()
    assert busy.result(timeout=30).completion_tokens > 0  # the request that was running finishes
    for future in queued:
        with pytest.raises(EngineClosed, match="shut down"):
            future.result(timeout=10)  # failed, not run and not left hanging
    with pytest.raises(EngineClosed, match="shut down"):
        list(stream)
    assert gated.calls == 1  # nothing queued ran after close()
    with pytest.raises(EngineClosed):
        engine.submit(conversations[0], GREEDY)
