"""Encoder outputs on disk while the encoder is frozen: the cache and its key.

The trainer encodes every utterance once before training (``Trainer._fill_cache``) and the collator reads
the states back instead of running Whisper each step. The per-layer statistics that a layer-mixed emotion
head reads are a second cache in the same folder, keyed with ``|layer-stats`` appended to the prefix.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from blsp_emo.errors import UserError
from blsp_emo.io import atomic_path


class StateCache(Protocol):
    """What the collator reads encoder states from (:class:`EncoderCache`, or an in-memory stand-in)."""

    def get_or_compute(
        self, audio: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor]
    ) -> torch.Tensor: ...


def encoder_cache_prefix(encoder: torch.nn.Module, name: str, pad_to_30s: bool) -> str:
    """The encoder-cache key prefix: encoder name, encoding mode and a fingerprint of every weight.

    Every value of every tensor goes into the fingerprint (a changed encoder must never hit a stale
    cache); "pad30v2" marks the paper path since its padded frames hold Whisper's silence (older pad30
    entries were computed on zero padding and are not reused).
    """
    digest = hashlib.sha256()
    for tensor_name, tensor in sorted(encoder.state_dict().items()):
        digest.update(tensor_name.encode() + str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return f"{name}|{'pad30v2' if pad_to_30s else 'variable'}|{digest.hexdigest()[:16]}"


class EncoderCache:
    """Encoder outputs on disk, keyed by sha256(key_prefix + audio samples), as safetensors files.

    ``key_prefix`` must name everything besides the audio that changes the output: the encoder (model name
    or checkpoint hash) and the encoding mode (e.g. "variable" vs "pad30"), e.g.
    ``EncoderCache(folder, "whisper-base|variable")`` (:func:`encoder_cache_prefix` makes one). Only valid
    while the encoder is frozen.
    """

    def __init__(self, folder: str | os.PathLike, key_prefix: str) -> None:
        if not key_prefix:
            raise UserError("EncoderCache needs a key_prefix naming the encoder and the encoding mode")
        self.folder = Path(folder)
        self.key_prefix = key_prefix
        self.hits = 0
        self.misses = 0

    def key(self, audio: np.ndarray) -> str:
        """The cache key of one audio array (content, dtype and shape included)."""
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        digest = hashlib.sha256()
        digest.update(self.key_prefix.encode("utf-8") + b"\0" + str(samples.shape).encode() + b"\0")
        digest.update(samples.tobytes())
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives (two-level fan-out keeps folders small)."""
        return self.folder / key[:2] / f"{key}.safetensors"

    def __contains__(self, audio: np.ndarray) -> bool:
        return self.path(self.key(audio)).is_file()

    def get_or_compute(
        self, audio: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor]
    ) -> torch.Tensor:
        """The cached encoder output for ``audio``, computing and storing it (atomically) on a miss."""
        from safetensors.torch import load_file, save_file

        path = self.path(self.key(audio))
        if path.is_file():
            try:
                tensor = load_file(str(path))["encoder_output"]
                self.hits += 1
                return tensor
            except Exception:  # a damaged entry is recomputed, not trusted
                path.unlink(missing_ok=True)
        tensor = compute(audio)
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"compute must return a torch.Tensor, got {type(tensor).__name__}")
        self.misses += 1
        with atomic_path(path) as tmp:
            save_file(
                {"encoder_output": tensor.detach().cpu().contiguous()},
                str(tmp),
                metadata={"key": self.key_prefix},
            )
        return tensor
