"""A loopback-only HTTP server for audio-URL tests (imported as ``slowserver``): serves a body fast, slowly
(a byte at a time), too large, or as a redirect; records the Host header of each request.

It binds 127.0.0.1 only and every handler stops by itself after a bounded time.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SlowServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.server.lock:
            self.server.hosts.append(self.headers.get("Host", ""))
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        try:
            self._answer(parts.path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what these tests want
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def _answer(self, path: str, query: dict[str, str]) -> None:
        body = self.server.body
        if path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/audio":
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path == "/big":  # no Content-Length: the cap must hold while reading
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"\0" * 65536
            for _ in range(int(query.get("chunks", "64"))):
                self.wfile.write(chunk)
        elif path == "/declared-big":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 30))
            self.end_headers()
        elif path == "/slow":  # a byte every `gap` seconds, for at most `seconds`
            gap, until = float(query.get("gap", "0.2")), time.monotonic() + float(query.get("seconds", "10"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                if time.monotonic() > until:
                    break
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(gap)
        elif path == "/slow-headers":  # the status line, then a header byte every `gap` seconds
            gap, until = float(query.get("gap", "0.2")), time.monotonic() + float(query.get("seconds", "10"))
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            while time.monotonic() < until:
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(gap)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


class SlowServer(ThreadingHTTPServer):
    """The server; ``with SlowServer(body) as server: server.url("/audio")``."""

    daemon_threads = True

    def __init__(self, body: bytes = b"") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.body = body
        self.hosts: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="slow-server", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on (127.0.0.1)."""
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """An http URL of ``path`` on this server, under ``host`` (a name a stub resolver maps here)."""
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> SlowServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
