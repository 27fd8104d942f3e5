"""Training logs: a JSONL file (one object per logging step), TensorBoard scalars, a training-curve PNG.

A record holds the train loss and its parts (``loss``, ``kl_loss``...); when a dev set is configured the
steps where the dev loss was computed also hold ``dev_loss`` (and ``dev_kl_loss``...), in the same record
when the step was also a logging step, else in a record of its own (step 0: the dev loss before training).

Only the main process writes. On ``--resume`` the JSONL keeps the lines up to the checkpoint's step, so
the curve of a resumed run reads as one run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from blsp_emo.io import atomic_write_text

log = logging.getLogger(__name__)


class TrainingLog:
    """Appends metrics to ``<folder>/train.jsonl`` and TensorBoard (``<folder>/tensorboard``)."""

    def __init__(self, folder: Path, resume_step: int | None = None, tensorboard: bool = True):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "train.jsonl"
        if resume_step is None:
            self.path.write_text("")
        else:
            self._truncate_after(resume_step)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=resume_step)
            except ImportError:  # tensorboard is an optional extra (blsp-emo[train])
                log.warning("tensorboard is not installed: logging to %s only", self.path)

    def _truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines() if line.strip()]
        keep = [line for line in keep if json.loads(line).get("step", 0) <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))

    def write(self, record: dict) -> None:
        """Append one record (must hold ``step``); numeric fields also go to TensorBoard (``dev_*`` fields,
        the held-out loss, as ``dev/*``; the others as ``train/*``)."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    tag = f"dev/{key[4:]}" if key.startswith("dev_") else f"train/{key}"
                    self.writer.add_scalar(tag, value, record["step"])

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def read_log(path: Path) -> list[dict]:
    """The records of a ``train.jsonl``."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_training_curve(log_path: Path, out_path: Path, title: str = "") -> Path | None:
    """Loss (and its parts, and the dev loss when logged) and learning rate against optimizer step, as a
    PNG; None without records."""
    records = read_log(log_path) if log_path.is_file() else []
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, height_ratios=[3, 1])
    for key in ("loss", "kl_loss", "lm_loss", "emotion_loss", "dev_loss"):
        values = [r.get(key) for r in records]
        if any(v is not None for v in values) and not (
            key != "loss" and values == [r.get("loss") for r in records]
        ):
            pts = [(s, v) for s, v in zip(steps, values) if v is not None]
            ax_loss.plot(
                [p[0] for p in pts], [p[1] for p in pts], label=key, marker="." if len(pts) < 30 else None
            )
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_loss.set_title(title or "training curve")
    with_lr = [r for r in records if "lr" in r]  # dev-only records have no learning rate
    ax_lr.plot([r["step"] for r in with_lr], [r["lr"] for r in with_lr], color="tab:gray")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
