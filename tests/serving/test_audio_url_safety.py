"""Audio URLs (``--allow-audio-urls``): no request can make the server reach its own network.

Network rule of these tests: traffic goes to loopback only. The address filter is tested with a stub
resolver that maps test names to private, link-local and multicast addresses and a connect function that
fails the test if called: the refusal must come before any connection. Deadline, size cap, redirects and
pinning are tested against a loopback server, with loopback allowed by the test-only option.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np
import pytest
from slowserver import SlowServer

from blsp_emo.audio import wav_bytes
from blsp_emo.serving.fetch import AudioFetcher, is_fetchable_address, literal_address
from blsp_emo.serving.protocol import APIError

STUB_ADDRESSES = {
    "intranet.test": ["10.0.0.5"],
    "router.test": ["192.168.1.1"],
    "carrier.test": ["100.64.0.1"],
    "metadata.test": ["169.254.169.254"],
    "multicast.test": ["224.0.0.251"],
    "broadcast.test": ["255.255.255.255"],
    "unspecified.test": ["0.0.0.0"],
    "ula.test": ["fd00::1"],
    "v6-link-local.test": ["fe80::1"],
    "v6-multicast.test": ["ff02::1"],
    "v6-mapped.test": ["::ffff:192.168.0.1"],
    "loopback.test": ["127.0.0.1"],
    "v6-loopback.test": ["::1"],
    "mixed.test": ["127.0.0.2", "10.1.2.3"],
}
ODD_SPELLINGS = [
    "http://0x7f000001/a.wav",
    "http://2130706433/a.wav",
    "http://127.1/a.wav",
    "http://0177.0.0.1/a.wav",
    "http://017700000001/a.wav",
    "http://127.0.0.1./a.wav",
    "http://[::ffff:127.0.0.1]/a.wav",
    "http://[::ffff:7f00:1]/a.wav",
    "http://[::1]:8000/a.wav",
    "http://0/a.wav",
    "http://[::]/a.wav",
    "https://10.0.0.1/a.wav",
    "http://[fe80::1%25eth0]/a.wav",
]


def stub_resolver(calls: list[str] | None = None, extra: dict[str, list[str]] | None = None):
    table = {**STUB_ADDRESSES, **(extra or {})}

    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            pytest.fail(f"the stub resolver was asked for {host!r}")
        return table[host]

    return resolve


def no_connect(address: tuple[str, int], timeout: float) -> socket.socket:
    pytest.fail(f"a connection to {address} was attempted")


def refused(fetcher: AudioFetcher, url: str) -> APIError:
    with pytest.raises(APIError) as info:
        fetcher.fetch(url)
    return info.value


@pytest.mark.parametrize("host", sorted(STUB_ADDRESSES))
def test_names_resolving_to_internal_addresses_are_refused_before_connecting(host: str) -> None:
    calls: list[str] = []
    fetcher = AudioFetcher(1 << 20, resolver=stub_resolver(calls), connect=no_connect)
    error = refused(fetcher, f"http://{host}:8080/a.wav")
    assert (error.status, error.code) == (400, "url_not_allowed")
    assert calls == [host]  # resolved once
    for address in STUB_ADDRESSES[host]:  # the message does not tell what the name resolves to
        assert address not in error.message


@pytest.mark.parametrize("url", ODD_SPELLINGS)
def test_odd_spellings_of_internal_addresses_are_refused_without_resolving(url: str) -> None:
    calls: list[str] = []
    fetcher = AudioFetcher(1 << 20, resolver=stub_resolver(calls), connect=no_connect)
    assert refused(fetcher, url).code == "url_not_allowed"
    assert calls == []  # a literal address is never looked up


def test_literal_address_parsing() -> None:
    assert str(literal_address("0x7f000001")) == "127.0.0.1"
    assert str(literal_address("2130706433")) == "127.0.0.1"
    assert str(literal_address("127.1")) == "127.0.0.1"
    assert str(literal_address("0177.0.0.01")) == "127.0.0.1"
    assert str(literal_address("10.1")) == "10.0.0.1"
    assert literal_address("example.test") is None and literal_address("1.2.3.4.5") is None
    assert literal_address("08.0.0.1") is None  # not octal, not a number: a (bad) name
    assert not is_fetchable_address(literal_address("::ffff:10.0.0.1"))
    assert not is_fetchable_address(literal_address("2002:a00:1::"))  # 6to4 around 10.0.0.1
    assert not is_fetchable_address(literal_address("127.0.0.1"))
    assert is_fetchable_address(literal_address("127.0.0.1"), allow_loopback=True)
    assert not is_fetchable_address(literal_address("10.0.0.1"), allow_loopback=True)


def test_other_schemes_and_credentials_are_refused() -> None:
    fetcher = AudioFetcher(1 << 20, resolver=stub_resolver(), connect=no_connect)
    for url in ["file:///etc/passwd", "ftp://intranet.test/a", "gopher://x/", "http:///a.wav", "http://"]:
        assert refused(fetcher, url).code in {"url_not_allowed", "invalid_value"}, url


@pytest.fixture(scope="module")
def wav() -> bytes:
    return wav_bytes(np.zeros(16_000, dtype=np.float32))


def loopback_only(seen: list[tuple[str, int]]):
    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        if address[0] != "127.0.0.1":
            pytest.fail(f"a connection to {address} was attempted")
        seen.append(address)
        return socket.create_connection(address, timeout=timeout)

    return connect


def test_redirects_are_checked_at_every_hop(wav: bytes) -> None:
    with SlowServer(wav) as server:
        calls: list[str] = []
        seen: list[tuple[str, int]] = []
        fetcher = AudioFetcher(1 << 20, resolver=stub_resolver(calls, {"audio.test": ["127.0.0.1"]}),
                               connect=loopback_only(seen), allow_loopback_for_tests=True)  # fmt: skip
        assert fetcher.fetch(server.url("/audio", "audio.test")) == wav
        # Connected to the address resolved once, with the name in the Host header (no second lookup).
        assert calls == ["audio.test"] and seen == [("127.0.0.1", server.port)]
        assert server.hosts[-1] == f"audio.test:{server.port}"
        hop = server.url("/audio", "audio.test")
        assert fetcher.fetch(server.url(f"/redirect?to={hop}", "audio.test")) == wav
        for target in ["http://metadata.test/latest", "http://10.0.0.7/a.wav", "http://[::ffff:10.0.0.1]/a.wav",
                       "file:///etc/passwd"]:  # fmt: skip
            calls.clear()
            connections = len(seen)
            error = refused(fetcher, server.url(f"/redirect?to={target}", "audio.test"))
            assert error.code == "url_not_allowed", target
            assert len(seen) == connections + 1  # only the first hop was connected to
        chain = server.url("/audio", "audio.test")
        for _ in range(4):
            chain = server.url(f"/redirect?to={chain}", "audio.test")
        assert refused(fetcher, chain).code == "audio_url_failed"  # too many redirects


def test_total_deadline_and_size_cap(wav: bytes) -> None:
    with SlowServer(wav) as server:
        fetcher = AudioFetcher(100_000, deadline_s=1.0, allow_loopback_for_tests=True)
        for path in ["/slow?gap=0.05&seconds=8", "/slow-headers?gap=0.05&seconds=8"]:
            started = time.monotonic()
            error = refused(fetcher, server.url(path))  # each byte comes well within any per-read timeout
            assert error.code == "audio_url_failed" and time.monotonic() - started < 2.5, path
        for path in ["/big?chunks=64", "/declared-big"]:
            started = time.monotonic()
            assert refused(fetcher, server.url(path)).code == "audio_too_large", path
            assert time.monotonic() - started < 2.5


def test_error_messages_do_not_describe_the_target() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    fetcher = AudioFetcher(1 << 20, deadline_s=2.0, allow_loopback_for_tests=True)
    error = refused(fetcher, f"http://127.0.0.1:{port}/a.wav")
    assert error.code == "audio_url_failed"
    assert error.message == "could not download the audio URL"


def test_fetches_run_in_their_own_bounded_pool(wav: bytes) -> None:
    with SlowServer(wav) as server:
        fetcher = AudioFetcher(1 << 20, deadline_s=1.5, concurrency=2, queue_wait_s=5.0,
                               allow_loopback_for_tests=True)  # fmt: skip
        threads: list[str] = []
        active, most = [0], [0]
        lock = threading.Lock()
        original = fetcher.fetch

        def spy(url: str) -> bytes:
            threads.append(threading.current_thread().name)
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            try:
                return original(url)
            finally:
                with lock:
                    active[0] -= 1

        fetcher.fetch = spy  # type: ignore[method-assign]

        async def many() -> list:
            urls = [server.url("/slow?gap=0.1&seconds=3")] * 4 + [server.url("/audio")]
            return await asyncio.gather(*(fetcher.afetch(u) for u in urls), return_exceptions=True)

        results = asyncio.run(many())
        fetcher.close()
        assert most[0] == 2  # never more downloads at once than the pool allows
        assert all(name.startswith("audio-fetch") for name in threads) and len(threads) == 5
        assert results[-1] == wav
        assert all(isinstance(r, APIError) and r.code == "audio_url_failed" for r in results[:4])


def test_a_full_pool_refuses_instead_of_queueing_forever(wav: bytes) -> None:
    with SlowServer(wav) as server:
        fetcher = AudioFetcher(1 << 20, deadline_s=2.0, concurrency=1, queue_wait_s=0.2,
                               allow_loopback_for_tests=True)  # fmt: skip

        async def two() -> list:
            slow = asyncio.ensure_future(fetcher.afetch(server.url("/slow?gap=0.1&seconds=3")))
            await asyncio.sleep(0.1)
            second = await asyncio.gather(fetcher.afetch(server.url("/audio")), return_exceptions=True)
            await asyncio.gather(slow, return_exceptions=True)
            return second

        (second,) = asyncio.run(two())
        fetcher.close()
        assert isinstance(second, APIError) and (second.status, second.code) == (503, "server_busy")


def test_the_api_refuses_internal_urls_and_fetches_outside_request_threads(
    random_engine, speaker, wav
) -> None:
    import httpx

    from blsp_emo.serving.api import create_app
    from blsp_emo.serving.server import BackgroundServer

    def request(url: str) -> dict:
        part = {"type": "audio_url", "audio_url": {"url": url}}
        return {"messages": [{"role": "user", "content": [part]}], "max_tokens": 2}

    with SlowServer(wav) as audio:
        # The server's own fetcher (no test option): loopback is as internal as any private address.
        app = create_app(random_engine, speaker=speaker, allow_audio_urls=True)
        with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            for url in [audio.url("/audio"), f"http://0x7f000001:{audio.port}/audio",
                        f"http://[::ffff:127.0.0.1]:{audio.port}/audio", f"http://2130706433:{audio.port}/a"]:  # fmt: skip
                response = http.post("/v1/chat/completions", json=request(url))
                assert response.status_code == 400, response.text
                error = response.json()["error"]
                assert (
                    error["code"] == "url_not_allowed"
                    and error["param"] == "messages[0].content[0].audio_url.url"
                )
            assert audio.hosts == []  # nothing reached the loopback server
        app.state.fetcher.close()
        # With loopback allowed for the test: a good URL is fetched, a trickling one hits the deadline.
        fetcher = AudioFetcher(1 << 20, deadline_s=1.0, allow_loopback_for_tests=True)
        app = create_app(random_engine, speaker=speaker, allow_audio_urls=True, fetcher=fetcher)
        with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.post("/v1/chat/completions", json=request(audio.url("/audio"))).status_code == 200
            started = time.monotonic()
            slow = http.post("/v1/chat/completions", json=request(audio.url("/slow?gap=0.1&seconds=5")))
            assert slow.status_code == 400 and slow.json()["error"]["code"] == "audio_url_failed"
            assert slow.json()["error"]["message"] == "could not download the audio URL"
            assert time.monotonic() - started < 3.0
        fetcher.close()
