"""What the HTTP layer checks before a request reaches the chat code: the Host header (DNS rebinding), the
API key, the content type (a browser may post ``text/plain`` cross-site without asking), the body's size
and the time it takes to arrive, and the JSON's depth and size.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from blsp_emo.serving.protocol import APIError

LOCAL_HOSTS: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD_BINDS = {"0.0.0.0", "::", ""}


def default_allowed_hosts(bound: str | None = None) -> list[str]:
    """The Host names a server accepts by default: the localhost names and the address it is bound to."""
    hosts = sorted(LOCAL_HOSTS)
    if bound and bound not in _WILDCARD_BINDS and bound.lower() not in LOCAL_HOSTS:
        hosts.append(bound.lower())
    return hosts


class HostAllowList:
    """Host header check. Entries are host names or addresses (any port); ``.example.org`` also admits
    its subdomains; ``*`` admits every host (for a server behind a proxy that checks Host itself)."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self.any = False
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        for host in hosts:
            host = host.strip().lower().strip("[]")
            if host == "*":
                self.any = True
            elif host.startswith("."):
                self.suffixes.append(host)
            elif host:
                self.exact.add(host)

    @staticmethod
    def hostname(header: str) -> str:
        """The host part of a Host header (``[::1]:8000`` -> ``::1``, ``Example.org:80`` -> ``example.org``)."""
        header = header.strip().lower()
        if header.startswith("["):
            return header[1 : header.find("]")] if "]" in header else ""
        return header.rsplit(":", 1)[0] if header.count(":") == 1 else header

    def allows(self, header: str | None) -> bool:
        """True when a request with this Host header may be served."""
        if self.any:
            return True
        host = self.hostname(header or "").rstrip(".")
        if not host:
            return False
        return host in self.exact or any(host.endswith(s) or host == s[1:] for s in self.suffixes)


def host_refused() -> APIError:
    """The error for a Host header that is not on the allow-list."""
    return APIError(
        "this server does not answer for that Host name (see --allowed-hosts)", code="invalid_host"
    )


def key_matches(request: Request, api_key: str) -> bool:
    """True when the request carries ``Authorization: Bearer <api_key>`` (compared in constant time)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), api_key.encode())


class GuardMiddleware:
    """Host allow-list on every route, and the API key on ``protected`` path prefixes.

    A plain ASGI middleware on purpose: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware("http")``)
    wraps the receive channel so that ``request.is_disconnected()`` never turns true, and a request whose
    client has gone would generate on to the end.
    """

    def __init__(
        self, app: ASGIApp, hosts: HostAllowList, api_key: str | None, protected: tuple[str, ...]
    ) -> None:
        self.app, self.hosts, self.api_key, self.protected = app, hosts, api_key, protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer refused requests with OpenAI-style error JSON; pass the others through untouched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        error: APIError | None = None
        # Host first, on every route: a page on another site that rebinds its name to 127.0.0.1 must get
        # nothing, not even the web page or the health probe.
        if not self.hosts.allows(request.headers.get("host")):
            error = host_refused()
        # OPTIONS is exempt: a CORS preflight carries no credentials and its answer holds no data.
        elif self.api_key and request.method != "OPTIONS" and scope["path"].startswith(self.protected):
            if not key_matches(request, self.api_key):
                error = key_refused()
        if error is None:
            await self.app(scope, receive, send)
        else:
            await JSONResponse(error.to_dict(), status_code=error.status)(scope, receive, send)


def key_refused() -> APIError:
    """The error for a missing or wrong API key."""
    return APIError(
        "missing or invalid API key: send 'Authorization: Bearer KEY'",
        status=401,
        code="invalid_api_key",
    )


def require_json(request: Request) -> None:
    """415 unless the body is declared ``application/json``: browsers send ``text/plain`` (and forms)
    cross-site without a preflight, JSON they cannot send without CORS permission."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise APIError(
            "the request body must be JSON with 'Content-Type: application/json'",
            status=415,
            code="unsupported_media_type",
        )


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body: 413 as soon as it exceeds ``limit`` bytes, 408 when it takes longer than
    ``timeout_s`` to arrive (a client trickling its body must not hold the connection forever)."""
    too_big = APIError(
        f"the request body is larger than the limit of {limit} bytes", status=413, code="request_too_large"
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_big

    async def collect() -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout=timeout_s)
    except ClientDisconnect:
        raise APIError("the client closed the connection", code="client_disconnected") from None
    except asyncio.TimeoutError:
        raise APIError(
            f"the request body did not arrive within {timeout_s:g} s", status=408, code="request_timeout"
        ) from None


def parse_json(raw: bytes, max_depth: int, max_items: int) -> Any:
    """Decode a request body; 400 ``invalid_json`` when it is not JSON, nests deeper than ``max_depth``
    or holds more than ``max_items`` values (deep nesting would otherwise end in a RecursionError)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise APIError(
            f"the request JSON nests too deep (the limit is {max_depth} levels)", code="invalid_json"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    items = 0
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        items += 1
        if items > max_items:
            raise APIError(f"the request JSON holds more than {max_items} items", code="invalid_json")
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                raise APIError(
                    f"the request JSON nests too deep (the limit is {max_depth} levels)", code="invalid_json"
                )
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return body


def http_audio_urls(body: Any, limit: int) -> list[str]:
    """The distinct http(s) audio URLs of a request's user messages, in order, at most ``limit``."""
    urls: list[str] = []
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict) or part.get("type") != "audio_url":
                continue
            spec = part.get("audio_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            if isinstance(url, str) and url[:8].lower().startswith(("http:", "https:")) and url not in urls:
                urls.append(url)
                if len(urls) >= limit:
                    return urls
    return urls
