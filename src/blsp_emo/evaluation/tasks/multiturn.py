"""Task ``multiturn``: empathetic replies at the end of scripted multi-turn conversations.

**Conversations.** Each evaluated utterance is the LAST user turn of one conversation of ``--turns`` N
(2-4) user turns. The N-1 earlier user turns are other utterances of the same selection, all of ONE
emotion, the conversation's earlier mood: in *steady* conversations (even positions) it is the last
turn's emotion; in *shift* conversations (odd positions) it is another emotion, drawn with the run's seed
among those the selection has. Earlier turns are taken from the last turn's speaker first, never repeat a
clip and never repeat a transcript within a conversation; the draw is seeded (``--seed``), so every
system gets the same conversations. Each earlier user turn is followed by an assistant turn given as
text: the teacher text that the empathy task writes for that turn's transcript and TRUE emotion (the
stage-2 teacher prompt; with ``--teacher-targets`` the stage-2 target), i.e. an on-track empathetic
reply. Systems answer the whole conversation under the empathetic system prompt: a BLSP-Emo model hears
every user turn as speech (earlier speech turns stay speech embeddings, as in ``chat``); a cascade reads
every user turn as the text it hears (transcript or Whisper ASR, with its emotion hint for
cascade-asr-ser / -prosody), so earlier turns reach it as text.

**Scores at the last turn.**

- *Emotion agreement*, *margin*, *repeat4* and the optional judge exactly as in task ``empathy``: the
  reply against the five teacher texts of the last turn's transcript, credited when the closest one
  (all-MiniLM-L6-v2 cosine; 1/k for a k-way tie) is the last turn's emotion. The judge sees the last
  turn only (its transcript, its emotion and the reply).
- *Consistency*: whether the reply stays within the emotions the user showed in the conversation. The
  reply's emotion is the emotion of its closest last-turn teacher text (the same classifier of replies
  as the agreement; a k-way tie is k candidate emotions); a conversation earns the share of the reply's
  candidate emotions that are among the emotions of its user turns (earlier mood and last turn). In a
  steady conversation this equals the agreement; in a shift conversation a reply in the earlier mood is
  consistent but not in agreement, and a reply in an emotion the user never showed is neither. Its
  chance level (a reply emotion drawn uniformly) is the mean share of the five emotions a conversation
  shows, reported beside it. *Carry-over* is the share of shift conversations whose reply takes the
  earlier mood (consistency minus agreement there).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from blsp_emo.errors import UserError
from blsp_emo.evaluation.dataset import Utterance, emotion_labels
from blsp_emo.evaluation.metrics import mean_and_ci
from blsp_emo.evaluation.systems import Query, System
from blsp_emo.evaluation.tasks.common import RunContext, TaskResult, fmt, generation_dict, write_jsonl
from blsp_emo.evaluation.tasks.empathy import (
    DEFAULT_MAX_NEW_TOKENS,
    TEACHER_MAX_NEW_TOKENS,
    score_replies,
    teacher_info,
    teacher_texts,
)
from blsp_emo.prompts import EMOTION_TARGET_INSTRUCTION, EMOTIONS, SYSTEM_PROMPTS

MIN_TURNS, MAX_TURNS = 2, 4
DEFAULT_TURNS = 3
ARCS = ("steady", "shift")


@dataclass(frozen=True)
class Conversation:
    """A scripted conversation: user turns oldest first (the last one is scored) and its arc."""

    id: str
    turns: tuple[Utterance, ...]
    arc: str  # "steady": every turn in one emotion; "shift": the last turn's emotion differs

    @property
    def last(self) -> Utterance:
        """The scored user turn."""
        return self.turns[-1]

    @property
    def earlier(self) -> tuple[Utterance, ...]:
        """The user turns before the scored one."""
        return self.turns[:-1]

    @property
    def emotions(self) -> set[str]:
        """The emotions the user shows in the conversation."""
        return {u.emotion for u in self.turns if u.emotion is not None}


def _earlier_turns(
    last: Utterance, mood: str, pool: list[Utterance], count: int, rng: random.Random
) -> list[Utterance] | None:
    """``count`` utterances of emotion ``mood`` for the turns before ``last`` (same speaker first, no clip
    or transcript twice); None when the pool has too few."""
    candidates = [u for u in pool if u.emotion == mood and u.id != last.id and u.text != last.text]
    same = [u for u in candidates if u.speaker == last.speaker]
    other = [u for u in candidates if u.speaker != last.speaker]
    rng.shuffle(same)
    rng.shuffle(other)
    chosen: list[Utterance] = []
    for u in same + other:
        if u.text not in {c.text for c in chosen}:
            chosen.append(u)
        if len(chosen) == count:
            return chosen
    return None


def build_conversations(utterances: list[Utterance], turns: int, seed: int = 0) -> list[Conversation]:
    """One conversation of ``turns`` user turns ending in each utterance, in the utterances' order.

    Conversation i is steady when i is even and a shift when i is odd (see the module docstring); the
    earlier mood of a shift and the earlier clips are drawn with ``seed``.
    """
    if not MIN_TURNS <= turns <= MAX_TURNS:
        raise UserError(f"--turns must be between {MIN_TURNS} and {MAX_TURNS}, got {turns}")
    missing = [u.id for u in utterances if u.emotion is None]
    if missing:
        raise UserError(f"multi-turn conversations need emotion labels; {missing[0]} has none")
    labels = emotion_labels(utterances)
    present = sorted(set(labels), key=EMOTIONS.index)
    rng = random.Random(seed)
    conversations = []
    for i, (last, emotion) in enumerate(zip(utterances, labels)):
        arc = ARCS[i % 2]
        moods = [emotion] if arc == "steady" else [e for e in present if e != emotion]
        rng.shuffle(moods)
        earlier = None
        for mood in moods:
            earlier = _earlier_turns(last, mood, utterances, turns - 1, rng)
            if earlier is not None:
                break
        if earlier is None:
            wanted = f"{last.emotion!r}" if arc == "steady" else f"any emotion but {last.emotion!r}"
            raise UserError(
                f"a {turns}-turn {arc} conversation ending in {last.id!r} needs {turns - 1} other "
                f"utterances with distinct transcripts in {wanted}; the selection has too few "
                "(evaluate more utterances or fewer --turns)"
            )
        conversations.append(Conversation(f"c{i:04d}-{last.id}", (*earlier, last), arc))
    return conversations


def consistency(closest: list[list[str]], conversations: list[Conversation]) -> tuple[dict, list[float]]:
    """Consistency of reply emotions (``closest``: the tied closest emotions per reply) with the
    conversations' emotions; returns a summary (overall, per arc, chance, carry-over) and the credits."""
    credits = [
        sum(e in c.emotions for e in best) / len(best) for best, c in zip(closest, conversations, strict=True)
    ]
    carry = [
        sum(e in {u.emotion for u in c.earlier} for e in best) / len(best)
        for best, c in zip(closest, conversations)
        if c.arc == "shift"
    ]
    per_arc = {
        arc: float(np.mean([x for x, c in zip(credits, conversations) if c.arc == arc]))
        if any(c.arc == arc for c in conversations)
        else None
        for arc in ARCS
    }
    summary = {
        "consistency": float(np.mean(credits)),
        "chance": float(np.mean([len(c.emotions) for c in conversations])) / len(EMOTIONS),
        "per_arc": per_arc,
        "carry_over": float(np.mean(carry)) if carry else None,
    }
    return summary, credits


def _section(turns: int, conversations: list[Conversation], summary: dict, agreement: dict) -> str:
    arcs = {arc: sum(c.arc == arc for c in conversations) for arc in ARCS}
    per_arc = agreement["per_arc"]
    return (
        f"{len(conversations)} conversations of {turns} user turns ({arcs['steady']} steady, "
        f"{arcs['shift']} with the emotion shifting at the last turn). Consistency with the conversation's "
        f"emotions **{fmt(summary['consistency'])}** (chance {fmt(summary['chance'])}; steady "
        f"{fmt(summary['per_arc']['steady'])}, shift {fmt(summary['per_arc']['shift'])}); agreement with the "
        f"last turn's emotion: steady {fmt(per_arc['steady'])}, shift {fmt(per_arc['shift'])}; carry-over of "
        f"the earlier mood in shift conversations {fmt(summary['carry_over'])}."
    )


def run_multiturn(system: System, utterances: list[Utterance], ctx: RunContext) -> TaskResult:
    """Replies at the last turn of scripted conversations: agreement, judge and consistency."""
    decoding = ctx.with_max_new_tokens(DEFAULT_MAX_NEW_TOKENS)
    conversations = build_conversations(utterances, ctx.turns, ctx.seed)
    teachers = teacher_texts(system, [u.text for u in utterances], ctx)
    by_id = {u.id: group for u, group in zip(utterances, teachers)}

    def assistant_text(u: Utterance) -> str:  # the on-track reply to an earlier turn
        return by_id[u.id][EMOTIONS.index(u.emotion)]

    queries = [
        Query(
            SYSTEM_PROMPTS["empathetic"],
            "",
            c.last,
            history=tuple((u, assistant_text(u)) for u in c.earlier),
        )
        for c in conversations
    ]
    answers = system.answers(queries, decoding, ctx.batch_size, desc=f"{system.name} multiturn")
    replies = [a.text for a in answers]
    last = [c.last for c in conversations]
    last_teachers = [by_id[u.id] for u in last]
    metrics, headline, rows, plots, section = score_replies(system, last, replies, last_teachers, ctx)
    summary, credits = consistency([r["closest"] for r in rows], conversations)
    agreement_per_arc = {
        arc: float(np.mean([r["credit"] for r, c in zip(rows, conversations) if c.arc == arc]))
        if any(c.arc == arc for c in conversations)
        else None
        for arc in ARCS
    }
    summary["agreement_per_arc"] = agreement_per_arc
    summary["consistency_ci"] = mean_and_ci(credits)
    metrics["consistency"] = summary
    metrics["teacher"] = teacher_info(ctx, EMOTION_TARGET_INSTRUCTION, TEACHER_MAX_NEW_TOKENS)
    metrics["conversations"] = {
        "turns": ctx.turns,
        "n": len(conversations),
        **{arc: sum(c.arc == arc for c in conversations) for arc in ARCS},
        "same_speaker_turns": sum(u.speaker == c.last.speaker for c in conversations for u in c.earlier),
        "earlier_turns": sum(len(c.earlier) for c in conversations),
    }
    headline = {
        "emotion_agreement": headline.pop("emotion_agreement"),
        "consistency": summary["consistency"],
        "carry_over": summary["carry_over"],
        **headline,
    }
    write_jsonl(
        ctx.out_dir / "predictions.jsonl",
        [
            {
                "id": c.id,
                "arc": c.arc,
                "turns": [
                    {"id": u.id, "text": u.text, "emotion": u.emotion, "assistant": assistant_text(u)}
                    for u in c.earlier
                ]
                + [{"id": c.last.id, "text": c.last.text, "emotion": c.last.emotion}],
                "reply": r,
                "user_text": a.user_text,
                "teacher": dict(zip(EMOTIONS, t)),
                "consistency": k,
                **row,
            }
            for c, r, a, t, k, row in zip(conversations, replies, answers, last_teachers, credits, rows)
        ],
    )
    return TaskResult(
        task="multiturn",
        system=system.describe(),
        data=ctx.data,
        generation=generation_dict(decoding, ctx.batch_size),
        metrics=metrics,
        headline=headline,
        sections=[_section(ctx.turns, conversations, summary, {"per_arc": agreement_per_arc}), section],
        plots=plots,
    )
