"""Task ``empathy``: does the reply fit the emotion in the voice?

For each utterance the system answers with the empathetic system prompt and the speech as the whole
user turn. The same LLM writes five teacher continuations of the transcript, one per emotion, with the
stage-2 teacher prompt (``Continue the following sentence that reflects a '{emotion}' emotion tone in a
coherent style: `` + transcript, empathetic system prompt, greedy, 48 new tokens). *Emotion agreement* is
the share of utterances whose reply is closest (all-MiniLM-L6-v2 cosine) to the continuation written for
the TRUE emotion; chance is 1/5. When several continuations tie for closest (identical texts), the
utterance earns 1/k if the true one is among the k tied. Optional LLM-judge scores (quality, empathy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from blsp_emo.data.targets import refused_path
from blsp_emo.errors import UserError
from blsp_emo.evaluation.dataset import Utterance, emotion_labels
from blsp_emo.evaluation.embeddings import get_embedder
from blsp_emo.evaluation.metrics import confusion_matrix, mean_and_ci, repeated_ngram_rate
from blsp_emo.evaluation.plots import plot_bars, plot_confusion
from blsp_emo.evaluation.systems import Query, System
from blsp_emo.evaluation.tasks.common import (
    RunContext,
    TaskResult,
    cached_text_answers,
    fmt,
    generation_dict,
    judge_scores,
    write_jsonl,
)
from blsp_emo.io import read_jsonl_dicts
from blsp_emo.model.types import DecodingOptions
from blsp_emo.prompts import EMOTION_TARGET_INSTRUCTION, EMOTIONS, SYSTEM_PROMPTS, is_refusal

DEFAULT_MAX_NEW_TOKENS = 128  # the paper's default reply length
TEACHER_MAX_NEW_TOKENS = 48  # the stage-2 target length (docs/method.md §3)
TIE_TOLERANCE = 1e-6


# Bumped when this task's numbers change or gain columns (see semantic.REVISION). 2: repeat4.
REVISION = 2


def teacher_texts(
    system: System,
    user_texts: list[str],
    ctx: RunContext,
    template: str = EMOTION_TARGET_INSTRUCTION,
    max_new_tokens: int = TEACHER_MAX_NEW_TOKENS,
) -> list[list[str]]:
    """Five emotion-conditioned teacher texts per item (rows in ``EMOTIONS`` order), cached.

    ``template`` has an ``{emotion}`` placeholder and is followed by the item's text. With
    ``ctx.teacher_targets`` (stage-2 targets written by ``data targets``) the texts are read from there
    instead, and every item must have all five.
    """
    if ctx.teacher_targets is not None and template == EMOTION_TARGET_INSTRUCTION:
        out = []
        for text in user_texts:
            missing = [e for e in EMOTIONS if (text.strip(), e) not in ctx.teacher_targets]
            if missing:
                raise UserError(f"--teacher-targets has no {', '.join(missing)} continuation for {text!r}")
            out.append([ctx.teacher_targets[(text.strip(), e)] for e in EMOTIONS])
        return out
    options = DecodingOptions(max_new_tokens=ctx.teacher_max_new_tokens or max_new_tokens, seed=ctx.seed)
    prompts = [template.format(emotion=e) + text for text in user_texts for e in EMOTIONS]
    answers = cached_text_answers(
        system,
        SYSTEM_PROMPTS["empathetic"],
        prompts,
        options,
        ctx.batch_size,
        ctx.cache_dir,
        desc=f"{system.llm_name} teacher",
    )
    k = len(EMOTIONS)
    return [[a.text for a in answers[i * k : (i + 1) * k]] for i in range(len(user_texts))]


def load_teacher_targets(paths: list[Path]) -> dict[tuple[str, str], str]:
    """Read ``data targets --stage emotion --all-emotions`` output: (transcript, emotion) -> continuation.

    The refusals that ``data targets`` moves aside (``OUT.jsonl.refused.jsonl``) are read too, since
    the agreement needs all five continuations of a transcript.
    """
    table: dict[tuple[str, str], str] = {}
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: no such target file (--teacher-targets)")
        refused = refused_path(path)
        for source in (path, refused):
            for number, row in read_jsonl_dicts(source):
                emotion, text, target = row.get("target_emotion"), row.get("text"), row.get("target")
                if emotion is None or not isinstance(text, str) or not isinstance(target, str):
                    raise UserError(
                        f"{source}:{number}: not an emotion-stage target row (needs text, target_emotion, target)"
                    )
                table[(text.strip(), emotion)] = target
    return table


def teacher_info(ctx: RunContext, template: str, max_new_tokens: int) -> dict:
    """How the teacher texts were written (for results.json)."""
    if ctx.teacher_targets is not None and template == EMOTION_TARGET_INSTRUCTION:
        return {"source": "--teacher-targets (data targets --stage emotion --all-emotions)"}
    return {
        "source": "the system's own LLM",
        "instruction": template,
        "system_prompt": SYSTEM_PROMPTS["empathetic"],
        "max_new_tokens": ctx.teacher_max_new_tokens or max_new_tokens,
        "decoding": "greedy",
    }


def emotion_agreement(
    reply_embeddings: np.ndarray, teacher_embeddings: np.ndarray, truth: list[str]
) -> tuple[dict, list[dict]]:
    """Agreement of replies (n, d) with teacher texts (n, 5, d) for the true emotions.

    Returns a summary (agreement, per-emotion agreement, mean cosine to the true emotion's text, margin
    over the mean of the other four, confusion true vs closest) and one record per utterance.
    """
    cos = np.einsum("nd,nkd->nk", reply_embeddings, teacher_embeddings)
    credit: list[float] = []
    closest: list[str] = []
    rows: list[dict[str, Any]] = []
    for i, emotion in enumerate(truth):
        t = EMOTIONS.index(emotion)
        best = np.flatnonzero(cos[i] >= cos[i].max() - TIE_TOLERANCE)
        c = 1.0 / len(best) if t in best else 0.0
        credit.append(c)
        closest.append(EMOTIONS[int(best[0])])
        others = np.delete(cos[i], t)
        rows.append(
            {
                "closest": [EMOTIONS[int(b)] for b in best],
                "credit": c,
                "cos_true": float(cos[i, t]),
                "margin": float(cos[i, t] - others.mean()),
                "cos": {e: float(cos[i, j]) for j, e in enumerate(EMOTIONS)},
            }
        )
    per_emotion = {
        e: float(np.mean([c for c, t in zip(credit, truth) if t == e])) if e in truth else None
        for e in EMOTIONS
    }
    summary = {
        "emotion_agreement": float(np.mean(credit)),
        "chance": 1.0 / len(EMOTIONS),
        "per_emotion_agreement": per_emotion,
        "cos_true": mean_and_ci([r["cos_true"] for r in rows]),
        "margin": mean_and_ci([r["margin"] for r in rows]),
        "confusion": {
            "rows": list(EMOTIONS),
            "columns": [*EMOTIONS, "unparsed"],
            "counts": confusion_matrix(truth, closest, EMOTIONS).tolist(),
        },
    }
    return summary, rows


def agreement_section(summary: dict, judge: dict) -> str:
    """Markdown paragraph with the agreement (and judge) numbers."""
    text = (
        f"Emotion agreement **{fmt(summary['emotion_agreement'])}** (chance {fmt(summary['chance'])}); "
        f"cosine to the true-emotion teacher text {fmt(summary['cos_true']['mean'])}, margin over the other "
        f"emotions {fmt(summary['margin']['mean'])} (+/- {fmt(summary['margin']['ci95'])})."
    )
    if judge:
        text += (
            f" Judge {judge['judge_model']}: quality **{fmt(judge['quality']['mean'], 2)}**, empathy "
            f"**{fmt(judge['empathy']['mean'], 2)}** (1-10, {judge['judged']} judged, {judge['unusable']} unusable)."
        )
    return text


def score_replies(
    system: System,
    utterances: list[Utterance],
    replies: list[str],
    teachers: list[list[str]],
    ctx: RunContext,
) -> tuple[dict, dict[str, float | None], list[dict], list[str], str]:
    """Agreement, judge scores and plots for replies; returns (metrics, headline, rows, plots, markdown)."""
    embedder = get_embedder(ctx.embedder)
    reply_emb = embedder.encode(replies)
    flat = embedder.encode([t for group in teachers for t in group])
    teacher_emb = flat.reshape(len(utterances), len(EMOTIONS), -1)
    truth = emotion_labels(utterances)
    summary, rows = emotion_agreement(reply_emb, teacher_emb, truth)
    summary["teacher_refusals"] = sum(is_refusal(t) for group in teachers for t in group)
    judge, judged = judge_scores(ctx, utterances, replies, system.name)
    conf = summary["confusion"]
    plot_confusion(
        [r[:-1] for r in conf["counts"]],
        conf["rows"],
        conf["rows"],
        ctx.out_dir / "agreement_confusion.png",
        f"{system.name}: closest teacher emotion",
        xlabel="closest teacher continuation",
    )
    plot_bars(
        {k: v for k, v in summary["per_emotion_agreement"].items() if v is not None},
        ctx.out_dir / "agreement.png",
        f"{system.name}: emotion agreement",
        "agreement",
        chance=summary["chance"],
    )
    for row, score in zip(rows, judged):
        row["judge"] = score
    headline: dict[str, float | None] = {
        "emotion_agreement": summary["emotion_agreement"],
        "margin": summary["margin"]["mean"],
        "repeat4": repeated_ngram_rate(replies),
    }
    if judge:
        headline["judge_quality"] = judge["quality"]["mean"]
        headline["judge_empathy"] = judge["empathy"]["mean"]
    metrics = {"agreement": summary, "embedder": ctx.embedder}
    if judge:
        metrics["judge"] = judge
    return (
        metrics,
        headline,
        rows,
        ["agreement_confusion.png", "agreement.png"],
        agreement_section(summary, judge),
    )


def run_empathy(system: System, utterances: list[Utterance], ctx: RunContext) -> TaskResult:
    """Empathetic replies to speech, scored by emotion agreement with emotion-conditioned teacher texts."""
    decoding = ctx.with_max_new_tokens(DEFAULT_MAX_NEW_TOKENS)
    queries = [Query(SYSTEM_PROMPTS["empathetic"], "", u) for u in utterances]
    answers = system.answers(queries, decoding, ctx.batch_size, desc=f"{system.name} empathy")
    teachers = teacher_texts(system, [u.text for u in utterances], ctx)
    replies = [a.text for a in answers]
    metrics, headline, rows, plots, section = score_replies(system, utterances, replies, teachers, ctx)
    metrics["teacher"] = teacher_info(ctx, EMOTION_TARGET_INSTRUCTION, TEACHER_MAX_NEW_TOKENS)
    write_jsonl(
        ctx.out_dir / "predictions.jsonl",
        [
            {
                "id": u.id,
                "text": u.text,
                "emotion": u.emotion,
                "reply": r,
                "user_text": a.user_text,
                "teacher": dict(zip(EMOTIONS, t)),
                **row,
            }
            for u, r, a, t, row in zip(utterances, replies, answers, teachers, rows)
        ],
    )
    return TaskResult(
        task="empathy",
        system=system.describe(),
        data=ctx.data,
        generation=generation_dict(decoding, ctx.batch_size),
        metrics=metrics,
        headline=headline,
        sections=[section],
        plots=plots,
    )
