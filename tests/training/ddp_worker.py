"""Run by ``torchrun --nproc_per_node=2`` in test_training_distributed.py.

``ddp_worker.py TRAIN OUT``: train, then record per rank: ``rank<r>.safetensors`` (its trained weights)
and ``rank<r>.json`` (the mean loss over all rows before and after training, the world size it saw).

``ddp_worker.py TRAIN OUT interrupted``: the resume scenario's first launch: an uninterrupted run in
``OUT/full``, then the same run in ``OUT/part`` stopped after step 4. ``ddp_worker.py TRAIN OUT resumed``:
the second launch (fresh processes), which resumes ``OUT/part`` to the end. Each rank of each run writes
``rank<r>.safetensors`` into its run folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training_helpers import tiny_config  # noqa: E402

from blsp_emo.training.trainer import Trainer  # noqa: E402

# The resume scenario: stage 2 (LoRA dropout draws from each rank's RNG), duration batching (batches of 1-4
# rows under 8 s of padded audio: 3 micro-batches per rank per epoch), 7 steps, interrupted after step 4;
# with stage 1's KL beside stage 2 (data.semantic_train: the same rows), so each micro-step runs two forward
# and backward passes under DDP and the semantic stream must resume in step too; every other semantic
# micro-batch is on-policy (model.semantic_on_policy: each rank samples its rows' continuations from its
# own model copy, seeded by the micro-batch), so generation under DDP resumes exactly as well.
RESUME = {
    "optim": {"max_steps": 7},
    "data": {"batching": "duration", "batch_seconds": 8, "batch_size": 4},
}


def _save_weights(trainer: Trainer, folder: Path) -> None:
    weights = {k: v.contiguous() for k, v in trainer.unwrapped.trainable_state_dict().items()}
    save_file(weights, str(folder / f"rank{trainer.accelerator.process_index}.safetensors"))


def _resume_run(train: Path, out: Path, stop_after: int = 0, resume: bool = False) -> None:
    run = {"save_steps": 2, **({"stop_after_steps": stop_after} if stop_after else {})}
    data = {**RESUME["data"], "semantic_train": str(train), "semantic_batch_seconds": 6}
    model = {"semantic_on_policy": 0.5, "semantic_on_policy_tokens": 5, "semantic_on_policy_temperature": 0.7}
    config = tiny_config(train, out, "emotion", optim=RESUME["optim"], data=data, run=run, model=model)
    trainer = Trainer(config)
    trainer.fit(resume=resume)
    _save_weights(trainer, out)


def main(train: str, out: str) -> None:
    config = tiny_config(Path(train), Path(out), optim={"max_steps": 6, "lr": 5e-3}, data={"batch_size": 2})
    trainer = Trainer(config)
    rank = trainer.accelerator.process_index
    before = trainer.mean_loss()
    trainer.fit()
    after = trainer.mean_loss()
    _save_weights(trainer, Path(out))
    record = {"before": before, "after": after, "world": trainer.accelerator.num_processes}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    if len(sys.argv) == 3:
        main(sys.argv[1], sys.argv[2])
    elif sys.argv[3] == "interrupted":
        _resume_run(Path(sys.argv[1]), Path(sys.argv[2]) / "full")
        _resume_run(Path(sys.argv[1]), Path(sys.argv[2]) / "part", stop_after=4)
    elif sys.argv[3] == "resumed":
        _resume_run(Path(sys.argv[1]), Path(sys.argv[2]) / "part", resume=True)
    else:
        raise SystemExit(f"unknown scenario {sys.argv[3]!r}")
