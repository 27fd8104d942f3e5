"""Target generation throughput on the embedded teacher: batched (length-sorted, left-padded) vs one at a time.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/targets_throughput.py [--rows 16] [--batch-size 16]

Both runs use the same rows, prompts (SPEC.md stage 1) and greedy decoding with 48 new tokens; the script
prints rows/s for each, the ratio, and how many continuations are identical in the two runs.
"""

from __future__ import annotations

import argparse
import time

import torch

from blsp_emo.data.sentences import ambiguous_sentences, general_sentences
from blsp_emo.data.target_backends import HFBackend
from blsp_emo.data.targets import build_messages


def run(backend: HFBackend, conversations: list, max_new_tokens: int) -> tuple[list[str], float]:
    """Generate for all conversations; returns the texts and the seconds taken."""
    started = time.perf_counter()
    order = sorted(range(len(conversations)), key=lambda i: -len(conversations[i][-1]["content"]))
    texts: list[str] = [""] * len(conversations)
    done = 0
    for batch in backend.generate([conversations[i] for i in order], max_new_tokens, seed=0):
        for completion in batch:
            texts[order[done]] = completion.text
            done += 1
    return texts, time.perf_counter() - started


def main() -> None:
    """Time both ways and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--teacher", default="tiny")
    args = parser.parse_args()

    transcripts = (list(ambiguous_sentences()[: args.rows // 2]) + general_sentences(args.rows, seed=1))[
        : args.rows
    ]
    conversations = [build_messages("semantic", t) for t in transcripts]
    batched = HFBackend.load(args.teacher, batch_size=args.batch_size)
    single = HFBackend(batched.model, batched.tokenizer, batch_size=1, name=args.teacher)
    print(
        f"teacher {args.teacher}, {args.rows} rows, {args.max_new_tokens} new tokens, torch threads {torch.get_num_threads()}"
    )
    run(batched, conversations[:2], 4)  # warm-up
    one_texts, one_seconds = run(single, conversations, args.max_new_tokens)
    batch_texts, batch_seconds = run(batched, conversations, args.max_new_tokens)
    one_rate, batch_rate = args.rows / one_seconds, args.rows / batch_seconds
    same = sum(a == b for a, b in zip(one_texts, batch_texts))
    print(f"one at a time     : {one_rate:6.2f} rows/s ({one_seconds:.1f} s)")
    print(f"batched (bs={args.batch_size:<3}) : {batch_rate:6.2f} rows/s ({batch_seconds:.1f} s)")
    print(f"speed-up          : {batch_rate / one_rate:.2f}x")
    print(f"identical outputs : {same}/{args.rows}")


if __name__ == "__main__":
    main()
