"""The transformers teacher's fast decoding (shared-prefix cache, length buckets, rows leaving the batch)
gives the reference path's continuations (``generate`` on the whole left-padded prompts)."""

from __future__ import annotations

import itertools

import pytest

from blsp_emo.data.target_backends import HFBackend, prefill_groups, truncated
from blsp_emo.model.types import DecodingOptions
from blsp_emo.prompts import Stage

TEXTS = [
    "I'm graduating soon.",
    "My sister called this morning and we talked for an hour about the garden.",
    "Hello.",
    "The long train was late again.",
    "We painted the kitchen yellow last weekend, and it still smells of paint.",
]


def _tiny():
    import torch
    from tiny_models import tiny_llm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    return tiny_llm(len(tokenizer)).eval(), tokenizer


def _conversations() -> list:
    return [Stage.SEMANTIC.teacher_conversation(t) for t in TEXTS[:3]] + [
        Stage.EMOTION.teacher_conversation(t, e) for t, e in zip(TEXTS[3:], ("sad", "happy"))
    ]


def _outputs(backend: HFBackend, conversations: list, max_new_tokens: int) -> list[tuple]:
    return [
        (c.text, truncated(c), c.completion_tokens)
        for batch in backend.generate(conversations, DecodingOptions(max_new_tokens=max_new_tokens, seed=0))
        for c in batch
    ]


def _early_ends(model, tokenizer, conversations: list, max_new_tokens: int) -> list[int]:
    """Tokens that make some rows of the random model end early: the 3rd token of the second row's greedy
    continuation and the 9th of the first row's."""
    import torch

    reference = HFBackend(model, tokenizer, fast_decoding=False)
    picked = []
    for messages, step in ((conversations[1], 2), (conversations[0], 8)):
        ids = torch.tensor([reference.render(messages)])
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
            eos_token_id=reference.eos_ids, pad_token_id=reference.pad_id,
        )  # fmt: skip
        picked.append(int(out[0, ids.shape[1] + step]))
    return picked


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_fast_greedy_equals_generate_when_rows_end_at_different_steps(batch_size: int) -> None:
    model, tokenizer = _tiny()
    conversations = _conversations()
    model.generation_config.eos_token_id = [
        tokenizer.eos_token_id,
        *_early_ends(model, tokenizer, conversations, 12),
    ]
    reference = HFBackend(model, tokenizer, batch_size=batch_size, fast_decoding=False)
    fast = HFBackend(model, tokenizer, batch_size=batch_size)
    expected = _outputs(reference, conversations, 12)
    # The case is a real one: some rows end early (at different steps), some hit the cap.
    lengths = sorted(tokens for _, truncated, tokens in expected if not truncated)
    assert len(lengths) >= 2 and lengths[0] < lengths[-1] < 12
    assert any(truncated for _, truncated, _ in expected)
    assert _outputs(fast, conversations, 12) == expected
    # Shared prefix encoded once: fewer prompt tokens than the prompts hold; rows left the batch.
    prompts = [fast.render(m) for m in conversations]
    assert fast.stats.prompt_tokens < sum(len(p) for p in prompts)
    if batch_size == 5:
        assert fast.stats.row_steps < fast.stats.steps * len(conversations)


def test_fast_greedy_without_an_early_end_and_with_length_buckets() -> None:
    model, tokenizer = _tiny()
    conversations = _conversations()
    fast = HFBackend(model, tokenizer, batch_size=5, prefill_call_tokens=0)  # one bucket per length
    reference = HFBackend(model, tokenizer, batch_size=5, fast_decoding=False)
    assert _outputs(fast, conversations, 9) == _outputs(reference, conversations, 9)
    prompts = [fast.render(m) for m in conversations]
    common = next(i for i in range(min(map(len, prompts))) if len({p[i] for p in prompts}) > 1)
    # Each length bucket unpadded: the prefix once, then every row's own tokens only.
    assert fast.stats.prompt_tokens == common + sum(len(p) - common for p in prompts)
    assert fast.stats.steps == 9 and fast.stats.row_steps == 9 * len(conversations)


def test_sampling_from_the_prefix_cache_draws_the_reference_samples() -> None:
    model, tokenizer = _tiny()
    conversations = _conversations()[:4]
    sampling = DecodingOptions(max_new_tokens=8, temperature=1.0, top_p=0.9)

    def samples(backend: HFBackend, seed: int) -> list[list[str]]:
        return [
            [c.text for c in group]
            for batch in backend.sample(conversations, sampling.replace(seed=seed), 3)
            for group in batch
        ]

    fast = HFBackend(model, tokenizer, batch_size=6)
    reference = HFBackend(model, tokenizer, batch_size=6, fast_decoding=False)
    first = samples(fast, 5)
    assert first == samples(reference, 5)
    assert first != samples(fast, 6)
    assert any(len(set(group)) > 1 for group in first)  # the n samples of a prompt differ
    assert fast.stats.prompt_tokens > 0  # the shared prefix was encoded on its own


def test_generation_config_processors_keep_generate_from_the_prefix() -> None:
    # A repetition penalty makes greedy more than an argmax: generate runs (with the prefix cache).
    model, tokenizer = _tiny()
    model.generation_config.repetition_penalty = 1.5
    conversations = _conversations()
    fast = HFBackend(model, tokenizer, batch_size=5)
    reference = HFBackend(model, tokenizer, batch_size=5, fast_decoding=False)
    penalised = _outputs(reference, conversations, 10)
    assert _outputs(fast, conversations, 10) == penalised
    assert fast.stats.steps == 0 and fast.stats.prompt_tokens > 0  # the prefix cache, not the loop
    model.generation_config.repetition_penalty = 1.0  # the penalty mattered: a plain argmax differs
    assert _outputs(fast, conversations, 10) != penalised and fast.stats.steps > 0


def _brute_force(lengths: list[int], call_tokens: int) -> float:
    ordered = sorted(lengths)
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(ordered) - 1):
        cost, start = 0.0, 0
        for end in [i + 1 for i, cut in enumerate(cuts) if cut] + [len(ordered)]:
            cost += call_tokens + (end - start) * ordered[end - 1]
            start = end
        best = min(best, cost)
    return best


def test_prefill_groups_minimise_padding_plus_calls() -> None:
    assert prefill_groups([3, 30, 4, 31], 4) == [[0, 2], [1, 3]]
    assert prefill_groups([3, 30, 4, 31], 1000) == [[0, 2, 1, 3]]
    assert prefill_groups([5, 5, 5], 0) == [[0, 1, 2]]
    assert prefill_groups([], 16) == []
    with pytest.raises(ValueError, match="call_tokens"):
        prefill_groups([1], -1)
    import random

    rng = random.Random(0)
    for _ in range(30):
        lengths = [rng.randint(1, 40) for _ in range(rng.randint(1, 8))]
        call = rng.choice([0, 4, 16, 64])
        groups = prefill_groups(lengths, call)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        cost = sum(call + len(g) * max(lengths[i] for i in g) for g in groups)
        assert cost == _brute_force(lengths, call)


@pytest.mark.integration
def test_embedded_teacher_fast_decoding_gives_the_reference_continuations() -> None:
    import torch

    torch.set_num_threads(1)
    fast = HFBackend.load("tiny", batch_size=5)
    reference = HFBackend(fast.model, fast.tokenizer, batch_size=5, fast_decoding=False)
    conversations = _conversations()
    expected = _outputs(reference, conversations, 24)
    assert any(not truncated for _, truncated, _ in expected)  # SmolLM2 ends some replies itself
    assert _outputs(fast, conversations, 24) == expected
    assert fast.stats.row_steps < fast.stats.steps * len(conversations)
