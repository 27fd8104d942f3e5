"""Run by ``accelerate launch --config_file configs/accelerate/<fsdp|deepspeed-zero2|deepspeed-zero3>.yaml``
on 2 CPU processes (gloo), in test_distributed_configs.py.

``sharded_worker.py TRAIN OUT first``: an uninterrupted 4-step stage-2 run in ``OUT/full`` (mean loss over
all rows before and after, in ``OUT/full/rank<r>.json``), then the same run in ``OUT/part`` stopped after
step 2 (its checkpoint holds the sharded training state). ``sharded_worker.py TRAIN OUT resumed``: fresh
processes resume ``OUT/part`` to the end. Each rank of each run writes ``rank<r>.safetensors``: the full
trained parameters as that rank sees them (gathered from the shards on every rank); ``rank<r>.json`` also
says how it was sharded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training_helpers import tiny_config  # noqa: E402

from blsp_emo.training.trainer import Trainer  # noqa: E402

SETTINGS = {"optim": {"max_steps": 4, "lr": 5e-3}, "data": {"batch_size": 2}}


def gathered_trainable(trainer: Trainer) -> dict[str, torch.Tensor]:
    """The full trained parameters on this rank, gathered from the shards (FSDP, ZeRO-3) where sharded."""
    from accelerate.utils import DistributedType

    model, kind = trainer.model, trainer.accelerator.distributed_type
    if kind == DistributedType.FSDP:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.summon_full_params(model, writeback=False, rank0_only=False):
            return {
                n.replace("_fsdp_wrapped_module.", ""): p.detach().clone()
                for n, p in model.named_parameters()
                if p.requires_grad
            }
    if kind == DistributedType.DEEPSPEED:
        import deepspeed

        module = trainer.unwrapped
        params = [p for p in module.parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters(params):
            return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    raise SystemExit(f"expected a sharded run (FSDP or DeepSpeed), got {kind}")


def run(train: Path, out: Path, stop_after: int = 0, resume: bool = False, losses: bool = False) -> None:
    run = {"save_steps": 2, **({"stop_after_steps": stop_after} if stop_after else {})}
    trainer = Trainer(tiny_config(train, out, "emotion", **SETTINGS, run=run))
    rank = trainer.accelerator.process_index
    record = {
        "world": trainer.accelerator.num_processes,
        "kind": str(trainer.accelerator.distributed_type),
        # What this rank holds of the trained parameters (FSDP and ZeRO-3 shards are smaller than the whole)
        # and, under DeepSpeed, its ZeRO stage and optimizer.
        "local_numel": sum(
            (p.ds_tensor if hasattr(p, "ds_tensor") else p).numel()  # ZeRO-3: the partition it holds
            for p in trainer.model.parameters()
            if p.requires_grad
        ),
        "zero_stage": getattr(trainer.model, "zero_optimization_stage", lambda: None)(),
        "optimizer": type(getattr(trainer.model, "optimizer", None)).__name__,
    }
    if losses:
        record["before"] = trainer.mean_loss()
    trainer.fit(resume=resume)
    if losses:
        record["after"] = trainer.mean_loss()
    weights = {k: v.float().contiguous() for k, v in gathered_trainable(trainer).items()}
    record["full_numel"] = sum(v.numel() for v in weights.values())
    save_file(weights, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    train_rows, folder, scenario = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    if scenario == "first":
        run(train_rows, folder / "full", losses=True)
        run(train_rows, folder / "part", stop_after=2)
    elif scenario == "resumed":
        run(train_rows, folder / "part", resume=True)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
