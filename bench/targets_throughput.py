"""Teacher-target generation throughput on the embedded teacher: batched vs one at a time.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/targets_throughput.py [--rows 16] [--batch-size 16] [--repeats 5]

Four ways over the same rows, prompts (docs/method.md §3, stage 1) and greedy decoding with 48 new tokens, timed
interleaved (each repeat runs all four in turn) with the torch threads pinned here (default 1):

- one at a time, transformers ``generate`` per row (the reference);
- one at a time, fast decoding (the shared prompt prefix encoded once, the plain greedy loop);
- batched, ``generate`` on the left-padded batch (the reference batched path);
- batched, fast decoding (shared prefix, length buckets for the suffixes, finished rows leave the batch).

It prints each way's median seconds and rows/s with the spread over repeats, the per-repeat speed-ups
with their medians and ranges, how many continuations equal the reference's, and where the fast batched
path spends its time (prompt encoding vs decoding steps).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from blsp_emo.data.sentences import ambiguous_sentences, general_sentences
from blsp_emo.data.target_backends import DecodingStats, HFBackend
from blsp_emo.model.types import DecodingOptions
from blsp_emo.prompts import Stage

WAYS = {  # name: (batched, fast decoding)
    "one at a time, generate": (False, False),
    "one at a time, fast": (False, True),
    "batched, generate": (True, False),
    "batched, fast": (True, True),
}


def run(backend: HFBackend, conversations: list, max_new_tokens: int) -> tuple[list[str], float]:
    """Generate for all conversations (longest first, as ``data targets`` orders them); returns the texts
    in input order and the seconds taken."""
    started = time.perf_counter()
    order = sorted(range(len(conversations)), key=lambda i: -len(conversations[i][-1]["content"]))
    texts: list[str] = [""] * len(conversations)
    done = 0
    for batch in backend.generate(
        [conversations[i] for i in order], DecodingOptions(max_new_tokens=max_new_tokens, seed=0)
    ):
        for completion in batch:
            texts[order[done]] = completion.text
            done += 1
    return texts, time.perf_counter() - started


def spread(values: list[float], unit: str = "") -> str:
    """``median (min-max)`` of ``values``."""
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f}{unit})"


def main() -> None:
    """Time the four ways interleaved and print medians, spreads and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, pinned for every way")
    parser.add_argument("--teacher", default="tiny")
    args = parser.parse_args()
    if args.rows < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--rows, --repeats and --threads must be >= 1")

    torch.set_num_threads(args.threads)
    transcripts = (list(ambiguous_sentences()[: args.rows // 2]) + general_sentences(args.rows, seed=1))[
        : args.rows
    ]
    conversations = [Stage.SEMANTIC.teacher_conversation(t) for t in transcripts]
    loaded = HFBackend.load(args.teacher)
    backends = {
        name: HFBackend(
            loaded.model,
            loaded.tokenizer,
            batch_size=args.batch_size if batched else 1,
            name=args.teacher,
            fast_decoding=fast,
        )
        for name, (batched, fast) in WAYS.items()
    }
    print(
        f"teacher {args.teacher}, {args.rows} rows, batch {args.batch_size}, {args.max_new_tokens} new tokens, "
        f"{args.repeats} interleaved repeats, torch threads {torch.get_num_threads()}"
    )
    for backend in backends.values():  # warm-up
        run(backend, conversations[:2], 4)
    seconds: dict[str, list[float]] = {name: [] for name in WAYS}
    texts: dict[str, list[str]] = {}
    fast_batched = backends["batched, fast"]
    stats: list[DecodingStats] = []
    for _ in range(args.repeats):
        for name, backend in backends.items():
            if backend is fast_batched:
                backend.stats = DecodingStats()
            texts[name], took = run(backend, conversations, args.max_new_tokens)
            seconds[name].append(took)
        stats.append(fast_batched.stats)
    reference = texts["one at a time, generate"]
    for name in WAYS:
        rates = [args.rows / s for s in seconds[name]]
        same = sum(a == b for a, b in zip(texts[name], reference))
        print(
            f"{name:<24}: {spread(seconds[name], ' s')}, {spread(rates)} rows/s; "
            f"identical to the reference {same}/{args.rows}"
        )
    pairs = [
        ("batched, fast", "one at a time, generate"),
        ("batched, fast", "one at a time, fast"),
        ("batched, generate", "one at a time, generate"),
        ("batched, fast", "batched, generate"),
    ]
    for fast_name, slow_name in pairs:
        ratios = [s / f for f, s in zip(seconds[fast_name], seconds[slow_name])]
        print(f"speed-up {fast_name} vs {slow_name}: {spread(ratios, 'x')} (per-repeat median, range)")
    last = stats[-1]
    prompt = [s.prompt_seconds for s in stats]
    decode = [s.decode_seconds for s in stats]
    print(
        f"batched, fast: prompt {last.prompt_tokens} tokens in {spread(prompt, ' s')}; "
        f"{last.steps} decoding steps over {last.row_steps} row-steps in {spread(decode, ' s')} "
        f"({1000 * statistics.median(decode) / max(last.steps, 1):.0f} ms/step)"
    )


if __name__ == "__main__":
    main()
