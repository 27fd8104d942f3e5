"""The sentence grammars give the same sentences for a seed, whichever way their word lists are stored.

The pinned values were computed from the grammars before their word lists moved out of the code into
``data/resources/`` (JSON): a change in a list, its order, or the drawing logic changes them.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from blsp_emo.data.sentences import general_sentences
from blsp_emo.data.synth_language import general_sentences_zh


def _digest(sentences: list[str]) -> str:
    return hashlib.sha256(json.dumps(sentences, ensure_ascii=False).encode()).hexdigest()


@pytest.mark.parametrize(
    ("seed", "first", "last", "digest"),
    [
        (
            0,
            [
                "The bus driver counted twelve lamps in the museum.",
                "After lunch, my colleague cleaned the winter coat.",
                "My aunt told us that the swimming pool is narrow at the weekend.",
            ],
            "The path from the bridge to the post office is bright.",
            "529c16fddd5e0dc9505754da7cf25e5012c8cea03e40a6d8cb472a2543848615",
        ),
        (
            7,
            [
                "The postman told us that the farm is crowded every morning.",
                "Nobody knew why my cousin painted the camera.",
                "Nobody knew why the mayor painted an old map.",
            ],
            "There were seven windows outside the old church twice a week.",
            "95bf9416a44d1664a52548436db03ebc604ccfe4607558a7b5dc5b8cf7b13909",
        ),
    ],
)
def test_general_sentences_are_pinned_for_a_seed(seed: int, first: list[str], last: str, digest: str) -> None:
    sentences = general_sentences(300, seed)
    assert sentences[:3] == first
    assert sentences[-1] == last
    assert _digest(sentences) == digest


@pytest.mark.parametrize(
    ("seed", "first", "digest"),
    [
        (
            0,
            ["我的室友说周末要去火车站准备晚饭。", "我姑姑把一张地图留在了电影院。"],
            "15e8354282911e569eb2e83c3c2d231b53a29f7272ab75c509ac860485c96cd6",
        ),
        (
            7,
            ["每天早上那位老农民在家里看报纸。", "厨师上个月去了图书馆。"],
            "7c670cea8cfd23919e161fd001f81b048e6f9af1dd7d2a9f8237d792c6183325",
        ),
    ],
)
def test_chinese_sentences_are_pinned_for_a_seed(seed: int, first: list[str], digest: str) -> None:
    sentences = general_sentences_zh(200, seed)
    assert sentences[:2] == first
    assert _digest(sentences) == digest


@pytest.mark.parametrize("name", ["grammar_en.json", "grammar_zh.json"])
def test_grammar_files_fill_every_template(name: str) -> None:
    import string

    from blsp_emo.data.sentences import load_grammar

    grammar = load_grammar(name)
    assert load_grammar(name) is grammar  # read once
    known = {
        n for slot in grammar.slots for n in (slot, slot.capitalize(), f"{slot}2", f"{slot.capitalize()}2")
    }
    for template in grammar.templates:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        assert fields and fields <= known, template
    for slot, words in grammar.slots.items():
        assert len(set(words)) >= 2, slot  # {slot2} needs a second, different word
