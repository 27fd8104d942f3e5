"""Classification and text-similarity metrics (scikit-learn's classification metrics, rouge-score).

Unparsed predictions (``None``) count as wrong everywhere: they are never a correct prediction, they
lower the recall of their true class, and they appear in the confusion matrix as an extra last column
"unparsed" so nothing is silently dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from blsp_emo.prompts import EMOTIONS

UNPARSED = "unparsed"


@dataclass
class ClassificationReport:
    """Everything the SER task reports about a set of predictions against true labels."""

    labels: list[str]
    n: int
    accuracy: float
    unweighted_average_recall: float
    macro_f1: float
    per_class_recall: dict[str, float | None]
    per_class_precision: dict[str, float | None]
    per_class_f1: dict[str, float | None]
    support: dict[str, int]
    unparsed: int
    unparsed_rate: float
    # rows: true labels (in ``labels`` order); columns: predicted labels, then "unparsed".
    confusion: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "labels": self.labels,
            "n": self.n,
            "accuracy": self.accuracy,
            "unweighted_average_recall": self.unweighted_average_recall,
            "macro_f1": self.macro_f1,
            "per_class_recall": self.per_class_recall,
            "per_class_precision": self.per_class_precision,
            "per_class_f1": self.per_class_f1,
            "support": self.support,
            "unparsed": self.unparsed,
            "unparsed_rate": self.unparsed_rate,
            "confusion": {"rows": self.labels, "columns": [*self.labels, UNPARSED], "counts": self.confusion},
        }


def _with_unparsed(predicted: Sequence[str | None], labels: Sequence[str]) -> list[str]:
    """Predictions with ``None`` and anything outside ``labels`` replaced by :data:`UNPARSED`."""
    if UNPARSED in labels:
        raise ValueError(f"{UNPARSED!r} is reserved for unparsed predictions and cannot be a label")
    known = set(labels)
    return [p if p is not None and p in known else UNPARSED for p in predicted]


def _check(truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]) -> None:
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions")
    known = set(labels)
    for t in truth:
        if t not in known:
            raise ValueError(f"true label {t!r} is not one of {list(labels)}")


def confusion_matrix(
    truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str] = EMOTIONS
) -> np.ndarray:
    """Counts with rows = true label, columns = predicted label, plus a last column for unparsed.

    A prediction outside ``labels`` (and ``None``) lands in the unparsed column (scikit-learn's
    ``confusion_matrix`` over the labels and "unparsed"; its "unparsed" row is always empty and dropped).
    """
    _check(truth, predicted, labels)
    if not truth:
        return np.zeros((len(labels), len(labels) + 1), dtype=np.int64)
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

    columns = [*labels, UNPARSED]
    matrix = sklearn_confusion_matrix(list(truth), _with_unparsed(predicted, labels), labels=columns)
    return matrix[: len(labels)].astype(np.int64)


def classification_report(
    truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str] = EMOTIONS
) -> ClassificationReport:
    """Accuracy, unweighted average recall (UAR), macro F1, per-class recall/precision/F1, confusion.

    UAR (scikit-learn's ``balanced_accuracy_score``) and macro F1 average over the classes that occur in
    ``truth`` (a class absent from the test set has no recall; its per-class values are ``None``).
    Precision of a class never predicted is 0, and so is the F1 of a class with no hit.
    """
    labels = list(labels)
    matrix = confusion_matrix(truth, predicted, labels)
    n = int(matrix.sum())
    support = matrix.sum(axis=1)
    unparsed = int(matrix[:, -1].sum())
    recall: dict[str, float | None] = dict.fromkeys(labels)
    precision: dict[str, float | None] = dict.fromkeys(labels)
    f1: dict[str, float | None] = dict.fromkeys(labels)
    accuracy = uar = macro_f1 = 0.0
    if n:
        from sklearn.metrics import (
            accuracy_score,
            balanced_accuracy_score,
            f1_score,
            precision_recall_fscore_support,
        )

        y_true, y_pred = list(truth), _with_unparsed(predicted, labels)
        present = [label for label, count in zip(labels, support) if count]
        accuracy = float(accuracy_score(y_true, y_pred))
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true": those have no recall
            warnings.simplefilter("ignore", UserWarning)
            uar = float(balanced_accuracy_score(y_true, y_pred))
        macro_f1 = float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0.0))
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0.0)
        for i, label in enumerate(labels):
            if support[i]:
                precision[label], recall[label], f1[label] = float(p[i]), float(r[i]), float(f[i])
    return ClassificationReport(
        labels=labels,
        n=n,
        accuracy=accuracy,
        unweighted_average_recall=uar,
        macro_f1=macro_f1,
        per_class_recall=recall,
        per_class_precision=precision,
        per_class_f1=f1,
        support={label: int(s) for label, s in zip(labels, support)},
        unparsed=unparsed,
        unparsed_rate=unparsed / n if n else 0.0,
        confusion=matrix.tolist(),
    )


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, candidate: str) -> float:
    """ROUGE-L F-measure (rouge-score package: its tokenizer, Porter stemming, beta = 1).

    An empty text on either side scores 0.0.
    """
    return float(_rouge_scorer().score(reference, candidate)["rougeL"].fmeasure)


def mean_and_ci(values: Sequence[float], z: float = 1.96) -> dict[str, float]:
    """Mean, standard deviation and a normal-approximation 95% confidence half-width."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "ci95": float("nan"), "n": 0}
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {
        "mean": float(arr.mean()),
        "std": std,
        "ci95": z * std / float(np.sqrt(arr.size)),
        "n": int(arr.size),
    }


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b``."""
    a = a / np.clip(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12, None)
    b = b / np.clip(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12, None)
    return a @ b.T


def has_repeated_ngram(text: str, n: int = 4) -> bool:
    """True when some run of ``n`` words occurs twice in ``text`` (case and punctuation folded): the mark
    of a reply that loops ("I'm here to help you ... I'm here to help you ...")."""
    words = [w.strip(".,!?;:\"'()").lower() for w in text.split()]
    words = [w for w in words if w]
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            return True
        seen.add(gram)
    return False


def repeated_ngram_rate(texts: Sequence[str], n: int = 4) -> float:
    """The share of ``texts`` with a repeated ``n``-word run (see :func:`has_repeated_ngram`)."""
    return sum(has_repeated_ngram(t, n) for t in texts) / len(texts) if texts else float("nan")
