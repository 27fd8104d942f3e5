"""What every task shares: the run context, the result record, cached text answers, writing outputs."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.evaluation.judge import Judge
from blsp_emo.evaluation.systems import Answer, GenerationSettings, System
from blsp_emo.io import JsonlAppender, read_jsonl_dicts


@dataclass
class RunContext:
    """Everything a task needs besides the system and the utterances."""

    out_dir: Path  # this task's output folder
    cache_dir: Path  # shared cache of text answers (teacher continuations, text references)
    settings: GenerationSettings  # decoding for the system's answers
    data: dict[str, Any] = field(default_factory=dict)  # manifest path, sha256, split, limit, n
    embedder: str = "all-MiniLM-L6-v2"
    judge: Judge | None = None
    max_new_tokens_set: bool = False  # True when the user chose --max-new-tokens (tasks keep it)
    teacher_max_new_tokens: int | None = None  # teacher texts' length (None: the task's default)
    teacher_targets: dict[tuple[str, str], str] | None = None  # (transcript, emotion) -> teacher text
    turns: int = 3  # user turns per conversation (task multiturn)

    def with_max_new_tokens(self, default: int) -> GenerationSettings:
        """The decoding settings with this task's default answer length unless the user set one."""
        if self.max_new_tokens_set:
            return self.settings
        return replace(self.settings, max_new_tokens=default)


@dataclass
class TaskResult:
    """One task's outcome for one system."""

    task: str
    system: dict
    data: dict
    generation: dict
    metrics: dict
    headline: dict[str, float | None]  # the few numbers that go into the comparison table
    sections: list[str] = field(default_factory=list)  # markdown paragraphs for report.md
    plots: list[str] = field(default_factory=list)  # PNG file names inside the output folder

    def to_dict(self) -> dict:
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
    """NaN/inf -> None and numpy scalars -> Python, so results.json is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float):
        return round(value, 6)
    return value


def dump_json(path: Path, data: Any) -> None:
    """Write deterministic, strict JSON (sorted keys, rounded floats, NaN as null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(_clean(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write per-utterance records (overwriting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(_clean(row), ensure_ascii=False, sort_keys=True) + "\n")


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a markdown table ("-" when missing)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def cached_text_answers(
    system: System,
    system_prompt: str | None,
    user_texts: list[str],
    settings: GenerationSettings,
    cache_dir: Path,
    desc: str,
) -> list[Answer]:
    """The system's LLM on text turns, cached in ``cache_dir/text-<llm>.jsonl`` (resumable).

    The key covers the LLM name, prompts and decoding, so systems sharing an LLM share answers.
    """
    path = cache_dir / f"text-{slug(system.llm_name)}.jsonl"

    def key(text: str) -> str:
        raw = json.dumps(
            [
                system.llm_name,
                system_prompt,
                text,
                settings.max_new_tokens,
                settings.temperature,
                settings.top_p,
                settings.seed,
            ]
        )
        return hashlib.sha256(raw.encode()).hexdigest()

    cached = {row["key"]: row for _, row in read_jsonl_dicts(path) if "key" in row and "text" in row}
    keys = [key(t) for t in user_texts]
    todo: dict[str, str] = {}
    for k, t in zip(keys, user_texts):
        if k not in cached:
            todo.setdefault(k, t)
    if todo:
        answers = system.text_answers(system_prompt, list(todo.values()), settings, desc=desc)
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
    return [
        Answer(text=cached[k]["text"], finish_reason=cached[k].get("finish_reason", "stop")) for k in keys
    ]


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


def generation_dict(settings: GenerationSettings) -> dict:
    """Decoding settings for results.json."""
    return {
        "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": settings.seed,
        "batch_size": settings.batch_size,
    }
