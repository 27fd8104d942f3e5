"""Pre-alignment (CTC on the LLM's token embeddings) vs stage-1 KL: training clips per second, one run.

Both train the same adapter on the same batch of synthesised utterances (espeak-ng, 2-5 s) from cached
encoder states, as the recipes do: a pre-alignment step is the adapter + the alignment head + CTC (no LLM
pass); a stage-1 step is the frozen LLM run twice (the text-fed teacher without gradient, the speech-fed
student with gradient) and the KL between them. The two kinds of step are interleaved, repeated, and the
medians compared, with threads pinned here (not by the caller), so machine load hits both sides alike.

    .venv/bin/python bench/align_throughput.py [--clips 8] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import SENTENCES  # noqa: E402  the same utterances as the stage-1 benchmark


class MemoryCache:
    """The encoder cache's interface, in memory (the bench times training steps, not disk reads)."""

    def __init__(self) -> None:
        self.states: dict[int, object] = {}

    def get_or_compute(self, audio, compute):
        key = id(audio)
        if key not in self.states:
            self.states[key] = compute(audio)
        return self.states[key]


def items(count: int) -> list[dict]:
    """``count`` synthesised utterances as training-dataset items (audio, text, target)."""
    from blsp_emo.audio import SAMPLE_RATE, resample
    from blsp_emo.data.synth import list_voices, synthesize

    voices = list_voices("train", engines=("espeak",))
    out = []
    for i in range(count):
        text, target = SENTENCES[i % len(SENTENCES)]
        audio, rate = synthesize(text, None, voices[i % len(voices)], seed=i)
        if rate != SAMPLE_RATE:
            audio = resample(audio, rate, SAMPLE_RATE)
        out.append({"index": i, "audio": audio, "text": text, "target": target, "truncated": False})
    return out


def step_seconds(model, batch: dict) -> float:
    """One forward + backward of the trained parts; the gradient is dropped (no optimizer state)."""
    started = time.perf_counter()
    out = model(**{k: v for k, v in batch.items() if k != "num_samples"})
    out.loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main() -> int:
    import torch

    from blsp_emo.model import load_model
    from blsp_emo.training.config import AlignSection
    from blsp_emo.training.data import TrainingCollator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="utterances per batch")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of each kind of step")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, pinned by this script")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, processor = load_model("tiny", device="cpu", dtype=torch.float32)
    model.enable_alignment_head()
    model.set_trainable(adapter=True, alignment_head=True)
    model.train()
    model.encoder.eval()
    batch_items = items(args.clips)
    cache = MemoryCache()
    with torch.no_grad():
        feats = processor.audio_features([it["audio"] for it in batch_items])
        states, lengths = model.encode_speech(**feats)
        for it, s, n in zip(batch_items, states, lengths):
            cache.states[id(it["audio"])] = s[: int(n)].clone()
    align = TrainingCollator(processor, "align", cache=cache, align=AlignSection())(batch_items)
    kl = TrainingCollator(processor, "semantic", cache=cache)(batch_items)
    times: dict[str, list[float]] = {"align": [], "kl": []}
    step_seconds(model, align), step_seconds(model, kl)  # warm-up
    for _ in range(args.repeats):
        times["align"].append(step_seconds(model, align))
        times["kl"].append(step_seconds(model, kl))
    rate = {k: args.clips / statistics.median(v) for k, v in times.items()}
    print(
        f"training step on {args.clips} cached clips, embedded Whisper-base + SmolLM2-135M, {args.threads} thread(s)"
    )
    print(f"{'step':<16}{'median s':>10}{'min s':>8}{'max s':>8}{'clips/s':>10}")
    for name, label in (("align", "pre-alignment"), ("kl", "stage-1 KL")):
        v = times[name]
        print(f"{label:<16}{statistics.median(v):>10.3f}{min(v):>8.3f}{max(v):>8.3f}{rate[name]:>10.2f}")
    ratio = rate["align"] / rate["kl"]
    per_repeat = sorted(k / a for a, k in zip(times["align"], times["kl"]))
    print(
        f"pre-alignment / stage-1 KL: {ratio:.1f}x clips/s (medians of {args.repeats} interleaved repeats; "
        f"per-repeat ratios {per_repeat[0]:.1f}-{per_repeat[-1]:.1f}x)"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"seconds": times, "clips_per_s": rate, "ratio": ratio}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
