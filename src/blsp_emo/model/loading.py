"""``load_model``: one entry point for the shipped model, presets, checkpoints (folders and hub ids) and
the ``random-tiny`` preset (tiny random base models described by configs, for tests and quick tries).

This module imports :mod:`blsp_emo.model.modeling`; ``modeling`` never imports it back. What both need
(checkpoint folders, base models, the processor) is in :mod:`blsp_emo.model.sources`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blsp_emo.errors import ModelNotAvailableError
from blsp_emo.model.sources import RANDOM_BASE_SEED, RANDOM_TINY, build_processor, checkpoint_folder

if TYPE_CHECKING:
    import torch

    from blsp_emo.model.configuration import BlspEmoConfig
    from blsp_emo.model.modeling import BlspEmoModel
    from blsp_emo.model.processor import BlspEmoProcessor

__all__ = [
    "RANDOM_TINY",
    "SHIPPED_NAME",
    "build_processor",
    "check_model_name",
    "checkpoint_folder",
    "checkpoint_path",
    "default_device",
    "default_model_name",
    "load_model",
    "model_names",
    "random_tiny_config",
    "set_trust_remote_code",
    "shipped_model_path",
    "trust_remote_code_allowed",
    "unknown_model_message",
]

# Whether loading may run code shipped with a base model (transformers' trust_remote_code). Only the command
# line sets it (--trust-remote-code); a checkpoint's or recipe's config never can: a downloaded folder must
# not be able to run its own code just by being loaded.
_TRUST_REMOTE_CODE = False


def set_trust_remote_code(allowed: bool) -> None:
    """Allow (or forbid) remote code for every model this process loads; set from ``--trust-remote-code``."""
    global _TRUST_REMOTE_CODE
    _TRUST_REMOTE_CODE = bool(allowed)


def trust_remote_code_allowed() -> bool:
    """The process setting made by :func:`set_trust_remote_code` (False unless the command line said so)."""
    return _TRUST_REMOTE_CODE


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def random_tiny_config(**overrides: Any) -> BlspEmoConfig:
    """The config of the ``random-tiny`` preset: the random-tiny base configs (a 2-layer Whisper encoder, a
    2-layer Llama, :func:`blsp_emo.model.sources.random_tiny_base_configs`), a 16-wide adapter bottleneck,
    LoRA alpha equal to its rank; ``overrides`` sets further ``BlspEmoConfig`` fields."""
    from blsp_emo.model.configuration import BlspEmoConfig
    from blsp_emo.model.sources import random_tiny_base_configs

    encoder_config, llm_config = random_tiny_base_configs()
    fields: dict[str, Any] = {"adapter_bottleneck": 16, "lora_r": 0, **overrides}
    fields.setdefault("lora_alpha", fields["lora_r"] or 16)
    return BlspEmoConfig(
        whisper_name=RANDOM_TINY,
        llm_name=RANDOM_TINY,
        encoder_config=encoder_config,
        llm_config=llm_config,
        **fields,
    )


def _is_checkpoint(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "blsp_emo"
    except json.JSONDecodeError:
        return False


def load_model(
    name: str = "tiny",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool | None = None,
    **config: Any,
) -> tuple[BlspEmoModel, BlspEmoProcessor]:
    """Load ``(BlspEmoModel, BlspEmoProcessor)``.

    ``name`` is a checkpoint folder or a hub id of one, ``blsp-emo-tiny`` (the trained checkpoint shipped in
    the repository), a preset (``tiny``, ``paper``: base models with an untrained adapter, initialised from
    a fixed seed so runs are repeatable), or ``random-tiny`` (tiny random base models and adapter from a
    fixed seed, for tests and quick tries; :func:`random_tiny_config`). ``config`` overrides
    ``BlspEmoConfig`` fields. ``trust_remote_code`` lets the base LLM run code shipped with it; None takes
    the process setting (:func:`set_trust_remote_code`, from the command line).
    A checkpoint whose config asks for remote code without that permission is refused.
    """
    import torch

    from blsp_emo.assets.loading import PRESETS
    from blsp_emo.model.configuration import BlspEmoConfig
    from blsp_emo.model.modeling import BlspEmoModel, encoder_from_config, llm_from_config
    from blsp_emo.model.sources import pretrained_bases

    allowed = trust_remote_code_allowed() if trust_remote_code is None else bool(trust_remote_code)
    config.pop("trust_remote_code", None)  # only the explicit argument decides
    device = torch.device(device) if device is not None else default_device()
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if name == SHIPPED_NAME:
        shipped = shipped_model_path()
        if shipped is None:
            raise ModelNotAvailableError(
                f"{SHIPPED_NAME!r}: the trained checkpoint is not in this installation "
                "(checkpoints/blsp-emo-tiny; `make reproduce-tiny` trains it)"
            )
        name = str(shipped)
    folder = None if name == RANDOM_TINY or name in PRESETS else checkpoint_path(str(name))
    if folder is None and name not in PRESETS and name != RANDOM_TINY and _looks_like_hub_id(str(name)):
        folder = checkpoint_folder(str(name))
        if not _is_checkpoint(folder):
            raise ModelNotAvailableError(
                f"{name!r} is a hub repository but not a blsp-emo checkpoint (its config.json has no "
                "model_type 'blsp_emo'); base models go into a checkpoint's config, not --model"
            )
    if folder is not None:
        model = BlspEmoModel.from_pretrained(folder, trust_remote_code=allowed, **config)
        processor = build_processor(model.config, folder=folder)
    elif name == RANDOM_TINY or name in PRESETS:
        if name == RANDOM_TINY:
            cfg = random_tiny_config(**config)
        else:
            preset = PRESETS[name]
            cfg = BlspEmoConfig(
                whisper_name=preset.whisper, llm_name=preset.llm, trust_remote_code=allowed, **config
            )
        with torch.random.fork_rng():  # the same seed as from_pretrained: random bases come out the same
            torch.manual_seed(RANDOM_BASE_SEED)
            encoder, llm = pretrained_bases(cfg)
            if name == RANDOM_TINY:
                # the random bases first (encoder, then LLM, as from_pretrained rebuilds them), then the
                # adapter and heads from the seed again: the same weights random-tiny always had
                encoder, llm = encoder_from_config(cfg), llm_from_config(cfg)
                torch.manual_seed(RANDOM_BASE_SEED)
            model = BlspEmoModel(cfg, encoder=encoder, llm=llm)
        processor = build_processor(cfg)
    else:
        raise ModelNotAvailableError(unknown_model_message(str(name)))
    # transformers wraps PreTrainedModel.to in functools.wraps(nn.Module.to), which hides its signature
    return model.to(device=device, dtype=dtype).eval(), processor  # type: ignore[call-arg]


def model_names() -> list[str]:
    """The model names ``--model`` knows without a path: the shipped model, presets and random-tiny."""
    from blsp_emo.assets.loading import PRESETS

    return [SHIPPED_NAME, *PRESETS, RANDOM_TINY]


def unknown_model_message(name: str) -> str:
    """Why ``name`` is not a model, with the known names that are close to it."""
    from blsp_emo.assets.loading import PRESETS
    from blsp_emo.clitools import did_you_mean

    path = Path(name).expanduser()
    if path.is_dir():
        return f"{name}: a folder, but not a blsp-emo checkpoint (needs config.json with model_type blsp_emo)"
    if path.is_file():
        return f"{name}: a file; --model takes a checkpoint folder, a preset or a hub id"
    hint = did_you_mean(name, model_names())
    if not hint and ("/" in name or name.startswith((".", "~"))):
        hint = "; no such folder"
    return (
        f"{name!r} is neither a blsp-emo checkpoint folder, {SHIPPED_NAME}, a preset "
        f"({', '.join(PRESETS)}, {RANDOM_TINY}) nor a hub id (owner/name){hint}"
    )


def check_model_name(name: str | None) -> None:
    """Fail now, before anything loads, when ``name`` cannot be a model (a typo, a missing folder); hub ids
    are checked when they are fetched."""
    from blsp_emo.assets.loading import PRESETS

    if name is None or name in PRESETS or name == RANDOM_TINY:
        return
    if name == SHIPPED_NAME:
        if shipped_model_path() is None:
            raise ModelNotAvailableError(
                f"{SHIPPED_NAME!r}: the trained checkpoint is not in this installation "
                "(checkpoints/blsp-emo-tiny; `make reproduce-tiny` trains it)"
            )
        return
    if checkpoint_path(name) is not None or _looks_like_hub_id(name):
        return
    raise ModelNotAvailableError(unknown_model_message(name))


def _looks_like_hub_id(name: str) -> bool:
    from blsp_emo.assets.loading import is_hub_id

    return is_hub_id(name)


SHIPPED_NAME = "blsp-emo-tiny"


def default_model_name() -> str:
    """The default ``--model``: the shipped trained model when present, else the untrained 'tiny' preset."""
    return SHIPPED_NAME if shipped_model_path() is not None else "tiny"


def checkpoint_path(name: str) -> Path | None:
    """The checkpoint folder ``name`` stands for (a folder, or the shipped model's name), else None."""
    if name == SHIPPED_NAME:
        return shipped_model_path()
    path = Path(str(name)).expanduser()
    return path if _is_checkpoint(path) else None


def shipped_model_path() -> Path | None:
    """Folder of the trained blsp-emo-tiny checkpoint shipped in the repository, if present."""
    candidates = [
        Path(__file__).resolve().parents[3] / "checkpoints" / "blsp-emo-tiny",  # source checkout
        Path(__file__).resolve().parents[1] / "checkpoints" / "blsp-emo-tiny",  # installed package data
    ]
    return next((p for p in candidates if _is_checkpoint(p)), None)
