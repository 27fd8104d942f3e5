"""Compressed audio that expands to hours: refused from its length, never decoded whole.

A few hundred kilobytes of FLAC or Ogg can hold hours of silence; decoding all of it before the duration
check held gigabytes. Each case here measures the Python heap peak (numpy arrays are traced) and the time.
"""

from __future__ import annotations

import io
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from servingfix import audio_message

from blsp_emo.audio import _decode_av, load_audio
from blsp_emo.errors import AudioError
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.protocol import APIError, parse_chat_request

PEAK_LIMIT = 24 * 1024 * 1024  # 60 s at 16 kHz is 3.8 MB of float32; the whole file would be 460 MB


def _silence(format: str, subtype: str, seconds: int, rate: int) -> bytes:
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", rate, 1, format=format, subtype=subtype) as handle:
        block = np.zeros(rate * 60, dtype=np.float32)
        for _ in range(seconds // 60):
            handle.write(block)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def flac_two_hours() -> bytes:
    """Two hours of 16 kHz silence as FLAC (about 360 kB)."""
    return _silence("FLAC", "PCM_16", 7200, 16_000)


@pytest.fixture(scope="module")
def ogg_half_hour() -> bytes:
    """Thirty minutes of 8 kHz silence as Ogg Vorbis (about 120 kB)."""
    return _silence("OGG", "VORBIS", 1800, 8_000)


def _unknown_length(flac: bytes) -> bytes:
    """The same FLAC with STREAMINFO's total-samples field zeroed ("unknown"): no metadata to trust."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
    data[18:26] = fields.to_bytes(8, "big")
    return bytes(data)


def _measure(call) -> tuple[BaseException | None, int, float]:
    """Run ``call``; return its exception, the traced heap peak in bytes and the seconds it took."""
    tracemalloc.start()
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - the caller asserts on it
        error = exc
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak, seconds


@pytest.mark.parametrize("case", ["flac", "ogg", "flac-unknown-length"])
def test_long_silence_is_refused_quickly_with_bounded_memory(case, flac_two_hours, ogg_half_hour) -> None:
    data = {
        "flac": flac_two_hours,
        "ogg": ogg_half_hour,
        "flac-unknown-length": _unknown_length(flac_two_hours),
    }[case]
    assert len(data) < 1_000_000
    error, peak, seconds = _measure(lambda: load_audio(data, max_seconds=60.0))
    assert isinstance(error, AudioError), error
    assert "the limit is 60 s" in str(error)
    if case != "flac-unknown-length":  # the container says how long it is: the message tells
        assert ("7200.0 s" if case == "flac" else "1800.0 s") in str(error)
    assert peak < PEAK_LIMIT, f"{case}: heap peak {peak / 1e6:.1f} MB"
    assert seconds < 5.0, f"{case}: {seconds:.1f} s"


def test_streaming_decoder_stops_at_the_limit(flac_two_hours) -> None:
    """The PyAV path (webm, m4a, and anything soundfile cannot size) stops decoding at the limit too."""
    error, peak, _ = _measure(lambda: _decode_av(_unknown_length(flac_two_hours), max_seconds=30.0))
    assert isinstance(error, AudioError) and "the limit is 30 s" in str(error)
    assert peak < PEAK_LIMIT, f"heap peak {peak / 1e6:.1f} MB"


def test_short_compressed_audio_still_decodes() -> None:
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16_000 * 3) / 16_000)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, tone, 16_000, format="FLAC")
    audio = load_audio(buffer.getvalue(), max_seconds=5.0)
    assert audio.size == tone.size and np.allclose(audio, tone, atol=1e-3)
    audio_av, rate = _decode_av(buffer.getvalue(), max_seconds=5.0)
    assert rate == 16_000 and abs(audio_av.size - tone.size) < 200


def test_request_with_an_audio_bomb_is_a_400(flac_two_hours) -> None:
    message = audio_message(flac_two_hours)
    message["content"][0]["input_audio"]["format"] = "flac"
    with pytest.raises(APIError) as info:
        parse_chat_request({"messages": [message]}, ServingLimits(max_audio_seconds=60.0))
    assert (info.value.status, info.value.code) == (400, "audio_too_long")
    assert info.value.param == "messages[0].content[0].input_audio.data"
