"""Prompt building through chat templates, speech splicing and labels."""

import numpy as np
import pytest
import torch

from blsp_emo.model.encoder import speech_embedding_count
from blsp_emo.model.processor import IGNORE_INDEX, SPEECH_TOKEN_ID, stop_token_ids
from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS

LLAMA3 = (
    "{{ '<|im_start|>' }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '<|endoftext|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)
NO_SYSTEM = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "{{ '[' + m['role'] + '] ' + m['content'] + ' <|im_end|> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}"
)


def _conv(audio, system=True):
    msgs = [{"role": "system", "content": SYSTEM_PROMPTS["default"]}] if system else []
    msgs.append(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": INSTRUCTIONS["continue"]},
                {"type": "audio", "audio": audio},
            ],
        }
    )
    return msgs


@pytest.mark.parametrize("template", [None, LLAMA3, NO_SYSTEM])
def test_speech_spliced_at_placeholder_for_any_template(random_model, template):
    _, processor = random_model
    if template:
        processor.tokenizer.chat_template = template
    audio = np.zeros(16000 * 2, dtype=np.float32)
    conv = _conv(audio, system=template != NO_SYSTEM)
    enc = processor.encode(conv)
    n = speech_embedding_count(len(audio))
    slots = [i for i, t in enumerate(enc.input_ids) if t == SPEECH_TOKEN_ID]
    assert len(slots) == n and slots == list(range(slots[0], slots[0] + n))  # one contiguous run
    # Text around the slots is the rendered template split at the audio part, except that the text
    # before the speech loses its trailing spaces: the speech stands for " word word ..." (splice rule).
    text_conv = [
        {
            "role": m["role"],
            "content": m["content"] if isinstance(m["content"], str) else INSTRUCTIONS["continue"] + "@@",
        }
        for m in conv
    ]
    rendered = processor.tokenizer.apply_chat_template(text_conv, tokenize=False, add_generation_prompt=True)
    before, after = rendered.split("@@")
    tok = processor.tokenizer
    assert before.endswith(": ")  # the instruction's space is what the rule strips
    assert tok.decode(enc.input_ids[: slots[0]]) == before.rstrip(" ")
    assert tok.decode(enc.input_ids[slots[-1] + 1 :]) == after


def test_labels_only_on_response_tokens(random_model):
    _, processor = random_model
    conv = _conv(np.zeros(16000, dtype=np.float32))
    batch = processor([conv, conv[-1:]], responses=["Sure thing.", "Hi"], truncated=[False, True])
    labels, ids = batch["labels"], batch["input_ids"]
    for row in range(2):
        supervised = (labels[row] != IGNORE_INDEX).nonzero().flatten()
        assert supervised.numel() > 0
        # supervised tokens are one contiguous run at the end of the (left-padded) row
        assert supervised.tolist() == list(range(ids.shape[1] - supervised.numel(), ids.shape[1]))
        assert torch.equal(labels[row, supervised], ids[row, supervised])
        assert not (ids[row, supervised] == SPEECH_TOKEN_ID).any()
    text0 = processor.tokenizer.decode(labels[0][labels[0] != IGNORE_INDEX])
    text1 = processor.tokenizer.decode(labels[1][labels[1] != IGNORE_INDEX])
    assert text0 == "Sure thing.<|im_end|>"  # end of turn supervised when not truncated
    assert text1 == "Hi"  # a truncated target gets no end-of-turn


def test_left_padding_and_audio_fields(random_model):
    _, processor = random_model
    a, b = np.zeros(16000, dtype=np.float32), np.zeros(40000, dtype=np.float32)
    batch = processor([_conv(a), _conv(b)])
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()
    assert batch["speech_lengths"].tolist() == [speech_embedding_count(16000), speech_embedding_count(40000)]
    assert batch["feature_lengths"].tolist() == [100, 250]
    assert "labels" not in batch


def test_multi_turn_keeps_earlier_speech(random_model):
    _, processor = random_model
    a, b = np.zeros(16000, dtype=np.float32), np.zeros(32000, dtype=np.float32)
    conv = [
        {"role": "user", "content": [{"type": "audio", "audio": a}]},
        {"role": "assistant", "content": "I hear you."},
        {"role": "user", "content": [{"type": "text", "text": "And now? "}, {"type": "audio", "audio": b}]},
    ]
    enc = processor.encode(conv)
    assert len(enc.audios) == 2
    assert sum(t == SPEECH_TOKEN_ID for t in enc.input_ids) == speech_embedding_count(
        16000
    ) + speech_embedding_count(32000)


def test_stop_tokens_include_end_of_turn(random_model):
    _, processor = random_model
    ids = stop_token_ids(processor.tokenizer)
    assert processor.tokenizer.convert_tokens_to_ids("<|im_end|>") in ids
