"""Renderers for the Debian TTS engines (flite and festival), each with its own prosody controls.

Voice ids are ``flite:<voice>#<n>`` and ``festival:<voice>#<n>``: ``<voice>`` is one of the engine's
English voices (:data:`FLITE_VOICES`, :data:`FESTIVAL_VOICES`) and ``#<n>`` names one pseudo-speaker of it.
Every voice id gets its own natural offsets of F0 level, F0 range and speaking rate, drawn
deterministically from the id (:func:`voice_offsets`), so ``flite:slt#1`` and ``flite:slt#4`` are two
speakers with different habitual pitch and tempo.

Each emotion's prosody (rate, F0 level, F0 range) is realised with the engine's own controls where the
voice responds to them (measured: flite's ``duration_stretch`` and ``int_f0_target_*``, festival's
``Duration_Stretch``, ``int_lr_params`` and the HTS engine's ``-r``); where it does not, sox does it
afterwards: ``pitch`` for the level, and :func:`contour_range` (bends that follow the voice's own F0
contour) for the range. Loudness and the terminal contour are applied for every engine by
:func:`blsp_emo.data.synth.render`.

Text reaches the engines only through a file, never on the command line.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blsp_emo.data.sox import require_tool, sox
from blsp_emo.errors import UserError


@dataclass(frozen=True)
class EngineVoice:
    """One English voice of a Debian engine and what its native controls do."""

    name: str  # the engine's own voice name
    package: str  # the Debian package that ships it
    f0_mean: float | None  # Hz: the voice's habitual F0 mean, when the engine can set it
    f0_std: float | None  # Hz: the matching F0 standard deviation (None: the engine can't set the range)


# flite's built-in voices (the Debian ``flite`` package). ``kal`` (8 kHz) is left out: the same speaker
# and diphones as ``kal16``. The F0 values were calibrated so that setting them reproduces the voice's
# own mean and range (the clustergen voices ignore neither); ``rms`` ignores the F0 targets: sox does it.
FLITE_VOICES: dict[str, EngineVoice] = {
    "kal": EngineVoice("kal16", "flite", 95.0, 11.0),
    "awb": EngineVoice("awb", "flite", 133.0, 24.0),
    "rms": EngineVoice("rms", "flite", None, None),
    "slt": EngineVoice("slt", "flite", 180.0, 29.0),
}
# festival's English voices in Debian (main). The diphone voices take int_lr_params targets; the HTS
# voice generates its own F0 (pitch and range by sox) and takes its speed from the engine's -r option.
FESTIVAL_VOICES: dict[str, EngineVoice] = {
    "kal": EngineVoice("kal_diphone", "festvox-kallpc16k", 105.0, 14.0),
    "ked": EngineVoice("ked_diphone", "festvox-kdlpc16k", 105.0, 15.0),
    "slt": EngineVoice("cmu_us_slt_arctic_hts", "festvox-us-slt-hts", None, None),
}
# Pseudo-speakers per base voice and split (numbered, so a voice id never moves between splits).
SPEAKER_NUMBERS: dict[str, tuple[int, ...]] = {"train": (1, 2, 3, 4), "dev": (5,), "test": (6,)}
# Natural spread of speakers around the base voice (standard deviations): semitones, log rate, log range.
VOICE_SPREAD = {"pitch": 1.5, "rate": 0.06, "range": 0.12}
SETUP_HINT = "scripts/setup.sh installs it"


def engine_voices(engine: str, split: str) -> list[str]:
    """The voice ids of ``engine`` ("flite" | "festival") reserved for ``split``."""
    table = FLITE_VOICES if engine == "flite" else FESTIVAL_VOICES
    return [f"{engine}:{base}#{n}" for n in SPEAKER_NUMBERS[split] for base in table]


@dataclass(frozen=True)
class VoiceOffsets:
    """A speaker's habitual deviation from its base voice."""

    pitch: float = 0.0  # semitones
    rate: float = 1.0  # speaking-rate multiplier
    range: float = 1.0  # F0 range multiplier


def voice_offsets(voice: str) -> VoiceOffsets:
    """Deterministic per-speaker offsets drawn from the voice id (the same id, the same speaker)."""
    import zlib

    rng = np.random.default_rng(zlib.crc32(f"voice-offsets\x1f{voice}".encode()))
    return VoiceOffsets(
        pitch=float(np.clip(rng.normal(0, VOICE_SPREAD["pitch"]), -3.0, 3.0)),
        rate=float(math.exp(np.clip(rng.normal(0, VOICE_SPREAD["rate"]), -0.12, 0.12))),
        range=float(math.exp(np.clip(rng.normal(0, VOICE_SPREAD["range"]), -0.25, 0.25))),
    )


def parse_voice(engine: str, name: str) -> EngineVoice:
    """The base voice of ``<voice>[#<n>]`` for ``engine``; raises :class:`UserError` when unknown."""
    table = FLITE_VOICES if engine == "flite" else FESTIVAL_VOICES
    base = name.partition("#")[0]
    if base not in table:
        raise UserError(
            f"unknown {engine} voice {name!r} "
            f"(expected one of {', '.join(table)}, e.g. {engine}:{next(iter(table))}#1)"
        )
    return table[base]


def _read_wav(path: Path, what: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.is_file() or path.stat().st_size <= 44:
        raise UserError(f"{what} produced no audio")
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if audio.shape[0] == 0:
        raise UserError(f"{what} produced no audio")
    return audio.mean(axis=1), int(rate)


def _targets(voice: EngineVoice, pitch: float, range_: float) -> tuple[float, float]:
    """Native F0 mean and standard deviation (Hz) for a level shift (semitones) and a range factor."""
    assert voice.f0_mean is not None and voice.f0_std is not None
    scale = 2 ** (pitch / 12)
    # Scaling the Hz deviation with the level keeps the range in semitones equal to ``range_`` times the
    # voice's own.
    return voice.f0_mean * scale, voice.f0_std * range_ * scale


def render_flite(text: str, name: str, rate: float, pitch: float, range_: float) -> tuple[np.ndarray, int]:
    """Speak ``text`` with a flite voice: rate (multiplier), F0 level (semitones), F0 range (multiplier)."""

    voice = parse_voice("flite", name)
    exe = require_tool("flite", "flite")
    options = ["--setf", f"duration_stretch={1.0 / rate:.4f}"]
    if voice.f0_mean is not None:
        mean, std = _targets(voice, pitch, range_)
        options += ["--setf", f"int_f0_target_mean={mean:.2f}", "--setf", f"int_f0_target_stddev={std:.2f}"]
    with tempfile.TemporaryDirectory(prefix="blsp-flite-") as tmp:
        source, out = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        source.write_text(text + "\n", encoding="utf-8")
        # flite treats a bare argument with a space as text: -f and -o name the files explicitly.
        cmd = [exe, "-voice", voice.name, *options, "-f", str(source), "-o", str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(f"flite failed for voice {name!r}: {result.stderr.strip() or result.returncode}")
        audio, sr = _read_wav(out, f"flite (voice {name!r})")
    if voice.f0_mean is None:
        audio = move_with_sox(audio, sr, pitch, range_)
    return audio, sr


def _festival_voice_installed(voice: EngineVoice) -> bool:
    roots = [Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")]
    return any(root.is_dir() and any(root.glob(f"*/{voice.name}")) for root in roots)


def render_festival(text: str, name: str, rate: float, pitch: float, range_: float) -> tuple[np.ndarray, int]:
    """Speak ``text`` with a festival voice (through ``text2wave``), with the same controls as flite."""

    voice = parse_voice("festival", name)
    exe = require_tool("text2wave", "festival")
    if not _festival_voice_installed(voice):
        raise UserError(
            f"festival voice {voice.name} is not installed (apt-get install {voice.package}; {SETUP_HINT})"
        )
    # Scheme expressions built from numbers only: the text itself goes through a file.
    evals = [f"(voice_{voice.name})"]
    if voice.f0_mean is not None:
        mean, std = _targets(voice, pitch, range_)
        evals.append(
            f"(set! int_lr_params (list (list 'target_f0_mean {mean:.2f}) (list 'target_f0_std {std:.2f}) "
            "(list 'model_f0_mean 170) (list 'model_f0_std 34)))"
        )
        # The diphone voices' own setting is a 1.1 stretch; ours multiplies it.
        evals.append(f"(Parameter.set 'Duration_Stretch {1.1 / rate:.4f})")
    else:
        evals.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {rate:.4f}))))')
    with tempfile.TemporaryDirectory(prefix="blsp-festival-") as tmp:
        source, out = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        source.write_text(text + "\n", encoding="utf-8")
        cmd = [exe, *(arg for expr in evals for arg in ("-eval", expr)), "-o", str(out), str(source)]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        failed = result.returncode != 0 or "error" in result.stderr.lower()
        if failed and voice.f0_mean is not None and (rate, pitch, range_) != (1.0, 0.0, 1.0):
            # The diphone engine aborts (heap corruption) on some slow, low and flat settings (sad at
            # expressiveness 2): render at the voice's own settings, then move rate, level and range
            # with sox as for the voices that have no controls.
            audio, sr = render_festival(text, name, 1.0, 0.0, 1.0)
            return move_with_sox(audio, sr, pitch, range_, rate), sr
        if failed:
            raise UserError(
                f"festival failed for voice {name!r}: {result.stderr.strip() or result.returncode}"
            )
        audio, sr = _read_wav(out, f"festival (voice {name!r})")
    if voice.f0_mean is None:
        audio = move_with_sox(audio, sr, pitch, range_)
    return audio, sr


def move_with_sox(audio: np.ndarray, sr: int, pitch: float, range_: float, rate: float = 1.0) -> np.ndarray:
    """Apply prosody after rendering, for voices without their own controls: the F0 range along the
    voice's contour, then the level shift (semitones) and the tempo (pitch kept) with sox."""

    audio = contour_range(audio, sr, range_)
    effects = ["pitch", f"{100 * pitch:.0f}"] if abs(pitch) >= 0.05 else []
    effects += ["tempo", "-s", f"{rate:.3f}"] if abs(rate - 1.0) >= 0.01 else []
    return sox(audio, sr, effects) if effects else audio


def contour_range(audio: np.ndarray, rate: int, factor: float, knot: float = 0.08) -> np.ndarray:
    """Widen (``factor`` > 1) or flatten (< 1) the F0 range by bending the pitch along the voice's contour.

    The F0 contour is tracked, and each point is moved towards (or away from) the utterance's median by
    ``factor - 1`` times its distance, in semitones, as a chain of sox bends every ``knot`` seconds. The
    level (median) is unchanged, so this composes with a separate pitch shift.
    """
    from blsp_emo.data.prosody import HOP_SECONDS, track_f0

    if abs(factor - 1.0) < 0.03 or audio.size < rate // 4:
        return audio
    f0, _ = track_f0(audio, rate)
    voiced = np.flatnonzero(~np.isnan(f0))
    if voiced.size < 8:
        return audio
    semis = 12 * np.log2(f0[voiced])
    median = float(np.median(semis))
    # Unvoiced gaps hold the neighbouring values; a 50 ms moving average smooths tracker jitter.
    frames = np.arange(f0.size)
    contour = np.interp(frames, voiced, np.clip(semis - median, -11, 11))
    width = max(1, int(round(0.05 / HOP_SECONDS)))
    contour = np.convolve(contour, np.ones(width) / width, mode="same")
    target = np.clip((factor - 1.0) * contour * 100, -700, 700)  # cents to add at each frame
    step = max(1, int(round(knot / HOP_SECONDS)))
    points = np.round(target[::step])
    # A jump to the first point's correction within 10 ms, then one bend per knot to the next point.
    # sox rejects zero-cent bends: a flat stretch is folded into the next bend's start delay.
    bends = [f"0,{points[0]:.0f},0.010"] if points[0] else []
    delay, knot_seconds = 0.0 if points[0] else 0.010, step * HOP_SECONDS
    for a, b in zip(points[:-1], points[1:]):
        if b == a:
            delay += knot_seconds
        else:
            bends.append(f"{delay:.3f},{b - a:.0f},{knot_seconds:.3f}")
            delay = 0.0
    if not bends:
        return audio
    effects = ["bend", "-f", "50", *bends]
    return sox(audio, rate, effects)


def check_engine(engine: str) -> None:
    """Raise :class:`UserError` naming the Debian package when ``engine``'s program or voices are missing."""
    if engine == "espeak":
        require_tool("espeak-ng", "espeak-ng")
    elif engine == "flite":
        require_tool("flite", "flite")
    elif engine == "festival":
        require_tool("text2wave", "festival")
        missing = sorted({v.package for v in FESTIVAL_VOICES.values() if not _festival_voice_installed(v)})
        if missing:
            raise UserError(
                f"festival voices are not installed (apt-get install {' '.join(missing)}; {SETUP_HINT})"
            )
    if engine != "piper":  # Piper is pip-installed and optional: its voices are listed only when present
        require_tool("sox", "sox")
