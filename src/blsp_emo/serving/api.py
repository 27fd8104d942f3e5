"""OpenAI-compatible HTTP API (FastAPI) and the web page, on top of one :class:`ServingEngine`.

Routes: ``POST /v1/chat/completions`` (JSON or server-sent events), ``GET /v1/models``, ``GET /health``,
and the web page at ``/`` (files under ``serving/static``). The server keeps no conversation: clients send
the whole conversation with every request. Besides OpenAI's fields a completion carries ``emotion``
(``{"label", "scores"}``: the emotion heard in the latest user audio) and, with ``modalities: ["text",
"audio"]``, ``speech_style`` (the tone the reply was spoken in).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from blsp_emo.serving.engine import Completion, EngineClosed, EngineTimeout, ServingEngine
from blsp_emo.serving.protocol import APIError, ChatRequest, ServingLimits, parse_chat_request
from blsp_emo.serving.speech import Speaker, reply_tone

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")


def _error(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    too_big = APIError(
        f"the request body is larger than the limit of {limit} bytes",
        status=413,
        code="request_too_large",
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def url_fetcher(max_bytes: int, timeout_s: float = 10.0) -> Callable[[str], bytes]:
    """A downloader for http(s) audio URLs (used only when the server allows them), capped in size."""
    import httpx

    def fetch(url: str) -> bytes:
        try:
            with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=False) as response:
                response.raise_for_status()
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise APIError(
                            f"the audio at {url} is larger than {max_bytes} bytes", code="audio_too_large"
                        )
                return bytes(data)
        except httpx.HTTPError as exc:
            raise APIError(f"could not download {url}: {exc}", code="audio_url_failed") from None

    return fetch


def _emotion_field(completion: Completion) -> dict[str, Any] | None:
    if completion.emotion is None:
        return None
    return {"label": completion.emotion, "scores": completion.emotion_scores}


def _usage(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


class ChatService:
    """Turns validated requests into OpenAI-shaped responses (plain or streamed)."""

    def __init__(self, engine: ServingEngine, speaker: Speaker | None, timeout_s: float) -> None:
        self.engine = engine
        self._speaker = speaker
        self.timeout_s = timeout_s

    @property
    def speaker(self) -> Speaker:
        """The voice for spoken replies, created on first use (Piper loads in about a second)."""
        if self._speaker is None:
            self._speaker = Speaker()
        return self._speaker

    async def _audio(self, text: str, emotion: str | None) -> tuple[dict[str, Any], str]:
        tone = reply_tone(text, emotion)
        wav = await run_in_threadpool(self.speaker.speak_wav, text, tone)
        audio = {
            "id": f"audio_{uuid.uuid4().hex}",
            "data": base64.b64encode(wav).decode("ascii"),
            "expires_at": int(time.time()) + 3600,
            "transcript": text,
        }
        return audio, tone

    async def complete(self, request: ChatRequest) -> dict[str, Any]:
        """Answer a non-streaming request."""
        completion = await self.engine.agenerate(request.messages, request.params, self.timeout_s)
        message: dict[str, Any] = {"role": "assistant", "content": completion.text, "refusal": None}
        body: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.engine.model_name,
            "choices": [
                {"index": 0, "message": message, "finish_reason": completion.finish_reason, "logprobs": None}
            ],
            "usage": _usage(completion),
            "emotion": _emotion_field(completion),
        }
        if request.want_audio:
            message["audio"], body["speech_style"] = await self._audio(completion.text, completion.emotion)
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        """Answer a streaming request as server-sent events in OpenAI's chunk format, ending with [DONE]."""
        loop = asyncio.get_running_loop()
        stream = self.engine.open_stream(request.messages, request.params, self.timeout_s, loop=loop)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.engine.model_name,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return f"data: {json.dumps({**base, 'choices': [choice], **extra})}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            async for event in stream:
                if event.kind == "text":
                    yield chunk({"content": event.value})
                elif event.kind == "done":
                    done: Completion = event.value
                    extra: dict[str, Any] = {"emotion": _emotion_field(done)}
                    if request.want_audio:
                        audio, extra["speech_style"] = await self._audio(done.text, done.emotion)
                        yield chunk({"audio": audio}, **extra)
                    yield chunk({}, done.finish_reason, **extra)
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
        yield "data: [DONE]\n\n"


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
    timeout_s: float = 300.0,
) -> FastAPI:
    """Build the FastAPI app serving ``engine``.

    ``api_key``: when set, ``/v1/*`` requires ``Authorization: Bearer KEY``. ``allow_audio_urls`` lets
    requests name http(s) audio URLs (``file:`` is never allowed). ``default_system`` is the system prompt
    put first when a conversation has none. ``timeout_s`` is the per-request time limit.
    """
    limits = limits or ServingLimits()
    service = ChatService(engine, speaker, timeout_s)
    fetch = url_fetcher(limits.max_request_bytes) if allow_audio_urls else None
    app = FastAPI(title="blsp-emo", summary="Empathetic speech-language model, OpenAI-compatible API")
    app.state.service = service

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

    @app.middleware("http")
    async def _auth(request: Request, call_next: Callable) -> Response:
        if api_key and request.url.path.startswith("/v1/"):
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), api_key):
                return _error(
                    APIError(
                        "missing or invalid API key: send 'Authorization: Bearer KEY'",
                        status=401,
                        type="invalid_request_error",
                        code="invalid_api_key",
                    )
                )
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
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

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response | dict[str, Any]:
        raw = await _read_body(request, limits.max_request_bytes)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
        chat = await run_in_threadpool(
            parse_chat_request, body, limits, default_system=default_system, fetch_url=fetch
        )
        if chat.stream:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(service.stream(chat), media_type="text/event-stream", headers=headers)
        try:
            return await service.complete(chat)
        except (EngineTimeout, EngineClosed) as exc:
            raise _engine_error(exc) from None

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
