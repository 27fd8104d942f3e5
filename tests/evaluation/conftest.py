"""Fixtures for the evaluation tests: tiny synthetic emotional speech sets and real LibriVox clips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blsp_emo.audio import SAMPLE_RATE, load_audio, save_wav

SENTENCES = (
    "I am graduating from school next week.",
    "They moved the meeting to tomorrow morning.",
    "My brother called me last night.",
    "The results came in this afternoon.",
    "We are going to the lake on Sunday.",
)
EMOTION_CYCLE = ("happy", "sad", "angry", "neutral", "surprise")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def _speak(text: str, emotion: str, seed: int):
    from blsp_emo.data.synth import list_voices, synthesize

    voices = list(list_voices("test")) or list(list_voices(None))
    return synthesize(text, emotion=emotion, voice=voices[seed % len(voices)], seed=seed)


def write_emotion_manifest(folder: Path, n: int = 5, split: str = "test") -> Path:
    """Synthesise ``n`` utterances (emotions cycling through all five) and write their manifest."""
    rows = []
    for i in range(n):
        emotion, text = EMOTION_CYCLE[i % 5], SENTENCES[i % len(SENTENCES)]
        path = folder / f"{split}-{i:02d}-{emotion}.wav"
        samples, rate = _speak(text, emotion, i)
        audio = load_audio(samples, sampling_rate=rate)
        save_wav(path, audio)
        rows.append(
            {
                "audio": path.name,
                "text": text,
                "emotion": emotion,
                "split": split,
                "id": f"{split}{i:02d}",
                "duration": round(len(audio) / SAMPLE_RATE, 3),
                "corpus": "synth",
            }
        )
    manifest = folder / f"{split}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each evaluation test on one intra-op thread, then restore the setting.

    The test machines are small and shared: with two busy-waiting OpenMP threads per process, a generate
    call was measured 3-8x slower under contention than with one thread.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def emotion_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five synthetic test utterances, one per emotion, with transcripts."""
    return write_emotion_manifest(tmp_path_factory.mktemp("emo"), n=5, split="test")


@pytest.fixture(scope="session")
def train_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten synthetic training utterances (two per emotion) for the cascade's emotion classifier."""
    return write_emotion_manifest(tmp_path_factory.mktemp("emo-train"), n=10, split="train")


@pytest.fixture(scope="session")
def librivox_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five real LibriVox clips of pocketsphinx-testdata as a manifest (no emotion labels)."""
    from blsp_emo.data.importers import run_import

    if not (LIBRIVOX / "transcription").is_file():
        pytest.fail("pocketsphinx-testdata is missing: apt-get install pocketsphinx-testdata")
    manifest = tmp_path_factory.mktemp("librivox") / "librivox.jsonl"
    run_import("sphinx", LIBRIVOX, manifest, split="test")
    return manifest
