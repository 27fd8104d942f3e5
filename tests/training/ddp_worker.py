"""Run by ``torchrun --nproc_per_node=2`` in test_training_distributed.py: train, then record per rank.

Each rank writes ``rank<r>.safetensors`` (its trained weights) and ``rank<r>.json`` (the mean loss over
all rows before and after training, the world size it saw).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training_helpers import tiny_config  # noqa: E402

from blsp_emo.training.trainer import Trainer  # noqa: E402


def main(train: str, out: str) -> None:
    config = tiny_config(Path(train), Path(out), optim={"max_steps": 6, "lr": 5e-3}, data={"batch_size": 2})
    trainer = Trainer(config)
    rank = trainer.accelerator.process_index
    before = trainer.mean_loss()
    trainer.fit()
    after = trainer.mean_loss()
    weights = {k: v.contiguous() for k, v in trainer.unwrapped.trainable_state_dict().items()}
    save_file(weights, str(Path(out) / f"rank{rank}.safetensors"))
    record = {"before": before, "after": after, "world": trainer.accelerator.num_processes}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
