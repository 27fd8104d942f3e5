"""The strong cascade's emotion classifier: fitting and the no-pickle round trip (features: integration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blsp_emo.errors import UserError
from blsp_emo.evaluation.ser_classifier import EmotionClassifier, fit_classifier


def _clusters(labels: list[str], per_class: int = 12, dim: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = {label: rng.normal(0, 5, dim) for label in labels}
    x = np.concatenate([centres[label] + rng.normal(0, 0.3, (per_class, dim)) for label in labels])
    y = [label for label in labels for _ in range(per_class)]
    return x.astype(np.float32), y


@pytest.mark.parametrize("labels", [["happy", "sad", "angry", "neutral"], ["sad", "happy"]])
def test_separable_clusters_are_learned(labels: list[str], tmp_path: Path) -> None:
    x, y = _clusters(labels)
    clf = fit_classifier(x, y)
    assert clf.labels == [e for e in ("neutral", "happy", "angry", "sad", "surprise") if e in labels]
    assert clf.predict(x) == y and clf.info["train_accuracy"] == 1.0
    probs = clf.probabilities(x)
    assert probs.shape == (len(y), len(labels)) and np.allclose(probs.sum(1), 1.0)
    path = tmp_path / "clf.safetensors"
    clf.save(path)
    again = EmotionClassifier.load(path)
    assert again.labels == clf.labels and np.allclose(again.probabilities(x), probs, atol=1e-5)
    assert path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle


def test_one_class_is_an_error() -> None:
    with pytest.raises(UserError, match="two emotions"):
        fit_classifier(np.zeros((3, 2), np.float32), ["sad"] * 3)


def test_features_of_a_clip_do_not_depend_on_its_batch() -> None:
    # True-length, masked encoding: a clip batched with a longer one gets the features it gets alone.
    from blsp_emo.evaluation.ser_classifier import WhisperFeatures
    from blsp_emo.model import load_model

    model, processor = load_model("random-tiny")
    features = WhisperFeatures("random-tiny", model=model.encoder, processor=processor)
    rng = np.random.default_rng(0)
    short, long = rng.normal(0, 0.1, 16000).astype(np.float32), rng.normal(0, 0.1, 48000).astype(np.float32)
    alone = features([short], progress=False)
    batched = features([short, long], progress=False)
    assert alone.shape == (1, 2 * model.encoder.config.d_model)
    assert np.allclose(alone[0], batched[0], atol=1e-5)
    assert not np.allclose(batched[0], batched[1], atol=1e-3)


def test_prosody_features_tell_acted_emotions_of_an_unseen_voice_apart() -> None:
    # The cascade-asr-prosody baseline: measured prosody alone, trained on three voices, tested on a fourth.
    from blsp_emo.audio import SAMPLE_RATE, resample
    from blsp_emo.data.synth import list_voices, synthesize
    from blsp_emo.evaluation.ser_classifier import ProsodyFeatures

    class Clip:
        def __init__(self, audio: np.ndarray, text: str) -> None:
            self.audio, self.text = audio, text

        def load(self) -> np.ndarray:
            return self.audio

    voices = list_voices("train", engines=("espeak",))[:4]
    texts = [
        "The shop closes at six today.",
        "My cousin sent me a long letter.",
        "We walked along the river.",
    ]
    clips, labels, voice_of = [], [], []
    for v, voice in enumerate(voices):
        for i, text in enumerate(texts):
            for emotion in ("sad", "happy"):
                audio, rate = synthesize(text, emotion, voice, seed=10 * v + i, expressiveness=2.0)
                clips.append(Clip(resample(audio, rate, SAMPLE_RATE), text))
                labels.append(emotion)
                voice_of.append(v)
    features = ProsodyFeatures()(clips, progress=False)
    assert features.shape == (len(clips), 7) and np.isfinite(features).all()
    sad = features[[i for i, y in enumerate(labels) if y == "sad"]]
    happy = features[[i for i, y in enumerate(labels) if y == "happy"]]
    assert happy[:, 0].mean() > sad[:, 0].mean() and happy[:, 4].mean() > sad[:, 4].mean()  # F0, loudness
    train = [i for i, v in enumerate(voice_of) if v < 3]
    test = [i for i, v in enumerate(voice_of) if v == 3]
    clf = fit_classifier(features[train], [labels[i] for i in train])
    assert clf.predict(features[test]) == [labels[i] for i in test]
