"""Resolve model names and load Whisper and the chat LLM.

Anywhere a model is named the user may give: a preset (``tiny``, ``paper``), an embedded model name
(``whisper-base``, ``smollm2-135m-instruct``), a local transformers folder, or a hub id. Hub ids load
through the same code path; with ``HF_HUB_OFFLINE=1`` and nothing cached they fail at once with a clear
error instead of hanging.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from blsp_emo.assets.embedded import EMBEDDED
from blsp_emo.errors import ModelNotAvailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    """A named pair of base models."""

    whisper: str
    llm: str
    description: str


PRESETS: dict[str, Preset] = {
    "tiny": Preset("whisper-base", "smollm2-135m-instruct", "embedded default: runs on a 2-core CPU"),
    # The paper used Qwen-7B-Chat (remote code); Qwen2.5-7B-Instruct is its plain-transformers successor.
    "paper": Preset(
        "openai/whisper-large-v2", "Qwen/Qwen2.5-7B-Instruct", "paper scale: needs GPUs and a hub"
    ),
}


def resolve(name: str | os.PathLike, kind: str) -> str:
    """Turn a model name into something ``from_pretrained`` accepts: a local folder path or a hub id.

    ``kind`` is "whisper" or "llm" (it picks the half of a preset). Embedded models are prepared on first
    use.
    """
    name = str(name)
    if name in PRESETS:
        name = getattr(PRESETS[name], kind)
    if name in EMBEDDED:
        return str(EMBEDDED[name].prepare())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelNotAvailableError(
            f"{name!r} is neither a preset ({', '.join(PRESETS)}), an embedded model "
            f"({', '.join(EMBEDDED)}), a local folder, nor a hub id of the form owner/name"
        )
    _check_hub_reachable(name)
    return name


def _check_hub_reachable(repo_id: str) -> None:
    """Fail fast for a hub id that cannot be loaded offline."""
    from huggingface_hub import try_to_load_from_cache

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    cached = try_to_load_from_cache(repo_id, "config.json")
    if offline and not isinstance(cached, str):
        raise ModelNotAvailableError(
            f"{repo_id} is a hub model that is not in the local hub cache and HF_HUB_OFFLINE is set: "
            "download it on a machine with hub access (huggingface-cli download) or pass a local folder"
        )


def _from_pretrained(loader, name: str, **kwargs):
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as exc:
        raise ModelNotAvailableError(f"cannot load {name!r}: {str(exc).splitlines()[0]}") from None


def load_whisper(name: str = "tiny", dtype=None, device=None):
    """Load a Whisper model and its processor (feature extractor + tokenizer).

    Returns ``(WhisperForConditionalGeneration, WhisperProcessor)``.
    """
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    path = resolve(name, "whisper")
    model = _from_pretrained(WhisperForConditionalGeneration, path, dtype=dtype or torch.float32)
    processor = _from_pretrained(WhisperProcessor, path)
    if device is not None:
        model.to(device)
    return model.eval(), processor


def load_llm(name: str = "tiny", dtype=None, device=None, trust_remote_code: bool = False):
    """Load a chat LLM and its tokenizer; the tokenizer must carry a chat template.

    Returns ``(AutoModelForCausalLM, AutoTokenizer)``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(name, "llm")
    tokenizer = _from_pretrained(AutoTokenizer, path, trust_remote_code=trust_remote_code)
    if not tokenizer.chat_template:
        raise ModelNotAvailableError(f"{name!r}: the tokenizer has no chat template; a chat LLM is needed")
    model = _from_pretrained(
        AutoModelForCausalLM, path, dtype=dtype or torch.float32, trust_remote_code=trust_remote_code
    )
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer
