"""Embedded default models: find, convert, cache and load them; presets and name resolution."""

from blsp_emo.assets.cache import cache_dir
from blsp_emo.assets.embedded import EMBEDDED, EmbeddedModel
from blsp_emo.assets.loading import PRESETS, Preset, load_llm, load_whisper, resolve
from blsp_emo.assets.transcribe import transcribe

__all__ = [
    "EMBEDDED",
    "PRESETS",
    "EmbeddedModel",
    "Preset",
    "cache_dir",
    "load_llm",
    "load_whisper",
    "resolve",
    "transcribe",
]
