"""Tiny audio and video files for the data tests (generated, never committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float = 0.3, rate: int = 16_000, freq: float = 220.0) -> np.ndarray:
    """A short sine tone, float32 mono."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, seconds: float = 0.3, rate: int = 16_000, fmt: str | None = None) -> Path:
    """Write a short tone as wav (or flac/ogg by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, rate), rate, format=fmt)
    return path


def write_mp4(path: Path, seconds: float = 0.5, rate: int = 16_000, audio_track: bool = True) -> Path:
    """Write a tiny mp4 with a 32x32 video track and an AAC audio track, as MELD ships them
    (``audio_track=False``: the video track only)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    signal = tone(seconds, rate)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream("aac", rate=rate) if audio_track else None
        if audio is not None:
            audio.layout = "mono"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is None:
            return path
        size = audio.codec_context.frame_size or 1024
        for start in range(0, signal.size, size):
            frame = av.AudioFrame.from_ndarray(
                signal[start : start + size].reshape(1, -1), format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path


def write_m4a(path: Path, seconds: float = 0.3, rate: int = 16_000) -> Path:
    """Write a short tone as AAC in an MPEG-4 audio container (.m4a), as MEAD ships its audio."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    signal = tone(seconds, rate)
    with av.open(str(path), "w", format="ipod") as out:
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        size = audio.codec_context.frame_size or 1024
        for start in range(0, signal.size, size):
            frame = av.AudioFrame.from_ndarray(
                signal[start : start + size].reshape(1, -1), format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path
