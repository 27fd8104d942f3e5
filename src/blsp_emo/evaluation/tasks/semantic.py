"""Task ``semantic``: does the system understand the words?

The system continues the utterance (``Continue the following sentence in a coherent style: `` +
speech, default system prompt, the stage-1 prompt); the reference is the same LLM's continuation of the
ground-truth transcript with the same prompt and decoding. Scores: all-MiniLM-L6-v2 cosine and ROUGE-L
F1 between the two. ``cascade-text`` reproduces the reference exactly (an upper bound of 1.0); ASR
cascades also report the word error rate of their transcripts.
"""

from __future__ import annotations

from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.evaluation.embeddings import get_embedder
from blsp_emo.evaluation.metrics import mean_and_ci, rouge_l
from blsp_emo.evaluation.plots import plot_histogram
from blsp_emo.evaluation.systems import CascadeSystem, Query, System
from blsp_emo.evaluation.tasks.common import (
    RunContext,
    TaskResult,
    cached_text_answers,
    fmt,
    generation_dict,
    write_jsonl,
)
from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS

DEFAULT_MAX_NEW_TOKENS = 48  # the stage-1 target length (SPEC.md section 3)


def run_semantic(system: System, utterances: list[Utterance], ctx: RunContext) -> TaskResult:
    """Cosine and ROUGE-L between the continuation of the speech and of its transcript."""
    settings = ctx.with_max_new_tokens(DEFAULT_MAX_NEW_TOKENS)
    prompt, instruction = SYSTEM_PROMPTS["default"], INSTRUCTIONS["continue"]
    answers = system.answers(
        [Query(prompt, instruction, u) for u in utterances], settings, f"{system.name} semantic"
    )
    references = cached_text_answers(
        system,
        prompt,
        [instruction + u.text for u in utterances],
        settings,
        ctx.cache_dir,
        desc=f"{system.llm_name} reference",
    )
    hyp = [a.text for a in answers]
    ref = [r.text for r in references]
    cosine = get_embedder(ctx.embedder).similarity(hyp, ref).tolist()
    rouge = [rouge_l(r, h) for r, h in zip(ref, hyp)]
    metrics: dict = {
        "cosine": mean_and_ci(cosine),
        "rouge_l": mean_and_ci(rouge),
        "exact_match": sum(h == r for h, r in zip(hyp, ref)) / len(hyp),
        "embedder": ctx.embedder,
    }
    headline: dict[str, float | None] = {
        "cosine": metrics["cosine"]["mean"],
        "rouge_l": metrics["rouge_l"]["mean"],
    }
    shown = [a.user_text for a in answers]
    if isinstance(system, CascadeSystem) and system.kind != "cascade-text":
        from blsp_emo.textnorm import word_error_rate

        metrics["asr_wer"] = word_error_rate([u.text for u in utterances], system.transcripts(utterances))
        headline["asr_wer"] = metrics["asr_wer"]
    plot_histogram(
        cosine, ctx.out_dir / "cosine.png", f"{system.name}: speech vs transcript continuation", "cosine"
    )
    write_jsonl(
        ctx.out_dir / "predictions.jsonl",
        [
            {
                "id": u.id,
                "text": u.text,
                "speech_reply": h,
                "text_reply": r,
                "cosine": c,
                "rouge_l": rl,
                "user_text": s,
            }
            for u, h, r, c, rl, s in zip(utterances, hyp, ref, cosine, rouge, shown)
        ],
    )
    section = (
        f"Continuation of the speech vs the same LLM's continuation of the transcript (n={len(hyp)}): "
        f"cosine **{fmt(metrics['cosine']['mean'])}** (+/- {fmt(metrics['cosine']['ci95'])}), "
        f"ROUGE-L **{fmt(metrics['rouge_l']['mean'])}** (+/- {fmt(metrics['rouge_l']['ci95'])}), "
        f"identical replies {fmt(metrics['exact_match'])}."
    )
    if "asr_wer" in metrics:
        section += f" Word error rate of the cascade's transcripts: {fmt(metrics['asr_wer'])}."
    return TaskResult(
        task="semantic",
        system=system.describe(),
        data=ctx.data,
        generation=generation_dict(settings),
        metrics=metrics,
        headline=headline,
        sections=[section],
        plots=["cosine.png"],
    )
