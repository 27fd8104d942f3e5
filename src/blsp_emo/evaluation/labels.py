"""The published rule that turns a generated answer into one of the five emotion labels.

The BLSP-Emo authors publish no such rule (docs/method.md §5); this is ours, and every SER number the
project reports goes through :func:`parse_emotion`. The rule, in full:

1. The answer is lower-cased and every apostrophe variant is normalised to ``'``.
2. Every word in the answer that is a label or a synonym of a label is found, with its character
   position. Words are matched whole (``sadness`` matches, ``saddle`` does not) and also inflected forms
   listed below (``angrily``, ``happily``, ``surprising``...). The synonym table, label by label:

   - **neutral**: neutral, calm, calmness, neutrality, normal, flat, indifferent, emotionless,
     unemotional, composed, relaxed
   - **happy**: happy, happily, happiness, joy, joyful, joyous, cheerful, cheerfully, cheer, excited,
     excitement, exciting, glad, delighted, pleased, elated, amused, enthusiastic
   - **angry**: angry, angrily, anger, mad, furious, fury, annoyed, irritated, frustrated, frustration,
     rage, outraged, hostile
   - **sad**: sad, sadly, sadness, unhappy, unhappiness, sorrow, sorrowful, upset, depressed, grief,
     grieving, gloomy, melancholy, disappointed, disappointment, heartbroken, miserable
   - **surprise**: surprise, surprised, surprising, surprisingly, astonished, astonishment, amazed,
     amazement, shocked, shock, startled

3. A match directly preceded by a negation (``not``, ``no``, ``never``, ``nor``, or any ``...n't`` word),
   with at most two intensifiers in between (``very``, ``really``, ``particularly``, ``especially``,
   ``too``, ``so``, ``that``, ``at all``...) and no punctuation, is skipped: "not happy, rather sad" and
   "isn't particularly angry; it is calm" give ``sad`` and ``neutral``.
4. The label of the FIRST remaining match (smallest character position) wins.
5. No match: the answer is *unparsed*. It is counted as wrong in every metric, and reported separately
   as the unparsed count and rate.

Multi-word expressions are not special-cased, and an answer that lists every option ("neutral, sad,
angry...") gives the first one listed, which is usually wrong: listing options is not an answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from blsp_emo.prompts import EMOTIONS

SYNONYMS: dict[str, tuple[str, ...]] = {
    "neutral": (
        "neutral",
        "calm",
        "calmness",
        "neutrality",
        "normal",
        "flat",
        "indifferent",
        "emotionless",
        "unemotional",
        "composed",
        "relaxed",
    ),
    "happy": (
        "happy",
        "happily",
        "happiness",
        "joy",
        "joyful",
        "joyous",
        "cheerful",
        "cheerfully",
        "cheer",
        "excited",
        "excitement",
        "exciting",
        "glad",
        "delighted",
        "pleased",
        "elated",
        "amused",
        "enthusiastic",
    ),
    "angry": (
        "angry",
        "angrily",
        "anger",
        "mad",
        "furious",
        "fury",
        "annoyed",
        "irritated",
        "frustrated",
        "frustration",
        "rage",
        "outraged",
        "hostile",
    ),
    "sad": (
        "sad",
        "sadly",
        "sadness",
        "unhappy",
        "unhappiness",
        "sorrow",
        "sorrowful",
        "upset",
        "depressed",
        "grief",
        "grieving",
        "gloomy",
        "melancholy",
        "disappointed",
        "disappointment",
        "heartbroken",
        "miserable",
    ),
    "surprise": (
        "surprise",
        "surprised",
        "surprising",
        "surprisingly",
        "astonished",
        "astonishment",
        "amazed",
        "amazement",
        "shocked",
        "shock",
        "startled",
    ),
}

WORD_TO_LABEL: dict[str, str] = {word: label for label, words in SYNONYMS.items() for word in words}

_NEGATION_RE = re.compile(
    r"\b(?:not|no|never|nor|[a-z]+n't)\s+"
    r"(?:(?:very|really|particularly|especially|too|so|that|at|all|quite|overly|exactly)\s+){0,2}$"
)
# Longest first, so that "unhappy" is never read as "happy" (word boundaries also guarantee it).
_LABEL_RE = re.compile(r"\b(" + "|".join(sorted(WORD_TO_LABEL, key=len, reverse=True)) + r")\b")

assert set(SYNONYMS) == set(EMOTIONS), "every emotion label needs a synonym list"


@dataclass(frozen=True)
class ParsedLabel:
    """The outcome of parsing one answer: the label (None when unparsed) and the word that decided it."""

    label: str | None
    matched: str | None = None
    position: int | None = None

    @property
    def parsed(self) -> bool:
        """True when a label was found."""
        return self.label is not None


def _normalise(text: str) -> str:
    return text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")


def _is_negated(text: str, start: int) -> bool:
    """True when the match at ``start`` is preceded by a negation (two intensifiers allowed between)."""
    return _NEGATION_RE.search(text[max(0, start - 60) : start]) is not None


def parse_emotion(text: str) -> ParsedLabel:
    """Parse a generated answer into an emotion label by the rule in this module's docstring.

    >>> parse_emotion("The speaker sounds joyful.").label
    'happy'
    >>> parse_emotion("I cannot tell.").label is None
    True
    """
    normalised = _normalise(text or "")
    for match in _LABEL_RE.finditer(normalised):
        if _is_negated(normalised, match.start()):
            continue
        word = match.group(1)
        return ParsedLabel(WORD_TO_LABEL[word], word, match.start())
    return ParsedLabel(None)


def parse_emotions(texts: list[str]) -> list[str | None]:
    """Parse several answers; ``None`` marks an unparsed answer."""
    return [parse_emotion(t).label for t in texts]
