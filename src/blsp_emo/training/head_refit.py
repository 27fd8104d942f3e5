"""Refit a checkpoint's layer-mixed emotion head on frozen encoder statistics (``blsp-emo refit-head``).

Stage 2 trains the emotion head together with the adapter and the LoRA, at the LLM's learning rate and for
as many steps as the replies need; for the small models the head ends undertrained (cross-entropy about
1.3 after 300 steps, chance 1.61), while the same head fitted alone on the frozen encoder's layer
statistics reaches 0.85-0.89 on unseen voices (``scripts/emotion_head_probe.py``). A layer-mixed head reads
only the encoder's statistics, which stage 2 does not change (the encoder stays frozen), so it can be fitted
again on its own afterwards; the LLM's input changes only with the emotion token
(``BlspEmoConfig.emotion_token``), which the head's probabilities make.

The refit: per-clip layer statistics of the manifest's train rows (the audio as listed, augmented rows
included) -> full-batch AdamW with class-balanced cross-entropy from a fresh head, seeded -> the step
count chosen on the dev rows by unweighted average recall (UAR) among ``steps``, against the checkpoint's own
head on the same dev rows (kept when no refit beats it) -> a new checkpoint folder with only the head's
tensors replaced (cast to the checkpoint's precision), its processor, a model card and ``head_refit.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from blsp_emo.errors import UserError
from blsp_emo.io import atomic_write_json
from blsp_emo.prompts import EMOTION_TO_ID, EMOTIONS

REPORT_FILE = "head_refit.json"
HEAD_PREFIX = "emotion_head."


@dataclass
class RefitReport:
    """What a refit did: data sizes, dev scores per candidate, the choice."""

    checkpoint: str
    manifest: str
    train_rows: int
    dev_rows: int
    seed: int
    lr: float
    weight_decay: float
    dev_uar: dict[str, float] = field(default_factory=dict)  # "current" and "steps=N"
    dev_accuracy: dict[str, float] = field(default_factory=dict)
    chosen: str = ""
    seconds: float = 0.0
    # the LLM reads the head's probabilities (emotion token): a new head changes the replies as well
    changes_replies: bool = False


def fit_layer_mix_head(
    stats: torch.Tensor,
    labels: Sequence[int],
    steps: Sequence[int],
    seed: int = 0,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
) -> dict[int, dict[str, torch.Tensor]]:
    """A fresh :class:`LayerMixEmotionHead` fitted full-batch on ``stats`` (n, L, 2D) with class-balanced
    cross-entropy; its state dict after each of ``steps`` optimiser steps (one run, snapshots)."""
    from blsp_emo.model.adapter import LayerMixEmotionHead

    if stats.ndim != 3 or stats.shape[0] != len(labels) or not len(labels):
        raise ValueError(f"stats {tuple(stats.shape)} do not match {len(labels)} labels")
    torch.manual_seed(seed)
    head = LayerMixEmotionHead(stats.shape[1], stats.shape[2] // 2, len(EMOTIONS))
    target = torch.tensor(list(labels))
    weight = 1.0 / torch.bincount(target, minlength=len(EMOTIONS)).clamp(min=1).float()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    x = stats.float()
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    wanted = sorted(set(int(s) for s in steps if int(s) > 0))
    for step in range(1, (wanted[-1] if wanted else 0) + 1):
        loss = torch.nn.functional.cross_entropy(head(x), target, weight=weight / weight.sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in wanted:
            snapshots[step] = {k: v.detach().clone() for k, v in head.state_dict().items()}
    return snapshots


def choose_head(dev_uar: dict[str, float], tolerance: float = 1e-9) -> str:
    """The candidate with the best dev UAR; scores within ``tolerance`` of each other tie (the same recalls
    summed in another order differ in the last bits), and a tie goes to the current head, then to the
    fewest steps (candidates in the order given)."""
    best = max(dev_uar.values())
    tied = [name for name, uar in dev_uar.items() if uar >= best - tolerance]
    return "current" if "current" in tied else tied[0]


def _labelled_rows(manifest: Path, split: str) -> list[tuple[Path, int]]:
    from blsp_emo.data.manifest import read_manifest

    rows = []
    for row in read_manifest(manifest):
        if row.split == split and row.emotion in EMOTION_TO_ID:
            rows.append((row.audio_path, EMOTION_TO_ID[row.emotion]))
    return rows


@torch.no_grad()
def layer_statistics_of(model, processor, paths: Sequence[Path], batch_size: int = 8) -> torch.Tensor:
    """Per-clip layer statistics (n, L, 2D) from the model's frozen encoder, clips batched by length."""
    from tqdm import tqdm

    from blsp_emo.audio import load_audio
    from blsp_emo.model.encoder import length_buckets

    audios = [load_audio(p) for p in paths]
    out: list[torch.Tensor | None] = [None] * len(audios)
    for chunk in tqdm(
        length_buckets([len(a) for a in audios], batch_size), desc="encoder statistics", unit="batch"
    ):
        feats = processor.audio_features([audios[i] for i in chunk])
        stats = model.encode_speech_with_stats(**feats)[2].float()
        for i, s in zip(chunk, stats):
            out[i] = s
    return torch.stack(out)  # type: ignore[arg-type]


def refit_emotion_head(
    checkpoint: str | Path,
    manifest: str | Path,
    output: str | Path,
    train_split: str = "train",
    dev_split: str = "dev",
    steps: Sequence[int] = (100, 200, 400, 800),
    seed: int = 0,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
    batch_size: int = 8,
) -> RefitReport:
    """Refit ``checkpoint``'s layer-mixed emotion head on ``manifest`` and write the result to ``output``."""
    from safetensors.torch import load_file

    from blsp_emo.evaluation.metrics import classification_report
    from blsp_emo.model.loading import checkpoint_path, load_model
    from blsp_emo.model.modeling import WEIGHTS_NAME, write_checkpoint
    from blsp_emo.model.portable import checkpoint_run, copy_processor, write_model_card

    started = time.monotonic()
    source = checkpoint_path(str(checkpoint))
    if source is None:
        raise UserError(f"{checkpoint}: not a blsp-emo checkpoint (needs config.json and {WEIGHTS_NAME})")
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    if not config.get("use_emotion_head") or config.get("emotion_features") != "layer_mix":
        raise UserError(
            f"{source}: refit-head needs a layer-mixed emotion head (model.emotion_features=layer_mix); this "
            "checkpoint's head reads the adapter output, which stage 2 trains together with it"
        )
    manifest = Path(manifest)
    train, dev = _labelled_rows(manifest, train_split), _labelled_rows(manifest, dev_split)
    for name, rows in ((train_split, train), (dev_split, dev)):
        if len({label for _, label in rows}) < 2:
            raise UserError(
                f"{manifest}: split {name!r} has fewer than two emotions labelled ({len(rows)} rows)"
            )
    tensors = load_file(str(source / WEIGHTS_NAME))
    head_names = sorted(n for n in tensors if n.startswith(HEAD_PREFIX))
    dtype = tensors[head_names[0]].dtype
    model, processor = load_model(str(source), device="cpu")
    model.eval()
    x_train = layer_statistics_of(model, processor, [p for p, _ in train], batch_size)
    x_dev = layer_statistics_of(model, processor, [p for p, _ in dev], batch_size)
    y_train, y_dev = [label for _, label in train], [label for _, label in dev]
    report = RefitReport(str(source), str(manifest), len(train), len(dev), seed, lr, weight_decay)
    report.changes_replies = bool(config.get("emotion_token"))

    head = model.emotion_head
    if head is None:
        raise UserError(f"{source}: the model has no emotion head to refit")
    candidates: dict[str, dict[str, torch.Tensor]] = {
        "current": {k: v.detach().clone() for k, v in head.state_dict().items()}
    }
    for n, state in fit_layer_mix_head(x_train, y_train, steps, seed, lr, weight_decay).items():
        candidates[f"steps={n}"] = state
    for name, state in candidates.items():
        head.load_state_dict({k: v.to(next(head.parameters()).dtype) for k, v in state.items()})
        with torch.no_grad():
            predicted = head(x_dev.to(next(head.parameters()).dtype)).argmax(-1).tolist()
        scores = classification_report([EMOTIONS[i] for i in y_dev], [EMOTIONS[i] for i in predicted])
        report.dev_uar[name] = scores.unweighted_average_recall
        report.dev_accuracy[name] = scores.accuracy
    report.chosen = choose_head(report.dev_uar)
    chosen = candidates[report.chosen]
    for name in head_names:
        tensors[name] = chosen[name[len(HEAD_PREFIX) :]].to(dtype)
    out = Path(output)
    write_checkpoint(out, tensors, config)
    copy_processor(source, out)
    report.seconds = round(time.monotonic() - started, 1)
    atomic_write_json(out / REPORT_FILE, asdict(report))
    run = dict(checkpoint_run(source) or {})
    run.pop("evaluation", None)  # measured on the head it had: `blsp-emo export --results` adds new ones
    run["head_refit"] = asdict(report)
    write_model_card(out, json.loads((out / "config.json").read_text(encoding="utf-8")), tensors, run=run)
    return report
