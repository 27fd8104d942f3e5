"""OpenAI-compatible HTTP API (FastAPI) and the web page, on top of one :class:`ServingEngine`.

Routes: ``POST /v1/chat/completions`` (JSON or server-sent events), ``GET /v1/models``, ``GET /health``,
and the web page at ``/`` (files under ``serving/static``). Every route answers only for allowed Host
names (DNS rebinding); with an API key, ``/v1/*``, ``/docs``, ``/openapi.json`` and the statistics of
``/health`` need it (a bare liveness answer stays public); CORS is off unless origins are configured. The server keeps no conversation: clients send
the whole conversation with every request, except the transcripts of recent spoken replies, kept by
audio id (:class:`~blsp_emo.serving.speech.ReplyStore`) so that an assistant turn ``{"audio": {"id"}}``
can stand for its text. Besides OpenAI's fields a completion carries ``emotion`` (``{"label", "scores"}``:
the emotion heard in the latest user audio) and, with ``modalities: ["text", "audio"]``, ``speech_style``
(the tone the reply was spoken in).

Spoken replies follow OpenAI: ``message.content`` is null and the text is ``message.audio.transcript``;
the audio is 24 kHz mono in the requested ``audio.format``. Streamed, the reply's text comes as
``delta.audio.transcript`` pieces as it is generated (the first audio delta carries the ``id``), each
sentence is spoken as soon as it is complete while generation goes on, and with ``pcm16`` its samples
follow at once as ``delta.audio.data`` chunks (other formats: one file when the reply is done); the last
audio delta carries ``expires_at``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from blsp_emo.model.types import Reply
from blsp_emo.serving import guards
from blsp_emo.serving.engine import (
    EngineCancelled,
    EngineClosed,
    EngineTimeout,
    ServingEngine,
    TokenStream,
)
from blsp_emo.serving.fetch import AudioFetcher
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.protocol import APIError, ChatRequest, check_token_budget, parse_chat_request
from blsp_emo.serving.speech import (
    OUTPUT_RATE,
    ReplyStore,
    SentenceSplitter,
    Speaker,
    encode_reply,
    pcm16_bytes,
    reply_tone,
)

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
MODEL_ALIASES: tuple[str, ...] = ("blsp-emo", "default")  # names a request may use for the served model
PROTECTED_DOCS = ("/docs", "/redoc", "/openapi.json")  # behind the API key when one is set

# anyio imports its file module lazily, on first use: resolve it here, while this module is imported, so the
# first page request (FileResponse opens files through anyio) does not import modules inside a server
# thread (a slower first response; under pytest, whose assertion rewriter compiles anyio's modules,
# CPython 3.11 can fail to compile in a thread: "AST constructor recursion depth mismatch").
_OPEN_FILE = anyio.open_file


def _error(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


def _emotion_field(reply: Reply) -> dict[str, Any] | None:
    if reply.emotion is None:
        return None
    return {"label": reply.emotion, "scores": reply.emotion_scores}


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


PCM_CHUNK_SECONDS = 1.0  # a streamed sentence's pcm16 goes out in pieces of at most this much audio


class ChatService:
    """Turns validated requests into OpenAI-shaped responses (plain or streamed)."""

    def __init__(self, engine: ServingEngine, speaker: Speaker | None, limits: ServingLimits) -> None:
        """``limits`` give the per-request time limit and how long (and how many) spoken replies' transcripts
        are kept."""
        self.engine = engine
        self._speaker = speaker
        self.timeout_s = limits.timeout_s
        self.replies = ReplyStore(limits.reply_ttl_s, limits.max_kept_replies)

    @property
    def speaker(self) -> Speaker:
        """The voice for spoken replies, created on first use (Piper loads in about a second)."""
        if self._speaker is None:
            self._speaker = Speaker()
        return self._speaker

    async def _audio(self, text: str, emotion: str | None, fmt: str) -> tuple[dict[str, Any], str]:
        tone = reply_tone(text, emotion)
        samples = await run_in_threadpool(self.speaker.speak, text, tone)
        data = await run_in_threadpool(encode_reply, samples, fmt)
        audio_id, expires_at = self.replies.add(text)
        audio = {
            "id": audio_id,
            "data": base64.b64encode(data).decode("ascii"),
            "expires_at": expires_at,
            "transcript": text,
        }
        return audio, tone

    async def complete(
        self, request: ChatRequest, disconnected: Callable[[], Awaitable[bool]] | None = None
    ) -> dict[str, Any]:
        """Answer a non-streaming request; generation stops when ``disconnected()`` turns true."""
        reply = await self.engine.agenerate(
            request.messages, request.options, self.timeout_s, disconnected=disconnected
        )
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        body: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.engine.model_name,
            "choices": [
                {"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}
            ],
            "usage": _usage(reply),
            "emotion": _emotion_field(reply),
        }
        if request.want_audio:  # as OpenAI: the text is the audio's transcript, content is null
            message["audio"], body["speech_style"] = await self._audio(
                reply.text, reply.emotion, request.audio_format
            )
            message["content"] = None
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        """Answer a streaming request as server-sent events in OpenAI's chunk format, ending with [DONE]."""
        loop = asyncio.get_running_loop()
        stream = self.engine.open_stream(request.messages, request.options, self.timeout_s, loop=loop)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.engine.model_name,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return f"data: {json.dumps({**base, 'choices': [choice], **extra})}\n\n"

        spoken = self._spoken(stream, request) if request.want_audio else None
        try:
            if spoken is not None:
                yield chunk({"role": "assistant", "content": None})
                async for delta, finish, extra, final in spoken:
                    yield chunk(delta, finish, **extra)
                    if final is not None and request.include_usage:
                        yield f"data: {json.dumps({**base, 'choices': [], 'usage': _usage(final)})}\n\n"
            else:
                yield chunk({"role": "assistant", "content": ""})
                async for event in stream:
                    if event.kind == "text":
                        yield chunk({"content": event.value})
                    elif isinstance(event.value, Reply):  # "done"
                        done = event.value
                        yield chunk({}, done.finish_reason, emotion=_emotion_field(done))
                        if request.include_usage:
                            yield f"data: {json.dumps({**base, 'choices': [], 'usage': _usage(done)})}\n\n"
        except (EngineTimeout, EngineClosed) as exc:
            yield f"data: {json.dumps(_engine_error(exc).to_dict())}\n\n"
        except Exception as exc:
            log.exception("stream failed")
            error = APIError(
                f"generation failed: {exc}", status=500, type="server_error", code="server_error"
            )
            yield f"data: {json.dumps(error.to_dict())}\n\n"
        finally:
            stream.cancel()  # stops generation when the client has gone away
            if spoken is not None:
                await spoken.aclose()  # and the speaking of its sentences
        yield "data: [DONE]\n\n"

    async def _spoken(
        self, stream: TokenStream, request: ChatRequest
    ) -> AsyncGenerator[tuple[dict[str, Any], str | None, dict[str, Any], Reply | None]]:
        """The deltas of a streamed spoken reply: ``(delta, finish_reason, extra fields, reply)``; the reply
        comes with the last delta only.

        Two tasks feed one queue: one reads the generated text, the other speaks each sentence as soon as
        the splitter sees it complete (in a worker thread, in order), so speech is synthesised while the
        model goes on generating. Transcript pieces go out as they come; pcm16 audio goes out per sentence,
        other formats as one file at the end. A streamed reply's tone comes from its words, else from the
        emotion heard in the user's voice (the engine sends it before the first piece), as unstreamed.
        """
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()

        async def read_text() -> None:
            try:
                async for event in stream:
                    await events.put(("event", event))
                await events.put(("ended", None))
            except Exception as exc:
                await events.put(("error", exc))

        heard: dict[str, str | None] = {"emotion": None}

        async def speak() -> None:
            spoken, tone = "", "neutral"
            try:
                while (sentence := await sentences.get()) is not None:
                    spoken = f"{spoken} {sentence}".strip()
                    tone = reply_tone(spoken, heard["emotion"])
                    samples = await run_in_threadpool(
                        self.speaker.speak, sentence, tone, bool(spoken != sentence)
                    )
                    await events.put(("audio", samples))
                await events.put(("spoken", tone))
            except Exception as exc:
                await events.put(("error", exc))

        fmt = request.audio_format
        audio_id = self.replies.new_id()
        id_sent = False
        splitter = SentenceSplitter()
        collected: list[np.ndarray] = []
        done: Reply | None = None
        tasks = [asyncio.create_task(read_text()), asyncio.create_task(speak())]

        def audio_delta(**fields: Any) -> dict[str, Any]:
            nonlocal id_sent
            if not id_sent:
                fields = {"id": audio_id, **fields}
                id_sent = True
            return {"audio": fields}

        try:
            while True:
                kind, value = await events.get()
                if kind == "error":
                    raise value
                if kind == "ended" and done is None:
                    raise RuntimeError("the reply ended without its final event")
                if kind == "event" and isinstance(value.value, tuple):  # the emotion heard
                    heard["emotion"] = value.value[0]
                elif kind == "event" and isinstance(value.value, str):  # a piece of the reply
                    yield audio_delta(transcript=value.value), None, {}, None
                    for sentence in splitter.feed(value.value):
                        await sentences.put(sentence)
                elif kind == "event" and isinstance(value.value, Reply):  # the reply is done
                    done = value.value
                    rest = splitter.flush()
                    if rest:
                        await sentences.put(rest)
                    await sentences.put(None)
                elif kind == "audio" and fmt == "pcm16":
                    step = int(PCM_CHUNK_SECONDS * OUTPUT_RATE)
                    for start in range(0, value.size, step):
                        chunk = base64.b64encode(pcm16_bytes(value[start : start + step])).decode("ascii")
                        yield audio_delta(data=chunk), None, {}, None
                elif kind == "audio":
                    collected.append(value)
                elif kind == "spoken":
                    tone = value
                    break
            assert done is not None  # the speaker ends only after the reply's end was handed to it
            if fmt != "pcm16":
                samples = np.concatenate(collected) if collected else np.zeros(0, dtype=np.float32)
                data = await run_in_threadpool(encode_reply, samples, fmt)
                yield audio_delta(data=base64.b64encode(data).decode("ascii")), None, {}, None
            _, expires_at = self.replies.add(done.text, audio_id)
            extra = {"emotion": _emotion_field(done), "speech_style": tone}
            yield audio_delta(expires_at=expires_at), None, extra, None
            yield {}, done.finish_reason, extra, done
        finally:
            for task in tasks:
                task.cancel()


def _engine_error(exc: Exception) -> APIError:
    if isinstance(exc, EngineTimeout):
        return APIError(str(exc), status=504, type="timeout_error", code="timeout")
    return APIError(str(exc), status=503, type="server_error", code="unavailable")


def create_app(
    engine: ServingEngine,
    *,
    limits: ServingLimits | None = None,
    api_key: str | None = None,
    speaker: Speaker | None = None,
    allow_audio_urls: bool = False,
    default_system: str | None = "empathetic",
    allowed_hosts: Sequence[str] | None = None,
    cors_origins: Sequence[str] = (),
    fetcher: AudioFetcher | None = None,
) -> FastAPI:
    """Build the FastAPI app serving ``engine``.

    ``limits``: what a request may take (sizes, audio, tokens, JSON shape), the per-request time limit
    (``timeout_s``), the time a request body may take to arrive (``body_timeout_s``), and how long spoken
    replies' transcripts are kept by audio id (``reply_ttl_s``, the replies' ``expires_at``; the latest
    ``max_kept_replies``). ``api_key``: when set, ``/v1/*``, the API docs and ``/health``'s statistics require
    ``Authorization: Bearer KEY``. ``allow_audio_urls`` lets requests name http(s) audio URLs, downloaded by
    ``fetcher`` (default: an :class:`AudioFetcher` of ``limits`` that refuses internal addresses; ``file:``
    is never allowed). ``default_system`` is the system prompt put first when a conversation has none.
    ``allowed_hosts``: Host names served (default: the localhost names); ``cors_origins``: origins a
    browser may call the API from (default none: CORS off).
    """
    limits = limits or ServingLimits()
    service = ChatService(engine, speaker, limits)
    if allow_audio_urls and fetcher is None:
        fetcher = AudioFetcher.for_limits(limits)
    if not allow_audio_urls:
        fetcher = None
    hosts = guards.HostAllowList(guards.default_allowed_hosts() if allowed_hosts is None else allowed_hosts)
    served_models = {engine.model_name, *MODEL_ALIASES}
    app = FastAPI(title="blsp-emo", summary="Empathetic speech-language model, OpenAI-compatible API")
    app.state.service = service
    app.state.fetcher = fetcher
    # Added first, so it runs inside CORS: a preflight from an allowed origin is answered by CORS itself.
    app.add_middleware(
        guards.GuardMiddleware, hosts=hosts, api_key=api_key, protected=("/v1/", *PROTECTED_DOCS)
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(APIError(str(exc.detail), status=exc.status_code, type=kind, code=kind))

    @app.exception_handler(Exception)
    async def _server_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(APIError(f"internal error: {type(exc).__name__}", status=500, type="server_error"))

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        if api_key and not guards.key_matches(request, api_key):
            return {"status": "ok"}  # liveness only: the statistics need the key
        return {
            "status": "ok",
            "model": engine.model_name,
            "queued": engine.queued,
            "stats": dict(engine.stats),
            "speech": service._speaker.name if service._speaker else "piper (loads on first use)",
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": engine.model_name, "object": "model", "created": 0, "owned_by": "blsp-emo"}
        return {"object": "list", "data": [entry]}

    async def _prefetch(body: Any) -> Callable[[str], bytes] | None:
        """Download the request's audio URLs in the fetch pool (not a request thread) before parsing."""
        if fetcher is None:
            return None
        fetched: dict[str, bytes | APIError] = {}
        for url in guards.http_audio_urls(body, limits.max_audio_parts):
            try:
                fetched[url] = await fetcher.afetch(url)
            except APIError as exc:
                fetched[url] = exc
                break  # the parser reports it at its part; later URLs are not needed

        def lookup(url: str) -> bytes:
            result = fetched.get(url)
            if result is None:
                raise APIError("could not download the audio URL", code="audio_url_failed")
            if isinstance(result, APIError):
                raise APIError(result.message, status=result.status, type=result.type, code=result.code)
            return result

        return lookup

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response | dict[str, Any]:
        guards.require_json(request)
        raw = await guards.read_body(request, limits.max_request_bytes, limits.body_timeout_s)
        body = await run_in_threadpool(guards.parse_json, raw, limits.max_json_depth, limits.max_json_items)
        del raw
        fetch = await _prefetch(body)
        chat = await run_in_threadpool(
            parse_chat_request,
            body,
            limits,
            default_system=default_system,
            fetch_url=fetch,
            served_models=served_models,
            reply_transcript=service.replies.get,
        )
        del body
        prompt = await run_in_threadpool(engine.count_prompt_tokens, chat.messages)
        check_token_budget(chat, prompt, engine.context_length, limits)
        if chat.stream:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(service.stream(chat), media_type="text/event-stream", headers=headers)
        try:
            return await service.complete(chat, disconnected=request.is_disconnected)
        except EngineCancelled:
            # Nobody is listening any more; nginx's "client closed request" for the access log.
            return Response(status_code=499)
        except (EngineTimeout, EngineClosed) as exc:
            raise _engine_error(exc) from None

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
