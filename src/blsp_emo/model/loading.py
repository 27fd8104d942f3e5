"""``load_model``: one entry point for presets, checkpoints and the tiny random test model."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from blsp_emo.errors import ModelNotAvailableError

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
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_processor(config, pad_to_30s: bool | None = None):
    """The processor for a config: the Whisper feature extractor and the LLM tokenizer of its base models."""
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    from blsp_emo.assets import resolve
    from blsp_emo.model.processor import BlspEmoProcessor
    from blsp_emo.model.testing import RANDOM_TINY, tiny_processor

    if config.llm_name == RANDOM_TINY:
        processor = tiny_processor()
        processor.pad_to_30s = config.pad_to_30s if pad_to_30s is None else pad_to_30s
        return processor

    feature_extractor = WhisperFeatureExtractor.from_pretrained(resolve(config.whisper_name, "whisper"))
    tokenizer = AutoTokenizer.from_pretrained(
        resolve(config.llm_name, "llm"), trust_remote_code=config.trust_remote_code
    )
    return BlspEmoProcessor(
        feature_extractor,
        tokenizer,
        pad_to_30s=config.pad_to_30s if pad_to_30s is None else pad_to_30s,
        adapter_layers=config.adapter_layers,
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
    **config,
):
    """Load ``(BlspEmoModel, BlspEmoProcessor)``.

    ``name`` is a checkpoint folder, ``blsp-emo-tiny`` (the trained checkpoint shipped in the repository), a
    preset (``tiny``, ``paper``: base models with an untrained adapter,
    initialised from a fixed seed so runs are repeatable), or ``random-tiny`` (tiny random weights, for
    tests). ``config`` overrides ``BlspEmoConfig`` fields. ``trust_remote_code`` lets the base LLM run code
    shipped with it; None takes the process setting (:func:`set_trust_remote_code`, from the command line).
    A checkpoint whose config asks for remote code without that permission is refused.
    """
    from blsp_emo.assets import PRESETS
    from blsp_emo.model.configuration import BlspEmoConfig
    from blsp_emo.model.modeling import BlspEmoModel
    from blsp_emo.model.testing import build_random_tiny

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
    if name == "random-tiny":
        model, processor = build_random_tiny(**config)
    elif _is_checkpoint(Path(str(name)).expanduser()):
        model = BlspEmoModel.from_pretrained(
            Path(str(name)).expanduser(), trust_remote_code=allowed, **config
        )
        processor = build_processor(model.config)
    elif name in PRESETS:
        preset = PRESETS[name]
        cfg = BlspEmoConfig(
            whisper_name=preset.whisper, llm_name=preset.llm, trust_remote_code=allowed, **config
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = BlspEmoModel(cfg)
        processor = build_processor(cfg)
    else:
        raise ModelNotAvailableError(
            f"{name!r} is neither a blsp-emo checkpoint folder nor a preset ({', '.join(PRESETS)}, random-tiny)"
        )
    return model.to(device=device, dtype=dtype).eval(), processor


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
