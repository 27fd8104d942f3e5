"""Downloading audio URLs (only with ``--allow-audio-urls``) without letting a request reach the server's
own network.

Every hop (the URL and each redirect) is checked the same way:

* the scheme is http or https and the URL carries no credentials;
* the host is a literal address -- in any spelling the C library would accept, e.g. ``0x7f000001``,
  ``2130706433``, ``127.1``, ``[::ffff:127.0.0.1]`` -- or a name resolved exactly once;
* every address must be public: loopback, private, shared (CGNAT), link-local, multicast, reserved and
  unspecified addresses are refused, in IPv4 and IPv6 (also inside IPv4-mapped, 6to4 and NAT64 forms);
* the connection goes to the checked address (the Host header and TLS name stay the URL's), so a second
  DNS answer can never redirect it (DNS rebinding).

A download has one total deadline (a slow server trickling bytes cannot hold it longer) and a size cap,
and runs in a pool of its own with its own concurrency limit, so slow URLs never occupy the threads that
answer other requests. Error messages are generic: they never tell what listens where.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.protocol import APIError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
Connector = Callable[[tuple[str, int], float], socket.socket]

FAILED = "could not download the audio URL"
_NOT_ALLOWED = "the audio URL's host is not one this server downloads from"
_REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _part(text: str) -> int | None:
    """One part of an inet_aton address: decimal, 0x hex or 0-led octal; None when it is none of those."""
    try:
        if text[:2].lower() == "0x":
            return int(text[2:] or "0", 16)
        if len(text) > 1 and text.startswith("0"):
            return int(text[1:], 8)
        return int(text, 10) if text.isdigit() else None
    except ValueError:
        return None


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form ``inet_aton`` accepts (``127.1``, ``0x7f000001``,
    ``2130706433``, ``0177.0.0.1``) or IPv6 (with or without brackets and zone); None for a name."""
    host = unquote(host).strip("[]").rstrip(".")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    values = [_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (5 - len(values))):  # type: ignore[operator]
        return None
    number = 0
    for v in head:
        number = (number << 8) | v  # type: ignore[operator]
    number = (number << (8 * (5 - len(values)))) | last  # type: ignore[operator]
    return ipaddress.IPv4Address(number)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_fetchable_address(address: IPAddress, allow_loopback: bool = False) -> bool:
    """True for a public unicast address; ``allow_loopback`` (tests only) also lets loopback through."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.teredo is not None:
            return False
        inner = _embedded_ipv4(address)
        if inner is not None:
            return is_fetchable_address(inner, allow_loopback)
    if address.is_loopback:
        return allow_loopback
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (one lookup)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _create_connection(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


class _PinnedHTTP(http.client.HTTPConnection):
    """Plain HTTP to an already checked address; the Host header stays the URL's."""

    def __init__(self, host: str, port: int, address: str, connect: Connector, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address, self._open, self._timeout = address, connect, timeout

    def connect(self) -> None:
        self.sock = self._open((self._address, self.port), self._timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to an already checked address; the certificate is verified against the URL's host name."""

    def __init__(
        self, host: str, port: int, address: str, connect: Connector, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address, self._open, self._tls, self._timeout = address, connect, context, timeout

    def connect(self) -> None:
        sock = self._open((self._address, self.port), self._timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _not_allowed() -> APIError:
    return APIError(_NOT_ALLOWED, code="url_not_allowed")


def _failed() -> APIError:
    return APIError(FAILED, code="audio_url_failed")


class AudioFetcher:
    """Downloads http(s) audio URLs safely (see the module docstring).

    ``resolver`` and ``connect`` default to the system's; tests pass stubs. ``allow_loopback_for_tests``
    lets loopback addresses through (never private or link-local ones) so that tests can download from a
    server on 127.0.0.1; the command line has no such option.
    """

    def __init__(
        self,
        max_bytes: int,
        *,
        deadline_s: float = ServingLimits.fetch_timeout_s,
        max_redirects: int = 3,
        concurrency: int = ServingLimits.fetch_concurrency,
        queue_wait_s: float = 5.0,
        resolver: Resolver | None = None,
        connect: Connector | None = None,
        allow_loopback_for_tests: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_bytes = int(max_bytes)
        self.deadline_s = float(deadline_s)
        self.max_redirects = int(max_redirects)
        self.concurrency = max(1, int(concurrency))
        self.queue_wait_s = float(queue_wait_s)
        self._resolve = resolver or system_resolver
        self._connect = connect or _create_connection
        self._allow_loopback = bool(allow_loopback_for_tests)
        self._tls = ssl_context or ssl.create_default_context()
        self._pool = concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="audio-fetch")
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_limits(cls, limits: ServingLimits, **options: Any) -> AudioFetcher:
        """A fetcher with the download cap (``max_request_bytes``), deadline and concurrency of ``limits``."""
        return cls(
            limits.max_request_bytes,
            deadline_s=limits.fetch_timeout_s,
            concurrency=limits.fetch_concurrency,
            **options,
        )

    # ----- checks -------------------------------------------------------------------------------------
    def precheck(self, url: str) -> None:
        """What can be refused without a lookup (scheme, credentials, a literal internal address), refused
        at once: such a URL never waits for a download slot."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise APIError("the audio URL is malformed", code="invalid_value") from None
        if (
            parts.scheme.lower() not in {"http", "https"}
            or parts.username is not None
            or parts.password is not None
        ):
            raise _not_allowed()
        literal = literal_address(parts.hostname or "")
        if literal is not None and not is_fetchable_address(literal, self._allow_loopback):
            raise _not_allowed()

    def _target(self, url: str) -> tuple[str, str, int, str, str]:
        """(scheme, host, port, checked address, path) of one hop; raises for anything not allowed."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise APIError("the audio URL is malformed", code="invalid_value") from None
        scheme = parts.scheme.lower()
        if scheme not in {"http", "https"} or parts.username is not None or parts.password is not None:
            raise _not_allowed()
        host = parts.hostname or ""
        if not host:
            raise APIError("the audio URL has no host", code="invalid_value")
        port = port or (443 if scheme == "https" else 80)
        literal = literal_address(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                resolved = self._resolve(host, port)
                addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
            except (OSError, ValueError, UnicodeError):
                raise _failed() from None
        # One internal address among the answers is enough to refuse: the connection must not be able to
        # land there, and a mixed answer is how rebinding attacks try it.
        if not addresses or not all(is_fetchable_address(a, self._allow_loopback) for a in addresses):
            raise _not_allowed()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return scheme, host, port, str(addresses[0]), path

    # ----- downloading --------------------------------------------------------------------------------
    def fetch(self, url: str) -> bytes:
        """Download ``url`` (following checked redirects) within the deadline and the size cap."""
        deadline = time.monotonic() + self.deadline_s
        for _ in range(self.max_redirects + 1):
            scheme, host, port, address, path = self._target(url)
            status, location, body = self._get(scheme, host, port, address, path, deadline)
            if status in _REDIRECTS and location:
                url = urljoin(url, location)
                continue
            if 200 <= status < 300:
                return body
            raise _failed()
        raise _failed()  # too many redirects

    def _get(
        self, scheme: str, host: str, port: int, address: str, path: str, deadline: float
    ) -> tuple[int, str | None, bytes]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _failed()
        if scheme == "https":
            conn: http.client.HTTPConnection = _PinnedHTTPS(
                host, port, address, self._connect, left, self._tls
            )
        else:
            conn = _PinnedHTTP(host, port, address, self._connect, left)
        # The socket timeout bounds each read; this timer bounds the whole exchange (a server trickling a
        # byte at a time never hits a per-read timeout).
        aborted = threading.Event()
        watchdog = threading.Timer(left, _abort, args=(conn, aborted))
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("GET", path, headers={"User-Agent": "blsp-emo", "Accept-Encoding": "identity"})
            response = conn.getresponse()
            if response.status in _REDIRECTS:
                return response.status, response.getheader("Location"), b""
            if not 200 <= response.status < 300:
                return response.status, None, b""
            declared = response.getheader("Content-Length")
            if declared and declared.strip().isdigit() and int(declared) > self.max_bytes:
                raise _too_large(self.max_bytes)
            data = bytearray()
            while True:
                if time.monotonic() > deadline:
                    raise _failed()
                chunk = response.read1(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > self.max_bytes:
                    raise _too_large(self.max_bytes)
            if aborted.is_set() or time.monotonic() > deadline:  # cut short: never a partial body
                raise _failed()
            return response.status, None, bytes(data)
        except APIError:
            raise
        except (OSError, http.client.HTTPException, ValueError):
            raise _failed() from None
        finally:
            watchdog.cancel()
            conn.close()

    async def afetch(self, url: str) -> bytes:
        """:meth:`fetch` in the fetch pool; 503 ``server_busy`` when no slot frees up in ``queue_wait_s``."""
        self.precheck(url)
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots, self._slots_loop = asyncio.Semaphore(self.concurrency), loop
        slots = self._slots
        try:
            await asyncio.wait_for(slots.acquire(), timeout=self.queue_wait_s)
        except asyncio.TimeoutError:
            raise APIError(
                "too many audio downloads are in progress; try again later",
                status=503,
                type="server_error",
                code="server_busy",
            ) from None
        future = self._pool.submit(self.fetch, url)
        # The slot is held until the download really ends, not merely until its caller stops waiting.
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(slots.release))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=self.deadline_s + 2.0)
        except asyncio.TimeoutError:
            raise _failed() from None

    def close(self) -> None:
        """Stop the pool (running downloads end at their deadline)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _too_large(limit: int) -> APIError:
    return APIError(f"the audio at the URL is larger than {limit} bytes", code="audio_too_large")


def _abort(conn: http.client.HTTPConnection, aborted: threading.Event) -> None:
    """Cut the connection at the deadline: the blocked read returns at once."""
    aborted.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
