"""The cascades' emotion classifiers: logistic regression on pooled Whisper-encoder states
(cascade-asr-ser), or on measured prosody alone (cascade-asr-prosody, :class:`ProsodyFeatures`).

Features: the Whisper encoder's last hidden state, computed on the audio's true length with the
model's masked variable-length encoder (:func:`blsp_emo.model.encoder.encode_windows`), pooled as
[mean, standard deviation] over frames. Classifier: standardisation
followed by multinomial logistic regression with balanced class weights (scikit-learn for fitting).
Training is cached: the fitted weights are stored as safetensors (no pickle) with a JSON side file,
under a key made of the training manifest's content, the Whisper name and the recipe version, so the
same training set is fitted once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from blsp_emo.audio import SAMPLE_RATE
from blsp_emo.errors import UserError
from blsp_emo.io import atomic_path, atomic_write_json
from blsp_emo.prompts import EMOTIONS

if TYPE_CHECKING:
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

log = logging.getLogger(__name__)

RECIPE = "whisper-truelength-meanstd-logreg-v2"
WINDOW = 30 * SAMPLE_RATE
LOAD_BATCHES = 8  # batches of audio loaded at once, then encoded in length buckets


class Clip(Protocol):
    """Audio that loads as 16 kHz mono (an :class:`~blsp_emo.evaluation.dataset.Utterance`)."""

    def load(self) -> np.ndarray: ...


class TranscribedClip(Clip, Protocol):
    """A clip with its transcript (prosody measures the speaking rate in its words)."""

    @property
    def text(self) -> str: ...


def _whisper_encoder(model: Any) -> WhisperEncoder:
    """The WhisperEncoder inside a Whisper model (with or without its LM head) or a BLSP-Emo model, or the
    encoder itself."""
    from transformers.models.whisper.modeling_whisper import (
        WhisperEncoder,
        WhisperForConditionalGeneration,
        WhisperModel,
    )

    from blsp_emo.model.modeling import BlspEmoModel

    if isinstance(model, WhisperEncoder):
        return model
    if isinstance(model, WhisperForConditionalGeneration):
        return model.model.encoder
    if isinstance(model, (WhisperModel, BlspEmoModel)):
        return model.encoder
    raise TypeError(f"no Whisper encoder in a {type(model).__name__}")


class WhisperFeatures:
    """Pooled Whisper-encoder features of audio clips."""

    def __init__(self, whisper: str = "tiny", model=None, processor=None):
        """Load the Whisper named ``whisper``, or use ``model`` (a Whisper model or encoder) and its processor."""
        if model is None or processor is None:
            from blsp_emo.assets import load_whisper

            model, processor = load_whisper(whisper)
        self.name = whisper
        self.encoder = _whisper_encoder(model)
        self.feature_extractor = processor.feature_extractor

    def __call__(
        self, utterances: Sequence[Clip | np.ndarray], batch_size: int = 8, progress: bool = True
    ) -> np.ndarray:
        """Features (n, 2 * d_model) of utterances (objects with ``.load()``) or 16 kHz mono arrays.

        Audio is loaded ``LOAD_BATCHES`` batches at a time; those clips are encoded in length buckets
        (:func:`blsp_emo.model.encoder.length_buckets`: similar lengths together, little padding) on
        their true length (attention-masked, as the BLSP-Emo model encodes them); clips over 30 s use
        their first 30 s. Rows come back in the order of ``utterances``.
        """
        import torch

        from blsp_emo.model.encoder import MIN_SAMPLES, encode_windows, length_buckets

        out: list[np.ndarray | None] = [None] * len(utterances)
        param = next(self.encoder.parameters())
        bar = tqdm(total=len(utterances), desc="whisper features", unit="utt", disable=not progress)
        step = batch_size * LOAD_BATCHES
        with torch.inference_mode():
            for first in range(0, len(utterances), step):
                mels = []
                for item in utterances[first : first + step]:
                    audio = (item if isinstance(item, np.ndarray) else item.load())[:WINDOW]
                    audio = np.pad(audio, (0, max(0, MIN_SAMPLES - len(audio))))
                    mel = self.feature_extractor(
                        audio, sampling_rate=SAMPLE_RATE, return_tensors="np", padding="longest"
                    )
                    mels.append(mel["input_features"][0])
                for bucket in length_buckets([m.shape[-1] for m in mels], batch_size):
                    lengths = torch.tensor([mels[i].shape[-1] for i in bucket])
                    batch = torch.zeros(len(bucket), mels[0].shape[0], int(lengths.max()))
                    for row, i in enumerate(bucket):
                        batch[row, :, : mels[i].shape[-1]] = torch.from_numpy(mels[i])
                    states, frames = encode_windows(
                        self.encoder, batch.to(param.device, param.dtype), lengths
                    )
                    for row, i in enumerate(bucket):
                        x = states[row, : int(frames[row])].float()
                        out[first + i] = torch.cat([x.mean(0), x.std(0, unbiased=False)]).cpu().numpy()
                    bar.update(len(bucket))
        bar.close()
        return np.stack([row for row in out if row is not None]).astype(np.float32)


class ProsodyFeatures:
    """Measured prosody of audio clips: what plain prosody tells about emotion, with no speech model.

    Per clip (``blsp_emo.data.prosody.measure``): log mean F0, F0 range and end rise (semitones),
    speaking rate (words per second of the transcript over the speech span), log RMS, voiced share, and a
    flag for clips where no F0 was found (their F0 values are then 0).
    """

    name = "prosody"

    def __call__(
        self, utterances: Sequence[TranscribedClip | np.ndarray], batch_size: int = 8, progress: bool = True
    ) -> np.ndarray:
        """Features (n, 7) of utterances (objects with ``.load()`` and ``.text``) or 16 kHz mono arrays."""
        from blsp_emo.data.prosody import measure

        out: list[list[float]] = []
        for item in tqdm(utterances, desc="prosody features", unit="utt", disable=not progress):
            audio = item if isinstance(item, np.ndarray) else item.load()
            text = "" if isinstance(item, np.ndarray) else item.text
            p = measure(audio, SAMPLE_RATE, words=len(text.split()) or None)
            missing = not np.isfinite(p.f0_mean)
            values = [
                0.0 if missing else float(np.log(p.f0_mean)),
                0.0 if missing else p.f0_range,
                0.0 if missing or not np.isfinite(p.f0_end_rise) else p.f0_end_rise,
                p.rate if np.isfinite(p.rate) else 0.0,
                float(np.log(p.rms + 1e-4)),
                p.voiced,
                float(missing),
            ]
            out.append(values)
        return np.asarray(out, dtype=np.float32)


@dataclass
class EmotionClassifier:
    """Standardise, then a linear layer and softmax over ``labels``."""

    labels: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray  # (n_labels, dim)
    bias: np.ndarray  # (n_labels,)
    info: dict

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (n, n_labels)."""
        z = ((features - self.mean) / self.scale) @ self.weight.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, features: np.ndarray) -> list[str]:
        """The most probable label of each row."""
        return [self.labels[i] for i in self.probabilities(features).argmax(axis=1)]

    def save(self, path: Path) -> None:
        """Write ``path`` (.safetensors) and ``path`` with .json (labels and training information)."""
        from safetensors.numpy import save_file

        tensors = {"mean": self.mean, "scale": self.scale, "weight": self.weight, "bias": self.bias}
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(tmp))
        atomic_write_json(path.with_suffix(".json"), {"labels": self.labels, **self.info})

    @classmethod
    def load(cls, path: Path) -> EmotionClassifier:
        """Read a classifier written by :meth:`save`."""
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        info = json.loads(path.with_suffix(".json").read_text())
        labels = info.pop("labels")
        return cls(labels, tensors["mean"], tensors["scale"], tensors["weight"], tensors["bias"], info)


def fit_classifier(
    features: np.ndarray, labels: list[str], seed: int = 0, c: float = 1.0
) -> EmotionClassifier:
    """Fit standardisation + balanced multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression

    classes = [e for e in EMOTIONS if e in set(labels)]
    if len(classes) < 2:
        raise UserError(
            f"the emotion classifier needs at least two emotions in its training set, got {classes}"
        )
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-6] = 1.0
    x = (features - mean) / scale
    y = np.array([classes.index(label) for label in labels])
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(x, y)
    weight, bias = model.coef_, model.intercept_
    if len(classes) == 2:  # scikit-learn stores one row for a binary problem
        weight = np.concatenate([-weight / 2, weight / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    train_acc = float((model.predict(x) == y).mean())
    info = {"recipe": RECIPE, "n_train": len(labels), "train_accuracy": train_acc, "C": c}
    return EmotionClassifier(classes, mean, scale, weight, bias, info)


def _cache_key(manifest: Path, whisper: str, split: str | None) -> str:
    h = hashlib.sha256()
    h.update(manifest.read_bytes())
    h.update(f"\0{whisper}\0{split}\0{RECIPE}".encode())
    return h.hexdigest()[:16]


def train_or_load(
    manifest: str | Path,
    features: WhisperFeatures | ProsodyFeatures,
    cache: Path | None = None,
    seed: int = 0,
) -> EmotionClassifier:
    """Fit the classifier on a manifest's training rows, or load it from the cache when already fitted.

    Rows of split "train" are used when the manifest has any, else every labelled row.
    """
    from blsp_emo.assets import cache_dir
    from blsp_emo.data.manifest import read_manifest
    from blsp_emo.evaluation.dataset import emotion_labels, load_utterances

    manifest = Path(manifest)
    rows = list(read_manifest(manifest))
    split = "train" if any(r.split == "train" for r in rows) else None
    cache = cache or cache_dir() / "ser-classifiers"
    path = cache / f"{_cache_key(manifest, features.name, split)}.safetensors"
    if path.is_file() and path.with_suffix(".json").is_file():
        log.info("emotion classifier from cache: %s", path)
        return EmotionClassifier.load(path)
    utterances = [u for u in load_utterances(manifest, split=split) if u.emotion is not None]
    if not utterances:
        raise UserError(f"{manifest}: no emotion-labelled rows to train the cascade's emotion classifier")
    feats = features(utterances)
    classifier = fit_classifier(feats, emotion_labels(utterances), seed=seed)
    classifier.info.update({"manifest": str(manifest), "split": split, "whisper": features.name})
    classifier.info["train_audio"] = sorted(str(u.audio_path.resolve()) for u in utterances)
    classifier.save(path)
    log.info("emotion classifier trained on %d utterances, saved to %s", len(utterances), path)
    return classifier
