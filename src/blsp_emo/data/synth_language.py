"""The languages ``data synth`` speaks: English (every engine) and Mandarin Chinese (espeak-ng only).

Mandarin is spoken by espeak-ng's ``cmn-latn-pinyin`` voice. Its plain ``cmn`` voice (the one that
``espeak-ng --voices=zh`` lists first) is no use in espeak-ng 1.51: the dictionary turns characters into
tone-numbered pinyin, which that voice then reads as English letters and numbers (你好 comes out as
"ni three hao three"); ``cmn-latn-pinyin`` reads the same pinyin as Mandarin syllables with their tones
(check with ``espeak-ng -v cmn-latn-pinyin -x -q 你好``). The voice variants (+m1, +f3, ...) and the
per-emotion prosody controls are the English ones.

Chinese sentences come from ``resources/sentences_zh.txt`` (ambiguous and emotion-worded sentences written
for this project) and, for the unlabelled stage-1 part, from a small grammar of everyday statements
(``resources/grammar_zh.json``).
"""

from __future__ import annotations

import random
import re
from functools import cache

from blsp_emo.data.sentences import distinct_sentences, load_grammar
from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTIONS

# English espeak-ng accents (synth.ESPEAK_VARIANTS gives each split its own variants, so a voice is an
# accent + a variant; see synth.py for how they were chosen).
ESPEAK_ACCENTS: tuple[str, ...] = (
    "en-us",
    "en-gb",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-us-nyc",
    "en-gb-x-gbclan",
)

SYNTH_LANGUAGES: tuple[str, ...] = ("en", "zh")
ESPEAK_MANDARIN = "cmn-latn-pinyin"
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def check_synth_language(language: str, engines: tuple[str, ...]) -> None:
    """Raise :class:`UserError` when ``language`` cannot be synthesised with ``engines``."""
    if language not in SYNTH_LANGUAGES:
        raise UserError(f"data synth speaks {', '.join(SYNTH_LANGUAGES)}, not {language!r}")
    if language == "zh" and set(engines) - {"espeak"}:
        others = ", ".join(sorted(set(engines) - {"espeak"}))
        raise UserError(
            f"--language zh: only espeak-ng speaks Mandarin here, not {others} (--engines espeak)"
        )


def espeak_accents(language: str) -> tuple[str, ...]:
    """The espeak-ng base voices of a language (each combined with the split's variants)."""
    return (ESPEAK_MANDARIN,) if language == "zh" else ESPEAK_ACCENTS


def _lines() -> list[tuple[str, str]]:
    from importlib import resources

    text = resources.files("blsp_emo.data").joinpath("resources", "sentences_zh.txt").read_text("utf-8")
    pairs = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, _, sentence = line.partition("\t")
        if kind not in (*EMOTIONS, "ambiguous") or not sentence.strip():
            raise ValueError(f"sentences_zh.txt: bad line {line!r}")
        pairs.append((kind, sentence.strip()))
    return pairs


@cache
def ambiguous_sentences_zh() -> tuple[str, ...]:
    """Chinese sentences whose words fit every emotion."""
    return tuple(s for kind, s in _lines() if kind == "ambiguous")


@cache
def emotional_sentences_zh() -> tuple[tuple[str, str], ...]:
    """``(emotion, sentence)`` pairs of Chinese sentences whose words match the emotion."""
    return tuple((kind, s) for kind, s in _lines() if kind != "ambiguous")


def general_sentences_zh(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct Chinese sentences from the grammar (``resources/grammar_zh.json``), deterministic
    by ``seed``."""
    grammar = load_grammar("grammar_zh.json")

    def draw(rng: random.Random) -> str:
        template = rng.choice(grammar.templates)
        return re.sub(r"\{(\w+)\}", lambda m: rng.choice(grammar.slots[m.group(1)]), template)

    return distinct_sentences(count, seed, draw, "Chinese sentence grammar")


def count_words(text: str, language: str) -> int:
    """Words of ``text`` for the speaking-rate measure: Han characters (syllables) for Chinese."""
    if language == "zh":
        return len(_HAN.findall(text)) + len(re.findall(r"[A-Za-z0-9']+", text))
    return len(re.findall(r"[\w']+", text))


def error_units(text: str, language: str) -> list[str]:
    """The units an ASR error rate counts: characters for Chinese (no spaces between words), else words.

    Punctuation and spaces are dropped; Latin letters are lower-cased.
    """
    from blsp_emo.textnorm import normalize_text

    if language == "zh":
        return [c for c in text.lower() if _HAN.match(c) or c.isalnum()]
    return normalize_text(text).split()
