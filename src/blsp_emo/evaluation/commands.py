"""CLI: ``blsp-emo eval TASK|all|build-instructions``.

``eval TASK --model M --data MANIFEST`` writes ``results.json``, ``report.md``, ``predictions.jsonl`` and
PNG plots to ``-o DIR``; ``eval all`` runs several tasks for several systems and adds a comparison table
(systems x metrics) as markdown, JSON and PNG. This module is the parser only: :func:`eval_options` turns
the parsed arguments into an :class:`~blsp_emo.evaluation.options.EvalOptions`, which
:mod:`blsp_emo.evaluation.runner` runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from blsp_emo.errors import UserError
from blsp_emo.evaluation.options import (
    DEFAULT_EMBEDDER,
    MULTITURN_TURNS,
    TASK_NAMES,
    EvalOptions,
    default_tasks,
)

__all__ = ["MULTITURN_TURNS", "TASK_HELP", "TASK_NAMES", "eval_options", "register"]

SYSTEM_HELP = (
    "a BLSP-Emo model (preset such as tiny or random-tiny, or a checkpoint folder), or a baseline: "
    "cascade-text, cascade-asr, cascade-asr-ser, cascade-asr-prosody (optionally NAME@LLM, e.g. "
    "cascade-asr@random-tiny)"
)
DEFAULT_HELP = " (default: blsp-emo-tiny, the shipped trained model, when present, else tiny)"


def _common(parser: argparse.ArgumentParser | _TaskOptions) -> None:
    parser.add_argument("-o", "--output", type=Path, help="output folder (default: runs/eval/...)")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the base LLM run code shipped with its files (transformers trust_remote_code); "
        "never taken from a checkpoint or config",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the data subset and decoding (default 0)"
    )
    parser.add_argument("--limit", type=int, help="evaluate a seeded random subset of N utterances")
    parser.add_argument(
        "--split", help="only rows of this manifest split (train|dev|test; default: all rows)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=4, help="conversations per generate call (default 4)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help="answer length (default per task: ser 32, semantic 48, empathy and multiturn 128, "
        "instructions 256)",
    )
    parser.add_argument(
        "--teacher-max-new-tokens",
        type=int,
        help="length of the emotion-conditioned teacher texts (default: 48 for empathy as in stage 2, "
        "128 for instructions)",
    )
    parser.add_argument(
        "--teacher-targets",
        type=Path,
        nargs="+",
        help="empathy, multiturn: read the five teacher continuations from `data targets --stage emotion "
        "--all-emotions` output instead of generating them",
    )
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="0 = greedy (default, as in the paper)"
    )
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling when temperature > 0")
    parser.add_argument(
        "--llm", help="model whose LLM the cascades use (default: the first BLSP-Emo --model, else tiny)"
    )
    parser.add_argument(
        "--asr", default="tiny", help="Whisper for the cascades' ASR and SER features (default tiny)"
    )
    parser.add_argument(
        "--ser-train",
        type=Path,
        help="emotion-labelled manifest to train the cascade-asr-ser and cascade-asr-prosody "
        "classifiers on (its train split when it has one)",
    )
    parser.add_argument(
        "--embedder",
        default=DEFAULT_EMBEDDER,
        help="sentence embedder (default: the packaged all-MiniLM-L6-v2)",
    )
    parser.add_argument(
        "--judge-url",
        help="OpenAI-compatible endpoint for LLM-judge scores (e.g. "
        "http://localhost:8000/v1); off by default",
    )
    parser.add_argument("--judge-model", help="judge model name at --judge-url")
    parser.add_argument(
        "--judge-key-env",
        default="OPENAI_API_KEY",
        help="environment variable with the judge's API key (default OPENAI_API_KEY)",
    )


# Task names and help, without importing the tasks (they import torch): `eval --help` stays fast.
# tests/test_cli.py checks that this table and the turn limits below match blsp_emo.evaluation.tasks.
TASK_HELP = {
    "ser": "speech emotion recognition through the model's answer",
    "semantic": "continuation of speech vs of its transcript",
    "empathy": "emotion agreement of empathetic replies",
    "instructions": "spoken instructions: emotion accuracy and empathy",
    "multiturn": "empathy at the last turn of scripted multi-turn conversations",
}

# Options that only some tasks read (dest -> tasks); `eval TASK --help` lists a task's own options only.
TASK_ONLY_OPTIONS: dict[str, tuple[str, ...]] = {
    "teacher_max_new_tokens": ("empathy", "instructions", "multiturn"),
    "teacher_targets": ("empathy", "multiturn"),
    "embedder": ("semantic", "empathy", "instructions", "multiturn"),
    "judge_url": ("empathy", "instructions", "multiturn"),
    "judge_model": ("empathy", "instructions", "multiturn"),
    "judge_key_env": ("empathy", "instructions", "multiturn"),
}


class _NotForTask(argparse.Action):
    """An option of other tasks given to this one: an error that says which tasks read it."""

    def __init__(
        self, option_strings: list[str], dest: str, tasks: tuple[str, ...] = (), task: str = "", **kwargs: Any
    ) -> None:
        kwargs.pop("default", None)
        super().__init__(option_strings, dest, nargs="*", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.tasks, self.task = tasks, task

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            f"{option_string} is not an option of 'eval {self.task}' (it is read by {', '.join(self.tasks)})"
        )


class _TaskOptions:
    """Stands in for a task's parser while the shared options are added: options the task does not read
    are left out of its --help, keep their default on the parsed arguments, and are refused when given."""

    def __init__(self, parser: argparse.ArgumentParser, task: str) -> None:
        self.parser, self.task = parser, task

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        dest = kwargs.get("dest") or max(names, key=len).lstrip("-").replace("-", "_")
        tasks = TASK_ONLY_OPTIONS.get(dest, (self.task,))
        if self.task not in tasks:
            self.parser.set_defaults(**{dest: kwargs.get("default")})
            return self.parser.add_argument(
                *names, dest=f"_not_{dest}", action=_NotForTask, tasks=tasks, task=self.task
            )
        return self.parser.add_argument(*names, **kwargs)


def _turns(parser: argparse.ArgumentParser) -> None:
    MIN_TURNS, MAX_TURNS, DEFAULT_TURNS = MULTITURN_TURNS  # noqa: N806  # literal: --help imports no task

    parser.add_argument(
        "--turns",
        type=int,
        default=DEFAULT_TURNS,
        help=f"multiturn: user turns per scripted conversation, {MIN_TURNS}-{MAX_TURNS} "
        f"(default {DEFAULT_TURNS})",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` sub-command with its tasks."""
    ev = subparsers.add_parser("eval", help="evaluate models and baselines (results.json, report.md, plots)")
    sub = ev.add_subparsers(dest="eval_command", metavar="TASK", required=True)
    for name, description in TASK_HELP.items():
        p = sub.add_parser(name, help=description, description=description)
        p.add_argument("--model", help=SYSTEM_HELP + DEFAULT_HELP)
        p.add_argument("--data", type=Path, required=True, help="manifest JSONL")
        _common(_TaskOptions(p, name))
        if name == "multiturn":
            _turns(p)
        else:
            p.set_defaults(turns=MULTITURN_TURNS[2])  # read by multiturn only
        p.set_defaults(func=cmd_task, task=name)
    every = sub.add_parser("all", help="several tasks x several systems + comparison table")
    every.add_argument("--model", nargs="+", help=SYSTEM_HELP + DEFAULT_HELP)
    every.add_argument("--data", type=Path, required=True, help="emotion-labelled manifest with transcripts")
    every.add_argument("--semantic-data", type=Path, help="manifest for the semantic task (default: --data)")
    every.add_argument(
        "--instructions-data", type=Path, help="spoken-instruction manifest (build-instructions)"
    )
    every.add_argument(
        "--recompute",
        action="store_true",
        help="run every system x task again even when its results.json in -o matches this run",
    )
    every.add_argument(
        "--cache-dir",
        type=Path,
        help="cache of text answers (default: OUTPUT/cache); give parallel runs into one -o their own",
    )
    every.add_argument(
        "--tasks",
        nargs="+",
        choices=TASK_NAMES,
        help="tasks to run (default: ser semantic "
        "empathy, plus instructions when --instructions-data is given; multiturn on request)",
    )
    _turns(every)
    _common(every)
    every.set_defaults(func=cmd_all)
    build = sub.add_parser(
        "build-instructions", help="speak the instruction list in four prosodies (manifest)"
    )
    build.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    build.add_argument("--prosodies", nargs="+", help="subset of: cheerful sad angry neutral")
    build.add_argument("--voices", nargs="+", help="synthesiser voice ids (default: the test-split voices)")
    build.add_argument("--limit", type=int, help="only the first N instructions")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(func=cmd_build_instructions)


def eval_options(args: argparse.Namespace) -> EvalOptions:
    """The options of ``eval TASK`` or ``eval all`` from their parsed arguments (the one place that reads
    them); the default model when none is named."""
    from blsp_emo.model.loading import default_model_name

    every = args.eval_command == "all"
    if every:
        models = tuple(args.model or [default_model_name()])
        tasks = tuple(args.tasks) if args.tasks else default_tasks(args.instructions_data)
    else:
        models, tasks = (args.model or default_model_name(),), (args.task,)
    return EvalOptions(
        models=models,
        tasks=tasks,
        data=args.data,
        # eval TASK reads --data for every task; eval all has a manifest option per task that needs one
        semantic_data=args.semantic_data if every else None,
        instructions_data=args.instructions_data
        if every
        else (args.data if args.task == "instructions" else None),
        output=args.output,
        cache_dir=args.cache_dir if every else None,
        recompute=args.recompute if every else False,
        split=args.split,
        limit=args.limit,
        seed=args.seed,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        teacher_max_new_tokens=args.teacher_max_new_tokens,
        teacher_targets=tuple(args.teacher_targets or ()),
        llm=args.llm,
        asr=args.asr,
        ser_train=args.ser_train,
        embedder=args.embedder,
        judge_url=args.judge_url,
        judge_model=args.judge_model,
        judge_key_env=args.judge_key_env,
        turns=args.turns,
        trust_remote_code=args.trust_remote_code,
    )


def cmd_task(args: argparse.Namespace) -> int:
    """Run one evaluation task for one system (``blsp-emo eval TASK``)."""
    options = eval_options(args)
    options.check()
    from blsp_emo.evaluation.runner import evaluate_task

    result, out_dir = evaluate_task(options)
    for key, value in result.headline.items():
        print(f"{result.task}.{key}\t{'-' if value is None else f'{value:.4f}'}")
    print(f"wrote {out_dir}/results.json, report.md and {len(result.plots)} plots")
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    """Run several tasks for several systems and write a comparison table (``blsp-emo eval all``)."""
    options = eval_options(args)
    options.check()
    from blsp_emo.evaluation.runner import evaluate_all

    markdown, out_dir = evaluate_all(options)
    print(markdown)
    print(f"wrote {out_dir}/comparison.md, comparison.json and per-system reports")
    return 0


def cmd_build_instructions(args: argparse.Namespace) -> int:
    """Speak the instruction list in cheerful, sad, angry and neutral prosody and write a manifest."""
    from blsp_emo.evaluation.spoken_instructions import build_spoken_instructions

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    manifest = build_spoken_instructions(
        args.output, prosodies=args.prosodies, voices=args.voices, limit=args.limit, seed=args.seed
    )
    print(f"wrote {manifest}")
    return 0
