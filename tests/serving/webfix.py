"""Driving the web page in real headless Chromium (Debian's) through Playwright, with a fake microphone."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
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


# Counts every change of the reply text, to see it arrive piece by piece.
WATCH_REPLY = """() => {
  window.replyUpdates = 0;
  new MutationObserver(() => { window.replyUpdates += 1; })
    .observe(document.getElementById('thread'), {subtree: true, characterData: true, childList: true});
}"""


def run_page_conversation(server_url: str, microphone: Path, upload: Path, screenshot: Path) -> dict:
    """Record + send, then upload + send; returns what the page showed and sent."""
    with chromium_page(microphone) as page:
        requests: list[dict] = []
        page.on(
            "request",
            lambda r: (
                requests.append(json.loads(r.post_data)) if r.url.endswith("/chat/completions") else None
            ),
        )
        page.goto(server_url + "/?max_tokens=24&temperature=0")  # greedy: the same replies on every run
        page.wait_for_function("document.getElementById('model-name').textContent !== '…'")
        page.evaluate(WATCH_REPLY)

        page.click("#record")
        page.wait_for_selector("#record.recording")
        time.sleep(1.5)
        page.click("#record")
        page.wait_for_selector("#pending:not([hidden])")
        page.click("#send")
        page.wait_for_selector(".msg.user .emotion-badge:not(.pending)", timeout=60_000)
        page.wait_for_selector(".msg.assistant:not(.streaming) audio.reply-audio", timeout=60_000)

        page.uncheck("#no-repeat")  # the second turn without the repetition penalty and the n-gram block
        page.set_input_files("#file", str(upload))
        page.fill("#text", "And how about this one?")
        page.click("#send")
        page.wait_for_function("document.querySelectorAll('.msg.assistant audio.reply-audio').length === 2",
                               timeout=60_000)  # fmt: skip
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"\nweb page screenshot: {screenshot}")
        return {
            "badges": page.eval_on_selector_all(
                ".msg.user .emotion-badge", "els => els.map(e => e.textContent)"
            ),
            "replies": page.eval_on_selector_all(
                ".msg.assistant .text", "els => els.map(e => e.textContent)"
            ),
            "updates": page.evaluate("window.replyUpdates"),
            "errors": page.errors,
            "requests": requests,
            "user_text": page.inner_text(".msg.user:nth-of-type(3)"),
        }
