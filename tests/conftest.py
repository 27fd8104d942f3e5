"""Shared fixtures: the tiny random model, the real embedded model, and real LibriVox speech."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


@pytest.fixture
def random_model():
    """(model, processor) with tiny random weights: fast, no files."""
    from blsp_emo.model import load_model

    return load_model("random-tiny", device="cpu")


@pytest.fixture(scope="session")
def embedded_model():
    """(model, processor) on the real embedded Whisper-base + SmolLM2 with an untrained adapter."""
    from blsp_emo.model import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def librivox_clips() -> list[tuple[Path, str]]:
    """The five real LibriVox utterances of pocketsphinx-testdata with their transcripts."""
    lines = (LIBRIVOX / "transcription").read_text().splitlines()
    clips = []
    for line in lines:
        m = re.match(r"<s>\s*(.*?)\s*</s>\s*\((.+)\)", line)
        if m:
            clips.append((LIBRIVOX / f"{m.group(2)}.wav", m.group(1)))
    assert len(clips) == 5, f"expected 5 LibriVox clips in {LIBRIVOX}"
    return clips
