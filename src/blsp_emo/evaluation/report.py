"""results.json, report.md and the systems x metrics comparison of ``eval all``."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.evaluation.plots import plot_comparison
from blsp_emo.evaluation.tasks.common import TaskResult, dump_json, fmt
from blsp_emo.io import atomic_write_text

# Metrics on a 0..1 scale where higher is better (drawn in the comparison plot).
_PLOTTED = (
    "ser.accuracy",
    "ser.uar",
    "ser.macro_f1",
    "ser.head_accuracy",
    "semantic.cosine",
    "semantic.rouge_l",
    "semantic.top1",
    "empathy.emotion_agreement",
    "instructions.emotion_accuracy",
    "instructions.emotion_agreement",
)


def render_report(result: TaskResult) -> str:
    """The markdown report of one task for one system."""
    data = result.data
    lines = [
        f"# {result.task}: {result.system.get('name')}",
        "",
        f"- system: `{result.system.get('name')}` ({result.system.get('kind', '')}), LLM `{result.system.get('llm')}`",
        f"- data: `{data.get('manifest')}` (sha256 {str(data.get('sha256', ''))[:12]}), split {data.get('split') or 'all'}, "
        f"{data.get('n')} utterances"
        + (f" (seeded subset of {data.get('available')})" if data.get("limited") else ""),
        f"- decoding: {_generation_text(result.generation)}",
        "",
        "| metric | value |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {fmt(v)} |" for k, v in result.headline.items()]
    lines.append("")
    for section in result.sections:
        lines += [section, ""]
    for plot in result.plots:
        lines += [f"![{plot}]({plot})", ""]
    return "\n".join(lines)


def _generation_text(generation: dict) -> str:
    if "max_new_tokens" in generation:
        g = generation
        mode = "greedy" if not g.get("temperature") else f"temperature {g['temperature']}, top-p {g['top_p']}"
        return f"{mode}, at most {g['max_new_tokens']} new tokens, seed {g['seed']}"
    return "; ".join(f"{k}: {_generation_text(v)}" for k, v in generation.items())


def write_result(result: TaskResult, out_dir: Path, utterances: list[Utterance] | None = None) -> None:
    """Write ``results.json`` and ``report.md`` into ``out_dir`` (the plots are already there).

    With the evaluated ``utterances`` and more than one language among them, the task's per-utterance
    records (``predictions.jsonl``) are summarised per language first (:func:`add_language_breakdown`).
    """
    if utterances is not None:
        add_language_breakdown(result, utterances, out_dir / "predictions.jsonl")
    dump_json(out_dir / "results.json", result.to_dict())
    atomic_write_text(out_dir / "report.md", render_report(result))


def comparison_table(
    results: dict[str, dict[str, TaskResult]],
) -> tuple[list[str], dict[str, dict[str, float | None]]]:
    """Columns ``task.metric`` (grouped by task, metrics in first-seen order) and one row per system."""
    by_task: dict[str, list[str]] = {}
    table: dict[str, dict[str, float | None]] = {}
    for system, task_results in results.items():
        row: dict[str, float | None] = {}
        for task, result in task_results.items():
            names = by_task.setdefault(task, [])
            for metric, value in result.headline.items():
                if metric not in names:
                    names.append(metric)
                row[f"{task}.{metric}"] = value
        table[system] = row
    columns = [f"{task}.{metric}" for task, names in by_task.items() for metric in names]
    return columns, table


def write_comparison(results: dict[str, dict[str, TaskResult]], out_dir: Path, data: dict) -> str:
    """Write ``comparison.json``, ``comparison.md`` and ``comparison.png``; return the markdown."""
    columns, table = comparison_table(results)
    # Drop columns with no value for any system (e.g. head accuracy when no system has a head).
    columns = [c for c in columns if any(table[s].get(c) is not None for s in table)]
    # "systems" keeps the command-line order (the JSON's keys are sorted).
    dump_json(
        out_dir / "comparison.json",
        {"columns": columns, "systems": list(table), "values": table, "data": data},
    )
    header = "| system | " + " | ".join(columns) + " |"
    lines = [
        "# Comparison",
        "",
        "Every number comes from the per-system folders next to this file (results.json, report.md).",
        "",
        header,
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for system, row in table.items():
        lines.append(f"| {system} | " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    lines.append("")
    plotted = [c for c in _PLOTTED if c in columns]
    if plotted:
        plot_comparison(table, plotted, out_dir / "comparison.png", "systems x metrics")
        lines += ["![comparison](comparison.png)", ""]
    lines += ser_group_lines(results)
    lines += language_lines(results)
    for key, value in data.items():
        lines.append(f"- {key}: {value}")
    markdown = "\n".join(lines) + "\n"
    atomic_write_text(out_dir / "comparison.md", markdown)
    return markdown


def ser_group_lines(results: dict[str, dict[str, TaskResult]], field: str = "engine") -> list[str]:
    """Markdown: emotion-recognition accuracy per ``field`` group (engine, held-out engine, re-intoned
    real speech), answer / head, one row per system; nothing when no system's data has several groups."""
    groups: dict[str, int] = {}
    rows: dict[str, dict[str, dict]] = {}
    for system, task_results in results.items():
        ser = task_results.get("ser")
        found = ((ser.metrics.get("groups") or {}).get(field) or {}) if ser is not None else {}
        if len(found) > 1:
            rows[system] = found
            for name, value in found.items():
                groups[name] = max(groups.get(name, 0), int(value.get("n") or 0))
    if not rows:
        return []
    names = sorted(groups)
    lines = [
        f"Emotion recognition per {field}, from the answer / from the head (or classifier):",
        "",
        "| system | " + " | ".join(f"{name} (n={groups[name]})" for name in names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for system, found in rows.items():
        cells = []
        for name in names:
            value = found.get(name)
            cells.append("-" if value is None else f"{fmt(value.get('answer'))} / {fmt(value.get('head'))}")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return lines + [""]


# Per-utterance fields shown per language under the headline's name; the first one a task has is the
# comparison's per-language column. Other numeric fields keep their own (dotted, for nested) names.
LANGUAGE_FIELD_NAMES: dict[str, str] = {
    "correct": "accuracy",
    "recognition.correct": "emotion_accuracy",
    "head_correct": "head_accuracy",
    "recognition.head_correct": "head_accuracy",
    "credit": "emotion_agreement",
    "cosine": "cosine",
    "rouge_l": "rouge_l",
}
_SKIPPED_FIELDS = ("cos", "teacher", "closest", "seed", "response_tokens")


def _numeric_fields(record: dict, prefix: str = "", depth: int = 0) -> dict[str, float]:
    """The numeric (and boolean) values of one per-utterance record, nested dicts flattened with dots;
    ``head_correct`` is derived where a record has the head's label and the true emotion."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in _SKIPPED_FIELDS:
            continue
        name = prefix + key
        if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
            out[name] = float(value)
        elif isinstance(value, dict) and depth < 1:
            out.update(_numeric_fields(value, name + ".", depth + 1))
    if isinstance(record.get("head"), str) and isinstance(record.get("emotion"), str):
        out[prefix + "head_correct"] = float(record["head"] == record["emotion"])
    return out


def language_breakdown(utterances: list[Utterance], records: list[dict]) -> dict[str, dict]:
    """Means of the per-utterance metrics per language: ``{"zh": {"n": 5, "accuracy": 0.4, ...}}``.

    ``records`` are a task's per-utterance rows (``predictions.jsonl``) with the utterance ``id``;
    nothing is returned when the utterances hold fewer than two languages or the rows name no
    evaluated utterance (a task whose rows are conversations, say).
    """
    language = {u.id: u.language for u in utterances}
    if len(set(language.values())) < 2:
        return {}
    values: dict[str, dict[str, list[float]]] = {}
    counts: Counter = Counter()
    for record in records:
        code = language.get(str(record.get("id")))
        if code is None:
            continue
        counts[code] += 1
        for name, value in _numeric_fields(record).items():
            values.setdefault(code, {}).setdefault(LANGUAGE_FIELD_NAMES.get(name, name), []).append(value)
    if len(counts) < 2:
        return {}
    table: dict[str, dict] = {}
    for code in sorted(counts):
        row: dict = {"n": counts[code]}
        for name, series in values.get(code, {}).items():
            row[name] = sum(series) / len(series)
        table[code] = row
    return table


def _breakdown_columns(table: dict[str, dict]) -> list[str]:
    names: list[str] = []
    for row in table.values():
        names += [k for k in row if k != "n" and k not in names]
    first = [n for n in dict.fromkeys(LANGUAGE_FIELD_NAMES.values()) if n in names]
    return first + [n for n in names if n not in first]


def language_markdown(table: dict[str, dict]) -> str:
    """The per-language table of :func:`language_breakdown` as markdown."""
    columns = _breakdown_columns(table)
    lines = [
        "### Per language",
        "",
        "Means over each language's utterances of the per-utterance values in predictions.jsonl.",
        "",
        "| language | n | " + " | ".join(columns) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for code, row in table.items():
        lines.append(f"| {code} | {row['n']} | " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def add_language_breakdown(result: TaskResult, utterances: list[Utterance], records_path: Path) -> None:
    """Put the per-language breakdown of a task's per-utterance records into ``result`` (metrics
    ``languages`` and a report section) when the evaluated utterances hold several languages."""
    if len({u.language for u in utterances}) < 2 or not records_path.is_file():
        return
    lines = records_path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    table = language_breakdown(utterances, [r for r in records if isinstance(r, dict)])
    if table:
        result.metrics["languages"] = table
        result.sections.append(language_markdown(table))


def language_lines(results: dict[str, dict[str, TaskResult]]) -> list[str]:
    """Markdown: each task's first per-language metric, one row per system, for the tasks whose data
    holds several languages (nothing otherwise)."""
    lines: list[str] = []
    tasks = list(dict.fromkeys(task for by_task in results.values() for task in by_task))
    for task in tasks:
        tables: dict[str, dict[str, dict[str, Any]]] = {
            system: languages
            for system, by_task in results.items()
            if task in by_task and (languages := by_task[task].metrics.get("languages"))
        }
        if not tables:
            continue
        codes = sorted({code for table in tables.values() for code in table})
        columns = _breakdown_columns(next(iter(tables.values())))
        if not columns:
            continue
        metric = columns[0]
        sizes = {code: max(int(t.get(code, {}).get("n") or 0) for t in tables.values()) for code in codes}
        lines += [
            f"{task}.{metric} per language:",
            "",
            "| system | " + " | ".join(f"{code} (n={sizes[code]})" for code in codes) + " |",
            "| --- | " + " | ".join("---:" for _ in codes) + " |",
        ]
        for system, table in tables.items():
            lines.append(
                f"| {system} | " + " | ".join(fmt(table.get(code, {}).get(metric)) for code in codes) + " |"
            )
        lines.append("")
    return lines
