"""Length bucketing for the encoder: batches of similar lengths, the padded share, and the evaluation
features that encode their clips in buckets."""

from __future__ import annotations

import numpy as np
import pytest

from blsp_emo.model.encoder import length_buckets, padded_share


def test_buckets_take_clips_in_length_order() -> None:
    assert length_buckets([50, 10, 40, 12], 2) == [[1, 3], [2, 0]]
    assert length_buckets([7, 3, 5, 3, 9], 2) == [[1, 3], [2, 0], [4]]  # ties keep input order
    assert length_buckets([], 4) == []
    with pytest.raises(ValueError, match="batch_size"):
        length_buckets([1, 2], 0)


def test_padded_share_counts_the_padding_of_each_batch() -> None:
    lengths = [50, 10, 40, 12]  # 112 real frames
    assert padded_share(lengths, [[1, 3], [2, 0]]) == pytest.approx(1 - 112 / (2 * 12 + 2 * 50))
    assert padded_share(lengths, [[0, 1], [2, 3]]) == pytest.approx(1 - 112 / (2 * 50 + 2 * 40))
    assert padded_share(lengths, [[0, 1], [2, 3]], width=1500) == pytest.approx(1 - 112 / 6000)
    assert padded_share([5, 5], [[0, 1]]) == 0.0
    with pytest.raises(ValueError, match="does not fit"):
        padded_share(lengths, [[0]], width=20)


def test_buckets_pad_less_than_arrival_order() -> None:
    rng = np.random.default_rng(3)
    lengths = [int(x) for x in rng.integers(100, 300, 24)]
    for batch in (4, 8):
        arrival = [list(range(s, s + batch)) for s in range(0, 24, batch)]
        buckets = length_buckets(lengths, batch)
        assert sorted(i for b in buckets for i in b) == list(range(24))
        assert all(len(b) <= batch for b in buckets)
        assert padded_share(lengths, buckets) < padded_share(lengths, arrival) / 2


def test_evaluation_features_encode_in_buckets_and_keep_the_input_order(monkeypatch) -> None:
    import blsp_emo.model.encoder as encoder_module
    from blsp_emo.evaluation.ser_classifier import WhisperFeatures
    from blsp_emo.model import load_model

    model, processor = load_model("random-tiny")
    features = WhisperFeatures("random-tiny", model=model.encoder, processor=processor)
    rng = np.random.default_rng(0)
    seconds = [3.0, 0.5, 2.9, 0.6, 1.5, 0.55]  # arrival order pairs long with short clips
    clips = [rng.normal(0, 0.1, int(s * 16000)).astype(np.float32) for s in seconds]
    alone = np.stack([features([c], progress=False)[0] for c in clips])

    widths: list[tuple[int, list[int]]] = []
    real = encoder_module.encode_windows

    def recording(encoder, feats, lengths, pad_to_30s=False):
        widths.append((feats.shape[-1], lengths.tolist()))
        return real(encoder, feats, lengths, pad_to_30s)

    monkeypatch.setattr(encoder_module, "encode_windows", recording)
    batched = features(clips, batch_size=2, progress=False)
    assert np.allclose(batched, alone, atol=1e-4)  # rows in input order, masking exact
    # Three batches, each of two clips of similar length: 0.5+0.55, 0.6+1.5, 2.9+3.0 s (mel frames).
    assert [sorted(lengths) for _, lengths in widths] == [[50, 55], [60, 150], [290, 300]]
    assert [width for width, _ in widths] == [55, 150, 300]
