"""Layer-mixed emotion features: per-layer encoder statistics, the mixing head, cache and live paths."""

from __future__ import annotations

import numpy as np
import torch

from blsp_emo.model import load_model
from blsp_emo.model.encoder import encode_windows_with_stats, layer_statistics, num_layer_states


def _tones(count: int, seconds: float = 1.5, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    audios, labels = [], []
    for i in range(count):
        c = i % 3
        freq = (150, 400, 1200)[c] * (1 + 0.05 * rng.standard_normal())
        a = (0.2 + 0.1 * rng.random()) * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))
        audios.append(a.astype(np.float32))
        labels.append(c)
    return audios, labels


def _manual_stats(encoder, features, n_mel) -> torch.Tensor:
    """Mean and std over frames of each state, LayerNorm'd, from hooks on the layers (one clip)."""
    outputs = []
    hooks = [
        layer.register_forward_hook(
            lambda _m, _i, out: outputs.append(out[0] if isinstance(out, tuple) else out)
        )
        for layer in encoder.layers
    ]
    try:
        final, lengths, _ = encode_windows_with_stats(encoder, features, torch.tensor([n_mel]), stats=False)
    finally:
        for hook in hooks:
            hook.remove()
    n = int(lengths[0])
    x = torch.nn.functional.gelu(encoder.conv1(features))
    x = torch.nn.functional.gelu(encoder.conv2(x)).transpose(1, 2)
    first = x + encoder.embed_positions.weight[: x.shape[1]]
    states = [first[0, :n], *[o[0, :n] for o in outputs], final[0, :n]]
    rows = []
    for h in states:
        normed = torch.nn.functional.layer_norm(h, (h.shape[-1],))
        rows.append(torch.cat([normed.mean(0), normed.std(0, unbiased=False)]))
    return torch.stack(rows)


def test_layer_statistics_are_the_mean_and_std_of_each_normalised_state():
    model, processor = load_model("random-tiny", device="cpu")
    audio = _tones(1, seconds=2.0)[0][0]
    feats = processor.audio_features([audio])
    with torch.no_grad():
        _, lengths, sums = encode_windows_with_stats(
            model.encoder, feats["input_features"], feats["feature_lengths"]
        )
        stats = layer_statistics(sums, lengths)
        manual = _manual_stats(model.encoder, feats["input_features"], int(feats["feature_lengths"][0]))
    assert stats.shape == (1, num_layer_states(model.encoder), 2 * model.encoder.config.d_model)
    torch.testing.assert_close(stats[0], manual, atol=1e-4, rtol=1e-4)


def test_a_clip_gets_the_same_statistics_in_a_batch_and_alone_and_long_audio_pools_its_windows():
    model, processor = load_model("random-tiny", device="cpu", emotion_features="layer_mix")
    short, long_ = _tones(1, seconds=1.3)[0][0], _tones(1, seconds=33.0)[0][0]
    with torch.no_grad():
        both = processor.audio_features([short, long_])
        _, _, batch_stats = model.encode_speech_with_stats(**both)
        _, _, alone = model.encode_speech_with_stats(**processor.audio_features([short]))
        torch.testing.assert_close(batch_stats[0], alone[0], atol=1e-5, rtol=1e-4)
        assert int(both["window_segment"].max()) == 1 and len(both["window_segment"]) == 3  # long = 2 windows
        # the long clip's statistics pool its two windows' frames: the mean is the frame-weighted mean
        windows = processor.audio_features([long_])
        _, lengths, sums = encode_windows_with_stats(
            model.encoder, windows["input_features"], windows["feature_lengths"]
        )
        per_window = layer_statistics(sums, lengths)
        d = model.encoder.config.d_model
        weights = lengths.float() / lengths.sum()
        expected_mean = (per_window[:, :, :d] * weights[:, None, None]).sum(0)
        torch.testing.assert_close(batch_stats[1, :, :d], expected_mean, atol=1e-5, rtol=1e-4)


def test_layer_mix_head_learns_a_separable_toy_problem():
    torch.manual_seed(0)
    model, processor = load_model("random-tiny", device="cpu", emotion_features="layer_mix")
    audios, labels = _tones(30)
    with torch.no_grad():
        _, _, stats = model.encode_speech_with_stats(**processor.audio_features(audios))
    head, y = model.emotion_head, torch.tensor(labels)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(head(stats[:21]), y[:21])
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.8 * first
    right = int((head(stats[21:]).argmax(-1) == y[21:]).sum())
    assert right >= 7, right  # of 9 held-out clips of the same tones (chance: 3)
    assert not torch.allclose(head.layer_weights, torch.zeros_like(head.layer_weights))  # the mix moved


def test_stage2_forward_with_cached_statistics_equals_the_live_path():
    model, processor = load_model("random-tiny", device="cpu", lora_r=4, emotion_features="layer_mix")
    audios, labels = _tones(3)
    convs = [[{"role": "user", "content": [{"type": "audio", "audio": a}]}] for a in audios]
    batch = processor(convs, responses=["fine.", "ok.", "sure."], truncated=[False] * 3)
    emotion = torch.tensor(labels)
    with torch.no_grad():
        live = model(**batch, emotion_labels=emotion)
        states, lengths, stats = model.encode_speech_with_stats(**batch)
        cached = {
            k: v for k, v in batch.items() if k not in ("input_features", "feature_lengths", "window_segment")
        }
        from_cache = model(
            **cached,
            encoder_states=states,
            encoder_lengths=lengths,
            encoder_layer_stats=stats,
            emotion_labels=emotion,
        )
    torch.testing.assert_close(live.emotion_logits, from_cache.emotion_logits)
    torch.testing.assert_close(live.loss, from_cache.loss)
    probs = model.predict_emotion(processor.audio_features(audios))
    torch.testing.assert_close(probs, live.emotion_logits.softmax(-1), atol=1e-5, rtol=1e-5)


def test_stage2_training_with_the_layer_mix_head_saves_and_reloads_it(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from training_helpers import tiny_config, write_tone_rows

    from blsp_emo.training.trainer import train

    data = write_tone_rows(tmp_path / "data")
    config = tiny_config(
        data, tmp_path / "out", "emotion", model={"emotion_features": "layer_mix"}, optim={"max_steps": 3}
    )
    result = train(config)
    model, processor = load_model(str(result.final_dir), device="cpu")
    assert model.config.emotion_features == "layer_mix" and model.needs_layer_stats
    assert any(k.startswith("emotion_head.layer_weights") for k in model.trainable_state_dict())
    cache_files = list((tmp_path / "out" / "encoder-cache").rglob("*.safetensors"))
    assert len(cache_files) == 2 * 12  # states and layer statistics per clip
