"""Task ``instructions``: spoken instructions (our SpeechAlpaca), emotion accuracy and empathy.

Two measurements on the same utterances (build them with ``blsp-emo eval build-instructions``):

1. *Emotion accuracy*: the SER recognition prompt and the published label rule, as in task ``ser``.
2. *Empathy*: the system's reply to the spoken instruction (empathetic system prompt, the speech is the
   whole user turn, 256 new tokens as in the paper); emotion agreement against five teacher replies
   that the same LLM writes when it is TOLD the emotion
   (:data:`~blsp_emo.evaluation.spoken_instructions.INSTRUCTION_TEACHER_PROMPT` + the instruction,
   empathetic system prompt, greedy, 128 new tokens); optional LLM-judge quality and empathy.
"""

from __future__ import annotations

from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.evaluation.spoken_instructions import INSTRUCTION_TEACHER_PROMPT
from blsp_emo.evaluation.systems import Query, System
from blsp_emo.evaluation.tasks.common import RunContext, TaskResult, generation_dict, write_jsonl
from blsp_emo.evaluation.tasks.empathy import score_replies, teacher_info, teacher_texts
from blsp_emo.evaluation.tasks.ser import recognize
from blsp_emo.prompts import EMOTIONS, SYSTEM_PROMPTS

DEFAULT_MAX_NEW_TOKENS = 256  # the paper's length for spoken instructions
TEACHER_MAX_NEW_TOKENS = 128


def run_instructions(system: System, utterances: list[Utterance], ctx: RunContext) -> TaskResult:
    """Emotion accuracy and empathy on spoken instructions."""
    ser_metrics, ser_headline, ser_sections, ser_plots, ser_rows = recognize(
        system, utterances, ctx, ctx.out_dir, prefix="emotion_"
    )
    decoding = ctx.with_max_new_tokens(DEFAULT_MAX_NEW_TOKENS)
    queries = [Query(SYSTEM_PROMPTS["empathetic"], "", u) for u in utterances]
    answers = system.answers(queries, decoding, ctx.batch_size, desc=f"{system.name} instructions")
    teachers = teacher_texts(
        system, [u.text for u in utterances], ctx, INSTRUCTION_TEACHER_PROMPT, TEACHER_MAX_NEW_TOKENS
    )
    replies = [a.text for a in answers]
    emp_metrics, emp_headline, emp_rows, emp_plots, emp_section = score_replies(
        system, utterances, replies, teachers, ctx
    )
    emp_metrics["teacher"] = teacher_info(ctx, INSTRUCTION_TEACHER_PROMPT, TEACHER_MAX_NEW_TOKENS)
    write_jsonl(
        ctx.out_dir / "predictions.jsonl",
        [
            {
                "id": u.id,
                "text": u.text,
                "emotion": u.emotion,
                "recognition": s,
                "reply": r,
                "user_text": a.user_text,
                "teacher": dict(zip(EMOTIONS, t)),
                **e,
            }
            for u, s, r, a, t, e in zip(utterances, ser_rows, replies, answers, teachers, emp_rows)
        ],
    )
    headline: dict[str, float | None] = {
        "emotion_accuracy": ser_headline["accuracy"],
        "emotion_uar": ser_headline["uar"],
        "head_accuracy": ser_headline["head_accuracy"],
        **emp_headline,
    }
    generation = generation_dict(decoding, ctx.batch_size)
    return TaskResult(
        task="instructions",
        system=system.describe(),
        data=ctx.data,
        generation={"reply": generation, "recognition": ser_metrics.pop("generation")},
        metrics={"emotion": ser_metrics, "empathy": emp_metrics},
        headline=headline,
        sections=["## Emotion recognition", *ser_sections, "## Empathy of the replies", emp_section],
        plots=ser_plots + emp_plots,
    )
