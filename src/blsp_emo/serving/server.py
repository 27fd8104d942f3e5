"""Running the API with uvicorn: in the foreground (``blsp-emo serve``) or in a background thread (tests, bench).

The server bounds what a client can hold without sending a request (the connection fields of
:class:`~blsp_emo.serving.limits.ServingLimits`): request headers must arrive within ``header_timeout_s``
(uvicorn itself has no such timeout: a client sending a header byte now and then would keep its connection
forever), an idle keep-alive connection closes after ``keep_alive_s``, headers are capped in size
(``max_header_bytes``), and connections beyond ``max_connections`` get a 503. The body's own deadline is
the app's (:func:`blsp_emo.serving.guards.read_body`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from types import TracebackType

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from blsp_emo.serving.limits import ServingLimits

log = logging.getLogger(__name__)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request headers of every request on a connection."""

    header_timeout_s: float = ServingLimits.header_timeout_s
    _header_timer: asyncio.TimerHandle | None = None  # running while the headers of a request are awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header clock for the first request."""
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        """Feed uvicorn, then start or stop the header clock by whether headers are still awaited."""
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_timer()  # a new request has begun (or is awaited) and its headers are not in
        else:
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the header clock."""
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self.cycle is None or self.cycle.response_complete:  # never cut a response being sent
                self.transport.close()


def _protocol(header_timeout_s: float) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": float(header_timeout_s)})


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_config(
    app: FastAPI, host: str, port: int, log_level: str, limits: ServingLimits | None = None
) -> uvicorn.Config:
    """The uvicorn configuration: one worker process (the model lives in it and the engine batches across
    requests), the guarded h11 protocol and the connection limits of ``limits``."""
    limits = limits or ServingLimits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's records go through blsp_emo.logs' one format (no handlers of its own)
        workers=1,
        timeout_graceful_shutdown=5,
        http=_protocol(limits.header_timeout_s),
        timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        limit_concurrency=limits.max_connections,
    )


def run_server(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    limits: ServingLimits | None = None,
) -> None:
    """Serve ``app`` until interrupted."""
    uvicorn.Server(server_config(app, host, port, log_level, limits)).run()


class BackgroundServer:
    """uvicorn serving ``app`` on a free localhost port in a daemon thread; a context manager."""

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_level: str = "warning",
        limits: ServingLimits | None = None,
    ):
        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(server_config(app, self.host, self.port, log_level, limits))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Start serving and wait until the port accepts requests."""
        self.thread.start()
        until = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > until:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask uvicorn to shut down and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
