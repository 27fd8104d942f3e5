"""PNG plots of evaluation results (matplotlib, non-interactive backend, fixed metadata for byte-stable files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# No creation date or software version in the PNG, so the same results give the same bytes.
_PNG_METADATA = {"Software": None}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(
    counts: Sequence[Sequence[int]],
    rows: Sequence[str],
    columns: Sequence[str],
    path: Path,
    title: str,
    xlabel: str = "predicted",
    ylabel: str = "true",
) -> Path:
    """Confusion matrix: colour = share of the row (recall), text = count."""
    plt = _pyplot()
    matrix = np.asarray(counts, dtype=float)
    shares = matrix / np.clip(matrix.sum(axis=1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 2.2, 0.9 * len(rows) + 1.8), dpi=100)
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(columns)), labels=list(columns), rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            colour = "white" if shares[i, j] > 0.6 else "black"
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", color=colour, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=_PNG_METADATA)
    plt.close(fig)
    return path


def plot_bars(
    values: dict[str, float | None],
    path: Path,
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = (0.0, 1.0),
    chance: float | None = None,
) -> Path:
    """One bar per key (missing values drawn as empty), an optional dashed chance line."""
    plt = _pyplot()
    names = list(values)
    heights = [v if v is not None else 0.0 for v in values.values()]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(names) + 2.0), 3.4), dpi=100)
    bars = ax.bar(range(len(names)), heights, color="#4878a8")
    for bar, v in zip(bars, values.values()):
        label = "n/a" if v is None else f"{v:.2f}"
        ax.annotate(
            label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8
        )
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance {chance:.2f}")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xticks(range(len(names)), labels=names, rotation=30, ha="right")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=_PNG_METADATA)
    plt.close(fig)
    return path


def plot_histogram(values: Sequence[float], path: Path, title: str, xlabel: str, bins: int = 20) -> Path:
    """Histogram of per-utterance scores in [0, 1] (cosine may be slightly negative: clipped to the range)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
    ax.hist(np.clip(np.asarray(values, dtype=float), -1.0, 1.0), bins=bins, range=(0.0, 1.0), color="#4878a8")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("utterances")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=_PNG_METADATA)
    plt.close(fig)
    return path


def plot_comparison(
    table: dict[str, dict[str, float | None]], metrics: Sequence[str], path: Path, title: str
) -> Path:
    """Grouped bars: one group per metric, one bar per system (metrics on a 0..1 scale)."""
    plt = _pyplot()
    systems = list(table)
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(metrics) + 2.0), 3.8), dpi=100)
    for k, system in enumerate(systems):
        heights = [table[system].get(m) for m in metrics]
        xs = [i + (k - (len(systems) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, [h if h is not None else 0.0 for h in heights], width=width, label=system)
    ax.set_xticks(range(len(metrics)), labels=list(metrics), rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=_PNG_METADATA)
    plt.close(fig)
    return path
