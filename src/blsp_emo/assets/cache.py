"""Where prepared models live, and how a folder is materialised safely.

The cache is ``$BLSP_EMO_CACHE`` if set, else ``$XDG_CACHE_HOME/blsp-emo``, else ``~/.cache/blsp-emo``.
Folders are built in a temporary sibling and renamed into place, so a crash leaves no half-written model
and two processes preparing at once both end with the same complete folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from blsp_emo.io import atomic_write_text


def cache_dir() -> Path:
    """Root folder of the project's cache (created on demand)."""
    root = os.environ.get("BLSP_EMO_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "blsp-emo")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def materialize(target: Path, build: Callable[[Path], None]) -> Path:
    """Create ``target`` by calling ``build(tmp_dir)`` and renaming atomically; no-op if it exists.

    A ``.complete`` marker is written last inside the temporary folder, so a folder without it is never
    mistaken for a finished one.
    """
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        atomic_write_text(tmp / ".complete", "ok\n")
        if target.exists() and not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)  # leftover of an older, broken layout
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / ".complete").exists():  # lost the race to a broken folder: surface it
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
