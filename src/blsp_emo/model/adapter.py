"""Modality adapter (Whisper frames -> LLM embeddings, 8x shorter) and the emotion head
(docs/method.md §2)."""

from __future__ import annotations

from typing import TypeVar, overload

import torch
from torch import nn

_Length = TypeVar("_Length", int, torch.Tensor)


@overload
def conv_output_length(length: int, layers: int = 1) -> int: ...
@overload
def conv_output_length(length: torch.Tensor, layers: int = 1) -> torch.Tensor: ...
def conv_output_length(length: _Length, layers: int = 1) -> _Length:
    """Length after ``layers`` convolutions of kernel 5 (or 3), stride 2, matching padding: (L-1)//2+1."""
    for _ in range(layers):
        length = (length - 1) // 2 + 1
    return length


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Boolean mask (B, T): True at the first ``lengths[b]`` positions of each row."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class SpeechAdapter(nn.Module):
    """Three stride-2 Conv1d+GLU layers, a residual bottleneck, and LayerNorm.

    Channels: enc -> 2*enc -GLU-> enc -> 2*enc -GLU-> enc -> 2*llm -GLU-> llm; then
    ``x + fc2(gelu(fc1(x)))`` with a ``bottleneck``-wide hidden layer and no biases; then LayerNorm(llm).
    Padded positions are zeroed after every convolution, so a batch gives each row exactly what it gives
    alone (zero padding is what the convolution sees at a sequence's end).
    """

    def __init__(self, encoder_dim: int, llm_dim: int, bottleneck: int = 512, num_layers: int = 3):
        super().__init__()
        channels = [encoder_dim] * num_layers + [llm_dim]
        self.convs = nn.ModuleList(
            nn.Conv1d(channels[i], 2 * channels[i + 1], kernel_size=5, stride=2, padding=2)
            for i in range(num_layers)
        )
        self.fc1 = nn.Linear(llm_dim, bottleneck, bias=False)
        self.fc2 = nn.Linear(bottleneck, llm_dim, bias=False)
        self.norm = nn.LayerNorm(llm_dim)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map encoder frames (B, T, enc) with true ``lengths`` to (B, T', llm) and the new lengths."""
        x = frames.transpose(1, 2)  # (B, C, T)
        x = x * lengths_to_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
        for conv in self.convs:
            x = nn.functional.glu(conv(x), dim=1)
            lengths = conv_output_length(lengths)
            x = x * lengths_to_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
        x = x.transpose(1, 2)
        x = x + self.fc2(nn.functional.gelu(self.fc1(x)))
        return self.norm(x), lengths


class EmotionHead(nn.Module):
    """Linear(llm_dim -> num_emotions, no bias) on the masked mean of the adapter outputs."""

    def __init__(self, llm_dim: int, num_emotions: int = 5):
        super().__init__()
        self.proj = nn.Linear(llm_dim, num_emotions, bias=False)

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Emotion logits (B, num_emotions) from speech embeddings (B, T, D) with true lengths."""
        mask = lengths_to_mask(lengths, speech.shape[1]).to(speech.dtype)[..., None]
        pooled = (speech * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.proj(pooled)


class LayerMixEmotionHead(nn.Module):
    """Emotion logits from a learned softmax-weighted mix of the encoder's layer statistics (SUPERB style).

    Input: per-utterance mean and standard deviation over frames of every encoder state, each state
    LayerNorm'd without affine parameters first (``encoder.layer_statistics``): (B, L, 2 * D). The mix
    weights start equal; a LayerNorm on the mixed vector then a linear layer give the logits.
    """

    def __init__(self, num_states: int, encoder_dim: int, num_emotions: int = 5):
        super().__init__()
        self.layer_weights = nn.Parameter(torch.zeros(num_states))
        self.norm = nn.LayerNorm(2 * encoder_dim)
        self.proj = nn.Linear(2 * encoder_dim, num_emotions)

    def forward(self, layer_stats: torch.Tensor) -> torch.Tensor:
        """Emotion logits (B, num_emotions) from layer statistics (B, L, 2 * D)."""
        weights = self.layer_weights.softmax(0).to(layer_stats.dtype)
        mixed = (layer_stats * weights[None, :, None]).sum(1)
        return self.proj(self.norm(mixed.to(self.proj.weight.dtype)))


class EmotionToken(nn.Module):
    """One embedding per speech segment that tells the LLM the emotion the head hears.

    The emotion head's probabilities (S, num_emotions) weight a learned table of one embedding per emotion
    (initialised, when a tokenizer is at hand, from the LLM's own embeddings of the emotion words), so the
    LLM reads a soft emotion word in its own input space after the speech (``BlspEmoConfig.emotion_token``).
    """

    def __init__(self, num_emotions: int, llm_dim: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(num_emotions, llm_dim))

    def forward(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Embeddings (S, llm_dim) from emotion probabilities (S, num_emotions)."""
        return probabilities.to(self.table.dtype) @ self.table


def append_per_segment(
    speech: torch.Tensor, lengths: torch.Tensor, extra: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Speech embeddings (S, T, D) with ``extra[s]`` (S, D) written right after segment s's last real
    embedding: (S, T + 1, D) and lengths + 1."""
    out = speech.new_zeros(speech.shape[0], speech.shape[1] + 1, speech.shape[2])
    mask = lengths_to_mask(lengths, speech.shape[1])
    out[:, : speech.shape[1]] = speech * mask[..., None].to(speech.dtype)
    rows = torch.arange(speech.shape[0], device=speech.device)
    out = out.index_put((rows, lengths.to(speech.device)), extra.to(speech.dtype))
    return out, lengths + 1
