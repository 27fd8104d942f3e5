"""The published label-parsing rule on hand-made answers with known labels."""

from __future__ import annotations

import pytest

from blsp_emo.evaluation.labels import SYNONYMS, parse_emotion, parse_emotions
from blsp_emo.prompts import EMOTIONS


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("happy", "happy"),
        ("Happy.", "happy"),
        ("The emotion tone of the speech is sad.", "sad"),
        ("The speaker sounds joyful and excited!", "happy"),
        ("Cheerful", "happy"),
        ("I'd say anger.", "angry"),
        ("The speaker is MAD about something.", "angry"),
        ("They are furious", "angry"),
        ("There is a lot of sadness in the voice", "sad"),
        ("unhappy", "sad"),
        ("The speaker seems surprised.", "surprise"),
        ("astonished", "surprise"),
        ("The tone is calm.", "neutral"),
        ("Neutral", "neutral"),
        ("The speaker sounds angry, maybe a little sad.", "angry"),  # first mention wins
        ("Sad, or perhaps angry", "sad"),
        ("The speaker is not happy; they sound sad.", "sad"),  # negated mention skipped
        ("It isn't particularly angry, it is calm", "neutral"),
        ("not at all happy but rather furious", "angry"),
        ("He is happily surprised", "happy"),  # position, not strength
        ("The speaker\u2019s tone is upset", "sad"),
        ("The speech provided below: neutral", "neutral"),
    ],
)
def test_known_answers(answer: str, label: str) -> None:
    assert parse_emotion(answer).label == label


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "I cannot tell from the audio.",
        "The speaker talks about a saddle and madness.",
        "Speech: 1234",
        "Not sad.",
    ],
)
def test_unparsed(answer: str) -> None:
    result = parse_emotion(answer)
    assert result.label is None and not result.parsed


def test_whole_words_only() -> None:
    # "sadness" is a synonym, "saddle" and "madness" are not words of the rule.
    assert parse_emotion("saddle sadness").label == "sad"
    assert parse_emotion("madness, then calm").label == "neutral"


def test_match_details_and_batch() -> None:
    parsed = parse_emotion("Well... the tone is cheerful")
    assert (parsed.label, parsed.matched, parsed.position) == ("happy", "cheerful", 20)
    assert parse_emotions(["sad", "??", "surprise"]) == ["sad", None, "surprise"]


def test_every_label_is_its_own_synonym() -> None:
    assert set(SYNONYMS) == set(EMOTIONS)
    for label in EMOTIONS:
        assert parse_emotion(label).label == label
        assert label in SYNONYMS[label]
    words = [w for ws in SYNONYMS.values() for w in ws]
    assert len(words) == len(set(words)), "a synonym may belong to one label only"
