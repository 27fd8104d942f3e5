"""Sentence sources for the synthetic corpus.

- ``ambiguous_sentences()``: written for this project; the words do not give the emotion away ("I'm
  graduating soon"), so only the voice can tell the emotion (the point of BLSP-Emo).
- ``emotional_sentences()``: written for this project; the words match one emotion.
- ``general_sentences(n, seed)``: a large, varied, grammatical source for stage 1 (semantic alignment),
  generated from a small grammar of everyday English (templates and word lists in
  ``resources/grammar_en.json``, read by :func:`load_grammar`). No registry ships a clean licence-free
  sentence corpus for this (NLTK's corpora need a download); a user file can replace it (``--sentences``).

Every sentence is assigned to one split by a stable hash of its text, so splits never share sentences.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTIONS


def _resource_text(name: str) -> str:
    return resources.files("blsp_emo.data").joinpath("resources", name).read_text(encoding="utf-8")


def _resource_lines(name: str) -> list[str]:
    text = _resource_text(name)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class Grammar:
    """A sentence grammar: templates with ``{slot}`` fields, and the words of each slot (both in the order
    a seed draws them)."""

    templates: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(x, str) and x for x in value):
        raise ValueError(f"{what}: expected a non-empty list of non-empty strings")
    return tuple(value)


@cache
def load_grammar(name: str) -> Grammar:
    """The grammar in ``resources/{name}`` (JSON: ``templates``, a list of strings; ``slots``, an object of
    word lists), read once."""
    data = json.loads(_resource_text(name))
    slots = data.get("slots") if isinstance(data, dict) else None
    if not isinstance(slots, dict) or not slots:
        raise ValueError(f"{name}: expected an object with 'templates' and 'slots'")
    return Grammar(
        templates=_strings(data.get("templates"), f"{name}: templates"),
        slots={slot: _strings(words, f"{name}: slot {slot!r}") for slot, words in slots.items()},
    )


@cache
def ambiguous_sentences() -> tuple[str, ...]:
    """Sentences whose words fit every emotion."""
    return tuple(_resource_lines("ambiguous_sentences.txt"))


@cache
def emotional_sentences() -> tuple[tuple[str, str], ...]:
    """``(emotion, sentence)`` pairs whose words match the emotion."""
    pairs = []
    for line in _resource_lines("emotional_sentences.txt"):
        label, _, sentence = line.partition("\t")
        if label not in EMOTIONS or not sentence:
            raise ValueError(f"emotional_sentences.txt: bad line {line!r}")
        pairs.append((label, sentence))
    return tuple(pairs)


def sentence_split(sentence: str, dev_percent: int = 10, test_percent: int = 15) -> str:
    """The split a sentence belongs to (stable hash of its lower-cased text)."""
    bucket = zlib.crc32(sentence.strip().lower().encode("utf-8")) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + dev_percent:
        return "dev"
    return "train"


def _fill(template: str, slots: dict[str, tuple[str, ...]], rng: random.Random) -> str:
    """The template with every slot's word drawn (``{name}``, ``{Name}`` capitalised; ``{name2}`` a second,
    different word of the slot); one draw per slot and per second word, in the slots' order."""
    values: dict[str, str] = {}
    for name, options in slots.items():
        first = rng.choice(options)
        second = rng.choice([o for o in options if o != first])
        for key, value in ((name, first), (f"{name}2", second)):
            values[key] = value
            values[key[0].upper() + key[1:]] = value[0].upper() + value[1:]
    return template.format(**values)


def distinct_sentences(
    count: int, seed: int, draw: Callable[[random.Random], str], grammar: str = "sentence grammar"
) -> list[str]:
    """``count`` distinct sentences of ``draw(rng)``, deterministic by ``seed``; an error naming ``grammar``
    when it cannot produce that many."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise UserError(f"the {grammar} cannot produce {count} distinct sentences")
        sentence = draw(rng)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def general_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct sentences from the grammar, deterministic by ``seed``."""
    grammar = load_grammar("grammar_en.json")
    return distinct_sentences(
        count, seed, lambda rng: _fill(rng.choice(grammar.templates), grammar.slots, rng)
    )


def read_sentence_file(path: Path) -> list[str]:
    """One sentence a line from a user text file (blank lines and # comments skipped, duplicates removed)."""
    if not path.is_file():
        raise UserError(f"{path}: no such sentence file")
    lines = path.read_text(encoding="utf-8").splitlines()
    out = list(dict.fromkeys(line.strip() for line in lines if line.strip() and not line.startswith("#")))
    if not out:
        raise UserError(f"{path}: no sentences in the file")
    return out
