"""The ``blsp-emo`` command: one sub-command per step of the data flow.

Each area of the package contributes its sub-commands through a ``register(subparsers)`` function in its
``commands`` module; modules are imported lazily so that ``blsp-emo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

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


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(prog="blsp-emo", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``blsp-emo`` console script."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        # Library progress bars and warnings would bury the command's own output.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except ImportError:
            pass
    threads = os.environ.get("BLSP_EMO_NUM_THREADS")
    if threads:
        # On small shared CPUs one thread per process can be several times faster than oversubscribing.
        import torch

        torch.set_num_threads(int(threads))
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
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
