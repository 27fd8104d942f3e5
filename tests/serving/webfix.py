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
def chromium_page(microphone_wav: Path, viewport: dict | None = None) -> Iterator:
    """A page in a fresh headless Chromium profile whose microphone plays ``microphone_wav`` in a loop;
    ``viewport``: the window size (default 1100 x 760; a phone is {"width": 390, "height": 844})."""
    # Promised dependencies (scripts/setup.sh installs both): a missing one fails the test, never skips it.
    try:
        from playwright import sync_api as playwright_api
    except ImportError:
        pytest.fail("Playwright is not installed: pip install playwright (the 'dev' extra; make setup)")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Debian chromium is not installed ({CHROMIUM}): apt-get install -y chromium (make setup)"
        )
    profile = tempfile.mkdtemp(prefix="blsp-emo-chromium-")
    try:
        with playwright_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=[*ARGS, f"--use-file-for-fake-audio-capture={microphone_wav}"],
                viewport=viewport or {"width": 1100, "height": 760},
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


# Records every text the assistant's reply showed, per reply: each time the page sets a reply's text, the
# new text node it puts there (or a text node whose data changes) is noted with the text it held then.
# Other changes in #thread (bubbles, badges, players, the cursor) are not reply text and are not counted.
WATCH_REPLY = """() => {
  window.replyTexts = [];
  const seen = new Map();
  const note = (holder, text) => {
    if (!holder || !holder.matches('.msg.assistant > .text')) return;
    if (!seen.has(holder)) { seen.set(holder, []); window.replyTexts.push(seen.get(holder)); }
    const texts = seen.get(holder);
    if (texts[texts.length - 1] !== text) texts.push(text);
  };
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'characterData') note(r.target.parentElement, r.target.data);
      for (const node of r.addedNodes) {
        if (node.nodeType === Node.TEXT_NODE) note(r.target, node.data);
      }
    }
  }).observe(document.getElementById('thread'), {subtree: true, characterData: true, childList: true});
}"""


def streamed_prefixes(shown_texts: list[str], final: str) -> list[str]:
    """The distinct non-empty texts a reply showed, in order; asserts that each one is a prefix of the final
    text and longer than the one before (the reply grew; it was never rewritten or shrunk)."""
    texts = [t for t in shown_texts if t]
    for before, after in zip(texts, texts[1:]):
        assert len(after) > len(before), (before, after)
    for text in texts:
        assert final.startswith(text), (text, final)
    assert texts and texts[-1] == final, (texts, final)
    return texts


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
            "reply_texts": page.evaluate("window.replyTexts"),
            "errors": page.errors,
            "requests": requests,
            "user_text": page.inner_text(".msg.user:nth-of-type(3)"),
        }
