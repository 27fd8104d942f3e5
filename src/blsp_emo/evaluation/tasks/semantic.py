"""Task ``semantic``: does the system understand the words?

The system continues the utterance (``Continue the following sentence in a coherent style: `` +
speech, default system prompt, the stage-1 prompt); the reference is the same LLM's continuation of the
ground-truth transcript with the same prompt and decoding. Scores: all-MiniLM-L6-v2 cosine and ROUGE-L
F1 between the two. ``cascade-text`` reproduces the reference exactly (an upper bound of 1.0); ASR
cascades also report the word error rate of their transcripts, and a BLSP-Emo model with a token
alignment head the word error rate of its greedy-CTC reading.

Teacher-forced scores (:mod:`blsp_emo.evaluation.teacher_forcing`) look at the reference reply itself:
the LLM is forced along it once on the transcript (the teacher) and once on the system's input, and every
response position is scored by KL(teacher || student) at T = 1 and top-1 agreement. Two references
bracket the system: the speech slots filled with zero vectors ("no speech", the floor) and with the
transcript's own token embeddings ("transcript", the ceiling); ``gap_closed`` = (KL_no_speech -
KL) / (KL_no_speech - KL_transcript) is the share of that gap the system closes.
"""

from __future__ import annotations

from typing import Any

import torch

from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.evaluation.embeddings import get_embedder
from blsp_emo.evaluation.metrics import mean_and_ci, repeated_ngram_rate, rouge_l
from blsp_emo.evaluation.plots import plot_histogram
from blsp_emo.evaluation.systems import BlspEmoSystem, CascadeSystem, Query, System, text_conversation
from blsp_emo.evaluation.tasks.common import (
    RunContext,
    TaskResult,
    cached_text_answers,
    fmt,
    generation_dict,
    write_jsonl,
)
from blsp_emo.evaluation.teacher_forcing import Student, TeacherForcedScores, gap_closed, score_students
from blsp_emo.model.types import Reply
from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS

DEFAULT_MAX_NEW_TOKENS = 48  # the stage-1 target length (docs/method.md §3)
# Bumped whenever this task's numbers change or gain columns: `eval all` does not resume a results.json
# written by an older revision (it would lack the new columns). 2: teacher-forced KL/top-1, ctc_wer;
# 3: repeat4 (share of replies with a repeated 4-word run); 4: reference_echo, cosine_by_reading.
REVISION = 4
READ_WELL_WER = 0.5  # cosine_by_reading: an utterance whose words were read with at most this WER
STUDENTS = ("model", "no_speech", "transcript")


def semantic_teacher_forcing(
    system: System, utterances: list[Utterance], references: list[Reply], batch_size: int
) -> dict[str, TeacherForcedScores]:
    """Teacher-forced scores along the reference replies for the system and its two references.

    ``"model"``: the system's own input (a BLSP-Emo model: its speech embeddings with partial LoRA at
    the speech positions; a cascade: the text it shows the LLM). ``"no_speech"``: the speech slots of the
    BLSP-Emo prompt filled with zero vectors, base LLM. ``"transcript"``: those slots holding the
    transcript's own token embeddings (its words with their leading space, as the teacher sees them),
    base LLM. The teacher is the LLM on ``instruction + transcript`` as text, as the reference was made.
    """
    from blsp_emo.model.alignment import ctc_target_ids

    model, processor = system.chat.model, system.chat.processor
    prompt, instruction = SYSTEM_PROMPTS["default"], INSTRUCTIONS["continue"]
    table = model.llm.get_input_embeddings()
    device = next(table.parameters()).device
    # The references need the BLSP-Emo prompt with speech slots even when the system is a cascade.
    slotted = BlspEmoSystem(name="speech slots", chat=system.chat, llm_name=system.llm_name)
    out = {name: TeacherForcedScores() for name in STUDENTS}
    for start in range(0, len(utterances), batch_size):
        chunk = utterances[start : start + batch_size]
        replies = references[start : start + batch_size]
        queries = [Query(prompt, instruction, u) for u in chunk]
        own, _ = system.conversations(queries)
        speech = own if isinstance(system, BlspEmoSystem) else slotted.conversations(queries)[0]
        with torch.no_grad():
            transcript = [
                table(
                    torch.tensor(
                        ctc_target_ids(processor.tokenizer, u.text),
                        dtype=torch.long,
                        device=device,
                    )
                )
                for u in chunk
            ]
        students = {
            "model": Student(own, speech="model", lora=True),
            "no_speech": Student(speech, speech="zeros", lora=False),
            "transcript": Student(speech, speech=transcript, lora=False),
        }
        scores = score_students(
            model,
            processor,
            students,
            [text_conversation(prompt, instruction + u.text) for u in chunk],
            [r.text for r in replies],
            [r.finish_reason == "length" for r in replies],
            batch_size,
        )
        for name, value in scores.items():
            out[name].extend(value)
    return out


def _summary(scores: TeacherForcedScores) -> dict:
    """Token-level KL and top-1 over the set, and their per-utterance means with a 95% interval."""
    kl = [v for v in scores.per_utterance_kl() if v is not None]
    top1 = [v for v in scores.per_utterance_top1() if v is not None]
    return {
        "kl": scores.kl,
        "top1": scores.top1,
        "kl_per_utterance": mean_and_ci(kl),
        "top1_per_utterance": mean_and_ci(top1),
    }


def ctc_readings(system: System, utterances: list[Utterance], batch_size: int) -> list[str] | None:
    """Greedy-CTC readings of a BLSP-Emo model's alignment head, or None when there is no head."""
    if not isinstance(system, BlspEmoSystem) or system.chat.model.alignment_head is None:
        return None
    from blsp_emo.model.alignment import ctc_transcripts

    model = system.chat.model

    readings: list[str] = []
    for start in range(0, len(utterances), batch_size):
        chunk = utterances[start : start + batch_size]
        readings += ctc_transcripts(model, system.chat.processor, [u.load() for u in chunk])
    return readings


def reference_echo(texts: list[str], references: list[str]) -> float:
    """The share of references that begin by repeating the transcript word for word (after
    :func:`~blsp_emo.textnorm.normalize_text`): where it is high, the reply cosine mostly measures whether
    the system heard the words."""
    from blsp_emo.textnorm import normalize_text

    echoes = 0
    for text, reference in zip(texts, references, strict=True):
        words, ref = normalize_text(text).split(), normalize_text(reference).split()
        echoes += bool(words) and ref[: len(words)] == words
    return echoes / max(len(texts), 1)


def cosine_by_reading(texts: list[str], readings: list[str], cosine: list[float]) -> dict[str, Any]:
    """Reply cosine over the utterances whose words the system read well (per-utterance WER of its
    reading, an ASR transcript or the greedy-CTC reading, at most ``READ_WELL_WER``) and the rest."""
    from blsp_emo.textnorm import word_error_rate

    groups: dict[str, list[float]] = {"read_well": [], "read_badly": []}
    for text, reading, c in zip(texts, readings, cosine, strict=True):
        well = word_error_rate([text], [reading]) <= READ_WELL_WER
        groups["read_well" if well else "read_badly"].append(c)
    out: dict[str, Any] = {"wer_threshold": READ_WELL_WER}
    for name, values in groups.items():
        out[name] = {"n": len(values), "mean": sum(values) / len(values) if values else None}
    return out


def run_semantic(system: System, utterances: list[Utterance], ctx: RunContext) -> TaskResult:
    """Cosine and ROUGE-L between the continuation of the speech and of its transcript, teacher-forced
    KL and top-1 agreement along the transcript's continuation, and WERs of any transcripts."""
    from blsp_emo.textnorm import word_error_rate

    decoding = ctx.with_max_new_tokens(DEFAULT_MAX_NEW_TOKENS)
    prompt, instruction = SYSTEM_PROMPTS["default"], INSTRUCTIONS["continue"]
    answers = system.answers(
        [Query(prompt, instruction, u) for u in utterances],
        decoding,
        ctx.batch_size,
        f"{system.name} semantic",
    )
    references = cached_text_answers(
        system,
        prompt,
        [instruction + u.text for u in utterances],
        decoding,
        ctx.batch_size,
        ctx.cache_dir,
        desc=f"{system.llm_name} reference",
    )
    hyp = [a.text for a in answers]
    ref = [r.text for r in references]
    cosine = get_embedder(ctx.embedder).similarity(hyp, ref).tolist()
    rouge = [rouge_l(r, h) for r, h in zip(ref, hyp)]
    forced = semantic_teacher_forcing(system, utterances, references, ctx.batch_size)
    gap = gap_closed(forced["model"].kl, forced["no_speech"].kl, forced["transcript"].kl)
    metrics: dict = {
        "cosine": mean_and_ci(cosine),
        "rouge_l": mean_and_ci(rouge),
        "exact_match": sum(h == r for h, r in zip(hyp, ref)) / len(hyp),
        "embedder": ctx.embedder,
        "teacher_forced": {
            "temperature": 1.0,
            "response_tokens": sum(forced["model"].tokens),
            "truncated_references": sum(r.finish_reason == "length" for r in references),
            **{name: _summary(forced[name]) for name in STUDENTS},
            "gap_closed": gap,
        },
    }
    headline: dict[str, float | None] = {
        "cosine": metrics["cosine"]["mean"],
        "rouge_l": metrics["rouge_l"]["mean"],
        "gap_closed": gap,
        "kl": forced["model"].kl,
        "top1": forced["model"].top1,
        "repeat4": repeated_ngram_rate(hyp),
    }
    shown = [a.user_text for a in answers]
    texts = [u.text for u in utterances]
    metrics["reference_echo"] = reference_echo(texts, ref)
    heard: list[str] | None = None  # what the system read of the words: ASR transcripts or CTC readings
    if isinstance(system, CascadeSystem) and system.kind != "cascade-text":
        heard = system.transcripts(utterances)
        metrics["asr_wer"] = word_error_rate(texts, heard)
        headline["asr_wer"] = metrics["asr_wer"]
    readings = ctc_readings(system, utterances, ctx.batch_size)
    if readings is not None:
        heard = readings
        metrics["ctc_wer"] = word_error_rate(texts, readings)
        headline["ctc_wer"] = metrics["ctc_wer"]
    if heard is not None:
        metrics["cosine_by_reading"] = cosine_by_reading(texts, heard, cosine)
    plot_histogram(
        cosine, ctx.out_dir / "cosine.png", f"{system.name}: speech vs transcript continuation", "cosine"
    )
    per_utterance: dict[str, list[Any]] = {
        "kl": forced["model"].per_utterance_kl(),
        "top1": forced["model"].per_utterance_top1(),
        "kl_no_speech": forced["no_speech"].per_utterance_kl(),
        "top1_no_speech": forced["no_speech"].per_utterance_top1(),
        "kl_transcript": forced["transcript"].per_utterance_kl(),
        "top1_transcript": forced["transcript"].per_utterance_top1(),
        "response_tokens": forced["model"].tokens,
    }
    rows = []
    for i, u in enumerate(utterances):
        row = {
            "id": u.id,
            "text": u.text,
            "speech_reply": hyp[i],
            "text_reply": ref[i],
            "cosine": cosine[i],
            "rouge_l": rouge[i],
            "user_text": shown[i],
            **{key: values[i] for key, values in per_utterance.items()},
        }
        if readings is not None:
            row["ctc_text"] = readings[i]
        rows.append(row)
    write_jsonl(ctx.out_dir / "predictions.jsonl", rows)
    tf = metrics["teacher_forced"]
    section = (
        f"Continuation of the speech vs the same LLM's continuation of the transcript (n={len(hyp)}): "
        f"cosine **{fmt(metrics['cosine']['mean'])}** (+/- {fmt(metrics['cosine']['ci95'])}), "
        f"ROUGE-L **{fmt(metrics['rouge_l']['mean'])}** (+/- {fmt(metrics['rouge_l']['ci95'])}), "
        f"identical replies {fmt(metrics['exact_match'])}."
    )
    forced_section = (
        f"Teacher-forced along the transcript's continuation ({tf['response_tokens']} response tokens, "
        f"{tf['truncated_references']} references cut by the token cap): KL(teacher || student) at T = 1 "
        f"per token and top-1 agreement with the teacher, the LLM fed the transcript as text. "
        f"This system: KL **{fmt(tf['model']['kl'])}**, top-1 **{fmt(tf['model']['top1'])}**. "
        f"No speech (zero vectors in the speech slots, base LLM): KL {fmt(tf['no_speech']['kl'])}, "
        f"top-1 {fmt(tf['no_speech']['top1'])}. Transcript (its token embeddings in the speech slots, "
        f"base LLM; the ceiling): KL {fmt(tf['transcript']['kl'])}, top-1 {fmt(tf['transcript']['top1'])}. "
        f"Gap closed (KL_no_speech - KL) / (KL_no_speech - KL_transcript): **{fmt(gap)}**."
    )
    if "asr_wer" in metrics:
        section += f" Word error rate of the cascade's transcripts: {fmt(metrics['asr_wer'])}."
    if "ctc_wer" in metrics:
        forced_section += (
            f" Word error rate of the greedy-CTC reading of the alignment head: {fmt(metrics['ctc_wer'])}."
        )
    section += (
        f" The reference begins by repeating the transcript in {fmt(metrics['reference_echo'])} of the "
        "utterances (there the cosine mostly measures whether the words were heard)."
    )
    if "cosine_by_reading" in metrics:
        by = metrics["cosine_by_reading"]
        well, badly = by["read_well"], by["read_badly"]
        section += (
            f" Cosine where the system's reading of the words has a WER of at most {READ_WELL_WER}: "
            f"{fmt(well['mean'])} (n={well['n']}); elsewhere {fmt(badly['mean'])} (n={badly['n']})."
        )
    return TaskResult(
        task="semantic",
        system=system.describe(),
        data=ctx.data,
        generation=generation_dict(decoding, ctx.batch_size),
        metrics=metrics,
        headline=headline,
        sections=[section, forced_section],
        plots=["cosine.png"],
    )
