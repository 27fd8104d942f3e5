"""Evaluation: tasks (ser, semantic, empathy, spoken instructions), label parsing, metrics, baselines, reports.

Entry points: ``blsp-emo eval ...`` (:mod:`blsp_emo.evaluation.commands` builds an
:class:`~blsp_emo.evaluation.options.EvalOptions`; :mod:`blsp_emo.evaluation.runner` runs it),
:func:`parse_emotion` (the published label rule), :func:`~blsp_emo.evaluation.systems.load_system`
(BLSP-Emo models and cascade baselines behind one interface).
Names load on first use, so that the command line's ``--help`` does not import numpy.
"""

from __future__ import annotations

from blsp_emo.lazy import lazy_exports

_EXPORTS = {
    "classification_report": "blsp_emo.evaluation.metrics",
    "parse_emotion": "blsp_emo.evaluation.labels",
    "rouge_l": "blsp_emo.evaluation.metrics",
}
__all__ = ["classification_report", "parse_emotion", "rouge_l"]

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
