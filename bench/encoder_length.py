"""Benchmark: Whisper encoder time on 4 s clips, variable-length (masked) vs padding to 30 s.

Both modes run interleaved in one process on the same clips, each repeat timing one batch of each, with
the torch threads pinned here (default 1: on a shared 2-core machine two threads mostly measure contention).
It prints the medians and the spread of the per-repeat ratios (the machines are shared and noisy: only the
ratio is meaningful). Usage: python bench/encoder_length.py [--model tiny] [--batch 4 8] [--repeats 7]
[--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from blsp_emo.assets import load_whisper
from blsp_emo.model.encoder import encode_windows
from blsp_emo.model.processor import BlspEmoProcessor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="Whisper preset, embedded name, folder or hub id")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, pinned for both sides")
    args = parser.parse_args()

    torch.set_num_threads(max(1, args.threads))
    whisper, wproc = load_whisper(args.model)
    encoder = whisper.model.encoder.eval()
    print(
        f"encoder: {args.model}, {args.seconds:g} s clips, {args.repeats} interleaved repeats, {args.threads} thread(s)"
    )
    for batch in args.batch:
        run(encoder, wproc, batch, args.seconds, args.repeats)


def run(encoder, wproc, batch: int, seconds: float, repeats: int) -> None:
    """Time ``repeats`` interleaved pairs (variable length, pad to 30 s) of one batch; print the ratios."""
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32) for _ in range(batch)]
    timings: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode():
        for pad in (False, True):  # warm-up
            feats = BlspEmoProcessor(wproc.feature_extractor, wproc.tokenizer, pad_to_30s=pad).audio_features(
                clips
            )
            encode_windows(encoder, feats["input_features"], feats["feature_lengths"], pad_to_30s=pad)
        for _ in range(repeats):
            for pad in (False, True):
                proc = BlspEmoProcessor(wproc.feature_extractor, wproc.tokenizer, pad_to_30s=pad)
                feats = proc.audio_features(clips)
                start = time.perf_counter()
                encode_windows(encoder, feats["input_features"], feats["feature_lengths"], pad_to_30s=pad)
                timings[pad].append(time.perf_counter() - start)
    var, pad = statistics.median(timings[False]), statistics.median(timings[True])
    ratios = sorted(p / v for v, p in zip(timings[False], timings[True]))
    print(
        f"batch {batch}: variable length {var * 1000:.1f} ms, pad to 30 s {pad * 1000:.1f} ms (medians); "
        f"speed-up {pad / var:.1f}x (per-repeat ratios {ratios[0]:.1f}-{ratios[-1]:.1f}x, "
        f"median {statistics.median(ratios):.1f}x)"
    )


if __name__ == "__main__":
    main()
