"""Running evaluations: load the systems, select the data, run the tasks, write results and reports.

:func:`evaluate_task` is ``blsp-emo eval TASK`` (one system, one task, one folder); :func:`evaluate_all`
is ``eval all`` (several systems x several tasks, one folder each, and a comparison table). Both take an
:class:`~blsp_emo.evaluation.options.EvalOptions` and nothing else. ``eval all`` resumes: a system x task
folder whose ``results.json`` was made from the same data by the same system (:func:`system_fingerprint`,
:func:`task_fingerprint`) is read back instead of evaluated again.

Decoding is greedy by default, so a run is deterministic for a seed; wall-clock times and versions go to
``run.json`` so that ``results.json`` is reproducible byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blsp_emo.evaluation.dataset import Utterance, load_utterances, manifest_fingerprint, seeded_subset
from blsp_emo.evaluation.judge import Judge
from blsp_emo.evaluation.options import EvalOptions
from blsp_emo.evaluation.report import write_comparison, write_result
from blsp_emo.evaluation.systems import System, load_system, split_system_name
from blsp_emo.evaluation.tasks import TASKS, RunContext, TaskResult
from blsp_emo.evaluation.tasks.common import slug
from blsp_emo.io import atomic_write_json, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """The utterances one task evaluates, and what results.json records about them."""

    utterances: list[Utterance]
    data: dict[str, Any]  # manifest, sha256, split, n, available, limited, seed (and turns)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's random state."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_judge(options: EvalOptions) -> Judge | None:
    """The LLM judge of the run, or None when none is configured."""
    if options.judge_url is None or options.judge_model is None:
        return None
    return Judge(options.judge_url, options.judge_model, api_key_env=options.judge_key_env, seed=options.seed)


def select(options: EvalOptions, task: str, manifest: Path) -> Selection:
    """Read ``manifest`` for ``task`` (the rows it needs), then the seeded subset of ``--limit``."""
    spec = TASKS[task]
    everything = load_utterances(
        manifest, split=options.split, need_emotion=spec.need_emotion, need_text=spec.need_text
    )
    utterances = seeded_subset(everything, options.limit, options.seed)
    data: dict[str, Any] = {
        "manifest": str(manifest),
        "sha256": manifest_fingerprint(manifest),
        "split": options.split,
        "n": len(utterances),
        "available": len(everything),
        "limited": len(utterances) < len(everything),
        "seed": options.seed,
    }
    if task == "multiturn":  # the conversations are part of the data (a change of --turns is rerun)
        from blsp_emo.evaluation.tasks.multiturn import build_conversations

        build_conversations(
            utterances, options.turns, options.seed
        )  # too few utterances fail before any model
        data["turns"] = options.turns
    return Selection(utterances, data)


def teacher_table(options: EvalOptions) -> dict[tuple[str, str], str] | None:
    """The teacher continuations of ``--teacher-targets``, or None when none are given."""
    if not options.teacher_targets:
        return None
    from blsp_emo.evaluation.tasks.empathy import load_teacher_targets

    return load_teacher_targets(list(options.teacher_targets))


def run_context(
    options: EvalOptions,
    out_dir: Path,
    cache_dir: Path,
    data: dict[str, Any],
    judge: Judge | None,
    teachers: dict[tuple[str, str], str] | None,
) -> RunContext:
    """What a task reads besides the system and the utterances."""
    return RunContext(
        out_dir=out_dir,
        cache_dir=cache_dir,
        decoding=options.decoding,
        batch_size=options.batch_size,
        seed=options.seed,
        data=data,
        embedder=options.embedder,
        judge=judge,
        max_new_tokens_set=options.max_new_tokens is not None,
        teacher_max_new_tokens=options.teacher_max_new_tokens,
        teacher_targets=teachers,
        turns=options.turns,
    )


def cascade_llm(options: EvalOptions) -> str:
    """The cascades' LLM: ``--llm``, else the first BLSP-Emo model evaluated, else tiny."""
    if options.llm:
        return options.llm
    speech = [m for m in options.models if split_system_name(m, "")[1] is None]
    return speech[0] if speech else "tiny"


def build_system(options: EvalOptions, spec: str, llm: str) -> System:
    """Load the system ``spec`` (a BLSP-Emo model or a cascade over ``llm``)."""
    from blsp_emo.model.loading import set_trust_remote_code

    set_trust_remote_code(options.trust_remote_code)  # systems load their models deep inside
    return load_system(spec, llm=llm, asr=options.asr, ser_train=options.ser_train, seed=options.seed)


def write_run_info(out_dir: Path, started: float) -> None:
    """``run.json``: the command line, wall-clock time and versions (kept out of results.json)."""
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
    atomic_write_json(out_dir / "run.json", info)


def evaluate_task(options: EvalOptions) -> tuple[TaskResult, Path]:
    """``eval TASK``: the first task for the first system; returns the result and its folder
    (``results.json``, ``report.md``, ``predictions.jsonl`` and the plots are written there)."""
    started = time.time()
    task, spec = options.tasks[0], options.models[0]
    seed_everything(options.seed)
    selection = select(options, task, options.manifest(task))
    teachers = teacher_table(options)
    out_dir = options.output or Path("runs/eval") / f"{task}-{slug(spec)}"
    system = build_system(options, spec, cascade_llm(options))
    cache_dir = options.cache_dir or out_dir / "cache"
    ctx = run_context(options, out_dir, cache_dir, selection.data, make_judge(options), teachers)
    result = TASKS[task].run(system, selection.utterances, ctx)
    write_result(result, out_dir, selection.utterances)
    write_run_info(out_dir, started)
    return result, out_dir


def evaluate_all(options: EvalOptions) -> tuple[str, Path]:
    """``eval all``: every task for every system, resuming finished ones (unless ``recompute``); returns
    the comparison's markdown and the output folder."""
    started = time.time()
    tasks = options.tasks
    # Read and check every data set before any model is loaded: bad input fails in seconds.
    selections = {task: select(options, task, options.manifest(task)) for task in tasks}
    teachers = teacher_table(options)
    judge = make_judge(options)
    out_dir = options.output or Path("runs/eval/all")
    cache_dir = options.cache_dir or out_dir / "cache"
    llm = cascade_llm(options)
    results: dict[str, dict[str, TaskResult]] = {}
    for spec in options.models:
        fingerprint = system_fingerprint(spec, llm, options)
        results[spec] = {}
        todo = []
        for task in tasks:
            task_dir = out_dir / slug(spec) / task
            done = task_fingerprint(fingerprint, task)
            previous = None if options.recompute else load_finished(task_dir, selections[task].data, done)
            if previous is not None:
                log.info("%s: %s already evaluated in %s (--recompute to redo)", spec, task, task_dir)
                results[spec][task] = previous
            else:
                todo.append(task)
        if not todo:
            continue
        seed_everything(options.seed)
        system = build_system(options, spec, llm)
        for task in todo:
            selection = selections[task]
            task_dir = out_dir / slug(spec) / task
            ctx = run_context(options, task_dir, cache_dir, selection.data, judge, teachers)
            log.info("%s: %s on %d utterances", spec, task, len(selection.utterances))
            result = TASKS[task].run(system, selection.utterances, ctx)
            result.system["fingerprint"] = task_fingerprint(fingerprint, task)
            write_result(result, task_dir, selection.utterances)
            results[spec][task] = result
        results[spec] = {task: results[spec][task] for task in tasks}  # table columns in task order
    data: dict[str, Any] = {
        task: f"{sel.data['manifest']} ({sel.data['n']} utterances)" for task, sel in selections.items()
    }
    data["seed"] = options.seed
    data["cascade LLM"] = llm
    markdown = write_comparison(results, out_dir, data)
    write_run_info(out_dir, started)
    return markdown, out_dir


def system_fingerprint(spec: str, llm: str, options: EvalOptions) -> str:
    """What decides a system's answers besides the data: its name, the cascade LLM and ASR, the decoding
    options, and for a checkpoint folder the sha256 of its weights (a retrained model is evaluated again)."""
    from blsp_emo.model.loading import checkpoint_path

    o = options
    parts = [spec, llm, o.asr, str(o.ser_train), o.seed, o.batch_size, o.max_new_tokens,
             o.teacher_max_new_tokens, o.temperature, o.top_p, o.embedder,
             sorted(map(str, o.teacher_targets))]  # fmt: skip
    digest = hashlib.sha256(json.dumps(parts, default=str).encode())
    for name in (spec, llm):
        folder = checkpoint_path(name.split("@")[0])
        weights = folder / "model.safetensors" if folder is not None else None
        if weights is not None and weights.is_file():
            digest.update(sha256_file(weights).encode())
    return digest.hexdigest()[:16]


def task_fingerprint(fingerprint: str, task: str) -> str:
    """A system's fingerprint for one task: with the task's revision when it is past the first, so a
    results.json written before the task's numbers changed (it would lack the new columns) is redone."""
    from blsp_emo.evaluation.tasks import empathy, semantic

    revision = {"semantic": semantic.REVISION, "empathy": empathy.REVISION}.get(task, 1)
    return fingerprint if revision == 1 else f"{fingerprint}-r{revision}"


def load_finished(task_dir: Path, data: dict[str, Any], fingerprint: str) -> TaskResult | None:
    """The :class:`TaskResult` in ``task_dir/results.json`` when it was made from the same data by the
    same system (fingerprint), else None."""
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
