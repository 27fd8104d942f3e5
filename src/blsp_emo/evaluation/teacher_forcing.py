"""Teacher-forced scores: how close the LLM's next-token distributions on a student input are to the
teacher's, along a fixed reply.

The teacher is the LLM fed the transcript as text; the student is the same LLM fed another input for the
same words (the speech embeddings, a cascade's transcript, zeros, the transcript's own token embeddings).
Both are forced along the same response (the teacher's own continuation), and at every position that
predicts a response token we score

- KL(teacher || student) at temperature 1: ``sum_v p_t(v) (log p_t(v) - log p_s(v))``, and
- top-1 agreement: whether the student's argmax is the teacher's argmax.

Unlike the generated replies (one greedy path, so one early difference changes every later word), this
looks at every position of the reference reply, which makes it a steadier held-out measure of whether
the words came across. The teacher's logits are computed once per batch and shared by every student.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from blsp_emo.model.processor import IGNORE_INDEX, SPEECH_TOKEN_ID, EncodedConversation, Message, batch_to

# Rows of (positions x vocabulary) logits scored at once: bounds the float64 softmax copies to tens of
# MB even with SmolLM2's 49k vocabulary.
_CHUNK_POSITIONS = 64


@dataclass(frozen=True)
class Student:
    """One student input for every utterance.

    ``speech`` says what fills the speech slots of ``conversations``: ``"model"`` = the model's own speech
    embeddings (the adapter's output, as in training and generation); ``"zeros"`` = zero vectors, the
    same slot count; or one (n, D) tensor per conversation (exactly one audio part each) that replaces the
    speech, the slot run resized to its n rows. Text-only conversations ignore it. ``lora`` applies partial
    LoRA at the speech positions, as ``BlspEmoModel.forward`` does; off, the pass is the base LLM.
    """

    conversations: Sequence[Sequence[Message]]
    speech: str | Sequence[torch.Tensor] = "model"
    lora: bool = True


@dataclass
class TeacherForcedScores:
    """Per-utterance sums over the response positions: KL, the number of positions, top-1 agreements."""

    kl_sums: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    agreements: list[int] = field(default_factory=list)

    def extend(self, other: TeacherForcedScores) -> None:
        """Append another set of utterances' scores."""
        self.kl_sums += other.kl_sums
        self.tokens += other.tokens
        self.agreements += other.agreements

    @property
    def kl(self) -> float | None:
        """Mean KL per response token over the whole set (sum of token KLs / number of tokens)."""
        total = sum(self.tokens)
        return sum(self.kl_sums) / total if total else None

    @property
    def top1(self) -> float | None:
        """Share of response positions where the student's argmax is the teacher's."""
        total = sum(self.tokens)
        return sum(self.agreements) / total if total else None

    def per_utterance_kl(self) -> list[float | None]:
        """Mean KL per response token of each utterance (None for an empty response)."""
        return [k / n if n else None for k, n in zip(self.kl_sums, self.tokens)]

    def per_utterance_top1(self) -> list[float | None]:
        """Top-1 agreement of each utterance (None for an empty response)."""
        return [a / n if n else None for a, n in zip(self.agreements, self.tokens)]


def gap_closed(kl_model: float | None, kl_floor: float | None, kl_ceiling: float | None) -> float | None:
    """``(KL_floor - KL_model) / (KL_floor - KL_ceiling)``: 0 = no better than the floor (no speech),
    1 = as good as the ceiling (the transcript). None when undefined (a missing value, or a floor that
    is not above the ceiling)."""
    if kl_model is None or kl_floor is None or kl_ceiling is None:
        return None
    span = kl_floor - kl_ceiling
    if not span > 1e-12:
        return None
    return (kl_floor - kl_model) / span


def _resize_slots(encoded: EncodedConversation, count: int) -> EncodedConversation:
    """The conversation with its one run of speech slots resized to ``count`` (audio dropped)."""
    if len(encoded.audios) != 1:
        raise ValueError(
            f"replacing the speech needs one audio part per conversation, got {len(encoded.audios)}"
        )
    slots = [i for i, t in enumerate(encoded.input_ids) if t == SPEECH_TOKEN_ID]
    start, end = slots[0], slots[-1] + 1
    ids = encoded.input_ids[:start] + [SPEECH_TOKEN_ID] * count + encoded.input_ids[end:]
    labels = encoded.labels[:start] + [IGNORE_INDEX] * count + encoded.labels[end:]
    return EncodedConversation(ids, labels, [])


def _encode(
    processor,
    conversations: Sequence[Sequence[Message]],
    rows: range,
    responses: Sequence[str],
    truncated: Sequence[bool],
) -> list[EncodedConversation]:
    """The conversations of ``rows``, each followed by its response (no end-of-turn when truncated)."""
    return [
        processor.encode(conversations[i], response=responses[i], truncated=bool(truncated[i])) for i in rows
    ]


def _response_rows(labels: torch.Tensor) -> list[int]:
    """Response positions per row, in the order ``BlspEmoModel._response_logits`` flattens them."""
    return (labels[:, 1:] != IGNORE_INDEX).sum(dim=1).tolist()


def _token_scores(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position KL(teacher || student) at T = 1 and argmax agreement of (N, V) logits.

    In float64: log-probabilities are about -log(V) while a close student differs from the teacher by
    far less, so float32 rounding of the two log-softmaxes would be a visible share of a small KL.
    """
    kls, agree = [], []
    for start in range(0, student.shape[0], _CHUNK_POSITIONS):
        s = student[start : start + _CHUNK_POSITIONS].double()
        t = teacher[start : start + _CHUNK_POSITIONS].double()
        log_s, log_t = s.log_softmax(-1), t.log_softmax(-1)
        kls.append((log_t.exp() * (log_t - log_s)).sum(-1))
        agree.append(s.argmax(-1) == t.argmax(-1))
    if not kls:
        return torch.zeros(0), torch.zeros(0, dtype=torch.bool)
    return torch.cat(kls).cpu(), torch.cat(agree).cpu()


def _student_logits(
    model, processor, student: Student, encoded: list[EncodedConversation], rows: range, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Response-position logits (N, V) and tokens (N,) of one batch of a student."""
    speech = student.speech
    wanted: list[torch.Tensor] = []
    if not isinstance(speech, str):
        wanted = [speech[i] for i in rows]
        encoded = [_resize_slots(e, int(w.shape[0])) if e.audios else e for e, w in zip(encoded, wanted)]
    elif speech == "zeros":
        encoded = [EncodedConversation(e.input_ids, e.labels, []) for e in encoded]  # no mel needed
    elif speech != "model":
        raise ValueError(f"speech must be 'model', 'zeros' or a list of tensors, got {speech!r}")
    batch = processor.collate(encoded, with_labels=True)
    batch = batch_to(batch, device)
    ids = batch["input_ids"]
    n_slots = int((ids == SPEECH_TOKEN_ID).sum())
    if speech == "model":
        embeds, speech_mask, _, _ = model.prepare_embeddings(batch)
    else:
        dim = model.llm.get_input_embeddings().embedding_dim
        if speech == "zeros":
            flat = torch.zeros(n_slots, dim, device=device)
        else:  # every conversation's rows in batch order: embed_inputs fills the slots in that order
            parts = [w for e, w in zip(encoded, wanted) if SPEECH_TOKEN_ID in e.input_ids]
            flat = torch.cat(parts).to(device) if parts else torch.zeros(0, dim, device=device)
        lengths = torch.tensor([flat.shape[0]], device=device)
        embeds, speech_mask = model.embed_inputs(ids, flat[None], lengths)
    with model.speech_positions(speech_mask if student.lora else None):  # LoRA for this pass only
        hidden = model._llm_hidden(embeds, batch["attention_mask"])
    return model._response_logits(hidden, batch["labels"])


@torch.no_grad()
def score_students(
    model,
    processor,
    students: Mapping[str, Student],
    teacher_conversations: Sequence[Sequence[Message]],
    responses: Sequence[str],
    truncated: Sequence[bool],
    batch_size: int = 4,
) -> dict[str, TeacherForcedScores]:
    """Teacher-forced KL(teacher || student) and top-1 agreement of several students along the same replies.

    ``model`` is a ``BlspEmoModel`` and ``processor`` its processor. Utterance i is the teacher's
    ``teacher_conversations[i]`` (text only) and each student's ``conversations[i]``, both followed by
    ``responses[i]`` (without an end-of-turn token when ``truncated[i]``: a reply cut by the token cap).
    The teacher is the LLM with no LoRA. Returns one :class:`TeacherForcedScores` per student name.
    """
    n = len(teacher_conversations)
    if len(responses) != n or len(truncated) != n:
        raise ValueError(f"{n} teacher conversations, {len(responses)} responses, {len(truncated)} flags")
    for name, student in students.items():
        if len(student.conversations) != n or (
            not isinstance(student.speech, str) and len(student.speech) != n
        ):
            raise ValueError(f"student {name!r} does not have one input per teacher conversation")
    device = model.llm.get_input_embeddings().weight.device
    out = {name: TeacherForcedScores() for name in students}
    for start in range(0, n, max(1, batch_size)):
        rows = range(start, min(start + batch_size, n))
        teacher = processor.collate(
            _encode(processor, teacher_conversations, rows, responses, truncated), with_labels=True
        )
        if SPEECH_TOKEN_ID in teacher["input_ids"]:
            raise ValueError("the teacher conversations must be text only")
        teacher = {k: v.to(device) for k, v in teacher.items()}
        t_embeds, _ = model.embed_inputs(teacher["input_ids"], None, None)
        with model.speech_positions(None):  # the teacher is the LLM without LoRA
            t_hidden = model._llm_hidden(t_embeds, teacher["attention_mask"])
        t_logits, t_tokens = model._response_logits(t_hidden, teacher["labels"])
        t_rows = _response_rows(teacher["labels"])
        for name, student in students.items():
            logits, tokens = _student_logits(
                model,
                processor,
                student,
                _encode(processor, student.conversations, rows, responses, truncated),
                rows,
                device,
            )
            if not torch.equal(tokens, t_tokens):
                raise ValueError(
                    f"student {name!r} and the teacher are forced along different response tokens"
                )
            kl, agree = _token_scores(logits, t_logits)
            scores = out[name]
            for k, a, count in zip(kl.split(t_rows), agree.split(t_rows), t_rows):
                scores.kl_sums.append(float(k.sum()))
                scores.tokens.append(int(count))
                scores.agreements.append(int(a.sum()))
    return out


def teacher_forced_scores(
    model,
    processor,
    student_conversations: Sequence[Sequence[Message]],
    teacher_conversations: Sequence[Sequence[Message]],
    responses: Sequence[str],
    truncated: Sequence[bool],
    batch_size: int = 4,
    speech: str | Sequence[torch.Tensor] = "model",
    lora: bool = True,
) -> TeacherForcedScores:
    """One student's teacher-forced scores (see :func:`score_students` and :class:`Student`)."""
    student = Student(student_conversations, speech=speech, lora=lora)
    return score_students(
        model, processor, {"student": student}, teacher_conversations, responses, truncated, batch_size
    )["student"]
