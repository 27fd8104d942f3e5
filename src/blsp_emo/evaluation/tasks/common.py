"""What every task shares: the run context, the result record, cached text answers, writing outputs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.evaluation.judge import Judge
from blsp_emo.evaluation.systems import System
from blsp_emo.io import JsonlAppender, atomic_write_json, atomic_write_jsonl, read_jsonl_dicts
from blsp_emo.model.types import PLAIN, DecodingOptions, Reply


@dataclass
class RunContext:
    """Everything a task needs besides the system and the utterances."""

    out_dir: Path  # this task's output folder
    cache_dir: Path  # shared cache of text answers (teacher continuations, text references)
    decoding: DecodingOptions  # decoding for the system's answers
    batch_size: int = 4  # conversations per generate call
    seed: int = 0  # the run's seed (teacher decoding, multi-turn conversations)
    data: dict[str, Any] = field(default_factory=dict)  # manifest path, sha256, split, limit, n
    embedder: str = "all-MiniLM-L6-v2"
    judge: Judge | None = None
    max_new_tokens_set: bool = False  # True when the user chose --max-new-tokens (tasks keep it)
    teacher_max_new_tokens: int | None = None  # teacher texts' length (None: the task's default)
    teacher_targets: dict[tuple[str, str], str] | None = None  # (transcript, emotion) -> teacher text
    turns: int = 3  # user turns per conversation (task multiturn)

    def with_max_new_tokens(self, default: int) -> DecodingOptions:
        """The decoding options with this task's default answer length unless the user set one."""
        if self.max_new_tokens_set:
            return self.decoding
        return self.decoding.replace(max_new_tokens=default)


@dataclass
class TaskResult:
    """One task's outcome for one system."""

    task: str
    system: dict[str, Any]
    data: dict[str, Any]
    generation: dict[str, Any]
    metrics: dict[str, Any]
    headline: dict[str, float | None]  # the few numbers that go into the comparison table
    sections: list[str] = field(default_factory=list)  # markdown paragraphs for report.md
    plots: list[str] = field(default_factory=list)  # PNG file names inside the output folder

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (results.json)."""
        return {
            "task": self.task,
            "system": self.system,
            "data": self.data,
            "generation": self.generation,
            "headline": self.headline,
            "metrics": self.metrics,
            "plots": self.plots,
        }


def slug(name: str) -> str:
    """A file-name-safe form of a system or model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _clean(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python and dict keys sorted, so results are strict, stable JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in sorted((str(k), v) for k, v in value.items())}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float):
        return round(value, 6)
    return value


def dump_json(path: Path, data: Any) -> None:
    """Write deterministic, strict JSON (sorted keys, rounded floats, NaN as null), atomically."""
    atomic_write_json(path, _clean(data), indent=2, sort_keys=True)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write per-utterance records (sorted keys, rounded floats), atomically, replacing the file."""
    atomic_write_jsonl(path, (_clean(row) for row in rows))


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a markdown table ("-" when missing)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def cached_text_answers(
    system: System,
    system_prompt: str | None,
    user_texts: list[str],
    options: DecodingOptions,
    batch_size: int,
    cache_dir: Path,
    desc: str,
) -> list[Reply]:
    """The system's LLM on text turns, cached in ``cache_dir/text-<llm>.jsonl`` (resumable).

    The key covers the LLM name, prompts and decoding, so systems sharing an LLM share answers.
    """
    path = cache_dir / f"text-{slug(system.llm_name)}.jsonl"
    # Options beyond length, temperature, top-p and seed join the key only when they differ from plain
    # decoding (eval never sets them), so the keys of earlier runs stay valid.
    rest = options.replace(
        max_new_tokens=PLAIN.max_new_tokens, temperature=PLAIN.temperature, top_p=PLAIN.top_p, seed=PLAIN.seed
    )
    extra = [] if rest == PLAIN else [dataclasses.asdict(rest)]

    def key(text: str) -> str:
        parts: list[Any] = [system.llm_name, system_prompt, text, options.max_new_tokens, options.temperature]
        parts += [options.top_p, options.seed, *extra]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    cached = {row["key"]: row for _, row in read_jsonl_dicts(path) if "key" in row and "text" in row}
    keys = [key(t) for t in user_texts]
    todo: dict[str, str] = {}
    for k, t in zip(keys, user_texts):
        if k not in cached:
            todo.setdefault(k, t)
    if todo:
        answers = system.text_answers(system_prompt, list(todo.values()), options, batch_size, desc=desc)
        with JsonlAppender(path) as appender:
            for (k, t), a in zip(todo.items(), answers):
                row = {
                    "key": k,
                    "llm": system.llm_name,
                    "user": t,
                    "text": a.text,
                    "finish_reason": a.finish_reason,
                }
                appender.write(row)
                cached[k] = row
    return [Reply(text=cached[k]["text"], finish_reason=cached[k].get("finish_reason", "stop")) for k in keys]


def judge_scores(
    ctx: RunContext, utterances: list[Utterance], replies: list[str], name: str
) -> tuple[dict, list[dict | None]]:
    """Judge quality/empathy of replies when a judge is configured; returns (summary, per-utterance scores)."""
    if ctx.judge is None:
        return {}, [None] * len(replies)
    from blsp_emo.evaluation.metrics import mean_and_ci

    items = [(u.text, u.emotion or "neutral", r) for u, r in zip(utterances, replies)]
    scores = ctx.judge.score(items, cache_path=ctx.cache_dir / f"judge-{slug(ctx.judge.model)}.jsonl")
    valid = [s for s in scores if s is not None]
    summary = {
        "judge_model": ctx.judge.model,
        "judged": len(valid),
        "unusable": len(scores) - len(valid),
        "quality": mean_and_ci([s["quality"] for s in valid]),
        "empathy": mean_and_ci([s["empathy"] for s in valid]),
    }
    return summary, scores


def generation_dict(options: DecodingOptions, batch_size: int) -> dict[str, Any]:
    """Decoding options (and the batch size) for results.json."""
    return {
        "max_new_tokens": options.max_new_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "seed": options.seed,
        "batch_size": batch_size,
    }
