"""The languages ``data synth`` speaks: English (every engine) and Mandarin Chinese (espeak-ng only).

Mandarin is spoken by espeak-ng's ``cmn-latn-pinyin`` voice. Its plain ``cmn`` voice (the one that
``espeak-ng --voices=zh`` lists first) is no use in espeak-ng 1.51: the dictionary turns characters into
tone-numbered pinyin, which that voice then reads as English letters and numbers (你好 comes out as
"ni three hao three"); ``cmn-latn-pinyin`` reads the same pinyin as Mandarin syllables with their tones
(check with ``espeak-ng -v cmn-latn-pinyin -x -q 你好``). The voice variants (+m1, +f3, ...) and the
per-emotion prosody controls are the English ones.

Chinese sentences come from ``resources/sentences_zh.txt`` (ambiguous and emotion-worded sentences written
for this project) and, for the unlabelled stage-1 part, from a small grammar of everyday statements.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

from blsp_emo.data.sentences import distinct_sentences
from blsp_emo.errors import UserError
from blsp_emo.prompts import EMOTIONS

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
    from blsp_emo.data.synth import ESPEAK_ACCENTS

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


@lru_cache(maxsize=1)
def ambiguous_sentences_zh() -> tuple[str, ...]:
    """Chinese sentences whose words fit every emotion."""
    return tuple(s for kind, s in _lines() if kind == "ambiguous")


@lru_cache(maxsize=1)
def emotional_sentences_zh() -> tuple[tuple[str, str], ...]:
    """``(emotion, sentence)`` pairs of Chinese sentences whose words match the emotion."""
    return tuple((kind, s) for kind, s in _lines() if kind != "ambiguous")


_ZH_SLOTS: dict[str, tuple[str, ...]] = {
    "person": ("我的邻居", "新来的老师", "我们经理", "我表哥", "邮递员", "我的一个朋友", "那位老农民",
               "我姑姑", "年轻的医生", "店主", "我爷爷", "公交车司机", "我的室友", "厨师", "图书管理员"),
    "place": ("市场", "火车站", "港口", "图书馆", "公园", "医院", "博物馆", "面包店", "海边", "电影院",
              "邮局", "学校", "机场", "农场", "书店", "游泳馆"),
    "time": ("星期一", "昨天晚上", "每天早上", "吃完午饭以后", "天亮之前", "春天的时候", "周末",
             "昨天下午", "上个月", "今年夏天"),
    "thing": ("一本旧书", "一辆自行车", "几张明信片", "一把雨伞", "一箱苹果", "一台收音机", "一张地图",
              "一些鲜花", "一双新鞋", "一盒茶叶"),
    "activity": ("看报纸", "打扫房间", "修理屋顶", "写一封信", "准备晚饭", "学习画画", "等一位客人",
                 "整理照片", "练习钢琴", "浇花"),
}  # fmt: skip
_ZH_TEMPLATES: tuple[str, ...] = (
    "{person}{time}去了{place}。",
    "{person}{time}在{place}买了{thing}。",
    "{time}{person}在家里{activity}。",
    "{person}说{time}要去{place}{activity}。",
    "{person}把{thing}留在了{place}。",
    "{time}我在{place}遇到了{person}。",
)


def general_sentences_zh(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct Chinese sentences from the grammar, deterministic by ``seed``."""

    def draw(rng: random.Random) -> str:
        template = rng.choice(_ZH_TEMPLATES)
        return re.sub(r"\{(\w+)\}", lambda m: rng.choice(_ZH_SLOTS[m.group(1)]), template)

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
