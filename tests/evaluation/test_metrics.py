"""Metrics on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blsp_emo.evaluation.metrics import (
    classification_report,
    confusion_matrix,
    cosine_matrix,
    mean_and_ci,
    rouge_l,
)
from blsp_emo.evaluation.tasks.empathy import emotion_agreement
from blsp_emo.prompts import EMOTIONS

LABELS = ["neutral", "happy", "sad"]


def test_confusion_matrix_with_unparsed_column() -> None:
    truth = ["neutral", "happy", "happy", "sad"]
    pred = ["neutral", "sad", None, "sad"]
    m = confusion_matrix(truth, pred, LABELS)
    assert m.tolist() == [[1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]]


def test_report_by_hand() -> None:
    # neutral: 2 items, both right.  happy: 2 items, 1 right, 1 unparsed.  sad: 1 item, predicted happy.
    truth = ["neutral", "neutral", "happy", "happy", "sad"]
    pred = ["neutral", "neutral", "happy", None, "happy"]
    r = classification_report(truth, pred, LABELS)
    assert r.n == 5 and r.unparsed == 1 and r.unparsed_rate == pytest.approx(0.2)
    assert r.accuracy == pytest.approx(3 / 5)
    assert r.per_class_recall == {"neutral": 1.0, "happy": 0.5, "sad": 0.0}
    assert r.unweighted_average_recall == pytest.approx(0.5)
    # precision: neutral 2/2, happy 1/2, sad 0 (never predicted); F1: 1, 0.5, 0
    assert r.per_class_precision == {"neutral": 1.0, "happy": 0.5, "sad": 0.0}
    assert r.macro_f1 == pytest.approx(0.5)
    assert r.support == {"neutral": 2, "happy": 2, "sad": 1}


def test_absent_class_is_left_out_of_averages() -> None:
    r = classification_report(["happy", "sad"], ["happy", "happy"], EMOTIONS)
    assert r.per_class_recall["angry"] is None
    assert r.unweighted_average_recall == pytest.approx(0.5)
    # happy: P 1/2 R 1 -> F1 2/3 ; sad: 0
    assert r.macro_f1 == pytest.approx(1 / 3)
    assert r.to_dict()["confusion"]["columns"][-1] == "unparsed"


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        confusion_matrix(["happy"], [], LABELS)
    with pytest.raises(ValueError):
        confusion_matrix(["joy"], ["happy"], LABELS)


def test_rouge_l() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # LCS of "a b c d" and "a c d e" is "a c d" (3): P = R = 3/4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert rouge_l("completely different", "nothing shared here") == 0.0
    assert rouge_l("", "something") == 0.0


def test_mean_and_ci() -> None:
    s = mean_and_ci([1.0, 2.0, 3.0])
    assert s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0) and s["n"] == 3
    assert s["ci95"] == pytest.approx(1.96 / math.sqrt(3))
    assert mean_and_ci([])["n"] == 0


def test_cosine_matrix() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert cosine_matrix(a, a) == pytest.approx(np.array([[1.0, 1 / math.sqrt(2)], [1 / math.sqrt(2), 1.0]]))


def test_emotion_agreement_by_hand() -> None:
    eye = np.eye(len(EMOTIONS), dtype=np.float32)
    teachers = np.stack([eye, eye, eye])  # teacher text for emotion k = unit vector k
    replies = np.stack([eye[1], eye[3], (eye[0] + eye[2]) / np.sqrt(2)])
    summary, rows = emotion_agreement(replies, teachers, ["happy", "angry", "angry"])
    # item 0 right; item 1 closest to sad (wrong); item 2 ties neutral/angry -> half credit
    assert [r["credit"] for r in rows] == [1.0, 0.0, 0.5]
    assert summary["emotion_agreement"] == pytest.approx(0.5)
    assert summary["per_emotion_agreement"]["angry"] == pytest.approx(0.25)
    assert summary["per_emotion_agreement"]["sad"] is None
    assert rows[0]["margin"] == pytest.approx(1.0)
    assert summary["chance"] == pytest.approx(0.2)


def test_repeated_four_word_runs_mark_looping_replies():
    from blsp_emo.evaluation.metrics import has_repeated_ngram, repeated_ngram_rate

    looping = "I'm here to help you find your way. I'm here to help you, always."
    assert has_repeated_ngram(looping)  # "i'm here to help" twice, punctuation and case folded
    assert not has_repeated_ngram("I'm here to help. You are here to stay with us.")
    assert not has_repeated_ngram("one two three")  # shorter than the run
    assert has_repeated_ngram("a b a b a b", n=2) and not has_repeated_ngram("a b c d e f", n=2)
    assert repeated_ngram_rate([looping, "fine thanks", looping, "all good here today"]) == 0.5


def test_comparison_lists_ser_accuracy_per_engine(tmp_path) -> None:
    from blsp_emo.evaluation.report import write_comparison
    from blsp_emo.evaluation.tasks.common import TaskResult

    def ser(groups: dict) -> TaskResult:
        return TaskResult("ser", {}, {}, {}, {"groups": {"engine": groups}}, {"accuracy": 0.5})

    results = {
        "model": {"ser": ser({"flite": {"answer": 0.7, "head": 0.75, "n": 150},
                              "real-reintoned": {"answer": 0.4, "head": 0.6, "n": 50}})},
        "one-engine": {"ser": ser({"espeak": {"answer": 1.0, "head": None, "n": 3}})},
    }  # fmt: skip
    markdown = write_comparison(results, tmp_path, {"ser": "x"})
    assert "| system | flite (n=150) | real-reintoned (n=50) |" in markdown
    assert "| model | 0.700 / 0.750 | 0.400 / 0.600 |" in markdown
    assert "one-engine |" not in markdown.split("per engine")[1]  # a single group is no breakdown


def _by_definition(truth: list[str], pred: list[str | None], labels: list[str]) -> dict:
    """The report's numbers counted from their definitions (no library): UAR and macro F1 over the
    classes present in ``truth``; anything outside ``labels`` is unparsed and never right."""
    present = [c for c in labels if c in truth]
    recall, precision, f1 = {}, {}, {}
    for c in present:
        hits = sum(t == p == c for t, p in zip(truth, pred))
        recall[c] = hits / truth.count(c)
        precision[c] = hits / pred.count(c) if pred.count(c) else 0.0
        f1[c] = 2 * precision[c] * recall[c] / (precision[c] + recall[c]) if hits else 0.0
    return {
        "accuracy": sum(t == p for t, p in zip(truth, pred)) / len(truth),
        "uar": sum(recall.values()) / len(present),
        "macro_f1": sum(f1.values()) / len(present),
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "unparsed": sum(p not in labels for p in pred),
    }


def test_report_matches_the_definitions_on_random_predictions() -> None:
    # scikit-learn computes the report: unparsed (None) and unknown predictions, classes absent from the
    # truth, classes never predicted and classes predicted but absent all behave as defined.
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 25))
        labels = list(EMOTIONS)
        present = list(rng.choice(labels, size=int(rng.integers(1, 6)), replace=False))
        truth = [str(x) for x in rng.choice(present, size=n)]
        pred = [None if x == "none" else str(x) for x in rng.choice([*labels, "none", "joy"], size=n)]
        r = classification_report(truth, pred, labels)
        want = _by_definition(truth, pred, labels)
        assert r.accuracy == pytest.approx(want["accuracy"], abs=1e-12)
        assert r.unweighted_average_recall == pytest.approx(want["uar"], abs=1e-12)
        assert r.macro_f1 == pytest.approx(want["macro_f1"], abs=1e-12)
        assert r.unparsed == want["unparsed"] and r.n == n
        for c in labels:
            if c in truth:
                assert r.per_class_recall[c] == pytest.approx(want["recall"][c], abs=1e-12)
                assert r.per_class_precision[c] == pytest.approx(want["precision"][c], abs=1e-12)
                assert r.per_class_f1[c] == pytest.approx(want["f1"][c], abs=1e-12)
            else:
                assert r.per_class_recall[c] is r.per_class_precision[c] is r.per_class_f1[c] is None
        counts = confusion_matrix(truth, pred, labels)
        for i, t in enumerate(labels):
            row = [sum(x == t and p == c for x, p in zip(truth, pred)) for c in labels]
            assert counts[i].tolist() == [*row, sum(x == t and p not in labels for x, p in zip(truth, pred))]


def test_report_of_nothing_and_a_reserved_label() -> None:
    r = classification_report([], [], LABELS)
    assert r.n == 0 and r.accuracy == 0.0 and r.unweighted_average_recall == 0.0 and r.macro_f1 == 0.0
    assert r.confusion == [[0, 0, 0, 0]] * 3
    with pytest.raises(ValueError, match="reserved"):
        confusion_matrix(["unparsed"], ["unparsed"], ["unparsed", "happy"])


def _levenshtein(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def test_wer_and_edit_distance_through_jiwer_match_the_definition() -> None:
    from blsp_emo.textnorm import edit_distance, normalize_text, word_error_rate

    rng = np.random.default_rng(1)
    vocab = ["a", "b", "the cat", " ", "é", "x"]  # tokens with spaces are single tokens
    for _ in range(500):
        ref = [str(t) for t in rng.choice(vocab, size=int(rng.integers(0, 7)))]
        hyp = [str(t) for t in rng.choice(vocab, size=int(rng.integers(0, 7)))]
        assert edit_distance(ref, hyp) == _levenshtein(ref, hyp)
    refs = ["Four of clubs.", "", "go forward now", "It's 12 o'clock"]
    hyps = ["4 of clubs", "extra words", "", "its twelve o clock"]
    edits = sum(
        _levenshtein(normalize_text(r).split(), normalize_text(h).split()) for r, h in zip(refs, hyps)
    )
    words = sum(len(normalize_text(r).split()) for r in refs)
    assert word_error_rate(refs, hyps) == pytest.approx(edits / words)
    assert word_error_rate([], []) == 0.0 and word_error_rate([""], ["a b"]) == 2.0
