"""Which emotion features carry across voices? Head-only probes on frozen Whisper-base, train -> held out.

Fits three classifiers on a ``data synth`` corpus's train split and scores every other split (dev, test, a
held-out engine's ``heldout-NAME`` split) and, optionally, a ``data reintone`` set of real speech:
- final layer: standardised logistic regression on the mean/std of the encoder's final LayerNorm output
  (what the adapter, and so the paper's emotion head, reads);
- layer mix: the model's own ``LayerMixEmotionHead`` (softmax mix of every layer's mean/std statistics)
  trained with Adam on the same rows;
- prosody: the prosody-only cascade's classifier (``ProsodyFeatures``).
Each is trained twice: on the clean train audio and on the augmented train audio (rows whose ``augment``
list is non-empty use ``audio``, their clean original is ``clean_audio``). A probe of the features, not
the trained BLSP-Emo model: stage 2 trains the adapter/LoRA/head together. Usage:
    python scripts/emotion_head_probe.py CORPUS/emotion.jsonl [--reintoned R/reintoned.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from blsp_emo.audio import load_audio
from blsp_emo.evaluation.ser_classifier import ProsodyFeatures, fit_classifier
from blsp_emo.model import load_model
from blsp_emo.model.adapter import LayerMixEmotionHead
from blsp_emo.prompts import EMOTION_TO_ID, EMOTIONS
from blsp_emo.training.head_refit import fit_layer_mix_head, layer_statistics_of


class Clip:
    """An audio file with its transcript (what ProsodyFeatures reads)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def load(self) -> np.ndarray:
        return load_audio(self.path)


def fit_layer_mix(x: torch.Tensor, y: list[str], steps: int = 400, seed: int = 0) -> LayerMixEmotionHead:
    """The model's layer-mix head fitted full-batch (balanced classes, weight decay), as ``refit-head`` does."""
    head = LayerMixEmotionHead(x.shape[1], x.shape[2] // 2, len(EMOTIONS))
    head.load_state_dict(fit_layer_mix_head(x, [EMOTION_TO_ID[e] for e in y], [steps], seed)[steps])
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="emotion.jsonl written by `blsp-emo data synth`")
    parser.add_argument("--reintoned", type=Path, help="reintoned.jsonl written by `blsp-emo data reintone`")
    parser.add_argument("--json", type=Path, help="also write the accuracies here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    base = args.manifest.parent
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("emotion")]
    sets: dict[str, list[tuple[Path, str, str]]] = {}
    for r in rows:
        sets.setdefault(r["split"], []).append((base / r["audio"], r["text"], r["emotion"]))
    sets["train-clean"] = [(base / r.get("clean_audio", r["audio"]), r["text"], r["emotion"]) for r in rows
                           if r["split"] == "train"]  # fmt: skip
    sets["train-augmented"] = sets.pop("train")
    if args.reintoned:
        real = [json.loads(line) for line in args.reintoned.read_text().splitlines() if line.strip()]
        sets["real-reintoned"] = [(args.reintoned.parent / r["audio"], r["text"], r["emotion"]) for r in real]
    model, processor = load_model("tiny", device="cpu")
    stats = {
        name: layer_statistics_of(model, processor, [p for p, _, _ in clips]) for name, clips in sets.items()
    }
    prosody = {
        name: ProsodyFeatures()([Clip(p, t) for p, t, _ in clips], progress=False)
        for name, clips in sets.items()
    }
    labels = {name: [e for _, _, e in clips] for name, clips in sets.items()}
    results: dict[str, dict[str, float]] = {}
    for train in ("train-clean", "train-augmented"):
        y = labels[train]
        final = fit_classifier(stats[train][:, -1].numpy(), y)
        mix = fit_layer_mix(stats[train], y)
        pros = fit_classifier(prosody[train], y)
        for name in sets:
            if name.startswith("train"):
                continue
            truth = np.array(labels[name])
            with torch.no_grad():
                mixed = [EMOTIONS[i] for i in mix(stats[name]).argmax(-1).tolist()]
            results[f"{train} -> {name}"] = {
                "final layer": float(np.mean(np.array(final.predict(stats[name][:, -1].numpy())) == truth)),
                "layer mix": float(np.mean(np.array(mixed) == truth)),
                "prosody": float(np.mean(np.array(pros.predict(prosody[name])) == truth)),
                "n": len(truth),
            }
    print(f"{args.manifest}: emotion accuracy of head-only probes on frozen Whisper-base (chance 0.20)")
    print(f"{'trained on -> scored on':<40}{'n':>5}{'final layer':>13}{'layer mix':>11}{'prosody':>9}")
    for key, r in results.items():
        print(f"{key:<40}{r['n']:>5}{r['final layer']:>13.3f}{r['layer mix']:>11.3f}{r['prosody']:>9.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
