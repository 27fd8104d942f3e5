"""Logits processors that keep a reply from looping: a repetition penalty, OpenAI's frequency and presence
penalties, and a block on repeated n-grams (settings: :class:`blsp_emo.model.types.DecodingOptions`).

Generation feeds the LLM ``inputs_embeds`` (the prompt with speech embeddings spliced in), so the token ids
a processor sees are the reply's own tokens: the penalties and the block act on what the model said in
this reply, never on the prompt (a reply may repeat the user's words), and a row's result does not depend
on its batch-mates. (transformers' own ``repetition_penalty`` does depend on them there: with a left-padded
prompt given as embeddings it skips the first k generated tokens of a row padded by k.)
"""

from __future__ import annotations

from typing import cast

import torch
from transformers import LogitsProcessor

from blsp_emo.model.types import DecodingOptions


class RepetitionPenalty(LogitsProcessor):
    """The CTRL penalty (transformers' ``repetition_penalty``) on the tokens generated so far: a token
    already in the reply has its positive logit divided by ``penalty`` and its negative one multiplied."""

    def __init__(self, penalty: float) -> None:
        if not penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
        self.penalty = float(penalty)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] == 0 or self.penalty == 1.0:
            return scores
        seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, input_ids, True)
        penalized = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return cast(torch.FloatTensor, torch.where(seen, penalized, scores))


class CountPenalties(LogitsProcessor):
    """OpenAI's ``frequency_penalty`` and ``presence_penalty`` on the tokens generated so far:
    ``logit - frequency * count - presence * (count > 0)``."""

    def __init__(self, frequency: float = 0.0, presence: float = 0.0) -> None:
        self.frequency = float(frequency)
        self.presence = float(presence)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] == 0 or (self.frequency == 0.0 and self.presence == 0.0):
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, input_ids, torch.ones(input_ids.shape, dtype=scores.dtype, device=scores.device)
        )
        return cast(
            torch.FloatTensor,
            scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence,
        )


class NoRepeatNGram(LogitsProcessor):
    """Forbids every token that would complete an n-gram the reply already holds (transformers'
    ``no_repeat_ngram_size``, vectorised over the batch). A row whose every token would be forbidden is
    left alone rather than given nothing to choose from."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"no_repeat_ngram_size must be >= 1, got {n}")
        self.n = int(n)

    def banned(self, input_ids: torch.LongTensor, vocab_size: int) -> torch.Tensor:
        """(B, vocab_size) bool: the tokens each row may not take next."""
        batch, length = input_ids.shape
        mask = torch.zeros(batch, vocab_size + 1, dtype=torch.bool, device=input_ids.device)
        k = self.n - 1  # the n-gram's first n-1 tokens must equal the reply's last n-1 tokens
        if length < self.n:
            return mask[:, :vocab_size]
        following = input_ids[:, k:]  # (B, L-k): the token after each (n-1)-gram that has one
        if k:
            grams = input_ids.unfold(1, k, 1)[:, : length - k]  # (B, L-k, k)
            match = (grams == input_ids[:, length - k :].unsqueeze(1)).all(-1)
        else:
            match = torch.ones_like(following, dtype=torch.bool)
        index = torch.where(match, following, torch.full_like(following, vocab_size))
        mask.scatter_(1, index, True)  # unmatched positions land in the spare last column
        mask = mask[:, :vocab_size]
        return mask & ~mask.all(-1, keepdim=True)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return cast(
            torch.FloatTensor, scores.masked_fill(self.banned(input_ids, scores.shape[-1]), float("-inf"))
        )


def logits_processors(options: DecodingOptions) -> list[LogitsProcessor]:
    """The processors for these settings (none when all are off), in the order they apply: the
    penalties, then the n-gram block (transformers applies temperature and top-p after them)."""
    processors: list[LogitsProcessor] = []
    if options.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(options.repetition_penalty))
    if options.frequency_penalty or options.presence_penalty:
        processors.append(CountPenalties(options.frequency_penalty, options.presence_penalty))
    if options.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGram(options.no_repeat_ngram_size))
    return processors


def repeated_ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    """The n-grams that occur more than once in ``tokens`` (each listed once, in order of first repeat)."""
    seen: set[tuple[int, ...]] = set()
    repeats: list[tuple[int, ...]] = []
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i : i + n])
        if gram in seen and gram not in repeats:
            repeats.append(gram)
        seen.add(gram)
    return repeats
