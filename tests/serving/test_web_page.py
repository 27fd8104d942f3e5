"""The web page in real headless Chromium: record from the (fake) microphone, send, watch the reply stream
in with an emotion badge and a spoken reply; then a second turn from an uploaded file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from webfix import artifacts_dir, chromium_page

from blsp_emo.prompts import EMOTIONS

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
        page.goto(server_url + "/?max_tokens=24")
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


def test_record_send_stream_badge_and_spoken_reply(server, speech_files: list[Path]) -> None:
    shown = run_page_conversation(
        server.url, speech_files[0], speech_files[5], artifacts_dir() / "web_page_random_tiny.png"
    )
    assert not shown["errors"]
    assert len(shown["badges"]) == 2 and all(b in EMOTIONS for b in shown["badges"])
    assert len(shown["replies"]) == 2 and all(shown["replies"])
    first, second = shown["requests"]
    assert first["stream"] and first["modalities"] == ["text", "audio"] and first["max_tokens"] == 24
    assert first["messages"][1]["content"][0]["input_audio"]["format"] == "webm"  # MediaRecorder output
    # The page holds the conversation: the second request resends the first turn and its answer.
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == shown["replies"][0]
    assert second["messages"][3]["content"][0] == {"type": "text", "text": "And how about this one?"}
    assert "And how about this one?" in shown["user_text"]
