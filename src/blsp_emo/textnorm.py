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
    """Levenshtein distance between two token lists (jiwer's word alignment; any token works, spaces too)."""
    if not ref or not hyp:
        return len(ref) + len(hyp)
    import jiwer

    ids: dict[str, str] = {}  # each distinct token as one space-free word, so jiwer splits no token
    words = [" ".join(ids.setdefault(t, f"w{len(ids)}") for t in tokens) for tokens in (ref, hyp)]
    out = jiwer.process_words(words[0], words[1])
    return out.substitutions + out.deletions + out.insertions


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus-level WER: total word edits / total reference words (jiwer), after :func:`normalize_text`."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(references, hypotheses)]
    words = sum(len(r.split()) for r, _ in pairs)
    # jiwer aligns pairs with words on both sides; an empty side is all deletions or all insertions.
    edits = sum(len(r.split()) + len(h.split()) for r, h in pairs if not (r and h))
    both = [(r, h) for r, h in pairs if r and h]
    if both:
        import jiwer

        out = jiwer.process_words([r for r, _ in both], [h for _, h in both])
        edits += out.substitutions + out.deletions + out.insertions
    return edits / max(words, 1)
