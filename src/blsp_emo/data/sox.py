"""The external command-line tools that synthesis and augmentation run: a check that one is installed, and
sox effects on a float32 signal."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from blsp_emo.errors import UserError


def require_tool(tool: str, package: str) -> str:
    """The path of ``tool``; :class:`UserError` naming the Debian ``package`` to install when it is missing."""
    path = shutil.which(tool)
    if path is None:
        raise UserError(f"{tool} is not installed (apt-get install {package})")
    return path


def sox(audio: np.ndarray, rate: int, effects: list[str]) -> np.ndarray:
    """Run sox effects on a float32 mono signal (raw float pipe in and out; length is preserved)."""
    exe = require_tool("sox", "sox")
    fmt = ["-t", "f32", "-r", str(rate), "-c", "1"]
    result = subprocess.run(
        [exe, "-q", *fmt, "-", *fmt, "-", *effects],
        input=audio.astype(np.float32).tobytes(),
        capture_output=True,
    )
    if result.returncode != 0:
        raise UserError(f"sox {' '.join(effects)} failed: {result.stderr.decode(errors='replace').strip()}")
    out = np.frombuffer(result.stdout, dtype=np.float32).copy()
    return out if out.size else audio
