"""Stage-1 training throughput on the embedded models: our fast path vs the paper's path, interleaved.

Fast path: variable-length encoding, encoder outputs cached once (the encoder is frozen in stage 1),
batches by total duration. Paper path: every clip padded to 30 s, the encoder recomputed every step,
fixed-count batches. Both train the same adapter with the same loss on the same synthesised utterances
(espeak-ng, 2-5 s, like most ASR corpora), one epoch each; the cache fill is timed and reported apart.
``--repeats`` rounds each train both paths from scratch (a fresh output folder, so the cache is filled
again), alternating which goes first, with the torch threads pinned here (``run.num_threads``); it prints
the medians with their range and the median of the per-round ratios.

    .venv/bin/python bench/train_throughput.py [--utterances 24] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny-stage1.yaml"
SENTENCES = [
    ("The weather was lovely for our walk.", "We saw ducks on the pond."),
    ("My brother fixed the old radio.", "It plays music again after years."),
    ("Please close the window before you leave.", "The rain is coming tonight."),
    ("She planted tomatoes in the garden.", "They will be ripe in August."),
    ("The meeting moved to Thursday afternoon.", "Everyone agreed it was better."),
    ("I found my keys under the sofa.", "They must have slipped out."),
    ("The children built a castle of sand.", "The tide washed it away."),
    ("Our train was late again this morning.", "I missed the first lecture."),
]


def make_corpus(folder: Path, count: int) -> Path:
    """Synthesise ``count`` utterances and a stage-1 target JSONL over them."""
    import soundfile as sf

    from blsp_emo.data.synth import list_voices, synthesize

    voices = list_voices("train", engines=("espeak",))
    rows = []
    for i in range(count):
        text, target = SENTENCES[i % len(SENTENCES)]
        audio, rate = synthesize(text, None, voices[i % len(voices)], seed=i)
        sf.write(folder / f"u{i}.wav", audio, rate)
        rows.append({"audio": f"u{i}.wav", "text": text, "target": target, "truncated": False})
    path = folder / "targets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(name: str, train: Path, out: Path, threads: int, *overrides: str) -> dict:
    """Build a trainer (timing its set-up and cache fill), train one epoch, return the measurements."""
    from blsp_emo.training.config import load_config
    from blsp_emo.training.trainer import Trainer

    common = [f"data.train={train}", f"run.output_dir={out / name}", "run.progress=false", "run.plot=false"]
    common += ["run.save_steps=0", "optim.epochs=1", "optim.max_steps=0", "optim.warmup_steps=1"]
    common += [f"run.num_threads={threads}"]
    config = load_config(CONFIG, [*common, *overrides])
    started = time.perf_counter()
    trainer = Trainer(config)
    setup = time.perf_counter() - started
    result = trainer.fit()
    samples = sum(len(b) for b in trainer.sampler.epoch_batches())
    return {"path": name, "setup_s": setup, "samples": samples, "samples_per_s": result.samples_per_second}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=24, help="synthesised training utterances")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 = steadiest on a shared box)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of both paths")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    if min(args.utterances, args.threads, args.repeats) < 1:
        parser.error("--utterances, --threads and --repeats must be >= 1")
    paths = {
        "fast": ["model.pad_to_30s=false", "data.cache_encoder=true", "data.batching=duration",
                 "data.batch_seconds=30", "data.batch_size=8"],
        "paper": ["model.pad_to_30s=true", "data.cache_encoder=false", "data.batching=count", "data.batch_size=8"],
    }  # fmt: skip
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory(prefix="blsp-train-bench-") as tmp:
        folder = Path(tmp)
        train = make_corpus(folder, args.utterances)
        for round_ in range(args.repeats):
            for name in list(paths)[:: 1 if round_ % 2 == 0 else -1]:
                runs[name].append(run(name, train, folder / f"round{round_}", args.threads, *paths[name]))
    print(
        f"stage-1 training, embedded Whisper-base + SmolLM2-135M, {args.utterances} utterances, "
        f"{args.threads} thread(s), {args.repeats} interleaved rounds: median (range)"
    )
    print(f"{'path':<8}{'samples':>9}{'samples/s':>22}{'set-up s (incl. cache fill)':>34}")
    for name, results in runs.items():
        rates = [r["samples_per_s"] for r in results]
        setups = [r["setup_s"] for r in results]
        print(f"{name:<8}{results[0]['samples']:>9}{spread(rates, 3):>22}{spread(setups, 1):>34}")
    ratios = [f["samples_per_s"] / p["samples_per_s"] for f, p in zip(runs["fast"], runs["paper"])]
    print(f"fast path / paper path: {spread(ratios, 2)}x samples/s (per-round ratios)")
    # The cache fill is a one-off cost (about the set-up difference); count it against one epoch too.
    with_fill = []
    for fast, paper in zip(runs["fast"], runs["paper"]):
        fill = max(fast["setup_s"] - paper["setup_s"], 0.0)
        rate = fast["samples"] / (fast["samples"] / fast["samples_per_s"] + fill)
        with_fill.append(rate / paper["samples_per_s"])
    print(f"counting the cache fill against this single epoch: {spread(with_fill, 2)}x")
    if args.json:
        args.json.write_text(json.dumps({**runs, "ratios": ratios}, indent=2) + "\n")
    return 0


def spread(values: list[float], digits: int) -> str:
    """``median (min-max)`` of ``values``."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


if __name__ == "__main__":
    sys.exit(main())
