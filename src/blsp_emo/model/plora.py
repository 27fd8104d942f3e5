"""Partial LoRA (PLoRA): a low-rank update applied only at speech-embedding positions
(docs/method.md §2).

Text positions, and every token generated after the prompt, see the untouched LLM, so the LLM's text
behaviour is preserved exactly. The per-position mask lives in a :class:`LoraMask` shared by all wrapped
layers; the model sets it for a block of code (``with model.speech_positions(mask): ...``, which uses
:meth:`LoraMask.positions`). A decoding step whose length differs from the mask (generation after the
prefill) gets no update. PLoRA cannot be merged into the base weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel

# Target module names per architecture (attention projections and MLP).
TARGETS_BY_MODEL_TYPE: dict[str, tuple[str, ...]] = {
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen3": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "qwen": ("c_attn", "c_proj", "w1", "w2"),  # Qwen-1 (remote code), as in the paper
    "gpt2": ("c_attn", "c_proj", "c_fc"),
}
GENERIC_TARGETS = TARGETS_BY_MODEL_TYPE["llama"] + TARGETS_BY_MODEL_TYPE["qwen"]


class LoraMask:
    """Holds the current (B, T) speech-position mask that wrapped layers read; None = no update."""

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None

    @contextmanager
    def positions(self, mask: torch.Tensor | None) -> Iterator[None]:
        """Set ``mask`` for the block; the previous mask is back when it ends, exceptions included."""
        previous, self.mask = self.mask, mask
        try:
            yield
        finally:
            self.mask = previous


class PartialLoRALinear(nn.Module):
    """``base(x) + mask * B(A(dropout(x))) * alpha / r``, with the mask from a shared :class:`LoraMask`."""

    def __init__(self, base: nn.Linear, holder: LoraMask, r: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.holder = holder
        self.scaling = alpha / r
        self.lora_A = nn.Linear(base.in_features, r, bias=False, device=base.weight.device)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, device=base.weight.device)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # starts as the identity update
        self.lora_A.to(base.weight.dtype)
        self.lora_B.to(base.weight.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (some model code reads ``.weight`` of its projections)."""
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        mask = self.holder.mask
        if mask is None or x.dim() != 3 or mask.shape != x.shape[:2]:
            return out
        delta = self.lora_B(self.lora_A(self.dropout(x.to(self.lora_A.weight.dtype)))) * self.scaling
        return out + delta.to(out.dtype) * mask[..., None].to(out.dtype)


def resolve_targets(llm: nn.Module, targets: str | Sequence[str] = "auto") -> tuple[str, ...]:
    """Module-name suffixes to wrap: the architecture's list for ``"auto"``, else the given names."""
    if isinstance(targets, str):
        if targets != "auto":
            return (targets,)
        model_type = llm.config.model_type if isinstance(llm, PreTrainedModel) else ""
        return TARGETS_BY_MODEL_TYPE.get(model_type, GENERIC_TARGETS)
    return tuple(targets)


def apply_partial_lora(
    llm: nn.Module,
    r: int = 16,
    alpha: float = 16,
    dropout: float = 0.05,
    targets: str | Sequence[str] = "auto",
) -> LoraMask:
    """Wrap the target ``nn.Linear`` layers of ``llm`` in place; returns the shared mask holder."""
    names = resolve_targets(llm, targets)
    holder = LoraMask()
    wrapped = 0
    for _, parent in list(llm.named_modules()):
        for child_name, child in list(parent.named_children()):
            if child_name in names and isinstance(child, nn.Linear):
                setattr(parent, child_name, PartialLoRALinear(child, holder, r, alpha, dropout))
                wrapped += 1
    if wrapped == 0:
        raise ValueError(f"partial LoRA found no linear layer named any of {names} in the LLM")
    return holder


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The LoRA A/B parameters inside ``module``."""
    return [p for n, p in module.named_parameters() if ".lora_A." in n or ".lora_B." in n]
