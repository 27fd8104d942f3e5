"""Audio input: any file or bytes, any sample rate or channel count -> 16 kHz mono float32.

soundfile reads wav/flac/ogg/mp3; anything else (webm/opus from browsers, mp4, m4a) goes through PyAV.
Every failure raises :class:`AudioError` naming the source and what is wrong.
"""

from __future__ import annotations

import io
import os
from math import gcd
from pathlib import Path

import numpy as np

from blsp_emo.errors import AudioError

SAMPLE_RATE = 16_000


def _describe(source: str | os.PathLike | bytes) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes of audio>"
    return str(source)


def _decode_soundfile(data: bytes | str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    handle = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    audio, rate = sf.read(handle, dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)


def _decode_av(data: bytes | str) -> tuple[np.ndarray, int]:
    import av

    handle = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    chunks: list[np.ndarray] = []
    with av.open(handle) as container:
        if not container.streams.audio:
            raise AudioError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return audio.astype(np.float32), SAMPLE_RATE


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono signal with a polyphase filter (exact ratio, no phase shift)."""
    if rate == target:
        return audio.astype(np.float32, copy=False)
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate}")
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(audio, target // g, int(rate) // g).astype(np.float32)


def load_audio(
    source: str | os.PathLike | bytes | np.ndarray,
    sampling_rate: int | None = None,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Load audio as 16 kHz mono float32 in [-1, 1].

    ``source`` is a path, encoded bytes (any container soundfile or ffmpeg reads), or a numpy array
    (then ``sampling_rate`` is required; shape (n,) or (n, channels)). ``max_seconds`` rejects longer
    audio before any model sees it.
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
        try:
            audio, rate = _decode_soundfile(data)
        except Exception:
            try:
                audio, rate = _decode_av(data)
            except AudioError as exc:
                raise AudioError(f"{name}: {exc}") from None
            except Exception as exc:
                raise AudioError(f"{name}: unreadable or unsupported audio ({type(exc).__name__})") from None
    if audio.size == 0:
        raise AudioError(f"{name}: audio has no samples")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if max_seconds is not None and audio.size / rate > max_seconds:
        raise AudioError(f"{name}: audio is {audio.size / rate:.1f} s long, the limit is {max_seconds:g} s")
    return resample(audio, rate)


def save_wav(path: str | os.PathLike, audio: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM wav atomically (temp file + rename), creating parent folders."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def wav_bytes(audio: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> bytes:
    """Encode audio as 16-bit PCM wav bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()
