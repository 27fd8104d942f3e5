"""The encoder-cache key is a fingerprint of every encoder weight and the encoding mode."""

from __future__ import annotations

import torch
from tiny_models import tiny_whisper_encoder

from blsp_emo.training.encoder_cache import encoder_cache_prefix


def test_a_one_value_change_anywhere_in_the_encoder_changes_the_key():
    encoder = tiny_whisper_encoder()
    key = encoder_cache_prefix(encoder, "whisper-x", pad_to_30s=False)
    assert key == encoder_cache_prefix(encoder, "whisper-x", pad_to_30s=False)  # stable
    # the last tensor in sorted order, past the first eight the old key looked at, last value
    name, tensor = sorted(encoder.state_dict().items())[-1]
    with torch.no_grad():
        tensor.view(-1)[-1] += 1e-6
    assert encoder_cache_prefix(encoder, "whisper-x", pad_to_30s=False) != key, name


def test_the_encoding_mode_and_name_are_part_of_the_key():
    encoder = tiny_whisper_encoder()
    variable = encoder_cache_prefix(encoder, "whisper-x", pad_to_30s=False)
    assert encoder_cache_prefix(encoder, "whisper-x", pad_to_30s=True) != variable
    assert encoder_cache_prefix(encoder, "whisper-y", pad_to_30s=False) != variable
