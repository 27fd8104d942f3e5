"""Audio input: any file or bytes, any sample rate or channel count -> 16 kHz mono float32.

soundfile reads wav/flac/ogg/mp3; anything else (webm/opus from browsers, mp4, m4a) goes through PyAV.
Every failure raises :class:`AudioError` naming the source and what is wrong.

With ``max_seconds`` the length is known before decoding: from the container's metadata when it has any
(soundfile's frame count, PyAV's stream duration), and in any case decoding is block by block and stops
at the limit. A few hundred kilobytes of FLAC can hold hours of silence; memory stays bounded by the limit,
never by what the file expands to.
"""

from __future__ import annotations

import io
import os
from math import gcd
from pathlib import Path

import numpy as np

from blsp_emo.errors import AudioError
from blsp_emo.io import atomic_path

SAMPLE_RATE = 16_000
MAX_SAMPLE_RATE = 384_000  # the highest rate of any real recording format; higher is a crafted header
_UNKNOWN_FRAMES = 1 << 62  # libsndfile reports SF_COUNT_MAX when a stream does not say its length
_BLOCK_SAMPLES = 1 << 18  # decode this many samples (all channels) at a time


def _describe(source: str | os.PathLike | bytes) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes of audio>"
    return str(source)


def _too_long(seconds: float, max_seconds: float) -> AudioError:
    return AudioError(f"audio is {seconds:.1f} s long, the limit is {max_seconds:g} s")


def _over_limit(max_seconds: float) -> AudioError:
    # The container did not say its length: decoding stopped at the limit.
    return AudioError(f"audio is longer than {max_seconds:g} s, the limit is {max_seconds:g} s")


class _UnknownLength(Exception):
    """soundfile can open the data but not size it: PyAV decodes it as a stream instead."""


def _decode_soundfile(data: bytes | str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    handle = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with sf.SoundFile(handle) as sound:
        rate, channels, frames = int(sound.samplerate), int(sound.channels), int(sound.frames)
        if not 0 < rate <= MAX_SAMPLE_RATE:
            raise AudioError(f"unsupported sample rate {rate}")
        if frames >= _UNKNOWN_FRAMES or frames < 0:
            raise _UnknownLength()
        if max_seconds is not None and frames / rate > max_seconds:
            raise _too_long(frames / rate, max_seconds)
        # The header's frame count may lie: never read more than the limit allows, whatever it says.
        cap = frames if max_seconds is None else min(frames, int(max_seconds * rate) + 1)
        out = np.empty(cap, dtype=np.float32)
        block = max(1024, _BLOCK_SAMPLES // max(channels, 1))
        filled = 0
        while True:
            chunk = sound.read(block, dtype="float32", always_2d=True)
            if not len(chunk):
                break
            mono = chunk.mean(axis=1) if channels > 1 else chunk[:, 0]
            if filled + mono.size > cap:
                if max_seconds is not None:
                    raise _over_limit(max_seconds)
                out = np.concatenate([out[:filled], mono])  # more frames than the header said: keep them
                filled = out.size
                cap = out.size
                continue
            out[filled : filled + mono.size] = mono
            filled += mono.size
    return out[:filled], rate


def _decode_av(data: bytes | str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode with PyAV (ffmpeg) straight to 16 kHz mono, frame by frame, stopping at ``max_seconds``."""
    import av

    handle = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE) + 1
    chunks: list[np.ndarray] = []
    total = 0
    with av.open(handle, mode="r") as container:
        if not container.streams.audio:
            raise AudioError("no audio stream")
        stream = container.streams.audio[0]
        if max_seconds is not None:
            declared = _declared_seconds(container, stream)
            if declared is not None and declared > max_seconds:
                raise _too_long(declared, max_seconds)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

        def take(frames: list) -> None:
            nonlocal total
            for out in frames:
                samples = out.to_ndarray().reshape(-1)
                total += samples.size
                if max_seconds is not None and limit is not None and total > limit:
                    raise _over_limit(max_seconds)
                chunks.append(samples)

        for frame in container.decode(stream):
            take(resampler.resample(frame))
        take(resampler.resample(None))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return audio.astype(np.float32, copy=False), SAMPLE_RATE


def _declared_seconds(container, stream) -> float | None:
    """The length the container states (stream duration, else container duration), None when absent."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono signal with a polyphase filter (exact ratio, no phase shift)."""
    if rate == target:
        return audio.astype(np.float32, copy=False)
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate}")
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(audio, target // g, int(rate) // g).astype(np.float32)


def _decode(data: bytes | str, name: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """soundfile first; PyAV for what it cannot open or size. Errors name ``name``."""
    try:
        return _decode_soundfile(data, max_seconds)
    except AudioError as exc:
        raise AudioError(f"{name}: {exc}") from None
    except Exception:
        pass
    try:
        return _decode_av(data, max_seconds)
    except AudioError as exc:
        raise AudioError(f"{name}: {exc}") from None
    except Exception as exc:
        raise AudioError(f"{name}: unreadable or unsupported audio ({type(exc).__name__})") from None


def load_audio(
    source: str | os.PathLike | bytes | np.ndarray,
    sampling_rate: int | None = None,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Load audio as 16 kHz mono float32 in [-1, 1].

    ``source`` is a path, encoded bytes (any container soundfile or ffmpeg reads), or a numpy array
    (then ``sampling_rate`` is required; shape (n,) or (n, channels)). ``max_seconds`` rejects longer
    audio before any model sees it, and before it is decoded past the limit.
    """
    name = _describe(source) if not isinstance(source, np.ndarray) else "<array>"
    if isinstance(source, np.ndarray):
        if sampling_rate is None:
            raise AudioError("an audio array needs its sampling_rate")
        audio = source.astype(np.float32)
        if audio.ndim == 2:
            audio = audio.mean(axis=1 if audio.shape[1] <= 8 else 0)
        elif audio.ndim != 1:
            raise AudioError(f"audio array must be 1-D or 2-D, got shape {source.shape}")
        rate = int(sampling_rate)
    else:
        data: bytes | str
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if not data:
                raise AudioError("empty audio data")
        else:
            path = Path(source)
            if not path.is_file():
                raise AudioError(f"{path}: no such audio file")
            if path.stat().st_size == 0:
                raise AudioError(f"{path}: empty audio file")
            data = str(path)
        audio, rate = _decode(data, name, max_seconds)
    if audio.size == 0:
        raise AudioError(f"{name}: audio has no samples")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if max_seconds is not None and audio.size / rate > max_seconds:
        raise AudioError(f"{name}: {_too_long(audio.size / rate, max_seconds)}")
    return resample(audio, rate)


def save_wav(path: str | os.PathLike, audio: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM wav atomically (:func:`blsp_emo.io.atomic_path`), creating parent folders."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16", format="WAV")


def audio_duration(path: str | os.PathLike) -> float | None:
    """Duration in seconds from the file header (soundfile), decoding with PyAV only when needed; None
    when the file cannot be read as audio."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        return float(info.frames / info.samplerate)
    except Exception:
        pass
    try:
        return load_audio(path).size / SAMPLE_RATE
    except Exception:
        return None


def wav_bytes(audio: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> bytes:
    """Encode audio as 16-bit PCM wav bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()
