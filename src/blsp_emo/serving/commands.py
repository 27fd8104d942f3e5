"""Sub-commands ``blsp-emo chat`` (terminal conversation) and ``blsp-emo serve`` (HTTP API + web page)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def model_id(name: str) -> str:
    """The public id of a served model: ``blsp-emo-tiny`` for the shipped model, the folder name for a
    checkpoint, the repository id for a hub checkpoint, ``blsp-emo-<preset>`` for a preset
    (``blsp-emo-tiny-untrained`` for the untrained ``tiny``)."""
    from blsp_emo.model.loading import SHIPPED_NAME

    if name == SHIPPED_NAME:
        return name
    path = Path(name)
    if path.exists():
        return path.name
    from blsp_emo.assets.loading import is_hub_id

    if is_hub_id(name):  # a checkpoint on the hub: its repository id
        return name
    return "blsp-emo-tiny-untrained" if name == "tiny" else f"blsp-emo-{name}"


def build_engine(name: str | None, trust_remote_code: bool = False, **engine_options: Any):
    """Load model ``name`` (None: the default model; a preset or a checkpoint folder) and start a
    :class:`ServingEngine` on it; ``trust_remote_code`` comes from the command line only."""
    from blsp_emo.model import SpeechChat, load_model
    from blsp_emo.model.loading import default_model_name
    from blsp_emo.serving.engine import ServingEngine

    name = name or default_model_name()
    log.info("loading model %s", name)
    model, processor = load_model(name, trust_remote_code=trust_remote_code)
    return ServingEngine(SpeechChat(model, processor), model_name=model_id(name), **engine_options)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="blsp-emo-tiny (the shipped trained model), a preset (tiny, random-tiny, paper) or a checkpoint "
        "folder (default: blsp-emo-tiny when shipped, else tiny)",
    )
    parser.add_argument(
        "--system",
        default="empathetic",
        help="system prompt: 'empathetic', 'default', 'none' or a text (default: empathetic)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the base LLM run code shipped with its files (transformers trust_remote_code); never "
        "taken from a checkpoint or config",
    )


def chat_params(args: argparse.Namespace):
    """The :class:`GenerationParams` of ``blsp-emo chat``'s flags, checked as the API checks its fields."""
    from blsp_emo.errors import UserError
    from blsp_emo.serving.protocol import APIError, ServingLimits, generation_params

    flags = {
        "max_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "seed": args.seed,
        "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram_size,
        "frequency_penalty": args.frequency_penalty,
        "presence_penalty": args.presence_penalty,
    }
    try:
        return generation_params(flags, ServingLimits(max_new_tokens=max(1, args.max_new_tokens)))
    except APIError as exc:
        flag = "--max-new-tokens" if exc.param == "max_tokens" else "--" + (exc.param or "").replace("_", "-")
        raise UserError(f"{flag}: {exc.message}") from None


def run_chat(args: argparse.Namespace) -> int:
    """Chat with the model in the terminal: audio paths and/or text per turn, the reply streamed."""
    from blsp_emo.model.loading import check_model_name

    check_model_name(args.model)  # a typo fails before anything loads
    params = chat_params(args)
    from blsp_emo.serving.chat_cli import ChatSession, chat_loop

    engine = build_engine(
        args.model, trust_remote_code=args.trust_remote_code, max_batch_size=1, batch_wait_s=0.0
    )
    try:
        import readline  # noqa: F401  # line editing and history for input()
    except ImportError:
        pass
    try:
        chat_loop(ChatSession(engine, system=args.system, params=params))
    finally:
        engine.close()  # the worker finishes (a Ctrl-C reply is cancelled) before the interpreter exits
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve the OpenAI-compatible API and the web page with uvicorn."""
    from blsp_emo.clitools import check_port_free
    from blsp_emo.model.loading import check_model_name

    # Port and model name first: a taken port or a typo is reported at once, not after the model loads.
    check_port_free(args.host, args.port)
    check_model_name(args.model)
    from blsp_emo.errors import UserError
    from blsp_emo.serving.api import create_app
    from blsp_emo.serving.fetch import AudioFetcher
    from blsp_emo.serving.guards import default_allowed_hosts
    from blsp_emo.serving.protocol import ServingLimits
    from blsp_emo.serving.server import ServerLimits, run_server
    from blsp_emo.serving.speech import Speaker

    api_key = args.api_key or os.environ.get("BLSP_EMO_API_KEY") or None
    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("binding to %s: the server is reachable from other machines%s", args.host,
                    "" if api_key else " and has NO API key (pass --api-key)")  # fmt: skip
    limits = ServingLimits(
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
        max_audio_seconds=args.max_audio_seconds,
        max_audio_parts=args.max_audio_parts,
        max_new_tokens=args.max_tokens_limit,
        max_text_chars=args.max_text_chars,
        max_request_tokens=args.max_request_tokens,
    )
    allowed_hosts = default_allowed_hosts(args.host) + list(args.allowed_hosts or [])
    if args.host in {"0.0.0.0", "::"} and not args.allowed_hosts:
        log.warning("bound to all interfaces: only requests for %s are answered; name the host names "
                    "clients use with --allowed-hosts", ", ".join(allowed_hosts))  # fmt: skip
    fetcher = None
    if args.allow_audio_urls:
        fetcher = AudioFetcher(
            limits.max_request_bytes, deadline_s=args.fetch_timeout, concurrency=args.fetch_concurrency
        )
    try:
        speaker = Speaker(args.speech)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    engine = build_engine(
        args.model,
        trust_remote_code=args.trust_remote_code,
        max_batch_size=args.max_batch_size,
        batch_wait_s=args.batch_wait_ms / 1000,
        timeout_s=args.timeout,
    )
    app = create_app(
        engine,
        limits=limits,
        api_key=api_key,
        speaker=speaker,
        allow_audio_urls=args.allow_audio_urls,
        default_system=None if args.system == "none" else args.system,
        timeout_s=args.timeout,
        allowed_hosts=allowed_hosts,
        cors_origins=args.cors_origins or (),
        body_timeout_s=args.body_timeout,
        fetcher=fetcher,
    )
    server_limits = ServerLimits(header_timeout_s=args.header_timeout, limit_concurrency=args.max_connections)
    log.info("serving %s on http://%s:%d (voice: %s)", engine.model_name, args.host, args.port, speaker.name)
    try:
        run_server(app, host=args.host, port=args.port, limits=server_limits)
    finally:
        engine.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``chat`` and ``serve`` sub-commands."""
    chat = subparsers.add_parser(
        "chat", help="talk to the model in the terminal", description=run_chat.__doc__
    )
    _add_model_options(chat)
    chat.add_argument("--max-new-tokens", type=int, default=128, help="reply length limit (default 128)")
    _add_decoding_options(chat)
    chat.set_defaults(func=run_chat)

    serve = subparsers.add_parser(
        "serve", help="OpenAI-compatible HTTP API and web page", description=run_serve.__doc__
    )
    _add_model_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' (or env BLSP_EMO_API_KEY)"
    )
    serve.add_argument("--allow-audio-urls", action="store_true", help="let requests name http(s) audio URLs")
    serve.add_argument("--max-request-mb", type=float, default=25.0, help="largest request body (default 25)")
    serve.add_argument(
        "--max-audio-seconds", type=float, default=60.0, help="longest audio part (default 60)"
    )
    serve.add_argument("--max-audio-parts", type=int, default=8, help="audio parts per request (default 8)")
    serve.add_argument(
        "--max-tokens-limit", type=int, default=1024, help="largest max_tokens a client may ask"
    )
    serve.add_argument(
        "--max-batch-size", type=int, default=16, help="requests answered together (default 16)"
    )
    serve.add_argument(
        "--batch-wait-ms", type=float, default=10.0, help="wait for batch-mates (default 10 ms)"
    )
    serve.add_argument(
        "--timeout", type=float, default=300.0, help="per-request time limit in s (default 300)"
    )
    serve.add_argument("--speech", choices=["auto", "piper", "espeak"], default="auto", help="voice engine")
    _add_hardening_options(serve)
    serve.set_defaults(func=run_serve)


def _add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """Flags for the decoding settings; defaults: blsp_emo.model.types.CONVERSATION."""
    from blsp_emo.model.types import CONVERSATION as C

    parser.add_argument(
        "--temperature",
        type=float,
        default=C.temperature,
        help=f"sampling temperature, 0 = greedy (default {C.temperature:g})",
    )
    parser.add_argument(
        "--top-p", type=float, default=C.top_p, help=f"nucleus sampling (default {C.top_p:g})"
    )
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        default=C.repetition_penalty,
        help=f"make tokens already in the reply less likely, 1 = off (default {C.repetition_penalty:g})",
    )
    parser.add_argument(
        "--no-repeat-ngram-size",
        type=int,
        default=C.no_repeat_ngram_size,
        metavar="N",
        help=f"no N tokens in a row twice in a reply, 0 = off (default {C.no_repeat_ngram_size})",
    )
    parser.add_argument(
        "--frequency-penalty",
        type=float,
        default=C.frequency_penalty,
        help="OpenAI's frequency penalty, -2 to 2 (default 0)",
    )
    parser.add_argument(
        "--presence-penalty",
        type=float,
        default=C.presence_penalty,
        help="OpenAI's presence penalty, -2 to 2 (default 0)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for sampling (default: none)")


def _add_hardening_options(serve: argparse.ArgumentParser) -> None:
    """The limits that keep hostile clients from holding the server (README: Reliability and security)."""
    serve.add_argument(
        "--max-text-chars",
        type=int,
        default=100_000,
        help="characters of text per request, checked before tokenising (default 100000)",
    )
    serve.add_argument(
        "--max-request-tokens",
        type=int,
        default=None,
        help="per-request budget of prompt + max_tokens (default: the model's context length)",
    )
    serve.add_argument(
        "--allowed-hosts",
        nargs="+",
        metavar="HOST",
        help="Host names to answer besides localhost and the bound address ('.example.org' for subdomains, "
        "'*' for any)",
    )
    serve.add_argument(
        "--cors-origins",
        nargs="+",
        metavar="ORIGIN",
        help="origins whose pages may call the API from a browser (default: none, CORS off)",
    )
    serve.add_argument(
        "--header-timeout", type=float, default=10.0, help="seconds for request headers (default 10)"
    )
    serve.add_argument(
        "--body-timeout", type=float, default=30.0, help="seconds for a request body (default 30)"
    )
    serve.add_argument(
        "--max-connections", type=int, default=256, help="open connections before 503s (default 256)"
    )
    serve.add_argument(
        "--fetch-timeout", type=float, default=10.0, help="total seconds per audio URL download (default 10)"
    )
    serve.add_argument(
        "--fetch-concurrency", type=int, default=4, help="audio URL downloads at once (default 4)"
    )
