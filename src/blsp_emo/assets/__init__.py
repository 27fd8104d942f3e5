"""Embedded default models: find, convert, cache and load them; presets and name resolution.

Names are imported lazily (on first use) so that the command line's ``--help`` does not import torch.
"""

from __future__ import annotations

import sys
import types

from blsp_emo.lazy import lazy_exports

_EXPORTS = {
    "EMBEDDED": "blsp_emo.assets.embedded",
    "PRESETS": "blsp_emo.assets.loading",
    "EmbeddedModel": "blsp_emo.assets.embedded",
    "Preset": "blsp_emo.assets.loading",
    "cache_dir": "blsp_emo.assets.cache",
    "hub_id": "blsp_emo.assets.loading",
    "load_llm": "blsp_emo.assets.loading",
    "load_whisper": "blsp_emo.assets.loading",
    "resolve": "blsp_emo.assets.loading",
    "transcribe": "blsp_emo.assets.transcribe",
}
__all__ = sorted(_EXPORTS)


class _Package(types.ModuleType):
    """The package's name ``transcribe`` is the function, as when it was imported eagerly: importing the
    submodule ``blsp_emo.assets.transcribe`` (which binds the submodule on its package) binds the function
    instead."""

    def __setattr__(self, name: str, value) -> None:
        if name == "transcribe" and isinstance(value, types.ModuleType) and hasattr(value, "transcribe"):
            value = value.transcribe
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
