"""Fixtures for the serving tests: real speech clips, a real model session, the real server on localhost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from blsp_emo.audio import load_audio, wav_bytes

POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")


@pytest.fixture(scope="session")
def speech_files() -> list[Path]:
    """Real recorded speech (pocketsphinx-testdata): LibriVox and 'cards' utterances."""
    files = sorted((POCKETSPHINX / "librivox").glob("*.wav")) + sorted((POCKETSPHINX / "cards").glob("*.wav"))
    if len(files) < 5:
        pytest.fail(
            f"no recorded speech under {POCKETSPHINX}: pocketsphinx-testdata is a promised test dependency, "
            "install it with apt-get install -y pocketsphinx-testdata (make setup)"
        )
    return files


@pytest.fixture(scope="session")
def speech_clips(speech_files: list[Path]) -> list[bytes]:
    """16 different wav clips of real speech: the recordings, then halves of the longer ones."""
    audios = [load_audio(path) for path in speech_files]
    clips = [wav_bytes(audio) for audio in audios]
    for audio in sorted(audios, key=len, reverse=True):
        if len(clips) >= 16:
            break
        clips.append(wav_bytes(audio[len(audio) // 2 :]))
    assert len({c for c in clips}) == len(clips) >= 16
    return clips[:16]


@pytest.fixture(scope="session")
def random_engine() -> Iterator:
    """A serving engine on the tiny random-weight model (fast, deterministic)."""
    from blsp_emo.model import SpeechChat, load_model
    from blsp_emo.serving.engine import ServingEngine

    model, processor = load_model("random-tiny")
    from blsp_emo.serving.limits import ServingLimits

    chat = SpeechChat(model, processor)
    engine = ServingEngine(chat, model_name="blsp-emo-random-tiny", limits=ServingLimits(timeout_s=120))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def speaker():
    """The packaged Piper voice."""
    from blsp_emo.serving.speech import Speaker

    return Speaker("piper")


@pytest.fixture(scope="session")
def server(random_engine, speaker) -> Iterator:
    """The real API (uvicorn) on a free localhost port, serving the random tiny model, with tight limits."""
    from blsp_emo.serving.api import create_app
    from blsp_emo.serving.limits import ServingLimits
    from blsp_emo.serving.server import BackgroundServer

    limits = ServingLimits(
        max_request_bytes=2 * 1024 * 1024, max_audio_seconds=20.0, max_audio_parts=4, max_new_tokens=256
    )
    with BackgroundServer(create_app(random_engine, limits=limits, speaker=speaker)) as running:
        yield running


@pytest.fixture()
def silence_wav() -> bytes:
    """One second of silence as wav."""
    return wav_bytes(np.zeros(16_000, dtype=np.float32))


@pytest.fixture(scope="module")
def embedded_server(embedded_model, speaker):
    """The real API (uvicorn) on a free localhost port, serving the embedded models (stage-0 adapter)."""
    from blsp_emo.model import SpeechChat
    from blsp_emo.serving.api import create_app
    from blsp_emo.serving.engine import ServingEngine
    from blsp_emo.serving.server import BackgroundServer

    engine = ServingEngine(SpeechChat(*embedded_model), model_name="blsp-emo-tiny")
    with BackgroundServer(create_app(engine, speaker=speaker)) as server:
        yield server
    engine.close()
