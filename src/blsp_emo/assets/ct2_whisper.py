"""Convert a CTranslate2 (faster-whisper) Whisper ``model.bin`` into a transformers Whisper checkpoint.

The CT2 binary format (version 6): little-endian; header = u32 binary version, u16-length-prefixed
spec name, u32 spec revision, u32 variable count; then per variable: u16-length-prefixed name (with a
trailing NUL), u8 rank, rank x u32 shape, u8 dtype, u32 byte count, raw bytes. Aliases follow and are
ignored. The WhisperConfig is derived from tensor shapes, so any Whisper size converts.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2_variables(path: str | Path) -> dict[str, np.ndarray]:
    """Read every variable of a CTranslate2 model file (binary version 5 or 6) into numpy arrays."""
    with open(path, "rb") as f:
        return _read(f, str(path))


def _read(f: BinaryIO, name: str) -> dict[str, np.ndarray]:
    def u32() -> int:
        return struct.unpack("<I", f.read(4))[0]

    def string() -> str:
        (length,) = struct.unpack("<H", f.read(2))
        return f.read(length).rstrip(b"\0").decode("utf-8")

    version = u32()
    if version not in (5, 6):
        raise ValueError(f"{name}: unsupported CTranslate2 binary version {version}")
    spec = string()
    if not spec.startswith("Whisper"):
        raise ValueError(f"{name}: model spec is {spec!r}, expected a Whisper model")
    u32()  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(u32()):
        var_name = string()
        rank = f.read(1)[0]
        shape = struct.unpack(f"<{rank}I", f.read(4 * rank)) if rank else ()
        dtype_id = f.read(1)[0]
        nbytes = u32()
        if dtype_id not in _DTYPES:
            raise ValueError(f"{name}: variable {var_name} has unknown dtype id {dtype_id}")
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise ValueError(f"{name}: file is truncated inside variable {var_name}")
        variables[var_name] = np.frombuffer(raw, dtype=_DTYPES[dtype_id]).reshape(shape).copy()
    return variables


def _attention(
    prefix: str, src: str, v: dict[str, np.ndarray], out: dict[str, torch.Tensor], fused: str
) -> None:
    """Map one CT2 attention block. ``fused`` is "qkv" (self-attention) or "kv" (cross-attention)."""
    t = {k: torch.from_numpy(a) for k, a in v.items() if k.startswith(src + "/")}
    if fused == "qkv":
        qw, kw, vw = t[f"{src}/linear_0/weight"].chunk(3, dim=0)
        qb, _, vb = t[f"{src}/linear_0/bias"].chunk(3, dim=0)  # CT2 stores a zero k bias
        out_name = "linear_1"
    else:
        qw, qb = t[f"{src}/linear_0/weight"], t[f"{src}/linear_0/bias"]
        kw, vw = t[f"{src}/linear_1/weight"].chunk(2, dim=0)
        _, vb = t[f"{src}/linear_1/bias"].chunk(2, dim=0)
        out_name = "linear_2"
    out.update(
        {
            f"{prefix}.q_proj.weight": qw,
            f"{prefix}.q_proj.bias": qb,
            f"{prefix}.k_proj.weight": kw,
            f"{prefix}.v_proj.weight": vw,
            f"{prefix}.v_proj.bias": vb,
            f"{prefix}.out_proj.weight": t[f"{src}/{out_name}/weight"],
            f"{prefix}.out_proj.bias": t[f"{src}/{out_name}/bias"],
        }
    )


def _norm(dst: str, src: str, v: dict[str, np.ndarray], out: dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = torch.from_numpy(v[f"{src}/gamma"])
    out[f"{dst}.bias"] = torch.from_numpy(v[f"{src}/beta"])


def _linear(dst: str, src: str, v: dict[str, np.ndarray], out: dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = torch.from_numpy(v[f"{src}/weight"])
    out[f"{dst}.bias"] = torch.from_numpy(v[f"{src}/bias"])


def _count_layers(v: dict[str, np.ndarray], side: str) -> int:
    ids = {int(m.group(1)) for k in v if (m := re.match(rf"{side}/layer_(\d+)/", k))}
    return max(ids) + 1


def convert_state_dict(v: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict]:
    """Map CT2 Whisper variables to a transformers ``WhisperForConditionalGeneration`` state dict.

    Returns the state dict and the keyword arguments of the matching ``WhisperConfig``.
    """
    sd: dict[str, torch.Tensor] = {}
    enc_layers, dec_layers = _count_layers(v, "encoder"), _count_layers(v, "decoder")
    sd["model.encoder.conv1.weight"] = torch.from_numpy(v["encoder/conv1/weight"])
    sd["model.encoder.conv1.bias"] = torch.from_numpy(v["encoder/conv1/bias"])
    sd["model.encoder.conv2.weight"] = torch.from_numpy(v["encoder/conv2/weight"])
    sd["model.encoder.conv2.bias"] = torch.from_numpy(v["encoder/conv2/bias"])
    sd["model.encoder.embed_positions.weight"] = torch.from_numpy(v["encoder/position_encodings/encodings"])
    _norm("model.encoder.layer_norm", "encoder/layer_norm", v, sd)
    for i in range(enc_layers):
        dst, src = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        _attention(f"{dst}.self_attn", f"{src}/self_attention", v, sd, "qkv")
        _norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm", v, sd)
        _norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm", v, sd)
        _linear(f"{dst}.fc1", f"{src}/ffn/linear_0", v, sd)
        _linear(f"{dst}.fc2", f"{src}/ffn/linear_1", v, sd)
    sd["model.decoder.embed_tokens.weight"] = torch.from_numpy(v["decoder/embeddings/weight"])
    sd["model.decoder.embed_positions.weight"] = torch.from_numpy(v["decoder/position_encodings/encodings"])
    _norm("model.decoder.layer_norm", "decoder/layer_norm", v, sd)
    for i in range(dec_layers):
        dst, src = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        _attention(f"{dst}.self_attn", f"{src}/self_attention", v, sd, "qkv")
        _norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm", v, sd)
        _attention(f"{dst}.encoder_attn", f"{src}/attention", v, sd, "kv")
        _norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm", v, sd)
        _norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm", v, sd)
        _linear(f"{dst}.fc1", f"{src}/ffn/linear_0", v, sd)
        _linear(f"{dst}.fc2", f"{src}/ffn/linear_1", v, sd)
    vocab, d_model = v["decoder/embeddings/weight"].shape
    config = {
        "vocab_size": int(vocab),
        "d_model": int(d_model),
        "encoder_layers": enc_layers,
        "decoder_layers": dec_layers,
        "encoder_attention_heads": int(v["encoder/num_heads"]),
        "decoder_attention_heads": int(v["decoder/num_heads"]),
        "encoder_ffn_dim": int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "num_mel_bins": int(v["encoder/conv1/weight"].shape[1]),
        "max_source_positions": int(v["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(v["decoder/position_encodings/encodings"].shape[0]),
    }
    return sd, config
