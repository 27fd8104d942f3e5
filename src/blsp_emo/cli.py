"""The ``blsp-emo`` command: one sub-command per step of the data flow.

Each area of the package contributes its sub-commands through a ``register(subparsers)`` function in its
``commands`` module. Those modules import nothing heavy at import time (torch and transformers load inside
the command handlers), so ``blsp-emo --help``, a sub-command's ``--help`` and argument errors answer at
once; commands check their files and ports before any model loads.
"""

from __future__ import annotations

import importlib
import os
import sys

from blsp_emo import __version__
from blsp_emo.clitools import Parser
from blsp_emo.errors import UserError

# Each module defines register(subparsers) and adds its sub-commands.
COMMAND_MODULES: tuple[str, ...] = (
    "blsp_emo.assets.commands",
    "blsp_emo.model.commands",
    "blsp_emo.data.commands",
    "blsp_emo.training.commands",
    "blsp_emo.evaluation.commands",
    "blsp_emo.serving.commands",
    "blsp_emo.demo",
)


def build_parser() -> Parser:
    """Build the argument parser with every available sub-command."""
    parser = Parser(prog="blsp-emo", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and library warnings")
    parser.set_defaults(func=None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def _set_threads() -> None:
    """``BLSP_EMO_NUM_THREADS``: torch's intra-op threads (on small shared CPUs one thread per process can be
    several times faster than oversubscribing). Set through OMP_NUM_THREADS when torch is not imported yet,
    so that commands that never use torch do not pay for importing it."""
    threads = os.environ.get("BLSP_EMO_NUM_THREADS")
    if not threads:
        return
    try:
        count = int(threads)
    except ValueError:
        raise UserError(f"BLSP_EMO_NUM_THREADS={threads!r}: expected a whole number") from None
    if count < 1:
        raise UserError(f"BLSP_EMO_NUM_THREADS={threads!r}: must be at least 1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    else:
        os.environ["OMP_NUM_THREADS"] = str(count)
        os.environ["MKL_NUM_THREADS"] = str(count)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``blsp-emo`` console script."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    from blsp_emo.logs import setup_logging

    setup_logging(verbose=args.verbose)
    if args.func is None:  # no sub-command given
        parser.print_help()
        return 1
    try:
        _set_threads()
        result = args.func(args)
    except UserError as exc:
        print(f"blsp-emo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"blsp-emo {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
