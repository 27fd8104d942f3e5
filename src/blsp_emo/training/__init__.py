"""Training of both BLSP-Emo stages on accelerate (single process, DDP, DeepSpeed, FSDP).

Names are imported lazily so that ``blsp-emo --help`` does not import torch.
"""

from __future__ import annotations

from blsp_emo.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "blsp_emo.training.config",
    "load_config": "blsp_emo.training.config",
    "Trainer": "blsp_emo.training.trainer",
    "TrainResult": "blsp_emo.training.trainer",
    "TrainingDivergedError": "blsp_emo.training.trainer",
    "train": "blsp_emo.training.trainer",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
