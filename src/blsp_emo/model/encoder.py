"""Whisper encoder on the true length of the audio (attention-masked), with the paper's 30 s padding as
an option, and the length rules that tie audio samples to speech-embedding counts.

transformers' ``WhisperEncoder.forward`` insists on 3000 mel frames; this module reuses its layers but
runs them on variable-length, masked input, so a 4 s clip costs 200 frames of work instead of 1500.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, overload

import torch
from torch import nn
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from blsp_emo.model.adapter import conv_output_length, lengths_to_mask

HOP_LENGTH = 160  # mel frames are 10 ms apart at 16 kHz
WINDOW_FRAMES = 3000  # one Whisper window: 30 s
WINDOW_SAMPLES = WINDOW_FRAMES * HOP_LENGTH
MIN_SAMPLES = 1600  # shorter audio is padded with silence to 0.1 s


def window_bounds(num_samples: int) -> list[tuple[int, int]]:
    """Split a signal into 30 s windows: (start, end) sample indices; at least one window."""
    num_samples = max(num_samples, MIN_SAMPLES)
    return [(s, min(s + WINDOW_SAMPLES, num_samples)) for s in range(0, num_samples, WINDOW_SAMPLES)]


def mel_frames(num_samples: int) -> int:
    """Mel frames Whisper's feature extractor yields for a window of ``num_samples`` (max 3000)."""
    return min(max(num_samples, MIN_SAMPLES) // HOP_LENGTH, WINDOW_FRAMES)


_Frames = TypeVar("_Frames", int, torch.Tensor)


@overload
def encoder_frames(n_mel: int) -> int: ...
@overload
def encoder_frames(n_mel: torch.Tensor) -> torch.Tensor: ...
def encoder_frames(n_mel: _Frames) -> _Frames:
    """Encoder output frames for ``n_mel`` mel frames (conv2 has stride 2): (n - 1) // 2 + 1."""
    return conv_output_length(n_mel, 1)


def speech_embedding_count(num_samples: int, adapter_layers: int = 3) -> int:
    """Number of speech embeddings the model places in the prompt for audio of ``num_samples``."""
    total = sum(encoder_frames(mel_frames(e - s)) for s, e in window_bounds(num_samples))
    return int(conv_output_length(total, adapter_layers))


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of at most ``batch_size`` indices into ``lengths``, taken in length order, so the clips
    encoded together are of similar length and little padding is encoded (shortest batch first).

    Every index appears once; a caller restores its own order from the indices."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def padded_share(lengths: Sequence[int], batches: Sequence[Sequence[int]], width: int | None = None) -> float:
    """Share of the encoded frames that are padding when ``batches`` (lists of indices into ``lengths``)
    are each encoded padded to their longest clip, or to ``width`` frames when given (30 s padding)."""
    encoded = real = 0
    for batch in batches:
        if not batch:
            continue
        longest = max(lengths[i] for i in batch)
        if width is not None and longest > width:
            raise ValueError(f"a clip of {longest} frames does not fit the width of {width} frames")
        encoded += len(batch) * (longest if width is None else width)
        real += sum(lengths[i] for i in batch)
    return 0.0 if encoded == 0 else 1.0 - real / encoded


def encode_windows(
    encoder: WhisperEncoder, features: torch.Tensor, mel_lengths: torch.Tensor, pad_to_30s: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a transformers ``WhisperEncoder`` on mel windows (W, n_mels, F) with true lengths.

    Returns encoder states (W, T, D) and their true lengths (W,); see :func:`encode_windows_with_stats`.
    """
    states, lengths, _ = encode_windows_with_stats(encoder, features, mel_lengths, pad_to_30s, stats=False)
    return states, lengths


def num_layer_states(encoder: WhisperEncoder) -> int:
    """How many states :func:`encode_windows_with_stats` summarises: the input to the first layer, each
    layer's output, and the final LayerNorm's output."""
    return len(encoder.layers) + 2


def encode_windows_with_stats(
    encoder: WhisperEncoder,
    features: torch.Tensor,
    mel_lengths: torch.Tensor,
    pad_to_30s: bool = False,
    stats: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run a transformers ``WhisperEncoder`` on mel windows (W, n_mels, F) with true lengths.

    Returns encoder states (W, T, D), their true lengths (W,) and, with ``stats``, per-layer sums over
    each window's true frames of every state (``num_layer_states``) after a non-affine LayerNorm and of
    its square (W, L, 2, D): what the layer-mixed emotion features pool (the early layers keep the
    prosody that the last ones lose). With ``pad_to_30s`` every window is
    encoded unmasked over all 3000 frames, as the paper does, then cut back to its true length. That path
    needs the full 30 s window from Whisper's feature extractor (``BlspEmoProcessor(pad_to_30s=True)``):
    its padded frames hold the log-mel of silence, which depends on the window's loudest frame, so they
    cannot be rebuilt here from a shorter window; padding with 0 instead shifts the states (mean per-frame
    cosine to Whisper-base's own 0.974-0.993 on LibriVox clips), so any other width raises ``ValueError``.
    """
    lengths = encoder_frames(mel_lengths)
    if pad_to_30s:
        if features.shape[-1] != WINDOW_FRAMES:
            raise ValueError(
                f"pad_to_30s needs 30-s windows of {WINDOW_FRAMES} mel frames as Whisper's feature extractor "
                f"pads them (BlspEmoProcessor(pad_to_30s=True)); got {features.shape[-1]} frames"
            )
        mask = None
    else:
        mask = lengths_to_mask(mel_lengths, features.shape[-1])[:, None, :].to(features.dtype)
        features = features * mask
    x = nn.functional.gelu(encoder.conv1(features))
    if mask is not None:
        x = x * mask  # zero past the end, as conv2's own padding would be for a lone clip
    x = nn.functional.gelu(encoder.conv2(x)).transpose(1, 2)
    steps = x.shape[1]
    x = x + encoder.embed_positions.weight[:steps].to(x.dtype)
    x = nn.functional.dropout(x, p=encoder.dropout, training=encoder.training)
    attn_mask = None
    if not pad_to_30s:
        keep = lengths_to_mask(lengths, steps)
        attn_mask = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
        # (W, 1, 1, T): broadcast over heads and queries; padded keys get the dtype's minimum.
        attn_mask = attn_mask.masked_fill(~keep, torch.finfo(x.dtype).min)[:, None, None, :]
    frame_mask = lengths_to_mask(lengths, steps)[..., None].float()
    sums: list[torch.Tensor] = []

    def summarise(h: torch.Tensor) -> None:
        if stats:
            normed = nn.functional.layer_norm(h.float(), (h.shape[-1],)) * frame_mask
            sums.append(torch.stack([normed.sum(1), (normed * normed).sum(1)], dim=1))

    summarise(x)
    for layer in encoder.layers:
        x = layer(x, attn_mask)
        if isinstance(x, tuple):
            x = x[0]
        summarise(x)
    x = encoder.layer_norm(x)
    summarise(x)
    return x[:, : int(lengths.max())], lengths, torch.stack(sums, dim=1) if stats else None


def layer_statistics(
    sums: torch.Tensor, lengths: torch.Tensor, window_segment: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-segment mean and standard deviation over frames of every layer state: (S, L, 2 * D).

    ``sums`` (W, L, 2, D) come from :func:`encode_windows_with_stats`; the windows of one segment (long
    audio) are pooled together, weighted by their lengths.
    """
    if window_segment is None:
        window_segment = torch.arange(sums.shape[0], device=sums.device)
    num_segments = int(window_segment.max()) + 1
    total = sums.new_zeros(num_segments, *sums.shape[1:]).index_add_(0, window_segment, sums)
    frames = sums.new_zeros(num_segments).index_add_(0, window_segment, lengths.to(sums.dtype))
    mean = total[:, :, 0] / frames[:, None, None].clamp(min=1)
    var = (total[:, :, 1] / frames[:, None, None].clamp(min=1) - mean * mean).clamp(min=0)
    return torch.cat([mean, var.sqrt()], dim=-1)


def merge_windows(
    states: torch.Tensor, lengths: torch.Tensor, window_segment: torch.Tensor, num_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the windows of each segment (long audio) into one sequence per segment, zero-padded."""
    pieces: list[list[torch.Tensor]] = [[] for _ in range(num_segments)]
    for w in range(states.shape[0]):
        pieces[int(window_segment[w])].append(states[w, : int(lengths[w])])
    seqs = [torch.cat(p, dim=0) for p in pieces]
    seg_lengths = torch.tensor([s.shape[0] for s in seqs], device=states.device)
    out = states.new_zeros(num_segments, int(seg_lengths.max()), states.shape[-1])
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, seg_lengths
