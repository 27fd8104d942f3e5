"""Tiny random models for tests: no files, each builds in well under a second.

The ``random-tiny`` preset itself (``load_model("random-tiny")``) lives in ``blsp_emo.model.loading``;
these helpers build its parts, or stand-alone tiny bases, for tests that need a module rather than a
whole model.
"""

from __future__ import annotations

from typing import Any

from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    WhisperConfig,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from blsp_emo.model.loading import load_model, random_tiny_config
from blsp_emo.model.modeling import BlspEmoModel
from blsp_emo.model.processor import BlspEmoProcessor
from blsp_emo.model.sources import (
    build_processor,
    llama_config,
    random_tiny_tokenizer,
    whisper_encoder_config,
)


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """The random-tiny tokenizer: byte-level BPE with ChatML special tokens and chat template."""
    return random_tiny_tokenizer()


def tiny_whisper_encoder(d_model: int = 32, layers: int = 2) -> WhisperEncoder:
    """A random Whisper encoder with the real front end (80 mel bins, 1500 positions)."""
    return WhisperEncoder(WhisperConfig.from_dict(whisper_encoder_config(d_model, layers)))


def tiny_llm(vocab_size: int, hidden: int = 48, layers: int = 2) -> LlamaForCausalLM:
    """A random Llama causal LM."""
    return LlamaForCausalLM(LlamaConfig.from_dict(llama_config(vocab_size, hidden, layers)))


def build_random_tiny(**overrides: Any) -> tuple[BlspEmoModel, BlspEmoProcessor]:
    """``(model, processor)`` of the random-tiny preset on the CPU; ``overrides`` sets config fields."""
    return load_model("random-tiny", device="cpu", **overrides)


def tiny_processor() -> BlspEmoProcessor:
    """The processor of the random-tiny preset."""
    return build_processor(random_tiny_config())


def random_tiny_bases() -> tuple[WhisperEncoder, PreTrainedModel]:
    """The random-tiny base models, as the preset (and a reloaded random-tiny checkpoint) builds them."""
    model, _ = build_random_tiny()
    return model.encoder, model.llm
