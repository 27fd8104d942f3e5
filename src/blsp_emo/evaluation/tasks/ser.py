"""Task ``ser``: speech emotion recognition through the model's own words (docs/method.md §5 prompt).

The answer to the recognition prompt is turned into a label by the published rule in
:mod:`blsp_emo.evaluation.labels`. When the system can also predict the emotion without text (the
BLSP-Emo emotion head, the strong cascade's classifier) that accuracy is reported beside it.
"""

from __future__ import annotations

from pathlib import Path

from blsp_emo.evaluation.dataset import Utterance, emotion_labels
from blsp_emo.evaluation.labels import parse_emotion
from blsp_emo.evaluation.metrics import ClassificationReport, classification_report
from blsp_emo.evaluation.plots import plot_bars, plot_confusion
from blsp_emo.evaluation.systems import CascadeSystem, Query, System
from blsp_emo.evaluation.tasks.common import RunContext, TaskResult, fmt, generation_dict, write_jsonl
from blsp_emo.prompts import EMOTIONS, INSTRUCTIONS, SYSTEM_PROMPTS

DEFAULT_MAX_NEW_TOKENS = 32  # the label comes first in any sensible answer; the rule reads the first one


def recognition_queries(utterances: list[Utterance]) -> list[Query]:
    """The docs/method.md §5 recognition prompt (default system prompt) for every utterance."""
    return [Query(SYSTEM_PROMPTS["default"], INSTRUCTIONS["recognize_emotion"], u) for u in utterances]


def classification_markdown(title: str, report: ClassificationReport) -> str:
    """A markdown table of a classification report."""
    lines = [
        f"### {title}",
        "",
        f"accuracy **{fmt(report.accuracy)}**, unweighted average recall {fmt(report.unweighted_average_recall)}, "
        f"macro F1 {fmt(report.macro_f1)}, unparsed {report.unparsed}/{report.n} ({fmt(report.unparsed_rate)})",
        "",
        "| class | support | recall | precision | F1 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label in report.labels:
        lines.append(
            f"| {label} | {report.support[label]} | {fmt(report.per_class_recall[label])} | "
            f"{fmt(report.per_class_precision[label])} | {fmt(report.per_class_f1[label])} |"
        )
    return "\n".join(lines)


def recognize(
    system: System, utterances: list[Utterance], ctx: RunContext, out_dir: Path, prefix: str = ""
) -> tuple[dict, dict[str, float | None], list[str], list[str], list[dict]]:
    """Run recognition; returns (metrics, headline, markdown sections, plot names, per-utterance rows)."""
    decoding = ctx.with_max_new_tokens(DEFAULT_MAX_NEW_TOKENS)
    answers = system.answers(
        recognition_queries(utterances), decoding, ctx.batch_size, desc=f"{system.name} ser"
    )
    parsed = [parse_emotion(a.text) for a in answers]
    truth = emotion_labels(utterances)
    report = classification_report(truth, [p.label for p in parsed], EMOTIONS)
    head = system.predict_emotions(utterances)
    head_report = classification_report(truth, head, EMOTIONS) if head is not None else None

    plots = [f"{prefix}confusion.png"]
    conf = report.to_dict()["confusion"]
    plot_confusion(
        conf["counts"],
        conf["rows"],
        conf["columns"],
        out_dir / plots[0],
        f"{system.name}: emotion from the generated answer (n={report.n})",
    )
    plots.append(f"{prefix}recall.png")
    plot_bars(
        {k: v for k, v in report.per_class_recall.items() if v is not None},
        out_dir / plots[-1],
        f"{system.name}: per-class recall",
        "recall",
        chance=1 / len(EMOTIONS),
    )
    sections = [classification_markdown("Emotion from the generated answer", report)]
    metrics: dict = {"answer": report.to_dict()}
    headline: dict[str, float | None] = {
        "accuracy": report.accuracy,
        "uar": report.unweighted_average_recall,
        "macro_f1": report.macro_f1,
        "unparsed_rate": report.unparsed_rate,
        "head_accuracy": None,
    }
    if head_report is not None:
        metrics["head"] = head_report.to_dict()
        headline["head_accuracy"] = head_report.accuracy
        what = "emotion head" if system.info.get("kind") == "blsp-emo" else "emotion classifier"
        sections.append(classification_markdown(f"Emotion from the {what} (no text)", head_report))
        plots.append(f"{prefix}head_confusion.png")
        hconf = head_report.to_dict()["confusion"]
        plot_confusion(
            hconf["counts"],
            hconf["rows"],
            hconf["columns"],
            out_dir / plots[-1],
            f"{system.name}: {what} (n={head_report.n})",
        )
    overlap = _train_overlap(system, utterances)
    if overlap is not None:
        metrics["classifier_train_overlap"] = overlap
        if overlap:
            sections.append(
                f"**Warning**: {overlap} evaluated utterances were in the classifier's training set."
            )
    rows = [
        {
            "id": u.id,
            "emotion": u.emotion,
            "answer": a.text,
            "parsed": p.label,
            "matched_word": p.matched,
            "correct": p.label == u.emotion,
            "head": head[i] if head is not None else None,
            "user_text": a.user_text,
        }
        for i, (u, a, p) in enumerate(zip(utterances, answers, parsed))
    ]
    groups = group_accuracy(utterances, [p.label for p in parsed], head)
    if groups:
        metrics["groups"] = groups
        sections.append(group_markdown(groups))
    metrics["generation"] = generation_dict(decoding, ctx.batch_size)
    return metrics, headline, sections, plots, rows


def group_accuracy(
    utterances: list[Utterance], answers: list[str | None], head: list[str | None] | None
) -> dict[str, dict[str, dict]]:
    """Accuracy from the answer (and the head) per engine and per speaker, where the manifest has them.

    A field is reported when it takes more than one value in the evaluated set (a single group would
    repeat the overall number): ``{"engine": {"espeak": {"n": 40, "answer": 0.7, "head": 0.8}}, ...}``.
    """
    out: dict[str, dict[str, dict]] = {}
    fields = {"engine": [u.engine for u in utterances], "speaker": [u.speaker for u in utterances]}
    for field, values in fields.items():
        if len({v for v in values if v}) < 2:
            continue
        table: dict[str, dict] = {}
        for value in sorted({v for v in values if v}):
            idx = [i for i, v in enumerate(values) if v == value]
            right = sum(answers[i] == utterances[i].emotion for i in idx)
            row: dict = {"n": len(idx), "answer": right / len(idx)}
            if head is not None:
                row["head"] = sum(head[i] == utterances[i].emotion for i in idx) / len(idx)
            table[value] = row
        out[field] = table
    return out


def group_markdown(groups: dict[str, dict[str, dict]]) -> str:
    """Markdown tables of :func:`group_accuracy` (one per field)."""
    lines = ["### Accuracy per group"]
    for field, table in groups.items():
        lines += ["", f"| {field} | n | from the answer | from the head |", "| --- | ---: | ---: | ---: |"]
        for value, row in table.items():
            lines.append(f"| {value} | {row['n']} | {fmt(row['answer'])} | {fmt(row.get('head'))} |")
    return "\n".join(lines)


def _train_overlap(system: System, utterances: list[Utterance]) -> int | None:
    if not isinstance(system, CascadeSystem) or system.classifier is None:
        return None
    train = set(system.classifier.info.get("train_audio", []))
    return sum(str(u.audio_path.resolve()) in train for u in utterances)


def run_ser(system: System, utterances: list[Utterance], ctx: RunContext) -> TaskResult:
    """Emotion recognition accuracy, UAR, macro F1, per-class recall and confusion matrices."""
    metrics, headline, sections, plots, rows = recognize(system, utterances, ctx, ctx.out_dir)
    write_jsonl(ctx.out_dir / "predictions.jsonl", rows)
    sections.insert(
        0, "Label rule: `blsp_emo.evaluation.labels` (docs/evaluation.md). Unparsed answers count as wrong."
    )
    return TaskResult(
        task="ser",
        system=system.describe(),
        data=ctx.data,
        generation=metrics.pop("generation"),
        metrics=metrics,
        headline=headline,
        sections=sections,
        plots=plots,
    )
