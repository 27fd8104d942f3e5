"""``load_model``: one entry point for presets, checkpoints and the tiny random test model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from blsp_emo.errors import ModelNotAvailableError

if TYPE_CHECKING:
    import torch

# Keyword arguments that transformers' AutoModel forwards to from_pretrained for hub downloads; a blsp-emo
# checkpoint is resolved by checkpoint_folder() instead.
HUB_LOAD_KWARGS = (
    "cache_dir", "force_download", "local_files_only", "token", "proxies", "subfolder", "_from_auto",
    "_commit_hash", "code_revision", "adapter_kwargs", "attn_implementation",
)  # fmt: skip

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


def build_processor(config, pad_to_30s: bool | None = None, folder: str | os.PathLike | None = None):
    """The processor for a config: the one saved in the checkpoint ``folder`` when it has one, else the
    Whisper feature extractor and the LLM tokenizer of its base models."""
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    from blsp_emo.assets.loading import base_model_name, resolve
    from blsp_emo.model.portable import has_saved_processor, load_saved_processor
    from blsp_emo.model.processor import BlspEmoProcessor
    from blsp_emo.model.testing import RANDOM_TINY, tiny_processor

    if config.llm_name == RANDOM_TINY:
        processor = tiny_processor()
        processor.pad_to_30s = config.pad_to_30s if pad_to_30s is None else pad_to_30s
        return processor
    if folder is not None and has_saved_processor(folder):
        return load_saved_processor(
            folder, config.pad_to_30s if pad_to_30s is None else pad_to_30s, config.trust_remote_code
        )

    whisper = base_model_name(config.whisper_name, getattr(config, "whisper_hub_id", None), "whisper")
    llm = base_model_name(config.llm_name, getattr(config, "llm_hub_id", None), "llm")
    feature_extractor = WhisperFeatureExtractor.from_pretrained(resolve(whisper, "whisper"))
    tokenizer = AutoTokenizer.from_pretrained(resolve(llm, "llm"), trust_remote_code=config.trust_remote_code)
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
    import torch

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
    folder = None if name == "random-tiny" or name in PRESETS else checkpoint_path(str(name))
    if folder is None and name not in PRESETS and name != "random-tiny" and _looks_like_hub_id(str(name)):
        folder = checkpoint_folder(str(name))
        if not _is_checkpoint(folder):
            raise ModelNotAvailableError(
                f"{name!r} is a hub repository but not a blsp-emo checkpoint (its config.json has no "
                "model_type 'blsp_emo'); base models go into a checkpoint's config, not --model"
            )
    if name == "random-tiny":
        model, processor = build_random_tiny(**config)
    elif folder is not None:
        model = BlspEmoModel.from_pretrained(folder, trust_remote_code=allowed, **config)
        processor = build_processor(model.config, folder=folder)
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
        raise ModelNotAvailableError(unknown_model_message(str(name)))
    return model.to(device=device, dtype=dtype).eval(), processor


def model_names() -> list[str]:
    """The model names ``--model`` knows without a path: the shipped model, presets and random-tiny."""
    from blsp_emo.assets.loading import PRESETS

    return [SHIPPED_NAME, *PRESETS, "random-tiny"]


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
        f"({', '.join(PRESETS)}, random-tiny) nor a hub id (owner/name){hint}"
    )


def check_model_name(name: str | None) -> None:
    """Fail now, before anything loads, when ``name`` cannot be a model (a typo, a missing folder); hub ids
    are checked when they are fetched."""
    from blsp_emo.assets.loading import PRESETS

    if name is None or name in PRESETS or name == "random-tiny":
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


def checkpoint_folder(name: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder of a checkpoint named by a path or a hub id (``owner/name``, fetched into the hub
    cache; offline, only a cached copy is used, and a missing one fails with the command to fetch it)."""
    path = Path(str(name)).expanduser()
    if path.exists() or not _looks_like_hub_id(str(name)):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    from blsp_emo.assets.loading import hub_download_hint, offline

    repo_id = str(name)
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=offline()))
    except LocalEntryNotFoundError:
        why = (
            "HF_HUB_OFFLINE is set and it is not in the local hub cache"
            if offline()
            else ("the hub cannot be reached and it is not in the local hub cache")
        )
        raise ModelNotAvailableError(f"{repo_id}: {why}: {hub_download_hint(repo_id)}") from None
    except RepositoryNotFoundError:
        raise ModelNotAvailableError(f"{repo_id}: no such hub repository (or it is private)") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailableError(
            f"{repo_id}: cannot download ({str(exc).splitlines()[0]}): {hub_download_hint(repo_id)}"
        ) from None


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
