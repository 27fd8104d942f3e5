"""Token-space pre-alignment: CTC of the adapter's output against the LLM's own token embeddings.

This project's addition to the method (docs: README "Stage 1 that conveys the words"). The paper's stage 1
learns the adapter from a KL signal that needs two passes through the LLM per clip; on a CPU that is far
too slow to learn words from a fresh adapter. Here each speech embedding is scored against the LLM's
frozen input-embedding matrix (cosine, a learnable scale) plus a learnable blank vector, and CTC on the
transcript's token ids pulls the speech embeddings towards the embeddings of the words spoken. No LLM
forward is needed, so a step costs a small fraction of a KL step; stage 1 then starts from this adapter.

The head is kept in the checkpoint (``alignment_head.*``) so evaluation can read the words back by
greedy CTC decoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

BLANK = 0  # class 0 is the blank; token id v is class v + 1


class TokenAlignmentHead(nn.Module):
    """Cosine scores of speech embeddings against token embeddings and a learnable blank, times a scale."""

    def __init__(self, llm_dim: int, init_scale: float = 16.0) -> None:
        super().__init__()
        self.blank = nn.Parameter(torch.randn(llm_dim) / math.sqrt(llm_dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def forward(
        self, speech: torch.Tensor, embeddings: torch.Tensor, candidates: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, 1 + V') of speech (B, T, D) over [blank, tokens].

        ``embeddings`` is the LLM's input-embedding matrix (V, D); ``candidates`` (V',) restricts the token
        classes to those ids (a sampled softmax; class k + 1 is ``candidates[k]``), None = the whole vocabulary.
        """
        table = embeddings if candidates is None else embeddings[candidates]
        table = torch.cat([self.blank[None].to(table.dtype), table.detach()], dim=0)
        scores = (
            nn.functional.normalize(speech.float(), dim=-1) @ nn.functional.normalize(table.float(), dim=-1).T
        )
        return scores * self.log_scale.exp()


def ctc_repeats(ids: Sequence[int]) -> int:
    """Adjacent equal tokens in ``ids``: CTC needs a blank frame between each such pair."""
    return sum(1 for a, b in zip(ids, ids[1:]) if a == b)


def frames_needed(ids: Sequence[int]) -> int:
    """The fewest speech frames that can carry ``ids`` under CTC (tokens plus blanks between repeats)."""
    return len(ids) + ctc_repeats(ids)


def sample_candidates(
    targets: Sequence[Sequence[int]], vocab_size: int, negatives: int, generator: torch.Generator
) -> torch.Tensor:
    """Sorted unique token ids: every target token of the batch plus ``negatives`` random other ids."""
    wanted = torch.tensor(sorted({t for row in targets for t in row}), dtype=torch.long)
    if negatives <= 0 or negatives + len(wanted) >= vocab_size:
        return torch.arange(vocab_size)
    draw = torch.randint(0, vocab_size, (negatives + len(wanted),), generator=generator)
    return torch.unique(torch.cat([wanted, draw]))


def ctc_alignment_loss(
    logits: torch.Tensor,
    lengths: torch.Tensor,
    targets: Sequence[Sequence[int]],
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """CTC loss (mean over the batch of per-token losses) of logits (B, T, C) from :class:`TokenAlignmentHead`.

    ``targets`` are LLM token ids; with ``candidates`` they are mapped to their class among them.
    """
    flat = torch.tensor([t for row in targets for t in row], dtype=torch.long, device=logits.device)
    if candidates is not None:
        candidates = candidates.to(logits.device)
        classes = torch.searchsorted(candidates, flat)
        if not bool((candidates[classes.clamp(max=len(candidates) - 1)] == flat).all()):
            raise ValueError("every target token must be among the candidates")
        flat = classes
    flat = flat + 1  # class 0 is the blank
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long, device=logits.device)
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, C)
    return nn.functional.ctc_loss(
        log_probs, flat, lengths.to(logits.device), target_lengths, blank=BLANK, zero_infinity=True
    )


def greedy_ctc_ids(logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path per row: argmax per frame, repeats merged, blanks dropped -> LLM token ids."""
    best = logits.argmax(-1)
    out: list[list[int]] = []
    for row, n in zip(best, lengths):
        ids: list[int] = []
        previous = BLANK
        for c in row[: int(n)].tolist():
            if c != previous and c != BLANK:
                ids.append(c - 1)
            previous = c
        out.append(ids)
    return out


def time_mask(
    states: torch.Tensor, lengths: torch.Tensor, masks: int, width: int, generator: torch.Generator
) -> torch.Tensor:
    """Zero ``masks`` random spans of up to ``width`` frames in each row's true length (SpecAugment-style)."""
    if masks <= 0 or width <= 0:
        return states
    states = states.clone()
    for row, n in enumerate(lengths.tolist()):
        for _ in range(masks):
            span = int(torch.randint(0, width + 1, (1,), generator=generator))
            if span == 0 or n <= span:
                continue
            start = int(torch.randint(0, n - span, (1,), generator=generator))
            states[row, start : start + span] = 0
    return states


def ctc_target_ids(tokenizer, transcript: str) -> list[int]:
    """The LLM token ids a transcript's speech stands for: the words with their leading space, as the
    text-fed teacher sees them after the instruction (``...style: Hello world`` -> `` Hello`` `` world``)."""
    return tokenizer(" " + " ".join(transcript.split()), add_special_tokens=False)["input_ids"]


def ctc_transcripts(model, processor, audios: Sequence) -> list[str]:
    """Greedy-CTC readings of speech (16 kHz mono arrays) through a model's alignment head."""
    ids = model.transcribe_ctc(processor.audio_features(list(audios)))
    return [processor.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]


def bridge_to_tokens(
    logits: torch.Tensor, lengths: torch.Tensor, embeddings: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-space bridge: one LLM input embedding per token the best CTC path emits.

    At each frame where the greedy path emits a token (not blank, not a repeat of the previous frame's
    token) the embedding is the posterior-weighted mean of the token embeddings (the posterior over
    tokens only, blank left out), so the LLM sees inputs from its own embedding table and nothing for the
    frames between words. A segment with no emitted token keeps its most token-like frame. Returns
    (S, K, D) zero-padded and the counts (S,). Differentiable through the posteriors.
    """
    best = logits.argmax(-1)
    rows: list[torch.Tensor] = []
    for s, n in enumerate(lengths.tolist()):
        path = best[s, :n]
        previous = torch.cat([path.new_full((1,), BLANK), path[:-1]])
        keep = (path != BLANK) & (path != previous)
        if not bool(keep.any()):
            keep = torch.zeros_like(keep)
            keep[int(logits[s, :n, BLANK].argmin())] = True
        posterior = logits[s, :n][keep][:, 1:].float().softmax(-1)
        rows.append(posterior.to(embeddings.dtype) @ embeddings)
    counts = torch.tensor([r.shape[0] for r in rows], device=logits.device)
    out = embeddings.new_zeros(len(rows), int(counts.max()), embeddings.shape[-1])
    for s, r in enumerate(rows):
        out[s, : r.shape[0]] = r
    return out, counts


def resize_speech_slots(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None,
    old_counts: torch.Tensor,
    new_counts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Re-lay a left-padded batch so speech segment k has ``new_counts[k]`` slots instead of ``old_counts[k]``.

    Segments are numbered in batch order (row by row, left to right), as ``embed_inputs`` fills them.
    Labels of speech slots stay ignored. Returns new ``input_ids``, ``attention_mask`` and ``labels``.
    """
    from blsp_emo.model.processor import IGNORE_INDEX, SPEECH_TOKEN_ID

    old, new = old_counts.tolist(), new_counts.tolist()
    segment = 0
    rows: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    for r in range(input_ids.shape[0]):
        real = attention_mask[r].bool()
        ids = input_ids[r][real]
        lab = labels[r][real] if labels is not None else None
        pieces_ids: list[torch.Tensor] = []
        pieces_lab: list[torch.Tensor] = []
        i = 0
        slots = (ids == SPEECH_TOKEN_ID).nonzero().flatten().tolist()
        while slots:
            start = slots[0]
            n_old, n_new = old[segment], new[segment]
            pieces_ids += [ids[i:start], ids.new_full((n_new,), SPEECH_TOKEN_ID)]
            if lab is not None:
                pieces_lab += [lab[i:start], ids.new_full((n_new,), IGNORE_INDEX)]
            segment += 1
            i = start + n_old
            slots = [s for s in slots if s >= i]
        pieces_ids.append(ids[i:])
        if lab is not None:
            pieces_lab.append(lab[i:])
        rows.append((torch.cat(pieces_ids), torch.cat(pieces_lab) if lab is not None else None))
    if segment != len(old):
        raise ValueError(f"the batch has {segment} speech segments, expected {len(old)}")
    width = max(int(row[0].shape[0]) for row in rows)
    out_ids = input_ids.new_zeros(len(rows), width)
    out_mask = attention_mask.new_zeros(len(rows), width)
    out_labels = None if labels is None else labels.new_full((len(rows), width), IGNORE_INDEX)
    for r, (ids, lab) in enumerate(rows):
        out_ids[r, width - len(ids) :] = ids
        out_mask[r, width - len(ids) :] = 1
        if out_labels is not None and lab is not None:
            out_labels[r, width - len(ids) :] = lab
    return out_ids, out_mask, out_labels
