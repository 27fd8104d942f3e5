"""A keyless localhost server and the browser: no text/plain JSON, no foreign Host names (DNS rebinding),
no CORS unless configured, docs and statistics behind the key, and clients that send slowly are cut off."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from blsp_emo.serving.api import create_app
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.server import BackgroundServer

URL = "/v1/chat/completions"
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def test_json_content_type_is_required(http: httpx.Client) -> None:
    raw = json.dumps(BODY)
    for headers in [
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {},
    ]:
        response = http.post(URL, content=raw, headers=headers)
        assert response.status_code == 415, headers
        assert response.json()["error"]["code"] == "unsupported_media_type"
    ok = http.post(URL, content=raw, headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200, ok.text


def test_foreign_host_names_are_refused_on_every_route(server, http: httpx.Client) -> None:
    for path in ["/", "/health", "/v1/models", "/openapi.json", "/static/app.js"]:
        response = http.get(path, headers={"host": "attacker.example"})
        assert response.status_code == 400, path
        assert response.json()["error"]["code"] == "invalid_host"
    assert http.post(URL, json=BODY, headers={"host": "attacker.example:80"}).status_code == 400
    for host in [f"127.0.0.1:{server.port}", f"localhost:{server.port}", "LOCALHOST", f"[::1]:{server.port}"]:
        assert http.get("/health", headers={"host": host}).status_code == 200, host


def test_configured_host_names_and_cors(random_engine, speaker) -> None:
    app = create_app(random_engine, speaker=speaker, allowed_hosts=["chat.example", ".internal.example"],
                     cors_origins=["https://app.example"])  # fmt: skip
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/health", headers={"host": "chat.example:8000"}).status_code == 200
        assert http.get("/health", headers={"host": "a.internal.example"}).status_code == 200
        assert http.get("/health", headers={"host": "localhost"}).status_code == 400  # the list replaces it
        preflight = {
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "host": "chat.example",
        }
        allowed = http.options(URL, headers=preflight)
        assert allowed.headers.get("access-control-allow-origin") == "https://app.example"
        denied = http.options(URL, headers={**preflight, "origin": "https://evil.example"})
        assert denied.headers.get("access-control-allow-origin") is None


def test_cors_is_off_by_default(http: httpx.Client) -> None:
    preflight = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    response = http.options(URL, headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    reply = http.post(URL, json=BODY, headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in reply.headers


def test_docs_and_statistics_need_the_key(random_engine, speaker) -> None:
    app = create_app(random_engine, api_key="k3y", speaker=speaker)
    key = {"Authorization": "Bearer k3y"}
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for path in ["/docs", "/openapi.json", "/redoc"]:
            assert http.get(path).status_code == 401, path
            assert http.get(path, headers=key).status_code == 200, path
        assert http.get("/health").json() == {"status": "ok"}  # liveness stays public, nothing more
        assert "stats" in http.get("/health", headers=key).json()
        assert http.get("/").status_code == 200  # the page itself (it asks for the key)


def _raw(server, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(data)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Wait for the server to close; returns (closed in time, what it sent)."""
    sock.settimeout(0.2)
    received = b""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def test_slow_headers_and_bodies_are_cut_off(random_engine, speaker) -> None:
    limits = ServingLimits(body_timeout_s=1.0, header_timeout_s=1.0, keep_alive_s=1)
    app = create_app(random_engine, speaker=speaker, limits=limits)
    with BackgroundServer(app, limits=limits) as server:
        idle = _raw(server, b"")  # connects and says nothing
        partial = _raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for sock in (idle, partial):
            closed, _ = _closed_within(sock, 4.0)
            assert closed
            sock.close()
        trickle = _raw(server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        until, closed = time.monotonic() + 4.0, False
        while time.monotonic() < until and not closed:  # a header byte every 0.3 s never completes
            try:
                trickle.sendall(b"X")
            except OSError:
                closed = True
            time.sleep(0.3)
        closed = closed or _closed_within(trickle, 0.5)[0]
        assert closed
        trickle.close()
        head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{\"messages\": ")  # fmt: skip
        slow_body = _raw(server, head)
        closed, answer = _closed_within(slow_body, 4.0)
        slow_body.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        with httpx.Client(base_url=server.url, timeout=30) as http:  # still serving
            assert http.post(URL, json=BODY).status_code == 200
