"""espeak-ng gets the reply text on stdin: a reply that looks like options is spoken, never obeyed."""

from __future__ import annotations

import shutil
from pathlib import Path

from blsp_emo.serving.speech import Speaker


def test_reply_text_starting_with_dashes_is_not_an_option(tmp_path: Path) -> None:
    # espeak-ng is a promised dependency (scripts/setup.sh installs it): fail, never skip.
    assert shutil.which("espeak-ng"), "espeak-ng is missing: apt-get install -y espeak-ng (make setup)"
    target = tmp_path / "written-by-espeak.wav"
    speaker = Speaker("espeak")
    # As an argument, "-w FILE" would make espeak-ng write a wav there instead of to stdout.
    audio, rate = speaker.synthesize(f"-w {target} hello there")
    assert not target.exists()
    assert rate > 0 and audio.size > rate * 0.3  # the words were spoken
    audio, _ = speaker.synthesize("--version")
    assert audio.size > 0
