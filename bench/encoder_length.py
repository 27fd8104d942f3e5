"""Benchmark: Whisper encoder time on 4 s clips, variable-length (masked) vs padding to 30 s.

Both modes run interleaved in one process on the same clips (the machines are shared and noisy: only
the ratio is meaningful). Usage: python bench/encoder_length.py [--model tiny] [--batch 4] [--repeats 5]
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
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    whisper, wproc = load_whisper(args.model)
    encoder = whisper.model.encoder.eval()
    rng = np.random.default_rng(0)
    clips = [
        (0.1 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32) for _ in range(args.batch)
    ]
    timings: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode():
        for pad in (False, True):  # warm-up
            feats = BlspEmoProcessor(wproc.feature_extractor, wproc.tokenizer, pad_to_30s=pad).audio_features(
                clips
            )
            encode_windows(encoder, feats["input_features"], feats["feature_lengths"], pad_to_30s=pad)
        for _ in range(args.repeats):
            for pad in (False, True):
                proc = BlspEmoProcessor(wproc.feature_extractor, wproc.tokenizer, pad_to_30s=pad)
                feats = proc.audio_features(clips)
                start = time.perf_counter()
                encode_windows(encoder, feats["input_features"], feats["feature_lengths"], pad_to_30s=pad)
                timings[pad].append(time.perf_counter() - start)
    var, pad = statistics.median(timings[False]), statistics.median(timings[True])
    print(
        f"encoder: {args.model}, batch {args.batch} x {args.seconds:g} s clips, {args.repeats} interleaved repeats"
    )
    print(f"variable length : {var * 1000:8.1f} ms per batch (median)")
    print(f"pad to 30 s     : {pad * 1000:8.1f} ms per batch (median)")
    print(f"speed-up (pad_to_30s / variable): {pad / var:.1f}x")


if __name__ == "__main__":
    main()
