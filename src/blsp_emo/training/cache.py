"""On-disk cache of Whisper encoder outputs, used while the encoder is frozen (the fast path).

Keyed by the audio's content and a prefix that names the encoder (its weights' fingerprint) and the
encoding mode (variable length or 30 s padding), so a changed encoder or mode never reads stale entries.
One safetensors file per utterance, written atomically; several ranks may fill it at once.

Placeholder with the same ``get_or_compute`` interface as ``blsp_emo.data``'s encoder cache: the trainer
uses that one when present.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def encoder_fingerprint(encoder: torch.nn.Module, name: str, pad_to_30s: bool) -> str:
    """A short id of an encoder's weights and encoding mode (the cache key prefix)."""
    digest = hashlib.sha256(f"{name}|pad30={pad_to_30s}".encode())
    for tensor_name, tensor in sorted(encoder.state_dict().items())[:8]:
        digest.update(tensor_name.encode())
        digest.update(tensor.detach().float().cpu().flatten()[:256].numpy().tobytes())
    return digest.hexdigest()[:16]


class EncoderStateCache:
    """Encoder states (T, D) per utterance in ``folder``, under ``key_prefix``."""

    def __init__(self, folder: str | os.PathLike, key_prefix: str):
        self.folder = Path(folder) / key_prefix
        self.folder.mkdir(parents=True, exist_ok=True)

    def key(self, audio: np.ndarray) -> str:
        """Content hash of a 16 kHz float32 signal."""
        return hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def contains(self, audio: np.ndarray) -> bool:
        """True when the states of ``audio`` are cached."""
        return self._path(self.key(audio)).is_file()

    def get(self, audio: np.ndarray) -> torch.Tensor | None:
        """Cached states (T, D) of ``audio``, or None."""
        from safetensors.torch import load_file

        path = self._path(self.key(audio))
        return load_file(str(path))["states"] if path.is_file() else None

    def put(self, audio: np.ndarray, states: torch.Tensor) -> None:
        """Store the states (T, D) of ``audio`` (atomic: temp file + rename)."""
        from safetensors.torch import save_file

        path = self._path(self.key(audio))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"states": states.detach().contiguous().cpu()}, str(tmp))
        os.replace(tmp, path)

    def get_or_compute(
        self, audio: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor]
    ) -> torch.Tensor:
        """Cached states of ``audio``, computing and storing them first when absent."""
        states = self.get(audio)
        if states is None:
            states = compute(audio)
            self.put(audio, states)
        return states
