"""Evaluation: tasks (ser, semantic, empathy, spoken instructions), label parsing, metrics, baselines, reports.

Entry points: ``blsp-emo eval ...`` (:mod:`blsp_emo.evaluation.commands`), :func:`parse_emotion` (the
published label rule), :func:`load_system` (BLSP-Emo models and cascade baselines behind one interface).
Names load on first use, so that the command line's ``--help`` does not import numpy.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "classification_report": "blsp_emo.evaluation.metrics",
    "parse_emotion": "blsp_emo.evaluation.labels",
    "rouge_l": "blsp_emo.evaluation.metrics",
}
__all__ = ["classification_report", "parse_emotion", "rouge_l"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'blsp_emo.evaluation' has no attribute {name!r}")
