"""Sentence sources for the synthetic corpus.

- ``ambiguous_sentences()``: written for this project; the words do not give the emotion away ("I'm
  graduating soon"), so only the voice can tell the emotion (the point of BLSP-Emo).
- ``emotional_sentences()``: written for this project; the words match one emotion.
- ``general_sentences(n, seed)``: a large, varied, grammatical source for stage 1 (semantic alignment),
  generated from a small grammar of everyday English. No registry ships a clean licence-free sentence
  corpus for this (NLTK's corpora need a download); a user file can replace it (``--sentences``).

Every sentence is assigned to one split by a stable hash of its text, so splits never share sentences.
"""

from __future__ import annotations

import random
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path

from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTIONS


def _resource_lines(name: str) -> list[str]:
    text = resources.files("blsp_emo.data").joinpath("resources", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@lru_cache(maxsize=1)
def ambiguous_sentences() -> tuple[str, ...]:
    """Sentences whose words fit every emotion."""
    return tuple(_resource_lines("ambiguous_sentences.txt"))


@lru_cache(maxsize=1)
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


# A small grammar of everyday statements. Each template is filled from the slot lists below.
_SLOTS: dict[str, tuple[str, ...]] = {
    "person": (
        "my neighbour",
        "the new teacher",
        "our manager",
        "my cousin",
        "the postman",
        "a friend of mine",
        "the old farmer",
        "my aunt",
        "the young doctor",
        "the shop owner",
        "my grandfather",
        "the pilot",
        "a student from Spain",
        "the bus driver",
        "my flatmate",
        "the chef",
        "the librarian",
        "our coach",
        "the mayor",
        "a woman in the queue",
        "the plumber",
        "my colleague",
        "the tour guide",
        "the baker",
    ),
    "place": (
        "the market",
        "the station",
        "the harbour",
        "the old church",
        "the city library",
        "the park",
        "the hospital",
        "the village hall",
        "the museum",
        "the bakery",
        "the football ground",
        "the beach",
        "the bridge",
        "the garden centre",
        "the cinema",
        "the post office",
        "the hotel",
        "the school",
        "the mountain hut",
        "the airport",
        "the farm",
        "the bookshop",
        "the swimming pool",
        "the castle",
    ),
    "time": (
        "on Monday",
        "last night",
        "every morning",
        "after lunch",
        "before sunrise",
        "in the spring",
        "at the weekend",
        "yesterday afternoon",
        "twice a week",
        "in the evening",
        "last summer",
        "during the storm",
        "at midnight",
        "on my birthday",
        "early this morning",
        "next Tuesday",
    ),
    "object": (
        "a red umbrella",
        "the heavy box",
        "an old map",
        "a bag of apples",
        "the blue bicycle",
        "a cup of tea",
        "the kitchen table",
        "a pair of boots",
        "the garden gate",
        "a wooden chair",
        "the front door key",
        "a loaf of bread",
        "a small radio",
        "the winter coat",
        "a box of letters",
        "a bunch of flowers",
        "the ladder",
        "a basket of eggs",
        "the camera",
        "a jar of honey",
    ),
    "verb_past": (
        "carried",
        "painted",
        "repaired",
        "found",
        "sold",
        "borrowed",
        "cleaned",
        "wrapped",
        "moved",
        "ordered",
        "dropped",
        "delivered",
        "collected",
        "measured",
        "opened",
        "returned",
        "hid",
        "weighed",
    ),
    "activity": (
        "reading the paper",
        "walking the dog",
        "fixing the fence",
        "baking bread",
        "learning French",
        "planting tomatoes",
        "watching the boats",
        "writing letters",
        "tuning the piano",
        "sorting the post",
        "feeding the ducks",
        "counting the chairs",
        "painting the hallway",
        "washing the windows",
        "practising the violin",
        "checking the tickets",
        "mending a net",
        "sweeping the yard",
    ),
    "adjective": (
        "quiet",
        "crowded",
        "narrow",
        "bright",
        "cold",
        "busy",
        "old",
        "tidy",
        "warm",
        "windy",
        "empty",
        "noisy",
        "small",
        "famous",
        "green",
        "modern",
        "dusty",
        "pleasant",
    ),
    "fact_subject": (
        "The river",
        "The road to the coast",
        "The night train",
        "The summer festival",
        "The north wall",
        "The new bridge",
        "The morning ferry",
        "The village bakery",
        "The east wing",
        "The local paper",
        "The weekly market",
        "The evening class",
        "The mountain path",
        "The garden club",
        "The old mill",
    ),
    "fact_predicate": (
        "runs past three small villages",
        "was built more than a century ago",
        "closes early on Sundays",
        "is busiest in the autumn",
        "opens again in April",
        "takes about two hours",
        "needs a new roof",
        "was painted white last year",
        "stops at every station",
        "has room for forty people",
        "is closed for repairs",
        "starts just after nine",
        "is longer than it looks",
        "can be seen from the hill",
        "sells fresh fish on Fridays",
        "is older than the town itself",
    ),
    "number": ("two", "three", "four", "five", "six", "seven", "eight", "ten", "twelve", "twenty"),
    "plural": (
        "boats",
        "chairs",
        "letters",
        "apples",
        "windows",
        "students",
        "trees",
        "paintings",
        "horses",
        "lamps",
        "books",
        "bottles",
        "tickets",
        "houses",
        "bicycles",
        "candles",
    ),
}
_TEMPLATES: tuple[str, ...] = (
    "{Person} {verb_past} {object} to {place} {time}.",
    "{Person} was {activity} near {place} {time}.",
    "{Time}, {person} {verb_past} {object}.",
    "{Fact_subject} {fact_predicate}.",
    "There were {number} {plural} outside {place} {time}.",
    "{Place} is {adjective} {time}.",
    "We met {person} at {place} {time}.",
    "I think {person} {verb_past} {object} {time}.",
    "{Person} spends most mornings {activity}.",
    "You can buy {object} at {place}.",
    "{Person} told us that {place} is {adjective} {time}.",
    "The path from {place} to {place2} is {adjective}.",
    "{Person} counted {number} {plural} in {place}.",
    "After {activity}, {person} walked to {place}.",
    "{Person} left {object} at {place} {time}.",
    "{Time}, {place} was {adjective} and {adjective2}.",
    "If you go to {place}, ask {person} about {object}.",
    "{Person} and {person2} were {activity} {time}.",
    "Nobody knew why {person} {verb_past} {object}.",
    "{Fact_subject} {fact_predicate}, or so {person} says.",
    "{Person} is good at {activity}.",
    "We waited for {person} outside {place}.",
)


def _fill(template: str, rng: random.Random) -> str:
    values: dict[str, str] = {}
    for name, options in _SLOTS.items():
        first = rng.choice(options)
        second = rng.choice([o for o in options if o != first])
        for key, value in ((name, first), (f"{name}2", second)):
            values[key] = value
            values[key[0].upper() + key[1:]] = value[0].upper() + value[1:]
    return template.format(**values)


def distinct_sentences(count: int, seed: int, draw, grammar: str = "sentence grammar") -> list[str]:
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
    return distinct_sentences(count, seed, lambda rng: _fill(rng.choice(_TEMPLATES), rng))


def read_sentence_file(path: Path) -> list[str]:
    """One sentence a line from a user text file (blank lines and # comments skipped, duplicates removed)."""
    if not path.is_file():
        raise UserError(f"{path}: no such sentence file")
    lines = path.read_text(encoding="utf-8").splitlines()
    out = list(dict.fromkeys(line.strip() for line in lines if line.strip() and not line.startswith("#")))
    if not out:
        raise UserError(f"{path}: no sentences in the file")
    return out
