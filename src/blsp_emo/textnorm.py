"""Text normalisation and word error rate, shared by ASR checks and evaluation."""

from __future__ import annotations

import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s']")
_NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve".split()


def normalize_text(text: str) -> str:
    """Lower-case, NFKC, punctuation and hyphens to spaces (apostrophes inside words kept), numbers up to
    twelve spelled out (ASR writes "4" where a transcript says "four"), spaces squeezed."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    words = [w.strip("'") for w in _PUNCT.sub(" ", text).replace("_", " ").split()]
    words = [_NUMBERS[int(w)] if w.isdigit() and int(w) < len(_NUMBERS) else w for w in words]
    return " ".join(w for w in words if w)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two token lists."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus-level WER: total word edits / total reference words, after :func:`normalize_text`."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = words = 0
    for ref, hyp in zip(references, hypotheses):
        r, h = normalize_text(ref).split(), normalize_text(hyp).split()
        edits += edit_distance(r, h)
        words += len(r)
    return edits / max(words, 1)
