"""The BLSP-Emo model: configuration, modules, processor, loading and inference.

Names are imported lazily (on first use) so that the command line's ``--help`` does not import torch.
"""

from __future__ import annotations

from blsp_emo.lazy import lazy_exports

_EXPORTS = {
    "IGNORE_INDEX": "blsp_emo.model.processor",
    "SPEECH_TOKEN_ID": "blsp_emo.model.processor",
    "BlspEmoConfig": "blsp_emo.model.configuration",
    "BlspEmoModel": "blsp_emo.model.modeling",
    "BlspEmoOutput": "blsp_emo.model.modeling",
    "BlspEmoProcessor": "blsp_emo.model.processor",
    "Reply": "blsp_emo.model.inference",
    "ReplyStream": "blsp_emo.model.inference",
    "SpeechChat": "blsp_emo.model.inference",
    "build_processor": "blsp_emo.model.sources",
    "kl_distillation_loss": "blsp_emo.model.modeling",
    "load_model": "blsp_emo.model.loading",
    "stop_token_ids": "blsp_emo.model.processor",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
