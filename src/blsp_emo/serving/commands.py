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
    checkpoint, ``blsp-emo-<preset>`` for a preset (``blsp-emo-tiny-untrained`` for the untrained ``tiny``)."""
    from blsp_emo.model.loading import SHIPPED_NAME

    if name == SHIPPED_NAME:
        return name
    path = Path(name)
    if path.exists():
        return path.name
    return "blsp-emo-tiny-untrained" if name == "tiny" else f"blsp-emo-{name}"


def build_engine(name: str | None, **engine_options: Any):
    """Load model ``name`` (None: the default model; a preset or a checkpoint folder) and start a :class:`ServingEngine` on it."""
    from blsp_emo.model import SpeechChat, load_model
    from blsp_emo.model.loading import default_model_name
    from blsp_emo.serving.engine import ServingEngine

    name = name or default_model_name()
    log.info("loading model %s", name)
    model, processor = load_model(name)
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


def run_chat(args: argparse.Namespace) -> int:
    """Chat with the model in the terminal: audio paths and/or text per turn, the reply streamed."""
    from blsp_emo.serving.chat_cli import ChatSession, chat_loop
    from blsp_emo.serving.protocol import GenerationParams

    engine = build_engine(args.model, max_batch_size=1, batch_wait_s=0.0)
    params = GenerationParams(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
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
    from blsp_emo.errors import UserError
    from blsp_emo.serving.api import create_app
    from blsp_emo.serving.protocol import ServingLimits
    from blsp_emo.serving.server import run_server
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
    )
    try:
        speaker = Speaker(args.speech)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    engine = build_engine(
        args.model,
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
    )
    log.info("serving %s on http://%s:%d (voice: %s)", engine.model_name, args.host, args.port, speaker.name)
    try:
        run_server(app, host=args.host, port=args.port)
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
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    chat.add_argument("--top-p", type=float, default=1.0)
    chat.add_argument("--seed", type=int, default=None)
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
    serve.set_defaults(func=run_serve)
