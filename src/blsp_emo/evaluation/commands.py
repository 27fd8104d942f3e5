"""CLI: ``blsp-emo eval TASK|all|build-instructions``.

``eval TASK --model M --data MANIFEST`` writes ``results.json``, ``report.md``, ``predictions.jsonl`` and
PNG plots to ``-o DIR``; ``eval all`` runs several tasks for several systems and adds a comparison table
(systems x metrics) as markdown, JSON and PNG. Decoding is greedy, so a run is deterministic for a seed;
wall-clock times and versions go to ``run.json`` so that ``results.json`` is reproducible byte for byte.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import sys
import time
from pathlib import Path

from blsp_emo.errors import UserError

log = logging.getLogger(__name__)

TASK_NAMES = ("ser", "semantic", "empathy", "instructions", "multiturn")
SYSTEM_HELP = (
    "a BLSP-Emo model (preset such as tiny or random-tiny, or a checkpoint folder), or a baseline: "
    "cascade-text, cascade-asr, cascade-asr-ser, cascade-asr-prosody (optionally NAME@LLM, e.g. "
    "cascade-asr@random-tiny)"
)
DEFAULT_HELP = " (default: blsp-emo-tiny, the shipped trained model, when present, else tiny)"


def _common(parser: argparse.ArgumentParser) -> None:
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
        default="all-MiniLM-L6-v2",
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
MULTITURN_TURNS = (2, 4, 3)  # MIN_TURNS, MAX_TURNS, DEFAULT_TURNS of blsp_emo.evaluation.tasks.multiturn

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

    def __init__(self, option_strings, dest, tasks: tuple[str, ...] = (), task: str = "", **kwargs) -> None:
        kwargs.pop("default", None)
        super().__init__(option_strings, dest, nargs="*", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.tasks, self.task = tasks, task

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(
            f"{option_string} is not an option of 'eval {self.task}' (it is read by {', '.join(self.tasks)})"
        )


class _TaskOptions:
    """Stands in for a task's parser while the shared options are added: options the task does not read
    are left out of its --help, keep their default on the parsed arguments, and are refused when given."""

    def __init__(self, parser: argparse.ArgumentParser, task: str) -> None:
        self.parser, self.task = parser, task

    def add_argument(self, *names: str, **kwargs):
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


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _judge(args: argparse.Namespace):
    if not args.judge_url and not args.judge_model:
        return None
    if not (args.judge_url and args.judge_model):
        raise UserError("an LLM judge needs both --judge-url and --judge-model")
    from blsp_emo.evaluation.judge import Judge

    return Judge(args.judge_url, args.judge_model, api_key_env=args.judge_key_env, seed=args.seed)


def _check_args(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    if args.teacher_max_new_tokens is not None and args.teacher_max_new_tokens < 1:
        raise UserError(f"--teacher-max-new-tokens must be at least 1, got {args.teacher_max_new_tokens}")
    if hasattr(args, "turns"):
        from blsp_emo.evaluation.tasks.multiturn import MAX_TURNS, MIN_TURNS

        if not MIN_TURNS <= args.turns <= MAX_TURNS:
            raise UserError(f"--turns must be between {MIN_TURNS} and {MAX_TURNS}, got {args.turns}")
    if args.ser_train is not None and not args.ser_train.is_file():
        raise UserError(f"{args.ser_train}: no such manifest file (--ser-train)")


def _teacher_targets(args: argparse.Namespace) -> dict[tuple[str, str], str] | None:
    if not args.teacher_targets:
        return None
    if not hasattr(args, "_teacher_table"):
        from blsp_emo.evaluation.tasks.empathy import load_teacher_targets

        args._teacher_table = load_teacher_targets(args.teacher_targets)
    return args._teacher_table


def _context(args: argparse.Namespace, out_dir: Path, cache_dir: Path, data: dict):
    from blsp_emo.evaluation.systems import GenerationSettings
    from blsp_emo.evaluation.tasks import RunContext

    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens or 128,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    return RunContext(
        out_dir=out_dir,
        cache_dir=cache_dir,
        settings=settings,
        data=data,
        embedder=args.embedder,
        judge=_judge(args),
        max_new_tokens_set=args.max_new_tokens is not None,
        teacher_max_new_tokens=args.teacher_max_new_tokens,
        teacher_targets=_teacher_targets(args),
        turns=getattr(args, "turns", 3),
    )


def _utterances(args: argparse.Namespace, task: str, manifest: Path):
    from blsp_emo.evaluation.dataset import load_utterances, manifest_fingerprint, seeded_subset
    from blsp_emo.evaluation.tasks import TASKS

    spec = TASKS[task]
    everything = load_utterances(
        manifest, split=args.split, need_emotion=spec.need_emotion, need_text=spec.need_text
    )
    utterances = seeded_subset(everything, args.limit, args.seed)
    data = {
        "manifest": str(manifest),
        "sha256": manifest_fingerprint(manifest),
        "split": args.split,
        "n": len(utterances),
        "available": len(everything),
        "limited": len(utterances) < len(everything),
        "seed": args.seed,
    }
    if task == "multiturn":  # the conversations are part of the data (a change of --turns is rerun)
        from blsp_emo.evaluation.tasks.multiturn import build_conversations

        build_conversations(utterances, args.turns, args.seed)  # too few utterances fail before any model
        data["turns"] = args.turns
    return utterances, data


def _write_run_info(out_dir: Path, args: argparse.Namespace, started: float) -> None:
    import torch
    import transformers

    info = {
        "argv": sys.argv,
        "wall_seconds": round(time.time() - started, 1),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "host": platform.node(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def _default_llm(args: argparse.Namespace, models: list[str]) -> str:
    from blsp_emo.evaluation.systems import split_system_name

    if args.llm:
        return args.llm
    speech = [m for m in models if split_system_name(m, "")[1] is None]
    return speech[0] if speech else "tiny"


def _load_system(args: argparse.Namespace, spec: str, llm: str):
    from blsp_emo.evaluation.systems import load_system
    from blsp_emo.model.loading import set_trust_remote_code

    set_trust_remote_code(args.trust_remote_code)  # systems load their models deep inside
    return load_system(spec, llm=llm, asr=args.asr, ser_train=args.ser_train, seed=args.seed)


def _check_files(args: argparse.Namespace) -> None:
    """Manifests, output folder and model names, checked before the tasks (and torch) are imported."""
    from blsp_emo.clitools import check_input_file, check_output_dir
    from blsp_emo.model.loading import check_model_name

    for flag in ("data", "semantic_data", "instructions_data", "ser_train"):
        if getattr(args, flag, None) is not None:
            check_input_file(getattr(args, flag), "manifest", "--" + flag.replace("_", "-"))
    if args.output is not None:
        check_output_dir(args.output, "-o")
    if bool(args.judge_url) != bool(args.judge_model):
        raise UserError("an LLM judge needs both --judge-url and --judge-model")
    from blsp_emo.evaluation.systems import split_system_name

    models = args.model if isinstance(args.model, list) else [args.model]
    for spec in filter(None, models):
        name, llm = split_system_name(spec, "")  # a cascade with its LLM, or a model name
        for model in (llm,) if llm is not None else (name,):
            if model:
                check_model_name(model)


def cmd_task(args: argparse.Namespace) -> int:
    """Run one evaluation task for one system (``blsp-emo eval TASK``)."""
    _check_files(args)
    from blsp_emo.evaluation.report import write_result
    from blsp_emo.evaluation.tasks import TASKS
    from blsp_emo.evaluation.tasks.common import slug
    from blsp_emo.model.loading import default_model_name

    started = time.time()
    args.model = args.model or default_model_name()
    _check_args(args)
    _seed_everything(args.seed)
    utterances, data = _utterances(args, args.task, args.data)
    out_dir = args.output or Path("runs/eval") / f"{args.task}-{slug(args.model)}"
    system = _load_system(args, args.model, _default_llm(args, [args.model]))
    ctx = _context(args, out_dir, out_dir / "cache", data)
    result = TASKS[args.task].run(system, utterances, ctx)
    write_result(result, out_dir, utterances)
    _write_run_info(out_dir, args, started)
    for key, value in result.headline.items():
        print(f"{args.task}.{key}\t{'-' if value is None else f'{value:.4f}'}")
    print(f"wrote {out_dir}/results.json, report.md and {len(result.plots)} plots")
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    """Run several tasks for several systems and write a comparison table (``blsp-emo eval all``)."""
    _check_files(args)
    from blsp_emo.evaluation.report import write_comparison, write_result
    from blsp_emo.evaluation.tasks import TASKS, TaskResult
    from blsp_emo.evaluation.tasks.common import slug
    from blsp_emo.model.loading import default_model_name

    started = time.time()
    args.model = args.model or [default_model_name()]
    _check_args(args)
    tasks = args.tasks or ["ser", "semantic", "empathy"] + (
        ["instructions"] if args.instructions_data else []
    )
    if "instructions" in tasks and not args.instructions_data:
        raise UserError("task instructions needs --instructions-data (build it with eval build-instructions)")
    if len(set(args.model)) != len(args.model):
        raise UserError("each --model may be given once")
    manifests = {
        "ser": args.data,
        "empathy": args.data,
        "semantic": args.semantic_data or args.data,
        "instructions": args.instructions_data,
        "multiturn": args.data,
    }
    # Read and check every data set before any model is loaded: bad input fails in seconds.
    selections = {task: _utterances(args, task, manifests[task]) for task in tasks}
    out_dir = args.output or Path("runs/eval/all")
    cache_dir = args.cache_dir or out_dir / "cache"
    llm = _default_llm(args, args.model)
    results: dict[str, dict[str, TaskResult]] = {}
    for spec in args.model:
        fingerprint = system_fingerprint(spec, llm, args)
        results[spec] = {}
        todo = []
        for task in tasks:
            task_dir = out_dir / slug(spec) / task
            done = task_fingerprint(fingerprint, task)
            previous = None if args.recompute else load_finished(task_dir, selections[task][1], done)
            if previous is not None:
                log.info("%s: %s already evaluated in %s (--recompute to redo)", spec, task, task_dir)
                results[spec][task] = previous
            else:
                todo.append(task)
        if not todo:
            continue
        _seed_everything(args.seed)
        system = _load_system(args, spec, llm)
        for task in todo:
            utterances, data = selections[task]
            task_dir = out_dir / slug(spec) / task
            ctx = _context(args, task_dir, cache_dir, data)
            log.info("%s: %s on %d utterances", spec, task, len(utterances))
            result = TASKS[task].run(system, utterances, ctx)
            result.system["fingerprint"] = task_fingerprint(fingerprint, task)
            write_result(result, task_dir, utterances)
            results[spec] = {**results[spec], task: result}
        results[spec] = {task: results[spec][task] for task in tasks}  # table columns in task order
    data = {task: f"{sel[1]['manifest']} ({sel[1]['n']} utterances)" for task, sel in selections.items()}
    data["seed"] = args.seed
    data["cascade LLM"] = llm
    markdown = write_comparison(results, out_dir, data)
    _write_run_info(out_dir, args, started)
    print(markdown)
    print(f"wrote {out_dir}/comparison.md, comparison.json and per-system reports")
    return 0


def system_fingerprint(spec: str, llm: str, args: argparse.Namespace) -> str:
    """What decides a system's answers besides the data: its name, the cascade LLM and ASR, the decoding
    options, and for a checkpoint folder the sha256 of its weights (a retrained model is evaluated again)."""
    import hashlib

    digest = hashlib.sha256()
    parts = [spec, llm, args.asr, str(args.ser_train), args.seed, args.batch_size, args.max_new_tokens,
             args.teacher_max_new_tokens, args.temperature, args.top_p, args.embedder,
             sorted(map(str, args.teacher_targets or []))]  # fmt: skip
    digest.update(json.dumps(parts, default=str).encode())
    from blsp_emo.model.loading import checkpoint_path

    for name in (spec, llm):
        folder = checkpoint_path(name.split("@")[0])
        weights = folder / "model.safetensors" if folder is not None else None
        if weights is not None and weights.is_file():
            with weights.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def task_fingerprint(fingerprint: str, task: str) -> str:
    """A system's fingerprint for one task: with the task's revision when it is past the first, so a
    results.json written before the task's numbers changed (it would lack the new columns) is redone."""
    from blsp_emo.evaluation.tasks import empathy, semantic

    revision = {"semantic": semantic.REVISION, "empathy": empathy.REVISION}.get(task, 1)
    return fingerprint if revision == 1 else f"{fingerprint}-r{revision}"


def load_finished(task_dir: Path, data: dict, fingerprint: str):
    """The :class:`TaskResult` in ``task_dir/results.json`` when it was made from the same data by the
    same system (fingerprint), else None."""
    from blsp_emo.evaluation.tasks import TaskResult

    path = task_dir / "results.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if (
        saved.get("data") != json.loads(json.dumps(data))
        or saved.get("system", {}).get("fingerprint") != fingerprint
    ):
        return None
    return TaskResult(
        task=saved["task"],
        system=saved["system"],
        data=saved["data"],
        generation=saved.get("generation", {}),
        metrics=saved.get("metrics", {}),
        headline=saved.get("headline", {}),
        plots=saved.get("plots", []),
    )


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
