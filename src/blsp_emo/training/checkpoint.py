"""Training checkpoints: everything a run needs to continue exactly, written atomically, no pickle.

Layout of ``<output_dir>/checkpoints/checkpoint-<step>/``:

- ``model/``: the trained parts (``BlspEmoModel.save_pretrained``: safetensors + config.json); loadable
  on its own with ``load_model(folder)``.
- ``optimizer.safetensors``: AdamW moments per parameter; its param groups as JSON metadata.
- ``scheduler.json``: the learning-rate scheduler's state.
- ``rng_state_<rank>.safetensors``: torch (CPU and CUDA), numpy and Python RNG states of each rank.
- ``trainer_state.json``: step, epoch, the batch sampler's state (epoch, position in it, seed), samples
  seen, elapsed time.

A checkpoint is written into a hidden temporary folder and renamed into place once every rank has
finished, so a crash mid-write never leaves a half checkpoint that ``--resume`` would pick up. Only the
newest ``keep_last`` complete checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blsp_emo.io import atomic_write_json

CHECKPOINT_PREFIX = "checkpoint-"


@dataclass
class TrainerState:
    """Where a run stands (saved in every checkpoint)."""

    global_step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch (0-based)
    # TrainBatchSampler.state_dict(): its epoch, the micro-batches of the epoch already trained (per rank,
    # the same on every rank) and its seed; a resumed run's sampler continues from here
    sampler: dict[str, Any] = field(default_factory=dict)
    samples_seen: int = 0  # training rows consumed, all ranks together
    elapsed_seconds: float = 0.0  # wall time spent training before this checkpoint
    total_steps: int = 0  # planned optimizer steps of the whole run
    world_size: int = 1  # processes the run trains with (a resumed run must use as many)
    grad_accum: int = 1  # micro-batches per optimizer step


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    found = [p for p in found if (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = checkpoint_dirs(root)
    return found[-1] if found else None


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Write an optimizer's state dict as safetensors (tensors) + JSON metadata (groups, scalars)."""
    from safetensors.torch import save_file

    tensors, meta = _flatten_optimizer(optimizer.state_dict())
    if not tensors:  # safetensors refuses an empty file; keep one marker tensor
        tensors["__empty__"] = torch.zeros(1)
    save_file(tensors, str(path), metadata={"meta": json.dumps(meta)})


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Restore an optimizer written by :func:`save_optimizer` (tensors moved to the params' devices)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["meta"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys() if k != "__empty__"}
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_rng_state(path: Path) -> None:
    """Write this process's torch / CUDA / numpy / Python RNG states."""
    from safetensors.torch import save_file

    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True: ("MT19937", keys, pos, has_gauss, cached_gaussian)
    tensors = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64))}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    py_version, py_state, py_gauss = random.getstate()
    meta = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    save_file(tensors, str(path), metadata={"meta": json.dumps(meta)})


def load_rng_state(path: Path) -> None:
    """Restore RNG states written by :func:`save_rng_state`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["meta"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))


def temporary_dir(root: Path, step: int) -> Path:
    """The hidden folder a checkpoint is written into before it is renamed into place."""
    return root / f".{CHECKPOINT_PREFIX}{step}.tmp"


def save_trained_parts(folder: Path, model, full_state: dict[str, torch.Tensor] | None = None) -> None:
    """Write the trained parts as a loadable model folder (``BlspEmoModel.save_pretrained`` format).

    ``full_state`` is the gathered state dict of a sharded model (DeepSpeed ZeRO-3, FSDP); without it the
    model's own (unsharded) parameters are written.
    """
    if full_state is None:
        model.save_pretrained(folder)
        return
    from blsp_emo.model.modeling import write_checkpoint

    # Not model.trainable_state_dict(): on a sharded model that gathers, and only this process calls it.
    keep = {k: v for k, v in full_state.items() if is_trained_key(k, model.config.encoder_trained)}
    write_checkpoint(folder, keep, model.config.to_dict())


def is_trained_key(name: str, encoder_trained: bool) -> bool:
    """Whether a state-dict key is a trained part (``BlspEmoModel.trainable_state_dict``'s choice)."""
    if (
        name.startswith(("adapter.", "emotion_head.", "alignment_head."))
        or ".lora_A." in name
        or ".lora_B." in name
    ):
        return True
    return encoder_trained and name.startswith("encoder.")


def save_main_parts(folder: Path, model, optimizer, scheduler, state: TrainerState, full_state=None) -> None:
    """Rank 0's part of a checkpoint: trained weights, optimizer, scheduler and trainer state."""
    save_trained_parts(folder / "model", model, full_state)
    if optimizer is not None:
        save_optimizer(optimizer, folder / "optimizer.safetensors")
    if scheduler is not None:
        atomic_write_json(folder / "scheduler.json", scheduler.state_dict())
    atomic_write_json(folder / "trainer_state.json", asdict(state))


def finalize(tmp: Path, root: Path, step: int, keep_last: int) -> Path:
    """Rename a fully written checkpoint into place and delete the oldest beyond ``keep_last``."""
    final = root / f"{CHECKPOINT_PREFIX}{step}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(folder: Path) -> TrainerState:
    """Read ``trainer_state.json`` of a checkpoint (one written before the sampler kept its own state
    counted ``micro_batches_in_epoch``: that is the sampler's position in ``epoch``)."""
    data = json.loads((folder / "trainer_state.json").read_text())
    if "micro_batches_in_epoch" in data:
        data["sampler"] = {"epoch": data["epoch"], "position": data.pop("micro_batches_in_epoch")}
    return TrainerState(**data)


def load_trained_weights(model, folder: Path) -> None:
    """Load a checkpoint's trained parts into an already built model (strict on the trained parts)."""
    from safetensors.torch import load_file

    from blsp_emo.model.modeling import WEIGHTS_NAME

    state = load_file(str(folder / "model" / WEIGHTS_NAME))
    expected = set(model.trainable_state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{folder}: checkpoint weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.load_state_dict(state, strict=False)


def sharded_model_dir(folder: Path) -> Path | None:
    """The sharded model state of a checkpoint: accelerate's ``pytorch_model_fsdp_0`` (FSDP) or DeepSpeed's
    ``pytorch_model`` (ZeRO; its shards hold the trained parts as the optimizer's fp32 partitions), or None."""
    fsdp = folder / "accelerate" / "pytorch_model_fsdp_0"
    if (fsdp / ".metadata").is_file():
        return fsdp
    zero = folder / "accelerate" / "pytorch_model"
    return zero if any(zero.glob("*optim_states.pt")) else None


def _read_fsdp_shards(shards: Path, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import torch.distributed.checkpoint as dcp

    reader = dcp.FileSystemReader(str(shards))
    saved = {
        k.removeprefix("model."): v.size
        for k, v in reader.read_metadata().state_dict_metadata.items()
        if isinstance(v, dcp.metadata.TensorStorageMetadata)
    }
    wrong = sorted(k for k in saved if k in own and tuple(own[k].shape) != tuple(saved[k]))
    if wrong:
        raise ValueError(f"{shards}: sharded weights of other shapes than the model's: {wrong[:3]}")
    target = {f"model.{k}": torch.empty_like(own[k]) for k in saved if k in own}
    dcp.load(target, storage_reader=reader, no_dist=True)
    return {k.removeprefix("model."): v for k, v in target.items()}


def load_sharded_weights(model, folder: Path) -> list[str]:
    """Load the sharded model state of a checkpoint written by any number of processes (FSDP or DeepSpeed
    ZeRO-2/3) into a single-process model; every tensor it holds for the model, the trained parts among them.

    FSDP shards are read with ``torch.distributed.checkpoint`` without a process group, ZeRO shards with
    DeepSpeed's ``zero_to_fp32``. Returns the keys loaded. Raises ``ValueError`` when the checkpoint has no
    sharded state or its tensors do not fit the model.
    """
    shards = sharded_model_dir(folder)
    if shards is None:
        raise ValueError(
            f"{folder}: no sharded model state (accelerate/pytorch_model_fsdp_0 of FSDP or "
            "accelerate/pytorch_model of DeepSpeed ZeRO)"
        )
    own = model.state_dict()
    if shards.name == "pytorch_model":
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(shards.parent), tag=shards.name)
        wrong = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
        if wrong:
            raise ValueError(f"{shards}: sharded weights of other shapes than the model's: {wrong[:3]}")
        state = {k: v.to(own[k].dtype) for k, v in state.items() if k in own}
    else:
        state = _read_fsdp_shards(shards, own)
    trained = {k for k in own if is_trained_key(k, model.config.encoder_trained)}
    missing = sorted(trained - set(state))
    if missing:
        raise ValueError(f"{shards}: the sharded state lacks trained weights of the model: {missing[:3]}")
    model.load_state_dict(state, strict=False)
    return sorted(state)
