"""Driving the web page in real headless Chromium (Debian's) through Playwright, with a fake microphone."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]  # fmt: skip


def artifacts_dir() -> Path:
    """Where screenshots go: $BLSP_EMO_ARTIFACTS or /tmp/blsp-emo-artifacts/serving (never the repository)."""
    folder = (
        Path(os.environ.get("BLSP_EMO_ARTIFACTS", Path(tempfile.gettempdir()) / "blsp-emo-artifacts"))
        / "serving"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium_page(microphone_wav: Path) -> Iterator:
    """A page in a fresh headless Chromium profile whose microphone plays ``microphone_wav`` in a loop."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    profile = tempfile.mkdtemp(prefix="blsp-emo-chromium-")
    try:
        with playwright_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=[*ARGS, f"--use-file-for-fake-audio-capture={microphone_wav}"],
                viewport={"width": 1100, "height": 760},
            )
            try:
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.errors = errors  # type: ignore[attr-defined]
                yield page
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
