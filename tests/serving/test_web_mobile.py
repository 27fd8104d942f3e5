"""The web page on a phone-sized screen (390 x 844) in real headless Chromium: nothing scrolls sideways, and
spoken replies only play by themselves when the (remembered) autoplay setting is on."""

from __future__ import annotations

import shutil
from pathlib import Path

from webfix import artifacts_dir, chromium_page

PHONE = {"width": 390, "height": 844}

# Counts every attempt to make sound: <audio>.play() and Web Audio sources started.
COUNT_PLAYBACK = """
window.playbacks = 0;
const startSource = AudioBufferSourceNode.prototype.start;
AudioBufferSourceNode.prototype.start = function (...args) { window.playbacks++; return startSource.apply(this, args); };
const playMedia = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function () { window.playbacks++; return playMedia.apply(this); };
"""

# Widths of the document and of the widest-reaching element (its right edge), for the no-sideways check.
LAYOUT = """() => {
  const doc = document.documentElement;
  let right = 0, widest = "";
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (box.width && box.right > right) { right = box.right; widest = el.id || el.className || el.tagName; }
  }
  return {scroll: doc.scrollWidth, client: doc.clientWidth, body: document.body.scrollWidth, right, widest};
}"""


def assert_fits(page, when: str) -> None:
    layout = page.evaluate(LAYOUT)
    assert layout["client"] == PHONE["width"], layout
    assert layout["scroll"] <= layout["client"] and layout["body"] <= layout["client"], (when, layout)
    assert layout["right"] <= PHONE["width"] + 0.5, (when, layout)  # nothing clipped off the right side


def send_and_wait(page, replies: int) -> None:
    page.click("#send")
    page.wait_for_function(
        f"document.querySelectorAll('.msg.assistant:not(.streaming) audio.reply-audio').length === {replies}",
        timeout=60_000,
    )


def test_phone_layout_and_optional_autoplay(server, speech_files: list[Path], tmp_path: Path) -> None:
    with chromium_page(speech_files[0], viewport=PHONE) as page:
        page.add_init_script(COUNT_PLAYBACK)
        page.goto(server.url + "/?max_tokens=40&temperature=0")
        page.wait_for_function("document.getElementById('model-name').textContent !== '…'")
        assert_fits(page, "empty page")
        assert page.is_checked("#speak") and not page.is_checked("#autoplay")  # autoplay is off by default

        page.set_input_files("#file", str(speech_files[5]))
        page.wait_for_selector("#pending:not([hidden])")
        assert_fits(page, "audio waiting to be sent")
        page.fill("#text", "Please listen to this recording and tell me how the speaker feels about it today")
        send_and_wait(page, 1)
        assert_fits(page, "after a spoken reply")  # the random model's reply is one long unbroken word
        assert page.evaluate("window.playbacks") == 0  # the reply waits for its play button
        screenshot = tmp_path / "web_page_phone.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000
        shutil.copy(screenshot, artifacts_dir() / screenshot.name)
        print(f"\nphone screenshot: {artifacts_dir() / screenshot.name}")

        page.check("#autoplay")
        page.reload()  # the setting is remembered in this browser
        page.wait_for_function("document.getElementById('model-name').textContent !== '…'")
        assert page.is_checked("#autoplay")
        page.fill("#text", "And now?")
        send_and_wait(page, 1)
        assert page.evaluate("window.playbacks") > 0  # spoken as it streamed in
        assert_fits(page, "second conversation")
        assert not page.errors
