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
Stop strings (``DecodingOptions.stop``) end a reply the same way. Every answer is a
:class:`~blsp_emo.model.types.Reply`; its emotion is the one heard in the latest user turn's audio (none
when that turn has no audio). The engine's defaults (batch size and wait, time limit) come from
:class:`~blsp_emo.serving.limits.ServingLimits`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from blsp_emo.model.stopping import StopMatcher
from blsp_emo.model.types import CONVERSATION, DecodingOptions, Message, Reply
from blsp_emo.serving.limits import ServingLimits

if TYPE_CHECKING:
    from blsp_emo.model.inference import SpeechChat

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


Heard = tuple[str | None, dict[str, float] | None]  # (label, scores) of the emotion heard


@dataclass(frozen=True)
class StreamEvent:
    """One item of a stream: ``kind`` is "text" (value: a piece of the reply), "emotion" (value: the
    ``(label, scores)`` heard in the latest user audio, sent once before the first piece where the model
    tells it early) or "done" (value: the final :class:`~blsp_emo.model.types.Reply`, with the emotion and
    usage)."""

    kind: str
    value: str | Heard | Reply


_ids = itertools.count()


@dataclass(eq=False)
class _Request:
    messages: Sequence[Message]
    options: DecodingOptions
    deadline: float
    future: RequestFuture | None = None
    stream: TokenStream | None = None
    id: int = field(default_factory=lambda: next(_ids))

    def should_stop(self) -> bool:
        """Checked after every generated token: the client went away or the time is up."""
        return self.cancelled or time.monotonic() > self.deadline

    def batch_key(self) -> tuple:
        """Requests with equal keys are generated as one batch (:meth:`DecodingOptions.batch_key`: equal
        length limit and decoding settings; stop strings are per row), except that a seeded sample is
        generated alone: its reply must not depend on its batch-mates."""
        if not self.options.greedy and self.options.seed is not None:
            return ("alone", self.id)
        return self.options.batch_key()

    @property
    def cancelled(self) -> bool:
        if self.stream is not None:
            return self.stream.cancelled.is_set()
        return self.future is not None and (self.future.cancelled() or self.future.stop_requested.is_set())


_Item = StreamEvent | BaseException | None  # what a stream's queue holds; None ends it


class TokenStream:
    """The receiving end of a streaming request; iterate it (sync or async) for :class:`StreamEvent` s."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._async: asyncio.Queue[_Item] | None = asyncio.Queue() if loop else None
        self._sync: queue.Queue[_Item] = queue.Queue()
        self.cancelled = threading.Event()
        self._hooks: list[Callable[[], object]] = []
        self._hooks_lock = threading.Lock()

    def _push(self, item: _Item) -> None:
        if self._loop is None or self._async is None:
            self._sync.put(item)
            return
        try:
            self._loop.call_soon_threadsafe(self._async.put_nowait, item)
        except RuntimeError:  # the client's event loop is gone: nobody is listening
            self.cancel()

    def cancel(self) -> None:
        """Stop generating for this stream (the client went away): at the next token, not the next piece."""
        with self._hooks_lock:
            self.cancelled.set()
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def _on_cancel(self, hook: Callable[[], object]) -> None:
        """Call ``hook`` when the stream is cancelled (at once if it already is)."""
        with self._hooks_lock:
            if not self.cancelled.is_set():
                self._hooks.append(hook)
                return
        hook()

    def __iter__(self) -> Iterator[StreamEvent]:
        assert self._loop is None, "this stream was opened for asyncio: use 'async for'"
        while True:
            item = self._sync.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        assert self._async is not None, "this stream was opened without an event loop: use 'for'"
        while True:
            item = await self._async.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def last_user_audio(messages: Sequence[Message]) -> np.ndarray | None:
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


def _heard_in_latest_turn(reply: Reply, messages: Sequence[Message]) -> Reply:
    """``reply`` without an emotion when the latest user turn has no audio (the emotion belongs to it)."""
    if last_user_audio(messages) is None and (reply.emotion is not None or reply.emotion_scores is not None):
        return replace(reply, emotion=None, emotion_scores=None)
    return reply


class ServingEngine:
    """One model session that queues requests and answers concurrent ones in batches."""

    def __init__(
        self, chat: SpeechChat, *, model_name: str = "blsp-emo", limits: ServingLimits | None = None
    ) -> None:
        """``chat`` answers the requests; ``limits`` give the batch size (``max_batch_size``), how long the
        worker waits after a first request for others to join its batch (``batch_wait_s``) and the default
        time limit of a request (``timeout_s``)."""
        self.chat = chat
        self.model_name = model_name
        self.limits = limits or ServingLimits()
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0, "timeouts": 0, "cancelled": 0}
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = threading.Event()
        self._worker = threading.Thread(target=self._run, name="blsp-emo-engine", daemon=True)
        self._worker.start()

    # ----- client side -------------------------------------------------------------------------------
    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.limits.timeout_s if timeout is None else float(timeout))

    def _enqueue(self, request: _Request) -> None:
        if self._closed.is_set():
            raise EngineClosed("the serving engine is shut down")
        self._queue.put(request)

    @property
    def context_length(self) -> int | None:
        """The model's context in tokens (None when the model does not say)."""
        return self.chat.context_length()

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the prompt of ``messages`` takes (speech included)."""
        return self.chat.prompt_tokens(messages)

    def submit(
        self,
        messages: Sequence[Message],
        options: DecodingOptions = CONVERSATION,
        timeout: float | None = None,
    ) -> RequestFuture:
        """Queue one conversation; the future resolves to a :class:`Reply`; ``cancel()`` stops it."""
        future = RequestFuture()
        self._enqueue(_Request(messages, options, self._deadline(timeout), future=future))
        return future

    def generate(
        self,
        messages: Sequence[Message],
        options: DecodingOptions = CONVERSATION,
        timeout: float | None = None,
    ) -> Reply:
        """Answer one conversation, blocking until done; raises :class:`EngineTimeout` after ``timeout``."""
        limit = self.limits.timeout_s if timeout is None else timeout
        future = self.submit(messages, options, limit)
        try:
            return future.result(timeout=limit + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise EngineTimeout(f"no answer within {limit:g} s") from None

    async def agenerate(
        self,
        messages: Sequence[Message],
        options: DecodingOptions = CONVERSATION,
        timeout: float | None = None,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
        poll_s: float = 0.2,
    ) -> Reply:
        """The asyncio form of :meth:`generate`. ``disconnected`` (e.g. Starlette's
        ``request.is_disconnected``) is polled every ``poll_s``: when the client has gone the request is
        cancelled (generation stops within a token) and :class:`EngineCancelled` is raised."""
        limit = self.limits.timeout_s if timeout is None else timeout
        future = self.submit(messages, options, limit)
        waiter: asyncio.Future[Reply] = asyncio.wrap_future(future)
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
        messages: Sequence[Message],
        options: DecodingOptions = CONVERSATION,
        timeout: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> TokenStream:
        """Queue one conversation for streaming; pass the running ``loop`` to consume it with ``async for``."""
        stream = TokenStream(loop)
        self._enqueue(_Request(messages, options, self._deadline(timeout), stream=stream))
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
        until = time.monotonic() + self.limits.batch_wait_s
        while len(batch) < self.limits.max_batch_size:
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
        jobs = [
            (r, r.future) for r in group if r.future is not None and r.future.set_running_or_notify_cancel()
        ]
        if not jobs:
            return
        options = jobs[0][0].options
        if count:
            self.stats["batches"] += 1
            self.stats["requests"] += len(jobs)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(jobs))
        try:
            replies = self.chat.respond(
                [r.messages for r, _ in jobs],
                options,
                stops=[r.options.stop for r, _ in jobs],
                should_stop=[r.should_stop for r, _ in jobs],
            )
        except Exception as exc:  # one bad conversation must not fail its batch-mates: retry one by one
            if len(jobs) == 1:
                log.exception("generation failed")
                jobs[0][1].set_exception(exc)
                return
            log.warning("batch of %d failed (%s); answering one by one", len(jobs), exc)
            for request, future in jobs:
                retry = RequestFuture()
                retry.stop_requested = future.stop_requested  # a cancel still reaches it
                self._answer(
                    [_Request(request.messages, request.options, request.deadline, future=retry)], False
                )
                self._copy(retry, future)
            return
        for (request, future), reply in zip(jobs, replies):
            if reply.finish_reason == "cancelled":  # stopped early by should_stop
                if request.cancelled:
                    self.stats["cancelled"] += 1
                    future.set_exception(EngineCancelled("the client went away"))
                else:
                    self.stats["timeouts"] += 1
                    future.set_exception(EngineTimeout("the reply did not finish within the time limit"))
                continue
            future.set_result(_heard_in_latest_turn(reply, request.messages))

    @staticmethod
    def _copy(source: concurrent.futures.Future, target: concurrent.futures.Future) -> None:
        error = source.exception()
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(source.result())

    def _stream(self, request: _Request) -> None:
        stream = request.stream
        assert stream is not None
        self.stats["requests"] += 1
        pieces: list[str] = []
        matcher = StopMatcher(request.options.stop)
        try:
            generator = self.chat.stream(request.messages, request.options)
            # A client that goes away, or a deadline that passes between two pieces, stops the model at its
            # next token (pieces only come at word boundaries).
            stream._on_cancel(generator.cancel)
            timer = threading.Timer(max(0.0, request.deadline - time.monotonic()), generator.cancel)
            timer.daemon = True
            timer.start()
            heard_sent = last_user_audio(request.messages) is None  # the emotion belongs to that turn
            try:
                for piece in generator:
                    if not heard_sent and generator.heard is not None:
                        stream._push(StreamEvent("emotion", generator.heard))
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
                        generator.cancel()
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
            finally:
                # Joined, not just cancelled: a timer thread still holding the reply's tensors when the
                # interpreter exits aborts the process ("terminate called without an active exception").
                timer.cancel()
                timer.join()
                generator.close()  # stopped, and the generating thread done before the next request
            done = generator.reply
            if done is None:
                raise RuntimeError("the reply stream ended without its reply")
            if matcher.stopped:  # the reply is what came before the stop string
                done = replace(done, text="".join(pieces), finish_reason="stop")
            stream._push(StreamEvent("done", _heard_in_latest_turn(done, request.messages)))
            stream._push(None)
        except Exception as exc:
            log.exception("streaming failed")
            stream._push(exc)
