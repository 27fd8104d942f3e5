"""Serving limits are defined once (ServingLimits): ``blsp-emo serve``'s flags, the uvicorn server, the
audio fetcher, the reply store and the engine all read them."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi import FastAPI

from blsp_emo.cli import build_parser
from blsp_emo.errors import UserError
from blsp_emo.serving.commands import ServeOptions
from blsp_emo.serving.fetch import AudioFetcher
from blsp_emo.serving.limits import CHAT_LIMITS, ServingLimits
from blsp_emo.serving.server import server_config
from blsp_emo.serving.speech import ReplyStore


def serve_options(*flags: str) -> ServeOptions:
    return ServeOptions.from_args(build_parser().parse_args(["serve", *flags]))


def test_serve_flags_default_to_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    options = serve_options()
    assert options.limits == ServingLimits()
    assert (options.host, options.port, options.allowed_hosts, options.cors_origins) == (
        "127.0.0.1",
        8000,
        (),
        (),
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--max-request-mb MAX_REQUEST_MB largest request body in MB (default: 25)" in help_text
    assert "wait for batch-mates in ms (default: 10)" in help_text
    assert "per-request budget of prompt + max_tokens (default: the model's context length)" in help_text


def test_serve_flags_set_the_limits_in_their_units() -> None:
    limits = serve_options(
        "--max-request-mb", "2", "--batch-wait-ms", "5", "--timeout", "7", "--max-connections", "9",
        "--max-request-tokens", "300", "--max-audio-parts", "0", "--fetch-timeout", "1.5",
    ).limits  # fmt: skip
    expected = dataclasses.replace(
        ServingLimits(), max_request_bytes=2 * 1024 * 1024, batch_wait_s=0.005, timeout_s=7.0,
        max_connections=9, max_request_tokens=300, max_audio_parts=0, fetch_timeout_s=1.5,
    )  # fmt: skip
    assert limits == expected


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--timeout", "0"], "--timeout"), (["--max-request-mb", "-1"], "--max-request-mb"),
     (["--batch-wait-ms", "-5"], "--batch-wait-ms"), (["--max-connections", "0"], "--max-connections")],
)  # fmt: skip
def test_a_limit_out_of_range_names_its_flag(flags: list[str], named: str) -> None:
    with pytest.raises(UserError, match=f"^{named} must be"):
        serve_options(*flags)


def test_every_reader_takes_its_limits_from_one_place() -> None:
    limits = ServingLimits(header_timeout_s=2.0, keep_alive_s=3, max_header_bytes=4096, max_connections=7,
                           max_request_bytes=1234, fetch_timeout_s=4.0, fetch_concurrency=3)  # fmt: skip
    config = server_config(FastAPI(), "127.0.0.1", 8000, "warning", limits)
    assert (config.timeout_keep_alive, config.limit_concurrency, config.h11_max_incomplete_event_size) == (
        3,
        7,
        4096,
    )
    assert config.http.header_timeout_s == 2.0  # the guarded h11 protocol
    fetcher = AudioFetcher.for_limits(limits)
    try:
        assert (fetcher.max_bytes, fetcher.deadline_s, fetcher.concurrency) == (1234, 4.0, 3)
    finally:
        fetcher.close()
    default = AudioFetcher(1)
    try:
        assert (default.deadline_s, default.concurrency) == (
            ServingLimits().fetch_timeout_s,
            ServingLimits().fetch_concurrency,
        )
    finally:
        default.close()
    store = ReplyStore()
    assert (store.ttl_s, store.max_entries) == (ServingLimits().reply_ttl_s, ServingLimits().max_kept_replies)
    # The terminal chat: one user's own files, nothing to batch.
    assert (
        CHAT_LIMITS.max_audio_seconds > ServingLimits().max_audio_seconds and CHAT_LIMITS.max_batch_size == 1
    )
