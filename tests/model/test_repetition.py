"""Replies that do not loop: the repetition penalties and the n-gram block, on logits and on the tiny model."""

import numpy as np
import pytest
import torch

from blsp_emo.model import SpeechChat
from blsp_emo.model.repetition import (
    CountPenalties,
    NoRepeatNGram,
    RepetitionPenalty,
    logits_processors,
    repeated_ngrams,
)
from blsp_emo.model.types import CONVERSATION, DEMO, PLAIN, DecodingOptions
from blsp_emo.prompts import SYSTEM_PROMPTS


def _conv(content):
    return [{"role": "system", "content": SYSTEM_PROMPTS["empathetic"]}, {"role": "user", "content": content}]


@pytest.fixture
def audio():
    return (np.random.default_rng(0).standard_normal(24000) * 0.1).astype(np.float32)


def _reply_ids(model, processor, conversations, max_new_tokens, decoding: DecodingOptions, seed=None):
    """The generated token ids of each conversation, up to (without) the end of the turn."""
    chat = SpeechChat(model, processor)
    if seed is not None:
        torch.manual_seed(seed)
    ids, _ = model.generate(
        processor(conversations), chat.stop_ids, decoding.replace(max_new_tokens=max_new_tokens)
    )
    rows = []
    for row in ids.tolist():
        ends = [i for i, t in enumerate(row) if t in chat.stop_ids]
        rows.append(row[: ends[0]] if ends else row)
    return rows


# ----- the processors on logits ---------------------------------------------------------------------


def test_repetition_penalty_shrinks_the_logits_of_tokens_already_in_the_reply() -> None:
    scores = torch.tensor([[2.0, 2.0, -2.0, -2.0], [2.0, 2.0, -2.0, -2.0]])
    out = RepetitionPenalty(2.0)(torch.tensor([[1, 3, 3], [0, 0, 0]]), scores.clone())
    assert out.tolist() == [[2.0, 1.0, -2.0, -4.0], [1.0, 2.0, -2.0, -2.0]]
    assert torch.equal(RepetitionPenalty(2.0)(torch.zeros(2, 0, dtype=torch.long), scores), scores)
    with pytest.raises(ValueError):
        RepetitionPenalty(0.0)


def test_frequency_and_presence_penalties_follow_openai() -> None:
    out = CountPenalties(frequency=0.5, presence=1.0)(torch.tensor([[1, 1, 2]]), torch.zeros(1, 4))
    assert out.tolist() == [[0.0, -2.0, -1.5, 0.0]]  # count * 0.5 + 1 once present
    assert CountPenalties(frequency=-1.0)(torch.tensor([[3]]), torch.zeros(1, 4)).tolist() == [[0, 0, 0, 1]]


def test_ngram_block_forbids_the_token_that_would_repeat_an_ngram() -> None:
    ids = torch.tensor([[1, 2, 3, 4, 1, 2, 3], [5, 6, 7, 5, 6, 8, 5]])
    banned = NoRepeatNGram(4).banned(ids, 10)
    assert banned[0].nonzero().flatten().tolist() == [4]  # 1 2 3 4 already there: not 4 after 1 2 3
    assert not banned[1].any()  # 6 8 5 was never followed by anything
    assert NoRepeatNGram(3).banned(ids, 10)[1].nonzero().flatten().tolist() == []
    assert NoRepeatNGram(2).banned(ids, 10)[1].nonzero().flatten().tolist() == [6]
    assert NoRepeatNGram(1).banned(ids, 10)[0].nonzero().flatten().tolist() == [1, 2, 3, 4]
    assert not NoRepeatNGram(4).banned(ids[:, :3], 10).any()  # shorter than an n-gram
    scores = NoRepeatNGram(4)(ids, torch.zeros(2, 10))
    assert (
        scores[0, 4] == float("-inf")
        and torch.isfinite(scores[0, :4]).all()
        and torch.isfinite(scores[1]).all()
    )


def test_ngram_block_never_leaves_a_row_without_a_choice() -> None:
    ids = torch.tensor([[0, 1, 2, 0, 1, 2, 0]])  # with n=1 every token of a 3-token vocabulary is used
    assert not NoRepeatNGram(1).banned(ids, 3).any()
    assert torch.isfinite(NoRepeatNGram(1)(ids, torch.zeros(1, 3))).all()


def test_processors_for_settings() -> None:
    assert logits_processors(PLAIN) == []
    options = DecodingOptions(repetition_penalty=1.1, no_repeat_ngram_size=4, frequency_penalty=0.5)
    kinds = [type(p) for p in logits_processors(options)]
    assert kinds == [RepetitionPenalty, CountPenalties, NoRepeatNGram]


def test_defaults() -> None:
    assert (CONVERSATION.temperature, CONVERSATION.top_p) == (0.5, 0.9)
    assert (CONVERSATION.repetition_penalty, CONVERSATION.no_repeat_ngram_size) == (1.1, 4)
    assert (CONVERSATION.frequency_penalty, CONVERSATION.presence_penalty) == (0.0, 0.0)
    assert DEMO.greedy and DEMO.no_repeat_ngram_size == 4 and DEMO.repetition_penalty == 1.1
    assert PLAIN.greedy and PLAIN.repetition_penalty == 1.0 and PLAIN.no_repeat_ngram_size == 0
    assert DEMO.describe() == "greedy, repetition penalty 1.1, no repeated 4-grams"


def test_repeated_ngrams() -> None:
    assert repeated_ngrams([1, 2, 3, 4, 1, 2, 3, 4, 1], 4) == [(1, 2, 3, 4), (2, 3, 4, 1)]
    assert repeated_ngrams([1, 2, 3, 4, 5], 2) == []


# ----- the tiny random model ------------------------------------------------------------------------


def test_the_processors_see_the_reply_only(random_model) -> None:
    """The prompt goes in as embeddings: a processor's input_ids start empty and grow by one a step."""
    model, processor = random_model
    lengths = []

    def spy(input_ids, scores):
        lengths.append(input_ids.shape[1])
        return scores

    model.generate(
        processor([_conv("hello there")]), None, DecodingOptions(max_new_tokens=4), logits_processor=[spy]
    )
    assert lengths == [0, 1, 2, 3]


def test_ngram_block_stops_the_tiny_model_looping(random_model, audio) -> None:
    model, processor = random_model
    convs = [_conv("Tell me a long story."), _conv([{"type": "audio", "audio": audio}])]
    plain = _reply_ids(model, processor, convs, 80, PLAIN)
    assert all(len(row) == 80 and repeated_ngrams(row, 4) for row in plain)  # greedy alone loops
    for decoding, seed in [(DecodingOptions(no_repeat_ngram_size=4), None), (CONVERSATION, 0), (DEMO, None)]:
        for row in _reply_ids(model, processor, convs, 80, decoding, seed):
            assert len(row) > 4 and repeated_ngrams(row, 4) == [], (decoding, row)


def test_repetition_penalty_changes_a_looping_reply(random_model) -> None:
    model, processor = random_model
    convs = [_conv("Tell me a long story.")]
    plain = _reply_ids(model, processor, convs, 40, PLAIN)[0]
    penalized = _reply_ids(model, processor, convs, 40, DecodingOptions(repetition_penalty=1.3))[0]
    assert penalized != plain
    assert len(set(penalized)) > len(set(plain))  # more distinct tokens


def test_greedy_with_penalties_is_deterministic_and_batch_independent(random_model, audio) -> None:
    model, processor = random_model
    chat = SpeechChat(model, processor)
    convs = [_conv([{"type": "audio", "audio": audio}]), _conv([{"type": "audio", "audio": audio[:9000]}]),
             _conv("good morning")]  # fmt: skip
    settings = DEMO.replace(max_new_tokens=30, frequency_penalty=0.3, presence_penalty=0.2)
    together = chat.respond(convs, settings)
    again = chat.respond(convs, settings)
    alone = [chat.respond([c], settings)[0] for c in convs]
    assert [r.text for r in together] == [r.text for r in again] == [r.text for r in alone]
    stream = chat.stream(convs[0], settings)
    assert "".join(stream).strip() == together[0].text


def test_seeded_sampling_with_the_conversation_defaults_repeats(random_model) -> None:
    model, processor = random_model
    chat = SpeechChat(model, processor)
    convs = [_conv("hello")]
    seeded = CONVERSATION.replace(max_new_tokens=20, seed=3)
    a = chat.respond(convs, seeded)[0].text
    b = chat.respond(convs, seeded)[0].text
    assert a == b
