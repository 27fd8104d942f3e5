"""Best-of-N teacher replies: score N sampled candidates, keep one; and the diversity report of a target file.

A small teacher sampled several times per prompt gives some candidates that are clearly worse than others:
a copy of the transcript (an echo), a refusal, a reply in the wrong emotional register ("so sorry to hear"
for happy news), or the same opening the file already has hundreds of times. :class:`BestOfN` rejects the
first three and ranks the rest by how much of what was said the reply takes up (content-word overlap with
the transcript, plus MiniLM similarity when an embedder is given), minus a penalty for openings that are
already common among the replies chosen so far. The choice depends only on the candidates, the transcript,
the emotion and the replies chosen before it, so a run is deterministic given the teacher's samples.

:func:`diversity_report` measures a target file: distinct-2, the share of the most common five-word opening,
the echo rate and the refusal rate, overall and per emotion.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from blsp_emo.prompts import is_refusal

SCORER_VERSION = 1  # bump when the scoring changes: it is part of the targets' hash

# Latin words, or single Han characters: Chinese has no spaces between words, and a character is the unit
# its echo, opening and distinct-n measures can count.
_WORD = re.compile(r"[a-z0-9']+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i i'm i've i'd i'll if in into is it it's its itself
    just let's me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that that's the their theirs them themselves then there these they
    this those through to too under until up very was we were what when where which while who whom why will
    with would you you're your yours yourself yourselves really also get got going one feel like""".split()
)
# Phrases that put a reply in the wrong register for the speaker's emotion.
OFF_EMOTION: dict[str, tuple[str, ...]] = {
    "happy": ("sorry to hear", "sorry you", "must be hard", "must be difficult", "tough time", "calm down",
              "frustrating", "heartbreaking"),
    "surprise": ("sorry to hear", "calm down", "tough time"),
    "sad": ("congratulations", "that's great", "that's wonderful", "that's amazing", "how exciting",
            "so happy for you", "awesome", "fantastic"),
    "angry": ("congratulations", "that's great", "that's wonderful", "how exciting", "so happy for you",
              "awesome", "fantastic"),
    "neutral": ("congratulations", "so happy for you", "heartbreaking"),
}  # fmt: skip


def words(text: str) -> list[str]:
    """Lower-cased word tokens (apostrophes kept); each Han character is a token of its own."""
    return _WORD.findall(text.casefold().replace("\u2019", "'"))


def _stem(word: str) -> str:
    """A crude suffix stem: enough to match "exam"/"exams" or "call"/"called" (not "drive"/"drove")."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """Stems of the words that carry content (no stopwords, no one-letter words)."""
    return {_stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1}


def opening(text: str, n: int = 5) -> str:
    """The first ``n`` words, lower-cased: what the opening-share measures compare."""
    return " ".join(words(text)[:n])


def is_echo(candidate: str, transcript: str) -> bool:
    """True when the reply mostly repeats the transcript: it starts with the transcript's first words, or
    it holds the transcript's words in order for at least 70 % of them (longest common subsequence)."""
    c, t = words(candidate), words(transcript)
    if not t or not c:
        return False
    head = min(len(t), 4)
    if c[:head] == t[:head]:
        return True
    previous = [0] * (len(t) + 1)  # LCS over words, O(len(c) * len(t)): both are short
    for cw in c:
        current = [0]
        for j, tw in enumerate(t):
            current.append(previous[j] + 1 if cw == tw else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1] >= 0.7 * len(t) and len(t) >= 3


def off_emotion(candidate: str, emotion: str | None) -> bool:
    """True when the reply uses a phrase of the wrong register for ``emotion``."""
    folded = candidate.casefold().replace("\u2019", "'")
    return any(p in folded for p in OFF_EMOTION.get(emotion or "", ()))


def take_up(candidate: str, transcript: str) -> float:
    """Share of the transcript's content words that the reply takes up (0 when it has none)."""
    said = content_words(transcript)
    return len(said & content_words(candidate)) / len(said) if said else 0.0


@dataclass
class Choice:
    """The candidate kept for one prompt, its score, and why the others lost."""

    index: int
    score: float
    rejected: Counter = field(default_factory=Counter)  # reason -> candidates rejected for it


@dataclass
class BestOfN:
    """Choose one of N candidates per prompt (see the module docstring).

    ``similarity(a, b)`` (optional) returns the cosine similarity of the texts ``a[i]``, ``b[i]``.
    Weights: take-up 1.0, similarity 0.5, opening share -2.0 (share among the replies chosen so far, five
    and three words), cap hit -0.3. A rejected candidate is kept only when every candidate was rejected.
    """

    similarity: Callable[[Sequence[str], Sequence[str]], Sequence[float]] | None = None
    openings5: Counter = field(default_factory=Counter)
    openings3: Counter = field(default_factory=Counter)
    chosen: int = 0

    def remember(self, reply: str) -> None:
        """Count the opening of a reply already in the file (resume) or just chosen."""
        self.openings5[opening(reply, 5)] += 1
        self.openings3[opening(reply, 3)] += 1
        self.chosen += 1

    def reasons(self, candidate: str, transcript: str, emotion: str | None) -> list[str]:
        """Why a candidate is rejected (empty when it is acceptable)."""
        out = []
        if not candidate.strip():
            out.append("empty")
        if is_refusal(candidate):
            out.append("refusal")
        if is_echo(candidate, transcript):
            out.append("echo")
        if off_emotion(candidate, emotion):
            out.append("off-emotion")
        return out

    def choose(self, texts: Sequence[str], truncated: Sequence[bool], transcript: str,
               emotion: str | None) -> Choice:  # fmt: skip
        """Score the candidates for one prompt, keep the best, and count its opening."""
        if not texts:
            raise ValueError("no candidates to choose from")
        sims = (
            list(self.similarity([transcript] * len(texts), texts)) if self.similarity else [0.0] * len(texts)
        )
        scale = max(self.chosen, 20)  # early on a repeated opening is not yet "common"
        rejected: Counter = Counter()
        scored: list[tuple[float, int]] = []
        for i, text in enumerate(texts):
            reasons = self.reasons(text, transcript, emotion)
            for r in reasons:
                rejected[r] += 1
            score = take_up(text, transcript) + 0.5 * float(sims[i])
            score -= 2.0 * (self.openings5[opening(text, 5)] / scale) + 1.0 * (
                self.openings3[opening(text, 3)] / scale
            )
            score -= 0.3 * bool(truncated[i])
            scored.append((score - (100.0 if reasons else 0.0), i))
        score, index = max(scored, key=lambda s: (s[0], -s[1]))  # ties: the first sample
        self.remember(texts[index])
        return Choice(index=index, score=round(score, 4), rejected=rejected)


def _distinct2(texts: Iterable[str]) -> float:
    grams: Counter = Counter()
    for text in texts:
        w = words(text)
        grams.update(zip(w, w[1:]))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def _measure(rows: list[dict[str, Any]], refusals: int) -> dict[str, Any]:
    texts = [str(r.get("target", "")) for r in rows]
    openings = Counter(opening(t, 5) for t in texts if t.strip())
    top, top_n = openings.most_common(1)[0] if openings else ("", 0)
    echoes = sum(is_echo(t, str(r.get("text", ""))) for t, r in zip(texts, rows))
    total = len(rows) + refusals
    return {
        "rows": len(rows),
        "distinct_2": round(_distinct2(texts), 4),
        "top_opening": top,
        "top_opening_share": round(top_n / len(rows), 4) if rows else 0.0,
        "echo_rate": round(echoes / len(rows), 4) if rows else 0.0,
        "refusal_rate": round(refusals / total, 4) if total else 0.0,
    }


def diversity_report(
    rows: Sequence[dict[str, Any]], refused: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Diversity of a target file's lines (and of its refused lines), overall and per target emotion."""
    rows, refused = list(rows), list(refused)

    def emotion_of(r: dict[str, Any]) -> str:
        return str(r.get("target_emotion") or r.get("emotion") or "")

    report = {"all": _measure(rows, len(refused))}
    for emotion in sorted({emotion_of(r) for r in rows + refused} - {""}):
        mine = [r for r in rows if emotion_of(r) == emotion]
        report[emotion] = _measure(mine, sum(emotion_of(r) == emotion for r in refused))
    return report


def describe_diversity(report: dict[str, Any]) -> str:
    """The report as a small text table."""
    lines = ["group      rows  distinct-2  top 5-word opening (share)                         echo  refusal"]
    for group, m in report.items():
        top = f"{m['top_opening'][:40]!r} ({m['top_opening_share']:.1%})"
        lines.append(
            f"{group:<9} {m['rows']:>5}  {m['distinct_2']:>10.3f}  {top:<50} {m['echo_rate']:>5.1%}  "
            f"{m['refusal_rate']:>6.1%}"
        )
    return "\n".join(lines)
