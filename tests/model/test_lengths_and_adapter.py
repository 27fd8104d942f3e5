"""Length rules, masks and the adapter's batch invariance."""

import numpy as np
import pytest
import torch

from blsp_emo.model.adapter import EmotionHead, SpeechAdapter, conv_output_length, lengths_to_mask
from blsp_emo.model.encoder import (
    WINDOW_FRAMES,
    WINDOW_SAMPLES,
    encode_windows,
    encoder_frames,
    mel_frames,
    speech_embedding_count,
    window_bounds,
)


# Expected lengths worked out by hand, not with the code's own formula. Each stride-2 convolution (kernel 3
# or 5, "same" padding) keeps ceil(L / 2) frames: position 0 and every second one after it. Whisper's conv2
# has stride 2: 100 mel frames per second -> 50 encoder frames per second. The adapter stacks three such
# convolutions: ceil(ceil(ceil(L / 2) / 2) / 2) = ceil(L / 8) frames, so 6.25 speech embeddings per second.
#   L = 1, 2, 3, 7, 8 -> 1 (a single output covers up to 8 inputs);  9 -> 2;  100 -> 50 -> 25 -> 13;
#   1500 (30 s of encoder frames) -> 750 -> 375 -> 188.
@pytest.mark.parametrize(
    ("length", "expected"),
    [(1, 1), (2, 1), (3, 1), (7, 1), (8, 1), (9, 2), (16, 2), (17, 3), (100, 13), (1500, 188)],
)
def test_adapter_reduces_frames_eightfold_rounding_up(length, expected):
    assert conv_output_length(length, 3) == expected
    assert conv_output_length(torch.tensor([length]), 3).tolist() == [expected]
    adapter = SpeechAdapter(8, 12, bottleneck=4)
    out, lengths = adapter(torch.randn(1, length, 8), torch.tensor([length]))
    assert out.shape == (1, expected, 12)
    assert lengths.tolist() == [expected]


# Samples -> mel frames (hop 160: 100 per second; audio under 0.1 s is padded to 1600 samples = 10 frames)
# -> Whisper encoder frames (stride 2: ceil(mel / 2)) -> speech embeddings (adapter: ceil(frames / 8)).
@pytest.mark.parametrize(
    ("samples", "mel", "frames", "embeddings"),
    [
        (0, 10, 5, 1),  # silence padded to 0.1 s
        (800, 10, 5, 1),  # 0.05 s, padded to 0.1 s
        (16_000, 100, 50, 7),  # 1 s: 50 / 8 = 6.25 -> 7
        (16_800, 105, 53, 7),  # 1.05 s: 105 / 2 = 52.5 -> 53; 53 / 8 = 6.6 -> 7
        (40_000, 250, 125, 16),  # 2.5 s: 125 / 8 = 15.6 -> 16
        (48_000, 300, 150, 19),  # 3 s: 150 / 8 = 18.75 -> 19
        (20_000, 125, 63, 8),  # 1.25 s: 125 / 2 = 62.5 -> 63; 63 / 8 = 7.9 -> 8
        (480_000, 3000, 1500, 188),  # 30 s, one full Whisper window
    ],
)
def test_speech_embedding_counts_by_hand(samples, mel, frames, embeddings):
    assert mel_frames(samples) == mel
    assert encoder_frames(mel) == frames
    assert speech_embedding_count(samples) == embeddings


def test_thirty_seconds_gives_188_embeddings():
    assert mel_frames(30 * 16000) == 3000
    assert encoder_frames(3000) == 1500
    assert speech_embedding_count(30 * 16000) == 188


def test_windows_cover_long_audio_without_cap():
    # 95 s = three 30-s windows + 5 s: 1500 + 1500 + 1500 + 250 = 4750 encoder frames;
    # 4750 / 8 = 593.75 -> 594 embeddings. 30.5 s: 1500 + 25 (0.5 s: 50 mel frames) = 1525 -> 190.6 -> 191.
    n = 95 * 16000
    bounds = window_bounds(n)
    assert bounds == [(0, 480_000), (480_000, 960_000), (960_000, 1_440_000), (1_440_000, 1_520_000)]
    assert speech_embedding_count(n) == 594
    assert speech_embedding_count(488_000) == 191


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
    assert lengths.tolist() == [150, 63]  # 3 s: 300 mel frames -> 150; 1.25 s: 125 -> 62.5 -> 63
    torch.testing.assert_close(states[1, : int(l2)], s2[0], rtol=1e-4, atol=1e-4)
    processor.pad_to_30s = True
    paper = processor.audio_features([short])
    padded, plen = encode_windows(
        model.encoder, paper["input_features"], paper["feature_lengths"], pad_to_30s=True
    )
    assert plen.tolist() == l2.tolist() and padded.shape[1] == int(l2)


def test_pad_to_30s_features_are_whisper_30s_windows(random_model):
    # The paper path must feed what Whisper's extractor gives for audio zero-padded to 30 s: its padded
    # frames are the normalised log-mel of silence, not 0.
    _, processor = random_model
    processor.pad_to_30s = True
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(35 * 16000)).astype(np.float32)  # windows of 30 s and 5 s
    feats = processor.audio_features([audio])
    assert feats["input_features"].shape == (2, 80, WINDOW_FRAMES)
    assert feats["feature_lengths"].tolist() == [3000, 500]  # the true frame counts
    tail = np.pad(audio[WINDOW_SAMPLES:], (0, 2 * WINDOW_SAMPLES - len(audio)))
    expected = processor.feature_extractor(tail, sampling_rate=16000, return_tensors="pt")
    expected = expected["input_features"][0]
    got = feats["input_features"][1]
    assert not torch.equal(got[:, 500:], torch.zeros_like(got[:, 500:]))
    torch.testing.assert_close(got[:, 500:], expected[:, 500:], rtol=0, atol=1e-5)  # the padded region
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_pad_to_30s_encoder_equals_transformers_whisper_encoder(random_model):
    # WhisperEncoder.forward on the extractor's 30-s window, cut to the true length, is the paper path.
    model, processor = random_model
    processor.pad_to_30s = True
    audio = (0.1 * np.random.default_rng(1).standard_normal(3 * 16000)).astype(np.float32)
    feats = processor.audio_features([audio])
    with torch.no_grad():
        states, lengths = encode_windows(
            model.encoder, feats["input_features"], feats["feature_lengths"], pad_to_30s=True
        )
        window = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt")
        reference = model.encoder(input_features=window["input_features"]).last_hidden_state
    n = int(lengths[0])
    assert n == 150  # 3 s: 300 mel frames, halved by conv2
    torch.testing.assert_close(states[0, :n], reference[0, :n], rtol=1e-4, atol=1e-4)


def test_pad_to_30s_encoder_refuses_short_windows(random_model):
    # Zero-padding a short window here would not be Whisper's silence: ask for the 30-s features instead.
    model, processor = random_model
    feats = processor.audio_features([np.zeros(16000, dtype=np.float32)])
    with pytest.raises(ValueError, match="pad_to_30s"):
        encode_windows(model.encoder, feats["input_features"], feats["feature_lengths"], pad_to_30s=True)


@pytest.mark.parametrize("extra", [1, 100, 199, 200, 1599, 1600, 1601])
def test_short_last_window_is_padded_to_min_samples(random_model, extra):
    # A long clip's last window shorter than 0.1 s: the STFT cannot reflect-pad under 201 samples, and
    # speech_embedding_count() counts that window as 0.1 s (mel_frames), so the features must too.
    model, processor = random_model
    audio = np.zeros(WINDOW_SAMPLES + extra, dtype=np.float32)
    feats = processor.audio_features([audio])
    # Every such last window counts as 0.1 s: 10 mel frames (1601 samples // 160 is 10 as well) -> 5 encoder
    # frames; with the full window's 1500 that is 1505 -> 1505 / 8 = 188.1 -> 189 speech embeddings.
    assert feats["feature_lengths"].tolist() == [3000, 10]
    with torch.no_grad():
        states, lengths = model.encode_speech(**feats)
        _, slen = model.speech_embeddings(states, lengths)
    assert lengths.tolist() == [1505]
    assert slen.tolist() == feats["speech_lengths"].tolist() == [189] == [speech_embedding_count(len(audio))]
