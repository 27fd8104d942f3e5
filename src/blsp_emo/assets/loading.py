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
from typing import TYPE_CHECKING, Any, Literal

from blsp_emo.assets.embedded import EMBEDDED
from blsp_emo.errors import ModelNotAvailableError

if TYPE_CHECKING:
    import torch
    from transformers import (
        PreTrainedModel,
        PreTrainedTokenizerBase,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

BaseKind = Literal["whisper", "llm"]  # which half of a preset a name stands for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    """A named pair of base models."""

    whisper: str
    llm: str
    description: str

    def half(self, kind: BaseKind) -> str:
        """The Whisper (``kind="whisper"``) or the LLM (``kind="llm"``) of the pair."""
        if kind == "whisper":
            return self.whisper
        if kind == "llm":
            return self.llm
        raise ValueError(f"a preset has a 'whisper' and an 'llm' half, not {kind!r}")


PRESETS: dict[str, Preset] = {
    "tiny": Preset("whisper-base", "smollm2-135m-instruct", "embedded default: runs on a 2-core CPU"),
    # The paper used Qwen-7B-Chat (remote code); Qwen2.5-7B-Instruct is its plain-transformers successor.
    "paper": Preset(
        "openai/whisper-large-v2", "Qwen/Qwen2.5-7B-Instruct", "paper scale: needs GPUs and a hub"
    ),
}


def is_hub_id(name: str) -> bool:
    """True for a name of the form ``owner/name`` that is not a local path."""
    name = str(name)
    if name.startswith((".", "/", "~")) or name.count("/") != 1 or Path(name).expanduser().exists():
        return False
    owner, repo = name.split("/")
    return bool(owner) and bool(repo) and all(c.isalnum() or c in "-_." for c in owner + repo)


def _named(name: str | os.PathLike, kind: BaseKind) -> str:
    """``name`` as a string, a preset standing for its ``kind`` half."""
    text = str(name)
    return PRESETS[text].half(kind) if text in PRESETS else text


def hub_id(name: str | os.PathLike | None, kind: BaseKind) -> str | None:
    """The hub id of a base-model name: an embedded model's hub original, a preset half's, or the name
    itself when it is a hub id; None for a local folder (its origin is unknown) and for test models."""
    if name is None:
        return None
    text = _named(name, kind)
    if text in EMBEDDED:
        return EMBEDDED[text].hub_id or None
    return text if is_hub_id(text) else None


def hub_download_hint(repo_id: str) -> str:
    """How to get a hub model onto this machine (the command the installed huggingface_hub ships)."""
    return f"download it where the hub is reachable (`hf download {repo_id}`) or pass a local folder"


def offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) forbids hub downloads."""
    return any(
        os.environ.get(var, "0").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def locally_available(name: str | os.PathLike, kind: BaseKind) -> bool:
    """True when ``name`` resolves without the hub: a preset or embedded model whose packages are here, or
    an existing folder."""
    text = _named(name, kind)
    if text in EMBEDDED:
        return EMBEDDED[text].available()
    return Path(text).expanduser().is_dir()


def base_model_name(name: str, recorded_hub_id: str | None, kind: BaseKind) -> str:
    """The name to load a checkpoint's base model from: its recorded local name when that resolves here
    (the embedded copy it was trained on), else its recorded hub id, else the name (whose error says why)."""
    if recorded_hub_id and not locally_available(name, kind) and name != recorded_hub_id:
        log.info("%s is not available here: loading its hub original %s", name, recorded_hub_id)
        return recorded_hub_id
    return name


def resolve(name: str | os.PathLike, kind: BaseKind) -> str:
    """Turn a model name into something ``from_pretrained`` accepts: a local folder path or a hub id.

    ``kind`` is "whisper" or "llm" (it picks the half of a preset). Embedded models are prepared on first
    use.
    """
    name = _named(name, kind)
    if name in EMBEDDED:
        return str(EMBEDDED[name].prepare())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if not is_hub_id(name):
        from blsp_emo.clitools import did_you_mean

        hint = did_you_mean(name, [*PRESETS, *EMBEDDED])
        raise ModelNotAvailableError(
            f"{name!r} is neither a preset ({', '.join(PRESETS)}), an embedded model "
            f"({', '.join(EMBEDDED)}), a local folder, nor a hub id of the form owner/name{hint}"
        )
    _check_hub_reachable(name)
    return name


def _check_hub_reachable(repo_id: str) -> None:
    """Fail fast for a hub id that cannot be loaded offline."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    if offline() and not isinstance(cached, str):
        raise ModelNotAvailableError(
            f"{repo_id} is a hub model that is not in the local hub cache and HF_HUB_OFFLINE is set: "
            + hub_download_hint(repo_id)
        )


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as exc:
        hint = f"; {hub_download_hint(name)}" if is_hub_id(name) else ""
        raise ModelNotAvailableError(f"cannot load {name!r}: {str(exc).splitlines()[0]}{hint}") from None


def load_whisper(
    name: str = "tiny", dtype: torch.dtype | None = None, device: str | torch.device | None = None
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
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


def load_llm(
    name: str = "tiny",
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
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
