"""The serving core: one model session shared by the chat CLI, the HTTP API and the web page.

Requests go into a queue; one worker thread owns the model. It waits a few milliseconds after the first
request for others to arrive, groups those with the same decoding settings, and answers each group with
one batched :meth:`SpeechChat.respond` call. Streaming requests are generated one at a time with
:meth:`SpeechChat.stream`, their pieces handed to the waiting client as they come. Nothing about a
conversation is kept here: every request carries its whole conversation, so requests can never leak into
each other, and each result goes back to the future or stream of the request that asked for it.

Timeouts and cancellation are cooperative and per request: a request still queued when its time is up is
dropped without running; a running one (batched or streamed) stops within a token once its deadline
passes or its client goes away (``future.cancel()``, ``stream.cancel()``), and its batch-mates go on.
Stop strings (``GenerationParams.stop``) end a reply the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blsp_emo.model.stopping import StopMatcher
from blsp_emo.serving.protocol import GenerationParams

log = logging.getLogger(__name__)


class EngineTimeout(TimeoutError):
    """A request did not finish within its time limit."""


class EngineClosed(RuntimeError):
    """The engine was shut down before the request ran."""


class EngineCancelled(RuntimeError):
    """The request was cancelled (its client went away) while it was generating."""


class RequestFuture(concurrent.futures.Future):
    """The future of a queued request. ``cancel()`` also stops a request that is already generating:
    its row ends within a token (the future then fails with :class:`EngineCancelled`)."""

    def __init__(self) -> None:
        super().__init__()
        self.stop_requested = threading.Event()

    def cancel(self) -> bool:
        """Cancel the request; True when it will not deliver a result (queued, or stopping)."""
        self.stop_requested.set()
        if super().cancel():
            return True
        return not self.done()


@dataclass
class Completion:
    """One answer: the text, the emotion heard in the user's latest audio, and token counts."""

    text: str
    emotion: str | None = None
    emotion_scores: dict[str, float] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"

    @classmethod
    def from_reply(cls, reply: Any) -> Completion:
        """Copy a :class:`blsp_emo.model.Reply` (or anything with the same attributes)."""
        scores = getattr(reply, "emotion_scores", None)
        return cls(
            text=str(reply.text),
            emotion=getattr(reply, "emotion", None),
            emotion_scores={str(k): float(v) for k, v in scores.items()} if scores else None,
            prompt_tokens=int(getattr(reply, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(reply, "completion_tokens", 0) or 0),
            finish_reason=str(getattr(reply, "finish_reason", "stop") or "stop"),
        )


@dataclass(frozen=True)
class StreamEvent:
    """One item of a stream: ``kind`` is "text" (value: a piece of the reply), "emotion" (value: ``(label,
    scores)`` heard in the latest user audio, sent once before the first piece where the model tells it
    early) or "done" (value: the final :class:`Completion`, with the emotion and usage)."""

    kind: str
    value: Any


_ids = itertools.count()


@dataclass(eq=False)
class _Request:
    messages: list[dict[str, Any]]
    params: GenerationParams
    deadline: float
    future: RequestFuture | None = None
    stream: TokenStream | None = None
    id: int = field(default_factory=lambda: next(_ids))

    def should_stop(self) -> bool:
        """Checked after every generated token: the client went away or the time is up."""
        return self.cancelled or time.monotonic() > self.deadline

    def batch_key(self) -> tuple:
        """Requests with equal keys are generated as one batch: equal length limit and decoding settings
        (penalties and n-gram block included; stop strings are per row)."""
        p = self.params
        shared = (
            p.max_new_tokens,
            p.repetition_penalty,
            p.no_repeat_ngram_size,
            p.frequency_penalty,
            p.presence_penalty,
        )
        if p.greedy:  # deterministic: top_p and seed do not matter
            return ("greedy", *shared)
        if p.seed is not None:  # a seeded sample must not depend on its batch-mates
            return ("alone", self.id)
        return ("sample", *shared, p.temperature, p.top_p)

    @property
    def cancelled(self) -> bool:
        if self.stream is not None:
            return self.stream.cancelled.is_set()
        return self.future is not None and (self.future.cancelled() or self.future.stop_requested.is_set())


class TokenStream:
    """The receiving end of a streaming request; iterate it (sync or async) for :class:`StreamEvent` s."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._queue: asyncio.Queue | queue.Queue = asyncio.Queue() if loop else queue.Queue()
        self.cancelled = threading.Event()
        self._hooks: list[Any] = []
        self._hooks_lock = threading.Lock()

    def _push(self, item: StreamEvent | BaseException | None) -> None:
        if self._loop is None:
            self._queue.put(item)
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the client's event loop is gone: nobody is listening
            self.cancel()

    def cancel(self) -> None:
        """Stop generating for this stream (the client went away): at the next token, not the next piece."""
        with self._hooks_lock:
            self.cancelled.set()
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def _on_cancel(self, hook: Any) -> None:
        """Call ``hook`` when the stream is cancelled (at once if it already is)."""
        with self._hooks_lock:
            if not self.cancelled.is_set():
                self._hooks.append(hook)
                return
        hook()

    def __iter__(self) -> Iterator[StreamEvent]:
        assert self._loop is None, "this stream was opened for asyncio: use 'async for'"
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        assert self._loop is not None, "this stream was opened without an event loop: use 'for'"
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def last_user_audio(messages: list[dict[str, Any]]) -> np.ndarray | None:
    """The last audio part of the latest user turn, or None when that turn has no audio."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            for part in reversed(content):
                if part.get("type") == "audio":
                    return part["audio"]
        return None
    return None


class ServingEngine:
    """One model session that queues requests and answers concurrent ones in batches."""

    def __init__(
        self,
        chat: Any,
        *,
        model_name: str = "blsp-emo",
        max_batch_size: int = 16,
        batch_wait_s: float = 0.01,
        timeout_s: float = 300.0,
    ) -> None:
        """``chat`` is a :class:`blsp_emo.model.SpeechChat`; ``batch_wait_s`` is how long the worker waits
        after a first request for others to join its batch; ``timeout_s`` is the default time limit."""
        self.chat = chat
        self.model_name = model_name
        self.max_batch_size = max(1, int(max_batch_size))
        self.batch_wait_s = float(batch_wait_s)
        self.timeout_s = float(timeout_s)
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0, "timeouts": 0, "cancelled": 0}
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = threading.Event()
        self._worker = threading.Thread(target=self._run, name="blsp-emo-engine", daemon=True)
        self._worker.start()

    # ----- client side -------------------------------------------------------------------------------
    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout_s if timeout is None else float(timeout))

    def _enqueue(self, request: _Request) -> None:
        if self._closed.is_set():
            raise EngineClosed("the serving engine is shut down")
        self._queue.put(request)

    @property
    def context_length(self) -> int | None:
        """The model's context in tokens (None when the model does not say)."""
        return self.chat.context_length()

    def count_prompt_tokens(self, messages: list[dict[str, Any]]) -> int | None:
        """Tokens the prompt of ``messages`` takes (speech included); None when the model cannot tell."""
        return self.chat.prompt_tokens(messages)

    def submit(
        self,
        messages: list[dict[str, Any]],
        params: GenerationParams | None = None,
        timeout: float | None = None,
    ) -> RequestFuture:
        """Queue one conversation; the future resolves to a :class:`Completion`; ``cancel()`` stops it."""
        future = RequestFuture()
        self._enqueue(
            _Request(messages, params or GenerationParams(), self._deadline(timeout), future=future)
        )
        return future

    def generate(
        self,
        messages: list[dict[str, Any]],
        params: GenerationParams | None = None,
        timeout: float | None = None,
    ) -> Completion:
        """Answer one conversation, blocking until done; raises :class:`EngineTimeout` after ``timeout``."""
        limit = self.timeout_s if timeout is None else timeout
        future = self.submit(messages, params, limit)
        try:
            return future.result(timeout=limit + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise EngineTimeout(f"no answer within {limit:g} s") from None

    async def agenerate(
        self,
        messages: list[dict[str, Any]],
        params: GenerationParams | None = None,
        timeout: float | None = None,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
        poll_s: float = 0.2,
    ) -> Completion:
        """The asyncio form of :meth:`generate`. ``disconnected`` (e.g. Starlette's
        ``request.is_disconnected``) is polled every ``poll_s``: when the client has gone the request is
        cancelled (generation stops within a token) and :class:`EngineCancelled` is raised."""
        limit = self.timeout_s if timeout is None else timeout
        future = self.submit(messages, params, limit)
        waiter = asyncio.wrap_future(future)
        until = time.monotonic() + limit + 1.0
        try:
            while True:
                left = until - time.monotonic()
                if left <= 0:
                    raise EngineTimeout(f"no answer within {limit:g} s")
                done, _ = await asyncio.wait({waiter}, timeout=min(poll_s, left))
                if done:
                    return waiter.result()
                if disconnected is not None and await disconnected():
                    raise EngineCancelled("the client went away")
        finally:
            if not future.done():
                future.cancel()  # stops the generation, whatever ended the wait (cancelled task included)
            if not waiter.done():
                waiter.cancel()  # nobody will read its late EngineCancelled: do not log it as unretrieved

    def open_stream(
        self,
        messages: list[dict[str, Any]],
        params: GenerationParams | None = None,
        timeout: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> TokenStream:
        """Queue one conversation for streaming; pass the running ``loop`` to consume it with ``async for``."""
        stream = TokenStream(loop)
        self._enqueue(
            _Request(messages, params or GenerationParams(), self._deadline(timeout), stream=stream)
        )
        return stream

    @property
    def queued(self) -> int:
        """Requests waiting for the worker (not counting the batch being generated)."""
        return self._queue.qsize()

    def close(self, wait: bool = True) -> None:
        """Stop the worker; queued requests fail with :class:`EngineClosed`."""
        self._closed.set()
        self._queue.put(None)
        if wait:
            self._worker.join(timeout=60)

    # ----- worker side -------------------------------------------------------------------------------
    def _collect(self, first: _Request) -> list[_Request]:
        batch = [first]
        until = time.monotonic() + self.batch_wait_s
        while len(batch) < self.max_batch_size:
            left = until - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # keep the shutdown signal for the main loop
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None or self._closed.is_set():
                if first is not None:
                    self._fail(first, EngineClosed("the serving engine is shut down"))
                break
            pending = self._collect(first)
            live = [r for r in pending if self._alive(r)]
            groups: dict[tuple, list[_Request]] = {}
            streams: list[_Request] = []
            for request in live:
                if request.stream is not None:
                    streams.append(request)
                else:
                    groups.setdefault(request.batch_key(), []).append(request)
            for group in groups.values():
                try:
                    self._answer(group)
                except Exception as exc:  # never let the worker die: fail this group and go on
                    log.exception("batch failed")
                    for request in group:
                        if request.future is not None and not request.future.done():
                            request.future.set_exception(exc)
            for request in streams:
                if self._alive(request):
                    self._stream(request)
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._fail(item, EngineClosed("the serving engine is shut down"))

    def _fail(self, request: _Request, exc: BaseException) -> None:
        if request.stream is not None:
            request.stream._push(exc)
        elif request.future is not None and request.future.set_running_or_notify_cancel():
            request.future.set_exception(exc)

    def _alive(self, request: _Request) -> bool:
        """False (and the request answered) when it was cancelled or its time ran out while queued."""
        if request.cancelled:
            return False
        if time.monotonic() > request.deadline:
            self.stats["timeouts"] += 1
            self._fail(request, EngineTimeout("the request timed out while waiting in the queue"))
            return False
        return True

    def _answer(self, group: list[_Request], count: bool = True) -> None:
        group = [r for r in group if r.future is not None and r.future.set_running_or_notify_cancel()]
        if not group:
            return
        params = group[0].params
        if count:
            self.stats["batches"] += 1
            self.stats["requests"] += len(group)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(group))
        try:
            replies = self.chat.respond(
                [r.messages for r in group],
                params.options,
                stops=[r.params.stop for r in group],
                should_stop=[r.should_stop for r in group],
            )
        except Exception as exc:  # one bad conversation must not fail its batch-mates: retry one by one
            if len(group) == 1:
                log.exception("generation failed")
                group[0].future.set_exception(exc)
                return
            log.warning("batch of %d failed (%s); answering one by one", len(group), exc)
            for request in group:
                retry = RequestFuture()
                single = _Request(request.messages, request.params, request.deadline, future=retry)
                single.future.stop_requested = request.future.stop_requested  # a cancel still reaches it
                self._answer([single], count=False)
                self._copy(retry, request.future)
            return
        for request, reply in zip(group, replies):
            if getattr(reply, "finish_reason", None) == "cancelled":  # stopped early by should_stop
                if request.cancelled:
                    self.stats["cancelled"] += 1
                    request.future.set_exception(EngineCancelled("the client went away"))
                else:
                    self.stats["timeouts"] += 1
                    request.future.set_exception(
                        EngineTimeout("the reply did not finish within the time limit")
                    )
                continue
            completion = Completion.from_reply(reply)
            if last_user_audio(request.messages) is None:  # the emotion belongs to the latest user turn
                completion.emotion, completion.emotion_scores = None, None
            request.future.set_result(completion)

    @staticmethod
    def _copy(source: concurrent.futures.Future, target: concurrent.futures.Future) -> None:
        if source.exception() is not None:
            target.set_exception(source.exception())
        else:
            target.set_result(source.result())

    def _stream(self, request: _Request) -> None:
        stream = request.stream
        assert stream is not None
        self.stats["requests"] += 1
        params = request.params
        pieces: list[str] = []
        matcher = StopMatcher(params.stop)
        timer: threading.Timer | None = None
        try:
            generator = self.chat.stream(request.messages, params.options)
            stop = getattr(generator, "cancel", None) or getattr(generator, "close", None)
            if stop is not None:
                # A client that goes away, or a deadline that passes between two pieces, stops the model
                # at its next token (pieces only come at word boundaries).
                stream._on_cancel(stop)
                timer = threading.Timer(max(0.0, request.deadline - time.monotonic()), stop)
                timer.daemon = True
                timer.start()
            heard_sent = last_user_audio(request.messages) is None  # the emotion belongs to that turn
            try:
                for piece in generator:
                    heard = getattr(generator, "heard", None)
                    if not heard_sent and heard is not None:
                        stream._push(StreamEvent("emotion", heard))
                        heard_sent = True
                    if stream.cancelled.is_set():
                        self.stats["cancelled"] += 1
                        return
                    if time.monotonic() > request.deadline:
                        self.stats["timeouts"] += 1
                        stream._push(EngineTimeout("the reply did not finish within the time limit"))
                        return
                    text = matcher.feed(piece) if piece else ""
                    if text:
                        pieces.append(text)
                        stream._push(StreamEvent("text", text))
                    if matcher.stopped:  # a stop string: end the model's turn, let it wind down
                        if stop is not None:
                            stop()
                        for _ in generator:
                            pass
                        break
                tail = matcher.flush()
                if tail:
                    pieces.append(tail)
                    stream._push(StreamEvent("text", tail))
                if stream.cancelled.is_set():
                    self.stats["cancelled"] += 1
                    return
                if time.monotonic() > request.deadline and not matcher.stopped:
                    self.stats["timeouts"] += 1
                    stream._push(EngineTimeout("the reply did not finish within the time limit"))
                    return
                final = getattr(generator, "reply", None)
            finally:  # stop generating early where the stream supports it (a cancelled or timed-out client)
                if timer is not None:
                    # Joined, not just cancelled: a timer thread still holding the reply's tensors when the
                    # interpreter exits aborts the process ("terminate called without an active exception").
                    timer.cancel()
                    timer.join()
                close = getattr(generator, "close", None)
                if close is not None:  # stopped, and the generating thread done before the next request
                    close()
                elif stop is not None:
                    stop()
            done = (
                Completion.from_reply(final) if final is not None else self._count(request, "".join(pieces))
            )
            if matcher.stopped:  # the reply is what came before the stop string
                done.text, done.finish_reason = "".join(pieces), "stop"
            if last_user_audio(request.messages) is None:  # the emotion belongs to the latest user turn
                done.emotion, done.emotion_scores = None, None
            stream._push(StreamEvent("done", done))
            stream._push(None)
        except Exception as exc:
            log.exception("streaming failed")
            stream._push(exc)

    def _count(self, request: _Request, text: str) -> Completion:
        """Usage for a stream whose generator reports none (or was cut by a stop string): count tokens with
        the processor's tokenizer."""
        tokenizer = getattr(getattr(self.chat, "processor", None), "tokenizer", None)
        completion = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer else 0
        finish = "length" if completion >= request.params.max_new_tokens else "stop"
        prompt = self.count_prompt_tokens(request.messages) or 0
        return Completion(text=text, prompt_tokens=prompt, completion_tokens=completion, finish_reason=finish)
