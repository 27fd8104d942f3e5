"""Length rules, masks and the adapter's batch invariance."""

import numpy as np
import pytest
import torch

from blsp_emo.model.adapter import EmotionHead, SpeechAdapter, conv_output_length, lengths_to_mask
from blsp_emo.model.encoder import (
    WINDOW_SAMPLES,
    encode_windows,
    encoder_frames,
    mel_frames,
    speech_embedding_count,
    window_bounds,
)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 8, 9, 100, 1500])
def test_adapter_length_rule_applied_three_times(length):
    expected = length
    for _ in range(3):
        expected = (expected - 1) // 2 + 1
    assert conv_output_length(length, 3) == expected
    adapter = SpeechAdapter(8, 12, bottleneck=4)
    out, lengths = adapter(torch.randn(1, length, 8), torch.tensor([length]))
    assert out.shape == (1, expected, 12)
    assert lengths.tolist() == [expected]


def test_thirty_seconds_gives_188_embeddings():
    assert mel_frames(30 * 16000) == 3000
    assert encoder_frames(3000) == 1500
    assert speech_embedding_count(30 * 16000) == 188


def test_windows_cover_long_audio_without_cap():
    n = 95 * 16000
    bounds = window_bounds(n)
    assert bounds[0] == (0, WINDOW_SAMPLES) and bounds[-1][1] == n and len(bounds) == 4
    total = sum(encoder_frames(mel_frames(e - s)) for s, e in bounds)
    assert speech_embedding_count(n) == conv_output_length(total, 3)


def test_lengths_to_mask():
    mask = lengths_to_mask(torch.tensor([1, 3]), 4)
    assert mask.tolist() == [[True, False, False, False], [True, True, True, False]]


def test_adapter_batch_equals_single():
    torch.manual_seed(0)
    adapter = SpeechAdapter(8, 12, bottleneck=4).eval()
    a, b = torch.randn(1, 40, 8), torch.randn(1, 17, 8)
    padded = torch.zeros(2, 40, 8)
    padded[0], padded[1, :17] = a[0], b[0]
    out, lengths = adapter(padded, torch.tensor([40, 17]))
    alone_b, lb = adapter(b, torch.tensor([17]))
    torch.testing.assert_close(out[1, : int(lb)], alone_b[0], rtol=1e-5, atol=1e-5)
    head = EmotionHead(12)
    torch.testing.assert_close(head(out, lengths)[1], head(alone_b, lb)[0], rtol=1e-5, atol=1e-5)


def test_encoder_masked_batch_equals_single_and_pad_mode_length(random_model):
    model, processor = random_model
    rng = np.random.default_rng(0)
    long, short = rng.standard_normal(48000).astype(np.float32), rng.standard_normal(20000).astype(np.float32)
    feats = processor.audio_features([long, short])
    states, lengths = encode_windows(model.encoder, feats["input_features"], feats["feature_lengths"])
    alone = processor.audio_features([short])
    s2, l2 = encode_windows(model.encoder, alone["input_features"], alone["feature_lengths"])
    assert lengths.tolist() == [encoder_frames(300), encoder_frames(125)]
    torch.testing.assert_close(states[1, : int(l2)], s2[0], rtol=1e-4, atol=1e-4)
    padded, plen = encode_windows(
        model.encoder, alone["input_features"], alone["feature_lengths"], pad_to_30s=True
    )
    assert plen.tolist() == l2.tolist() and padded.shape[1] == int(l2)
