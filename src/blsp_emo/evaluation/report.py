"""results.json, report.md and the systems x metrics comparison of ``eval all``."""

from __future__ import annotations

from pathlib import Path

from blsp_emo.evaluation.plots import plot_comparison
from blsp_emo.evaluation.tasks.common import TaskResult, dump_json, fmt

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


def write_result(result: TaskResult, out_dir: Path) -> None:
    """Write ``results.json`` and ``report.md`` into ``out_dir`` (the plots are already there)."""
    dump_json(out_dir / "results.json", result.to_dict())
    (out_dir / "report.md").write_text(render_report(result), encoding="utf-8")


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
    for key, value in data.items():
        lines.append(f"- {key}: {value}")
    markdown = "\n".join(lines) + "\n"
    (out_dir / "comparison.md").write_text(markdown, encoding="utf-8")
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
