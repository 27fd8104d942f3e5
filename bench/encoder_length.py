"""Benchmark: Whisper encoder time, variable length (masked) vs padding to 30 s, and length bucketing.

Part 1, equal clips (``--seconds``, default 4 s): one batch of each mode per repeat.
Part 2, clips of unequal length (``--mixed`` clips, uniform in ``--mixed-seconds``, default 2-6 s): all
of them encoded in batches three ways: padded to 30 s; variable length in arrival order (each batch padded
to its longest clip); variable length in length buckets (``blsp_emo.model.encoder.length_buckets``, the
batching the encoder cache and the evaluation features use). It prints each way's padded share (encoded
frames that are padding) and time.

The modes run interleaved in one process (each repeat times every mode once, in turn) with the torch
threads pinned here (default 1: on a shared 2-core machine two threads mostly measure contention), and the
script prints the medians and the spread of the per-repeat ratios (the machines are shared and noisy: only
the ratios are meaningful). Usage: python bench/encoder_length.py [--model tiny] [--batch 4 8]
[--repeats 7] [--threads 1] [--mixed 24]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from blsp_emo.assets import load_whisper
from blsp_emo.model.encoder import (
    WINDOW_FRAMES,
    encode_windows,
    encoder_frames,
    length_buckets,
    mel_frames,
    padded_share,
)
from blsp_emo.model.processor import BlspEmoProcessor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="Whisper preset, embedded name, folder or hub id")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the equal clips (part 1)")
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, pinned for every mode")
    parser.add_argument("--mixed", type=int, default=24, help="clips of unequal length (part 2); 0 skips")
    parser.add_argument("--mixed-seconds", type=float, nargs=2, default=[2.0, 6.0], metavar=("MIN", "MAX"))
    args = parser.parse_args()
    low, high = args.mixed_seconds
    if args.repeats < 1 or args.threads < 1 or min(args.batch) < 1 or args.mixed < 0:
        parser.error("--repeats, --threads and --batch must be >= 1, --mixed >= 0")
    if not 0.1 <= low <= high <= 30 or not 0.1 <= args.seconds <= 30:
        parser.error("clip lengths must lie in 0.1-30 s (one Whisper window), --mixed-seconds MIN <= MAX")

    torch.set_num_threads(args.threads)
    whisper, wproc = load_whisper(args.model)
    encoder = whisper.model.encoder.eval()
    procs = {
        pad: BlspEmoProcessor(wproc.feature_extractor, wproc.tokenizer, pad_to_30s=pad)
        for pad in (False, True)
    }
    print(
        f"encoder: {args.model}, {args.repeats} interleaved repeats, {torch.get_num_threads()} torch thread(s)"
    )
    rng = np.random.default_rng(0)
    equal = [(0.1 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32) for _ in range(16)]
    seconds = rng.uniform(low, high, args.mixed)
    mixed = [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in seconds]
    print(f"part 1: {args.seconds:g} s clips, one batch per mode and repeat")
    for batch in args.batch:
        arrival = [list(range(batch))]
        run(encoder, procs, equal[:batch], {"variable length": (arrival, False), "pad to 30 s": (arrival, True)},
            args.repeats, f"batch {batch}")  # fmt: skip
    if args.mixed:
        print(f"part 2: {args.mixed} clips of {low:g}-{high:g} s (uniform, mean {seconds.mean():.1f} s)")
    for batch in args.batch if args.mixed else []:
        arrival = [list(range(s, min(s + batch, args.mixed))) for s in range(0, args.mixed, batch)]
        frames = [int(encoder_frames(mel_frames(len(c)))) for c in mixed]
        buckets = length_buckets(frames, batch)
        modes = {"bucketed": (buckets, False), "arrival order": (arrival, False)}
        shares = {
            "bucketed": padded_share(frames, buckets),
            "arrival order": padded_share(frames, arrival),
            "pad to 30 s": padded_share(frames, arrival, int(encoder_frames(WINDOW_FRAMES))),
        }
        print(
            f"batch {batch}: padded share of the encoded frames: "
            + ", ".join(f"{name} {100 * share:.1f} %" for name, share in shares.items())
        )
        run(encoder, procs, mixed, modes, args.repeats, f"batch {batch}")


def run(encoder, procs, clips: list, modes: dict, repeats: int, label: str) -> None:
    """Time ``repeats`` interleaved rounds of every mode (name: (batches of clip indices, pad to 30 s))
    over ``clips``; print each mode's median and every mode's speed-up over the first (medians of the
    per-repeat ratios with their range)."""
    feats = {
        name: [procs[pad].audio_features([clips[i] for i in batch]) for batch in batches]
        for name, (batches, pad) in modes.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in modes}
    with torch.inference_mode():
        for name, (_, pad) in modes.items():  # warm-up
            f = feats[name][0]
            encode_windows(encoder, f["input_features"], f["feature_lengths"], pad_to_30s=pad)
        for _ in range(repeats):
            for name, (_, pad) in modes.items():
                start = time.perf_counter()
                for f in feats[name]:
                    encode_windows(encoder, f["input_features"], f["feature_lengths"], pad_to_30s=pad)
                timings[name].append(time.perf_counter() - start)
    first = next(iter(modes))
    medians = ", ".join(f"{name} {1000 * statistics.median(t):.1f} ms" for name, t in timings.items())
    print(f"  {label}: {medians} (medians)")
    for name in list(modes)[1:]:
        ratios = sorted(slow / fast for fast, slow in zip(timings[first], timings[name]))
        print(
            f"  {label}: {name} / {first}: {statistics.median(ratios):.1f}x "
            f"(per-repeat {ratios[0]:.1f}-{ratios[-1]:.1f}x)"
        )


if __name__ == "__main__":
    main()
