"""One log format for every command, and third-party chatter kept out of normal output.

:func:`setup_logging` is called once by the CLI after argument parsing. Every record, the project's and the
libraries' (transformers, huggingface_hub, matplotlib, uvicorn) and Python warnings, goes through one handler
on stderr with one format: ``HH:MM:SS LEVEL logger: message``. Without ``--verbose``, warnings that only
concern the libraries' own code (the transformers FutureWarning about ``past_key_values``, matplotlib's font
and cache notices, progress bars) are dropped; with it they are all shown.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import TextIO

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"

# Library loggers that are noisy at INFO/WARNING in normal use: shown at ERROR unless --verbose.
QUIET_LOGGERS = ("matplotlib", "PIL", "transformers", "huggingface_hub", "accelerate", "urllib3", "filelock")

# Python warnings raised by library internals about the libraries' own calls (nothing a user can act on).
QUIET_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`past_key_values` is deprecated", FutureWarning),
    (r".*past_key_values.*", FutureWarning),
    (r".*Matplotlib.*", UserWarning),
    (r".*font cache.*", UserWarning),
)


def quiet_third_party() -> None:
    """Drop the library warnings of :data:`QUIET_WARNINGS` and silence library progress bars and INFO logs."""
    for pattern, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"matplotlib(\..*)?")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # already imported: its own verbosity switch was read at import
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


class _ProjectHandler(logging.StreamHandler):
    """The one stderr handler :func:`setup_logging` installs (found again by its type on a second call)."""


def setup_logging(verbose: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """Route every log record and Python warning through one stderr handler in :data:`LOG_FORMAT`.

    Replaces handlers set up before (a second call does not double the output). ``verbose`` shows DEBUG
    records and the library warnings that are otherwise dropped. Returns the handler.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ProjectHandler):
            root.removeHandler(handler)
    handler = _ProjectHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=DATE_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)  # warnings.warn(...) -> logger "py.warnings", same format
    if verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
    else:
        quiet_third_party()
    # Libraries that attach their own handler (transformers) would print a second, differently formatted
    # line: let their records reach the root handler only.
    for name in ("transformers", "uvicorn", "uvicorn.error", "uvicorn.access"):
        lib = logging.getLogger(name)
        for h in list(lib.handlers):
            lib.removeHandler(h)
        lib.propagate = True
    return handler
