"""The BLSP-Emo model: configuration, modules, processor, loading and inference."""

from blsp_emo.model.configuration import BlspEmoConfig
from blsp_emo.model.inference import Reply, ReplyStream, SpeechChat
from blsp_emo.model.loading import build_processor, load_model
from blsp_emo.model.modeling import BlspEmoModel, BlspEmoOutput, kl_distillation_loss
from blsp_emo.model.processor import IGNORE_INDEX, SPEECH_TOKEN_ID, BlspEmoProcessor, stop_token_ids

__all__ = [
    "IGNORE_INDEX",
    "SPEECH_TOKEN_ID",
    "BlspEmoConfig",
    "BlspEmoModel",
    "BlspEmoOutput",
    "BlspEmoProcessor",
    "Reply",
    "ReplyStream",
    "SpeechChat",
    "build_processor",
    "kl_distillation_loss",
    "load_model",
    "stop_token_ids",
]
