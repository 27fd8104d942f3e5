"""Sub-commands ``blsp-emo chat`` (terminal conversation) and ``blsp-emo serve`` (HTTP API + web page)."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from blsp_emo.model.types import CONVERSATION, DecodingOptions
from blsp_emo.serving.limits import CHAT_LIMITS, ServingLimits, add_limit_flags, limits_from_args

if TYPE_CHECKING:
    from blsp_emo.serving.engine import ServingEngine

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


def build_engine(
    name: str | None, trust_remote_code: bool = False, limits: ServingLimits | None = None
) -> ServingEngine:
    """Load model ``name`` (None: the default model; a preset or a checkpoint folder) and start a
    :class:`ServingEngine` on it with ``limits``; ``trust_remote_code`` comes from the command line only."""
    from blsp_emo.model import SpeechChat, load_model
    from blsp_emo.model.loading import default_model_name
    from blsp_emo.serving.engine import ServingEngine

    name = name or default_model_name()
    log.info("loading model %s", name)
    model, processor = load_model(name, trust_remote_code=trust_remote_code)
    return ServingEngine(SpeechChat(model, processor), model_name=model_id(name), limits=limits)


@dataclass(frozen=True)
class ModelOptions:
    """The model flags both commands share."""

    model: str | None  # None: the default model
    system: str  # a preset of blsp_emo.prompts, 'none' or a text
    trust_remote_code: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelOptions:
        return cls(model=args.model, system=args.system, trust_remote_code=args.trust_remote_code)


@dataclass(frozen=True)
class ChatOptions:
    """``blsp-emo chat``'s flags."""

    model: ModelOptions
    decoding: DecodingOptions

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ChatOptions:
        """The flags, the decoding ones checked as the API checks its fields (a bad one is a UserError
        naming the flag)."""
        from pydantic import ValidationError

        from blsp_emo.errors import UserError
        from blsp_emo.serving.schema import DecodingFields, describe_error

        given = vars(args)
        fields = {name: given[name] for name in DecodingFields.model_fields if name in given}
        try:
            decoding = DecodingFields.model_validate(fields).options(CHAT_LIMITS.default_new_tokens)
        except ValidationError as exc:
            param, _, phrase = describe_error(exc.errors(include_url=False)[0])
            flag = "--max-new-tokens" if param == "max_tokens" else "--" + (param or "").replace("_", "-")
            raise UserError(f"{flag} {phrase}") from None
        return cls(ModelOptions.from_args(args), decoding)


@dataclass(frozen=True)
class ServeOptions:
    """``blsp-emo serve``'s flags: the model, where and how to listen, and the limits."""

    model: ModelOptions
    host: str
    port: int
    api_key: str | None  # --api-key, else $BLSP_EMO_API_KEY
    allow_audio_urls: bool
    speech: str  # the voice engine: auto, piper or espeak
    allowed_hosts: tuple[str, ...]  # besides localhost and the bound address
    cors_origins: tuple[str, ...]
    limits: ServingLimits

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        """The flags (a limit out of range is a UserError naming its flag)."""
        from blsp_emo.errors import UserError

        try:
            limits = limits_from_args(args)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        return cls(
            model=ModelOptions.from_args(args),
            host=args.host,
            port=args.port,
            api_key=args.api_key or os.environ.get("BLSP_EMO_API_KEY") or None,
            allow_audio_urls=args.allow_audio_urls,
            speech=args.speech,
            allowed_hosts=tuple(args.allowed_hosts or ()),
            cors_origins=tuple(args.cors_origins or ()),
            limits=limits,
        )


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


def run_chat(args: argparse.Namespace) -> int:
    """Chat with the model in the terminal: audio paths and/or text per turn, the reply streamed."""
    from blsp_emo.model.loading import check_model_name

    options = ChatOptions.from_args(args)
    check_model_name(options.model.model)  # a typo fails before anything loads
    from blsp_emo.serving.chat_cli import ChatSession, chat_loop

    engine = build_engine(options.model.model, options.model.trust_remote_code, CHAT_LIMITS)
    try:
        import readline  # noqa: F401  # line editing and history for input()
    except ImportError:
        pass
    try:
        chat_loop(ChatSession(engine, system=options.model.system, options=options.decoding))
    finally:
        engine.close()  # the worker finishes (a Ctrl-C reply is cancelled) before the interpreter exits
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve the OpenAI-compatible API and the web page with uvicorn."""
    from blsp_emo.clitools import check_port_free
    from blsp_emo.model.loading import check_model_name

    options = ServeOptions.from_args(args)
    # Port and model name first: a taken port or a typo is reported at once, not after the model loads.
    check_port_free(options.host, options.port)
    check_model_name(options.model.model)
    from blsp_emo.errors import UserError
    from blsp_emo.serving.api import create_app
    from blsp_emo.serving.fetch import AudioFetcher
    from blsp_emo.serving.guards import default_allowed_hosts
    from blsp_emo.serving.server import run_server
    from blsp_emo.serving.speech import Speaker

    host, limits = options.host, options.limits
    if host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("binding to %s: the server is reachable from other machines%s", host,
                    "" if options.api_key else " and has NO API key (pass --api-key)")  # fmt: skip
    allowed_hosts = default_allowed_hosts(host) + list(options.allowed_hosts)
    if host in {"0.0.0.0", "::"} and not options.allowed_hosts:
        log.warning("bound to all interfaces: only requests for %s are answered; name the host names "
                    "clients use with --allowed-hosts", ", ".join(allowed_hosts))  # fmt: skip
    fetcher = AudioFetcher.for_limits(limits) if options.allow_audio_urls else None
    try:
        speaker = Speaker(options.speech)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    engine = build_engine(options.model.model, options.model.trust_remote_code, limits)
    app = create_app(
        engine,
        limits=limits,
        api_key=options.api_key,
        speaker=speaker,
        allow_audio_urls=options.allow_audio_urls,
        default_system=None if options.model.system == "none" else options.model.system,
        allowed_hosts=allowed_hosts,
        cors_origins=options.cors_origins,
        fetcher=fetcher,
    )
    log.info("serving %s on http://%s:%d (voice: %s)", engine.model_name, host, options.port, speaker.name)
    try:
        run_server(app, host=host, port=options.port, limits=limits)
    finally:
        engine.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``chat`` and ``serve`` sub-commands."""
    chat = subparsers.add_parser(
        "chat", help="talk to the model in the terminal", description=run_chat.__doc__
    )
    _add_model_options(chat)
    chat.add_argument(
        "--max-new-tokens",
        dest="max_tokens",  # the API's name: both are checked by protocol.DecodingFields
        type=int,
        default=CHAT_LIMITS.default_new_tokens,
        help=f"reply length limit (default {CHAT_LIMITS.default_new_tokens})",
    )
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
    serve.add_argument("--speech", choices=["auto", "piper", "espeak"], default="auto", help="voice engine")
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
    # The limits that keep hostile clients from holding the server (README: Reliability and security).
    add_limit_flags(serve)
    serve.set_defaults(func=run_serve)


def _add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """Flags for the decoding settings (dests: the API's field names); defaults: CONVERSATION."""
    C = CONVERSATION

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
