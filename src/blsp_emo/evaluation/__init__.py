"""Evaluation: tasks (ser, semantic, empathy, spoken instructions), label parsing, metrics, baselines, reports.

Entry points: ``blsp-emo eval ...`` (:mod:`blsp_emo.evaluation.commands`), :func:`parse_emotion` (the
published label rule), :func:`load_system` (BLSP-Emo models and cascade baselines behind one interface).
"""

from blsp_emo.evaluation.labels import parse_emotion
from blsp_emo.evaluation.metrics import classification_report, rouge_l

__all__ = ["classification_report", "parse_emotion", "rouge_l"]
