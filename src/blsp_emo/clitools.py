"""Argument-parsing helpers shared by every sub-command (no torch here: the CLI imports this first).

- :class:`Parser`: an ``ArgumentParser`` whose help shows each option's default, and whose "invalid
  choice" errors for sub-commands say which known name was probably meant.
- :func:`did_you_mean`: the close matches of a mistyped name, as a sentence ending.
- :func:`check_audio_file`, :func:`check_input_file`, :func:`check_output_dir`, :func:`check_port_free`:
  the checks commands run on their arguments before any model loads, each failing with a
  :class:`~blsp_emo.errors.UserError` that names the argument and what is wrong.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import errno
import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path

from blsp_emo.errors import UserError


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``) for the known names close to ``name``, else ``""``."""
    known = [k for k in dict.fromkeys(known) if k]
    matches = difflib.get_close_matches(name, known, n=3, cutoff=cutoff)
    if not matches:
        lowered = {k.lower(): k for k in known}
        matches = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=3, cutoff=cutoff)]
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


# Help texts that already say what the default is: "(default 128)", "(default: none)", "...; default: all".
_NAMES_DEFAULT = re.compile(r"\(default|\bdefault:|; default\b|\bdefaults? (per|to|is)\b", re.IGNORECASE)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its default, or the
    default says nothing (None, False, an empty list, or SUPPRESS); options without help get the default
    alone."""

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        default = action.default
        if (
            default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return False
        if not action.option_strings and action.nargs not in ("?", "*"):
            return False
        return not _NAMES_DEFAULT.search(action.help or "")

    def _format_action(self, action: argparse.Action) -> str:
        if self._shows_default(action):
            action = copy.copy(action)
            action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"
        return super()._format_action(action)


def _with_defaults(formatter_class: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``formatter_class`` with :class:`DefaultsHelpFormatter`'s behaviour added (raw descriptions kept)."""
    if issubclass(formatter_class, DefaultsHelpFormatter):
        return formatter_class
    if formatter_class is argparse.HelpFormatter:
        return DefaultsHelpFormatter
    return type(f"Defaults{formatter_class.__name__}", (DefaultsHelpFormatter, formatter_class), {})


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` with defaults in the help of every (sub-)command and "did you mean" for a
    mistyped sub-command or choice."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["formatter_class"] = _with_defaults(kwargs.get("formatter_class", argparse.HelpFormatter))
        super().__init__(*args, **kwargs)

    def _check_value(self, action: argparse.Action, value) -> None:
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            what = "command" if isinstance(action, argparse._SubParsersAction) else "choice"
            hint = did_you_mean(str(value), choices) or f" (choose from {', '.join(choices)})"
            raise argparse.ArgumentError(action, f"invalid {what} {value!r}{hint}")
        super()._check_value(action, value)


def _describe(path: Path, what: str) -> str:
    return f"{path} ({what})" if what else str(path)


def check_audio_file(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` as a Path when it is a readable, non-empty file; else a UserError that says whether it is
    missing, a directory or empty (``what`` names the argument, e.g. ``--audio``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{_describe(p, what)}: is a directory, not an audio file")
    if not p.exists():
        raise UserError(f"{_describe(p, what)}: no such audio file")
    if not p.is_file():
        raise UserError(f"{_describe(p, what)}: not a regular file")
    if p.stat().st_size == 0:
        raise UserError(f"{_describe(p, what)}: empty audio file")
    if not os.access(p, os.R_OK):
        raise UserError(f"{_describe(p, what)}: not readable (permission denied)")
    return p


def check_input_file(path: str | os.PathLike, kind: str = "file", what: str = "") -> Path:
    """``path`` when it is an existing, readable file; ``kind`` names it in the error ("manifest")."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{_describe(p, what)}: is a directory, not a {kind}")
    if not p.is_file():
        raise UserError(f"{_describe(p, what)}: no such {kind if kind == 'file' else kind + ' file'}")
    if not os.access(p, os.R_OK):
        raise UserError(f"{_describe(p, what)}: not readable (permission denied)")
    return p


def check_output_dir(path: str | os.PathLike, what: str = "-o") -> Path:
    """``path`` when it is (or can become) a writable folder: not a file, and its nearest existing
    ancestor is a writable folder."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{_describe(p, what)}: exists and is not a directory")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{_describe(p, what)}: {probe} is a file, so the folder cannot be made")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{_describe(p, what)}: {probe} is not writable")
    return p


def check_port_free(host: str, port: int) -> None:
    """Fail at once (before a model loads) when ``host:port`` cannot be bound: taken, privileged, or an
    address that is not this machine's."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: must be 0-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: cannot resolve ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is already in use (another server?); pick another with --port"
                ) from None
            if exc.errno == errno.EACCES:
                raise UserError(
                    f"port {port} on {host}: permission denied (ports below 1024 need root)"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UserError(f"--host {host}: not an address of this machine") from None
            raise UserError(f"cannot bind {host}:{port}: {exc.strerror}") from None
