"""Measure prosody from audio: F0 level and range, terminal contour, speaking rate, loudness.

Used to verify that a synthetic corpus carries the intended emotion correlates (and that classes overlap).
The F0 tracker is a plain normalised-autocorrelation tracker in numpy (no extra dependency): good enough for
per-class statistics, not for phonetics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FRAME_SECONDS = 0.04
HOP_SECONDS = 0.01
F0_MIN, F0_MAX = 60.0, 500.0


@dataclass
class Prosody:
    """Prosodic measurements of one utterance."""

    f0_mean: float  # Hz, mean over voiced frames (nan when unvoiced)
    f0_range: float  # semitones between the 10th and 90th percentile of voiced F0
    f0_end_rise: float  # semitones: median F0 of the last quarter of voiced frames minus the rest
    rate: float  # words per second over the speech span (first to last active frame)
    rms: float  # root mean square amplitude over the active frames
    voiced: float  # fraction of active frames that are voiced

    def to_dict(self) -> dict[str, float | None]:
        """Rounded values for JSON (None where not finite)."""
        return {k: (round(v, 4) if np.isfinite(v) else None) for k, v in asdict(self).items()}


def _frames(audio: np.ndarray, rate: int) -> np.ndarray:
    size, hop = int(FRAME_SECONDS * rate), int(HOP_SECONDS * rate)
    if audio.size < size:
        audio = np.pad(audio, (0, size - audio.size))
    count = 1 + (audio.size - size) // hop
    index = np.arange(size)[None, :] + hop * np.arange(count)[:, None]
    return audio[index]


def active_frames(rms: np.ndarray, noise_aware: bool = False) -> np.ndarray:
    """Frames that belong to speech: louder than 5 % of the loudest frame.

    ``noise_aware`` also requires 8 dB above the floor (the 5th percentile of frame RMS): in noisy or
    reverberant audio (augmented corpora) frames of noise alone would otherwise count as speech and
    stretch the speech span, lowering the measured rate. It is off by default so that the measurements
    of existing corpora stay comparable.
    """
    threshold = 0.05 * (float(rms.max()) + 1e-12) if rms.size else 0.0
    if noise_aware and rms.size:
        threshold = max(threshold, 2.5 * float(np.percentile(rms, 5)))
    return rms > threshold


def _acf_f0(frames: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame F0 (Hz) and peak normalised autocorrelation of mean-removed frames."""
    windowed = frames * np.hanning(frames.shape[1])[None, :]
    n = 2 * frames.shape[1]
    spectrum = np.fft.rfft(windowed, n=n, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, n=n, axis=1)[:, : frames.shape[1]]
    # Normalise by the window's own autocorrelation so long lags are not penalised.
    win_acf = np.correlate(np.hanning(frames.shape[1]), np.hanning(frames.shape[1]), "full")[
        frames.shape[1] - 1 :
    ]
    acf = acf / np.maximum(acf[:, :1], 1e-12) / np.maximum(win_acf / win_acf[0], 1e-3)[None, :]
    lo, hi = int(rate / F0_MAX), int(rate / F0_MIN)
    region = acf[:, lo:hi]
    best = region.max(axis=1)
    # Prefer the shortest lag whose peak is close to the best one (avoids sub-octave errors).
    candidate = region >= 0.9 * best[:, None]
    lag = lo + candidate.argmax(axis=1)
    # Parabolic refinement around the chosen lag.
    rows = np.arange(acf.shape[0])
    left, mid = acf[rows, np.clip(lag - 1, 0, None)], acf[rows, lag]
    right = acf[rows, np.clip(lag + 1, None, acf.shape[1] - 1)]
    denom = left - 2 * mid + right
    shift = np.where(np.abs(denom) > 1e-9, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    return rate / (lag + np.clip(shift, -0.5, 0.5)), best


def _regenerate_fundamental(audio: np.ndarray, rate: int) -> np.ndarray:
    """Square the signal and keep 50-900 Hz: harmonics k and k+1 beat at F0, so the fundamental is
    back even where a 300 Hz high-pass (telephone) took it away."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, (50, 900), btype="bandpass", fs=rate, output="sos")
    return sosfiltfilt(sos, audio * audio)


def track_f0(
    audio: np.ndarray, rate: int = 16_000, noise_aware: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Return per-frame F0 in Hz (nan where unvoiced) and per-frame RMS, at a 10 ms hop.

    ``noise_aware`` (for degraded audio: see :func:`active_frames`) also checks each frame against the
    pitch of the squared signal, whose difference tones restore a fundamental that band-limiting
    removed: where the plain tracker found 2-6 times that pitch, it had locked onto a harmonic.
    """
    frames = _frames(audio.astype(np.float64), rate)
    frames = frames - frames.mean(axis=1, keepdims=True)
    rms = np.sqrt((frames**2).mean(axis=1))
    f0, best = _acf_f0(frames, rate)
    if noise_aware:
        regenerated = _frames(_regenerate_fundamental(audio.astype(np.float64), rate), rate)
        low, _ = _acf_f0(regenerated - regenerated.mean(axis=1, keepdims=True), rate)
        ratio = f0 / low
        harmonic = (np.abs(ratio - np.round(ratio)) < 0.06 * np.round(ratio)) & (np.round(ratio) >= 2)
        f0 = np.where(harmonic & (np.round(ratio) <= 6), low, f0)
    active = active_frames(rms, noise_aware)
    voiced = active & (best > 0.5)
    return np.where(voiced, f0, np.nan), rms


def measure(
    audio: np.ndarray, rate: int = 16_000, words: int | None = None, noise_aware: bool = False
) -> Prosody:
    """Measure one utterance; ``words`` (the transcript's word count) enables the speaking rate.

    ``noise_aware`` finds the speech span above the noise floor (:func:`active_frames`): use it to
    compare clean and noisy versions of the same audio.
    """
    f0, rms = track_f0(audio, rate, noise_aware)
    active = active_frames(rms, noise_aware)
    if not active.any():
        nan = float("nan")
        return Prosody(nan, nan, nan, nan, 0.0, 0.0)
    first, last = np.flatnonzero(active)[[0, -1]]
    span = (last - first + 1) * HOP_SECONDS + FRAME_SECONDS
    voiced_f0 = f0[~np.isnan(f0)]
    if voiced_f0.size >= 4:
        # Frames more than 11 semitones from the utterance median are octave errors of the tracker.
        semis = 12 * np.log2(voiced_f0)
        keep = np.abs(semis - np.median(semis)) <= 11
        voiced_f0, semis = voiced_f0[keep], semis[keep]
    if voiced_f0.size >= 4:
        lo, hi = np.percentile(semis, [10, 90])
        quarter = max(1, voiced_f0.size // 4)
        rise = float(np.median(semis[-quarter:]) - np.median(semis[:-quarter]))
        f0_mean, f0_range = float(voiced_f0.mean()), float(hi - lo)
    else:
        f0_mean = f0_range = rise = float("nan")
    return Prosody(
        f0_mean=f0_mean,
        f0_range=f0_range,
        f0_end_rise=rise,
        rate=float(words / span) if words else float("nan"),
        rms=float(np.sqrt((rms[active] ** 2).mean())),
        voiced=float(voiced_f0.size / active.sum()),
    )


COLUMNS = (
    ("f0_mean", "mean F0 (Hz)"),
    ("f0_range", "F0 range (st)"),
    ("f0_end_rise", "end rise (st)"),
    ("rate", "rate (words/s)"),
    ("rms", "RMS"),
)


def group_by_label(items: Iterable[tuple[str, dict[str, float | None]]]) -> dict[str, dict[str, list[float]]]:
    """Collect measurements per label: ``{label: {feature: [values]}}`` (missing values skipped)."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for label, values in items:
        for key, _ in COLUMNS:
            value = values.get(key)
            if value is not None and np.isfinite(value):
                out[label][key].append(float(value))
    return out


def prosody_table(groups: dict[str, dict[str, list[float]]], order: Iterable[str]) -> str:
    """A plain-text table of mean ± standard deviation per label and feature."""
    header = f"{'class':<10}{'n':>6}" + "".join(f"{title:>20}" for _, title in COLUMNS)
    lines = [header, "-" * len(header)]
    for label in order:
        if label not in groups:
            continue
        feats = groups[label]
        n = max((len(v) for v in feats.values()), default=0)
        cells = []
        for key, _ in COLUMNS:
            values = np.asarray(feats.get(key, []))
            fmt = "{:.3f} ± {:.3f}" if key == "rms" else "{:.1f} ± {:.1f}"
            cells.append(f"{fmt.format(values.mean(), values.std()) if values.size else '-':>20}")
        lines.append(f"{label:<10}{n:>6}" + "".join(cells))
    return "\n".join(lines)


def plot_prosody(groups: dict[str, dict[str, list[float]]], order: list[str], path: Path) -> Path | None:
    """Box plots per feature and class, saved as PNG; ``None`` when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = [label for label in order if label in groups]
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(4 * len(COLUMNS), 3.6))
    for ax, (key, title) in zip(axes, COLUMNS):
        ax.boxplot([groups[label].get(key, []) or [np.nan] for label in labels], showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.suptitle("Prosody per class, measured from the synthesised audio")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def comparison_table(
    before: dict[str, dict[str, list[float]]], after: dict[str, dict[str, list[float]]], order: Iterable[str]
) -> str:
    """A plain-text table of each feature's per-label mean before -> after (e.g. augmentation)."""
    header = f"{'class':<10}{'n':>6}" + "".join(f"{title:>22}" for _, title in COLUMNS)
    lines = [header, "-" * len(header)]
    for label in order:
        if label not in before or label not in after:
            continue
        n = max((len(v) for v in after[label].values()), default=0)
        cells = []
        for key, _ in COLUMNS:
            a, b = np.asarray(before[label].get(key, [])), np.asarray(after[label].get(key, []))
            fmt = "{:.3f} -> {:.3f}" if key == "rms" else "{:.1f} -> {:.1f}"
            cells.append(f"{fmt.format(a.mean(), b.mean()) if a.size and b.size else '-':>22}")
        lines.append(f"{label:<10}{n:>6}" + "".join(cells))
    return "\n".join(lines)


def plot_prosody_comparison(
    before: dict[str, dict[str, list[float]]],
    after: dict[str, dict[str, list[float]]],
    order: list[str],
    path: Path,
    title: str = "Prosody per class before (light) and after (dark) augmentation",
) -> Path | None:
    """Paired box plots per feature and class (before, after), saved as PNG; ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = [label for label in order if label in before and label in after]
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(4.4 * len(COLUMNS), 3.8))
    centres = np.arange(1, len(labels) + 1, dtype=float)
    for ax, (key, name) in zip(axes, COLUMNS):
        for groups, shift, colour in ((before, -0.18, "#9ecae1"), (after, 0.18, "#3182bd")):
            boxes = ax.boxplot(
                [groups[label].get(key, []) or [np.nan] for label in labels],
                positions=centres + shift,
                widths=0.32,
                showfliers=False,
                patch_artist=True,
            )
            for patch in boxes["boxes"]:
                patch.set_facecolor(colour)
        ax.set_xticks(centres, labels, rotation=30)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
