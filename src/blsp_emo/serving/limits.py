"""Every serving limit, defined once: :class:`ServingLimits`.

The request parser, the HTTP app, the uvicorn server, the audio-URL fetcher, the reply store and the
engine all read their limits from one :class:`ServingLimits`; ``blsp-emo serve``'s limit flags are made
from its fields (:func:`add_limit_flags`: each field's flag and help sit next to its default below), and
``blsp-emo chat`` uses :data:`CHAT_LIMITS`. Nothing here imports the rest of the package.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

MB = 1024 * 1024


def _flag(name: str, help: str, *, scale: float = 1.0, unset: str = "none") -> dict[str, Any]:
    """Field metadata: the command-line flag ``name`` sets the field to its value times ``scale``; ``unset``
    says what the default None means."""
    return {"flag": name, "help": help, "scale": scale, "unset": unset}


@dataclass(frozen=True)
class ServingLimits:
    """What one request, one connection and the whole server may take; checked before the model runs."""

    # --- one request -------------------------------------------------------------------------------
    # Whole HTTP body (base64 audio is 4/3 of the raw size); also the cap of one audio-URL download.
    max_request_bytes: int = field(
        default=25 * MB, metadata=_flag("--max-request-mb", "largest request body in MB", scale=MB)
    )
    max_audio_seconds: float = field(
        default=60.0, metadata=_flag("--max-audio-seconds", "longest audio part in s")
    )
    max_total_audio_seconds: float = 300.0  # all audio parts of one request together
    max_audio_parts: int = field(default=8, metadata=_flag("--max-audio-parts", "audio parts per request"))
    max_messages: int = 64
    max_new_tokens: int = field(  # the largest max_tokens a client may ask for
        default=1024, metadata=_flag("--max-tokens-limit", "largest max_tokens a client may ask for")
    )
    default_new_tokens: int = 128  # docs/method.md §5: 128 new tokens by default
    # All text of one request (every message), checked before anything is tokenised: a 2 MB prompt must
    # be refused in microseconds, not tokenised for seconds and then refused.
    max_text_chars: int = field(
        default=100_000,
        metadata=_flag("--max-text-chars", "characters of text per request, checked before tokenising"),
    )
    # Per-request token budget: prompt tokens + max_tokens; None = the model's context length.
    max_request_tokens: int | None = field(
        default=None,
        metadata=_flag(
            "--max-request-tokens",
            "per-request budget of prompt + max_tokens",
            unset="the model's context length",
        ),
    )
    max_json_depth: int = 32  # nesting of the request JSON (a real request needs 6)
    max_json_items: int = 20_000  # objects, arrays and values in the request JSON together

    # --- time --------------------------------------------------------------------------------------
    timeout_s: float = field(  # queued plus generating
        default=300.0, metadata=_flag("--timeout", "per-request time limit in s")
    )
    body_timeout_s: float = field(
        default=30.0, metadata=_flag("--body-timeout", "seconds for a request body")
    )
    header_timeout_s: float = field(  # the request line and headers must arrive within this
        default=10.0, metadata=_flag("--header-timeout", "seconds for request headers")
    )
    keep_alive_s: int = 5  # an idle keep-alive connection is closed after this

    # --- connections and downloads ------------------------------------------------------------------
    max_header_bytes: int = 16 * 1024  # request line plus headers
    max_connections: int = field(  # open connections and running requests; more get a 503
        default=256, metadata=_flag("--max-connections", "open connections before 503s")
    )
    fetch_timeout_s: float = field(
        default=10.0, metadata=_flag("--fetch-timeout", "total seconds per audio URL download")
    )
    fetch_concurrency: int = field(
        default=4, metadata=_flag("--fetch-concurrency", "audio URL downloads at once")
    )

    # --- batching and kept replies -------------------------------------------------------------------
    max_batch_size: int = field(default=16, metadata=_flag("--max-batch-size", "requests answered together"))
    batch_wait_s: float = field(  # how long the engine waits after a first request for batch-mates
        default=0.01, metadata=_flag("--batch-wait-ms", "wait for batch-mates in ms", scale=0.001)
    )
    reply_ttl_s: float = 3600.0  # the transcript of a spoken reply is kept this long (its expires_at)
    max_kept_replies: int = 1024  # transcripts of spoken replies kept at most

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            may_be_zero = name in {"batch_wait_s", "max_audio_parts"}
            if value is not None and (value < 0 if may_be_zero else value <= 0):
                flag = _FLAGS[name].metadata["flag"] if name in _FLAGS else name
                raise ValueError(
                    f"{flag} must be {'0 or more' if may_be_zero else 'greater than 0'}, got {value}"
                )


# ``blsp-emo chat``: one user, whose own files may be longer than a public server takes; nothing to batch.
CHAT_LIMITS = ServingLimits(max_audio_seconds=120.0, max_batch_size=1, batch_wait_s=0.0)
_FLAGS: dict[str, dataclasses.Field] = {
    f.name: f for f in dataclasses.fields(ServingLimits) if "flag" in f.metadata
}


def _dest(f: dataclasses.Field) -> str:
    return f"limit_{f.name}"


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every limit that has one; its default is the field's (shown in the flag's unit)."""
    for f in _FLAGS.values():
        scale, default = f.metadata["scale"], f.default
        whole = scale == 1.0 and not isinstance(default, float)
        shown = f.metadata["unset"] if default is None else f"{default / scale:g}"
        parser.add_argument(
            f.metadata["flag"],
            dest=_dest(f),
            metavar=f.metadata["flag"].removeprefix("--").upper().replace("-", "_"),
            type=int if whole else float,
            default=None,
            help=f"{f.metadata['help']} (default: {shown})",
        )


def limits_from_args(args: argparse.Namespace, base: ServingLimits | None = None) -> ServingLimits:
    """``base`` (default: :class:`ServingLimits`'s defaults) with the limit flags given on the command line;
    a limit out of range is a ValueError naming its flag."""
    given = vars(args)
    changes: dict[str, Any] = {}
    for f in _FLAGS.values():
        value = given.get(_dest(f))
        if value is not None:
            scaled = value * f.metadata["scale"]
            changes[f.name] = float(scaled) if isinstance(f.default, float) else int(scaled)
    return dataclasses.replace(base or ServingLimits(), **changes)
