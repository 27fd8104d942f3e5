"""Every task end to end through the CLI on the tiny random model (fast) and a synthetic set."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from blsp_emo.cli import main
from blsp_emo.data.targets import refused_path
from blsp_emo.evaluation.systems import System, load_system
from blsp_emo.model.types import DecodingOptions, Reply
from blsp_emo.prompts import EMOTIONS

FAST = ["--max-new-tokens", "8", "--teacher-max-new-tokens", "6", "--batch-size", "5"]
FAST_NO_TEACHER = ["--max-new-tokens", "8", "--batch-size", "5"]  # ser and semantic read no teacher


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def _predictions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def _recount(truth: list[str], predicted: list[str | None]) -> dict:
    """Accuracy, UAR, macro F1, unparsed count and confusion counted here from scratch (not with
    blsp_emo.evaluation.metrics), the definitions of docs/evaluation.md: UAR and macro F1 average over
    the classes present in ``truth``, a prediction outside the labels is unparsed."""
    present = [e for e in EMOTIONS if e in truth]
    recall, f1 = {}, {}
    for c in present:
        hits = sum(t == p == c for t, p in zip(truth, predicted))
        recall[c] = hits / truth.count(c)
        precision = hits / predicted.count(c) if predicted.count(c) else 0.0
        f1[c] = 2 * precision * recall[c] / (precision + recall[c]) if hits else 0.0
    columns = [*EMOTIONS, None]
    return {
        "accuracy": sum(t == p for t, p in zip(truth, predicted)) / len(truth),
        "unweighted_average_recall": sum(recall.values()) / len(present),
        "macro_f1": sum(f1.values()) / len(present),
        "unparsed": sum(p not in EMOTIONS for p in predicted),
        "confusion": [
            [
                sum(t == e and (p if p in EMOTIONS else None) == c for t, p in zip(truth, predicted))
                for c in columns
            ]
            for e in EMOTIONS
        ],
    }


def _assert_written_metrics_match(written: dict, truth: list[str], predicted: list[str | None]) -> None:
    recount = _recount(truth, predicted)
    for key in ("accuracy", "unweighted_average_recall", "macro_f1"):
        assert written[key] == pytest.approx(recount[key], abs=1e-6), key
    assert written["unparsed"] == recount["unparsed"] and written["n"] == len(truth)
    assert written["confusion"]["counts"] == recount["confusion"]


def test_ser_is_deterministic_and_complete(emotion_manifest: Path, tmp_path: Path) -> None:
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert (
            main(
                [
                    "eval",
                    "ser",
                    "--model",
                    "random-tiny",
                    "--data",
                    str(emotion_manifest),
                    "-o",
                    str(out),
                    *FAST_NO_TEACHER,
                ]
            )
            == 0
        )
        outs.append(out)
    a, b = outs
    assert (a / "results.json").read_bytes() == (b / "results.json").read_bytes()
    assert (a / "predictions.jsonl").read_bytes() == (b / "predictions.jsonl").read_bytes()
    results = _results(a)
    assert results["task"] == "ser" and results["data"]["n"] == 5
    answer = results["metrics"]["answer"]
    assert answer["n"] == 5 and sum(map(sum, answer["confusion"]["counts"])) == 5
    assert 0.0 <= answer["accuracy"] <= 1.0 and answer["unparsed"] <= 5
    # random-tiny has an emotion head: its accuracy is reported beside the answer's.
    assert results["headline"]["head_accuracy"] is not None and "head" in results["metrics"]
    # Every number in results.json is what the written predictions give.
    rows = _predictions(a)
    truth = [r["emotion"] for r in rows]
    _assert_written_metrics_match(answer, truth, [r["parsed"] for r in rows])
    _assert_written_metrics_match(results["metrics"]["head"], truth, [r["head"] for r in rows])
    assert results["headline"]["accuracy"] == answer["accuracy"]
    assert results["headline"]["uar"] == answer["unweighted_average_recall"]
    assert results["headline"]["head_accuracy"] == results["metrics"]["head"]["accuracy"]
    assert all(r["correct"] == (r["parsed"] == r["emotion"]) for r in rows)
    for plot in ("confusion.png", "recall.png", "head_confusion.png"):
        assert (a / plot).read_bytes().startswith(b"\x89PNG")
    assert "Label rule" in (a / "report.md").read_text()


@dataclass
class ScriptedSystem(System):
    """A system whose answers and emotion-head predictions are fixed per utterance id (no model)."""

    script: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> (answer, head)

    def answers(self, queries, options, batch_size=4, desc=""):
        return [Reply(self.script[q.utterance.id][0]) for q in queries]

    def predict_emotions(self, utterances):
        return [self.script[u.id][1] for u in utterances]


def test_ser_numbers_are_those_of_known_answers(
    emotion_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Six clips with unbalanced labels (so that accuracy, UAR and macro F1 all differ), and answers that
    # are right, wrong, negated and unparsable: the numbers are worked out by hand below.
    audio = [
        str(emotion_manifest.parent / json.loads(x)["audio"])
        for x in emotion_manifest.read_text().splitlines()
    ]
    script = {  # id: (true label, answer, head prediction)
        "c0": ("happy", "You sound happy.", "happy"),
        "c1": ("happy", "Joyful, I would say.", "sad"),
        "c2": ("happy", "The speaker sounds sad.", "happy"),
        "c3": ("sad", "Not happy at all; rather upset.", "sad"),
        "c4": ("angry", "I am not sure what to say.", "angry"),
        "c5": ("neutral", "Happy!", None),
    }
    manifest = tmp_path / "six.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"audio": audio[i % 5], "text": "Words.", "emotion": e, "split": "test", "id": k})
            + "\n"
            for i, (k, (e, _, _)) in enumerate(script.items())
        )
    )
    system = ScriptedSystem(
        "scripted", chat=None, llm_name="scripted", script={k: v[1:] for k, v in script.items()}
    )
    monkeypatch.setattr("blsp_emo.evaluation.runner.build_system", lambda *a: system)
    monkeypatch.setattr("blsp_emo.model.loading.check_model_name", lambda name: None)  # no real model
    out = tmp_path / "ser"
    assert main(["eval", "ser", "--model", "scripted", "--data", str(manifest), "-o", str(out)]) == 0
    results, rows = _results(out), _predictions(out)
    assert [(r["id"], r["parsed"]) for r in rows] == [
        ("c0", "happy"), ("c1", "happy"), ("c2", "sad"), ("c3", "sad"), ("c4", None), ("c5", "happy")
    ]  # fmt: skip
    answer = results["metrics"]["answer"]
    # 3 of 6 right; recall happy 2/3, sad 1/1, angry 0, neutral 0; precision happy 2/3, sad 1/2.
    assert answer["accuracy"] == pytest.approx(0.5, abs=1e-6)
    assert answer["unweighted_average_recall"] == pytest.approx((2 / 3 + 1) / 4, abs=1e-6)
    assert answer["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 4, abs=1e-6)
    assert answer["unparsed"] == 1 and answer["unparsed_rate"] == pytest.approx(1 / 6, abs=1e-6)
    assert answer["per_class_recall"]["surprise"] is None  # absent class: not averaged in
    _assert_written_metrics_match(answer, [v[0] for v in script.values()], [r["parsed"] for r in rows])
    head = results["metrics"]["head"]
    assert head["accuracy"] == pytest.approx(4 / 6, abs=1e-6) and head["unparsed"] == 1
    assert head["unweighted_average_recall"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4, abs=1e-6)
    assert results["headline"] == {
        "accuracy": answer["accuracy"],
        "uar": answer["unweighted_average_recall"],
        "macro_f1": answer["macro_f1"],
        "unparsed_rate": answer["unparsed_rate"],
        "head_accuracy": head["accuracy"],
    }


def test_semantic_text_cascade_is_the_reference(emotion_manifest: Path, tmp_path: Path) -> None:
    # cascade-text feeds the ground-truth transcript to the same LLM with the same prompt: identical replies.
    out = tmp_path / "sem"
    argv = [
        "eval",
        "semantic",
        "--model",
        "cascade-text@random-tiny",
        "--data",
        str(emotion_manifest),
        "-o",
        str(out),
    ]
    assert main([*argv, *FAST_NO_TEACHER]) == 0
    results = _results(out)
    assert results["metrics"]["exact_match"] == 1.0
    assert results["headline"]["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert (out / "cosine.png").is_file()
    # Teacher-forced, the LLM sees exactly the teacher's input: no divergence, the whole gap closed.
    assert results["headline"]["kl"] == pytest.approx(0.0, abs=1e-6) and results["headline"]["top1"] == 1.0
    assert results["headline"]["gap_closed"] == pytest.approx(1.0, abs=1e-3)
    forced = results["metrics"]["teacher_forced"]
    assert forced["no_speech"]["kl"] > forced["transcript"]["kl"] and forced["transcript"]["top1"] == 1.0
    assert "Gap closed" in (out / "report.md").read_text()
    # the reference (= the reply here) starts with the transcript exactly where the helper says so
    from blsp_emo.evaluation.tasks.semantic import reference_echo

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert results["metrics"]["reference_echo"] == pytest.approx(
        reference_echo([r["text"] for r in rows], [r["text_reply"] for r in rows])
    )
    assert "cosine_by_reading" not in results["metrics"]  # the true transcript is no reading


def test_reference_echo_and_cosine_by_reading() -> None:
    from blsp_emo.evaluation.tasks.semantic import READ_WELL_WER, cosine_by_reading, reference_echo

    texts = ["I'm graduating soon.", "We're having a baby.", "He answered my message.", ""]
    references = [
        "I'm graduating soon! Congratulations are in order.",  # repeats it, punctuation aside
        "Congratulations on the baby.",
        "he ANSWERED my message, finally",
        "Anything.",  # an empty transcript repeats nothing
    ]
    assert reference_echo(texts, references) == pytest.approx(2 / 4)
    assert reference_echo([], []) == 0.0
    readings = ["I'm graduating soon", "we are having the radio", "he answered my massage", "x"]
    by = cosine_by_reading(texts[:3], readings[:3], [0.9, 0.1, 0.5])
    # WERs 0, 0.75 and 0.25: two read well (mean 0.7), one badly
    assert by["wer_threshold"] == READ_WELL_WER
    assert by["read_well"] == {"n": 2, "mean": pytest.approx(0.7)}
    assert by["read_badly"] == {"n": 1, "mean": pytest.approx(0.1)}
    assert cosine_by_reading(["a b"], ["c d"], [0.2])["read_well"] == {"n": 0, "mean": None}


def test_semantic_speech_model(emotion_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "sem"
    argv = [
        "eval",
        "semantic",
        "--model",
        "random-tiny",
        "--data",
        str(emotion_manifest),
        "-o",
        str(out),
        "--limit",
        "3",
    ]
    assert main([*argv, *FAST_NO_TEACHER]) == 0
    results = _results(out)
    assert results["data"]["n"] == 3 and results["data"]["limited"]
    assert -1.0 <= results["headline"]["cosine"] <= 1.0 and 0.0 <= results["headline"]["rouge_l"] <= 1.0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(
        {"speech_reply", "text_reply", "cosine", "kl", "top1"} <= set(r) for r in rows
    )
    headline = results["headline"]
    # random-tiny has no alignment head: no ctc_wer.
    assert set(headline) == {"cosine", "rouge_l", "gap_closed", "kl", "top1", "repeat4"}
    assert headline["kl"] > 0 and 0.0 <= headline["top1"] <= 1.0
    tokens = results["metrics"]["teacher_forced"]["response_tokens"]
    assert tokens == sum(r["response_tokens"] for r in rows) > 0
    mean_kl = sum(r["kl"] * r["response_tokens"] for r in rows) / tokens
    assert headline["kl"] == pytest.approx(mean_kl, abs=2e-6)  # results.json rounds to 6 digits
    # The speech model's replies differ from the text replies: each cosine is the embedder's own cosine
    # of the two written texts (embedded one by one here), below 1 where they differ; the headline is the mean.
    from blsp_emo.evaluation.embeddings import get_embedder
    from blsp_emo.evaluation.metrics import rouge_l

    embedder = get_embedder()
    differ = [r for r in rows if r["speech_reply"] != r["text_reply"]]
    assert differ, "random-tiny gave the same reply to the speech and to the transcript"
    for r in rows:
        (a,), (b,) = embedder.encode([r["speech_reply"]]), embedder.encode([r["text_reply"]])
        assert r["cosine"] == pytest.approx(float(np.dot(a, b)), abs=1e-4)
        assert r["rouge_l"] == pytest.approx(rouge_l(r["text_reply"], r["speech_reply"]), abs=1e-6)
    assert all(r["cosine"] < 0.999 for r in differ)
    assert headline["cosine"] == pytest.approx(np.mean([r["cosine"] for r in rows]), abs=2e-6)
    assert headline["rouge_l"] == pytest.approx(np.mean([r["rouge_l"] for r in rows]), abs=2e-6)
    assert results["metrics"]["exact_match"] == pytest.approx(1 - len(differ) / len(rows), abs=1e-6)


def test_empathy_caches_teacher_texts(emotion_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "emp"
    argv = ["eval", "empathy", "--model", "random-tiny", "--data", str(emotion_manifest), "--limit", "3"]
    argv += ["-o", str(out), *FAST]
    assert main(argv) == 0
    cache = out / "cache" / "text-random-tiny.jsonl"
    cached = cache.read_text().splitlines()
    assert len(cached) == 15  # five emotion-conditioned teacher continuations per utterance
    first = _results(out)
    assert main(argv) == 0  # the rerun reads the cache: nothing new is generated
    assert cache.read_text().splitlines() == cached
    assert _results(out) == first
    agreement = first["metrics"]["agreement"]
    assert 0.0 <= agreement["emotion_agreement"] <= 1.0 and agreement["chance"] == 0.2
    row = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert set(row["teacher"]) == {"neutral", "happy", "angry", "sad", "surprise"}
    assert (out / "agreement_confusion.png").is_file()


def test_instructions_builder_and_task(tmp_path: Path) -> None:
    data = tmp_path / "instr"
    assert (
        main(
            ["eval", "build-instructions", "-o", str(data), "--limit", "2", "--prosodies", "cheerful", "sad"]
        )
        == 0
    )
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    assert [r["emotion"] for r in rows] == ["happy", "sad", "happy", "sad"]
    assert all((data / r["audio"]).is_file() and r["duration"] > 0.3 for r in rows)
    out = tmp_path / "out"
    argv = [
        "eval",
        "instructions",
        "--model",
        "random-tiny",
        "--data",
        str(data / "manifest.jsonl"),
        "-o",
        str(out),
    ]
    assert main([*argv, *FAST]) == 0
    results = _results(out)
    assert set(results["metrics"]) == {"emotion", "empathy"}
    assert {"emotion_accuracy", "emotion_agreement", "head_accuracy"} <= set(results["headline"])
    assert (out / "emotion_confusion.png").is_file() and (out / "agreement.png").is_file()


def test_eval_all_table(
    emotion_manifest: Path, train_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "all"
    argv = [
        "eval",
        "all",
        "--model",
        "random-tiny",
        "cascade-text",
        "--data",
        str(emotion_manifest),
        "--tasks",
        "ser",
        "semantic",
        "-o",
        str(out),
        "--limit",
        "3",
        *FAST,
    ]
    assert main(argv) == 0
    table = json.loads((out / "comparison.json").read_text())
    assert list(table["systems"]) == ["random-tiny", "cascade-text"]
    assert "ser.accuracy" in table["columns"] and "semantic.cosine" in table["columns"]
    assert {"semantic.gap_closed", "semantic.kl", "semantic.top1"} <= set(table["columns"])
    assert table["values"]["cascade-text"]["semantic.cosine"] == pytest.approx(1.0, abs=1e-4)
    assert table["values"]["cascade-text"]["semantic.gap_closed"] == pytest.approx(1.0, abs=1e-3)
    markdown = (out / "comparison.md").read_text()
    assert "| random-tiny |" in markdown and "| cascade-text |" in markdown
    assert "semantic.gap_closed | semantic.kl | semantic.top1" in markdown
    assert (out / "random-tiny" / "ser" / "confusion.png").is_file() and (out / "comparison.png").is_file()

    # A rerun (e.g. after an interruption) reuses every finished system x task: no model is loaded again.
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*/results.json")}
    monkeypatch.setattr(
        "blsp_emo.evaluation.runner.build_system",
        lambda *a: pytest.fail("a finished system was loaded again"),
    )
    assert main(argv) == 0
    assert json.loads((out / "comparison.json").read_text())["values"] == table["values"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/results.json")} == before
    # Other data (here: another subset) is evaluated again.
    monkeypatch.undo()
    assert main([*argv[: -len(FAST) - 2], "--limit", "2", *FAST]) == 0
    assert json.loads((out / "random-tiny" / "ser" / "results.json").read_text())["data"]["n"] == 2


def test_results_of_an_older_semantic_task_are_not_resumed(tmp_path: Path) -> None:
    # A semantic results.json written before the teacher-forced scores lacks their columns: redone.
    from blsp_emo.evaluation.runner import load_finished, task_fingerprint
    from blsp_emo.evaluation.tasks.common import dump_json

    data = {"manifest": "m.jsonl", "n": 3}
    for task in ("ser", "semantic"):
        saved = {"task": task, "system": {"fingerprint": "0123abcd"}, "data": data, "headline": {}}
        dump_json(tmp_path / task / "results.json", saved)
    assert task_fingerprint("0123abcd", "ser") == "0123abcd"
    assert load_finished(tmp_path / "ser", data, task_fingerprint("0123abcd", "ser")) is not None
    assert load_finished(tmp_path / "semantic", data, task_fingerprint("0123abcd", "semantic")) is None
    dump_json(
        tmp_path / "semantic" / "results.json",
        {
            "task": "semantic",
            "system": {"fingerprint": task_fingerprint("0123abcd", "semantic")},
            "data": data,
        },
    )
    assert load_finished(tmp_path / "semantic", data, task_fingerprint("0123abcd", "semantic")) is not None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "ser", "--model", "random-tiny", "--data", "/nonexistent.jsonl"], "no such manifest"),
        (["eval", "ser", "--model", "cascade-asr-ser@random-tiny", "--data", "{m}"], "--ser-train"),
        (["eval", "ser", "--model", "cascade-asr-prosody@random-tiny", "--data", "{m}"], "--ser-train"),
        (
            ["eval", "empathy", "--model", "random-tiny", "--data", "{m}", "--judge-url", "http://x"],
            "--judge-model",
        ),
        (["eval", "ser", "--model", "random-tiny", "--data", "{m}", "--limit", "0"], "--limit"),
        (["eval", "ser", "--model", "random-tiny@x", "--data", "{m}"], "@LLM"),
        (
            ["eval", "all", "--model", "random-tiny", "--data", "{m}", "--tasks", "instructions"],
            "--instructions-data",
        ),
    ],
)
def test_bad_input_is_a_one_line_error(argv, message, emotion_manifest: Path, capsys, tmp_path: Path) -> None:
    argv = [a.replace("{m}", str(emotion_manifest)) for a in argv] + ["-o", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_manifest_errors_name_the_row(tmp_path: Path, emotion_manifest: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    row = json.loads(emotion_manifest.read_text().splitlines()[0])
    row["audio"] = str(emotion_manifest.parent / row["audio"])
    unlabelled = {**row, "emotion": None, "id": "x"}
    bad.write_text(json.dumps(row) + "\n" + json.dumps(unlabelled) + "\n")
    assert main(["eval", "ser", "--model", "random-tiny", "--data", str(bad), "-o", str(tmp_path / "o")]) == 2


def test_cascade_shows_the_llm_the_transcript(emotion_manifest: Path) -> None:
    from blsp_emo.evaluation.dataset import load_utterances
    from blsp_emo.evaluation.systems import Query

    system = load_system("cascade-text@random-tiny")
    utterances = load_utterances(emotion_manifest, limit=2)
    answers = system.answers([Query(None, "Say: ", u) for u in utterances], DecodingOptions(max_new_tokens=2))
    assert [a.user_text for a in answers] == [u.text for u in utterances]
    assert system.describe()["kind"] == "cascade-text" and system.predict_emotions(utterances) is None


def _write_targets(manifest: Path, folder: Path, n_rows: int) -> Path:
    """Target rows in the format of `data targets --stage emotion --all-emotions` (refusals aside)."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()][:n_rows]
    kept, refused = [], []
    for row in rows:
        for emotion in ("neutral", "happy", "angry", "sad", "surprise"):
            out = {**row, "target_emotion": emotion, "target": f"{emotion} words", "stage": "emotion"}
            (refused if emotion == "angry" else kept).append(json.dumps(out) + "\n")
    (folder / "t.jsonl").write_text("".join(kept))
    refused_path(folder / "t.jsonl").write_text("".join(refused))
    return folder / "t.jsonl"


def test_empathy_reads_teacher_targets(emotion_manifest: Path, tmp_path: Path) -> None:
    targets = _write_targets(emotion_manifest, tmp_path, 5)
    out = tmp_path / "emp"
    argv = ["eval", "empathy", "--model", "random-tiny", "--data", str(emotion_manifest), "--limit", "2"]
    assert main([*argv, "--teacher-targets", str(targets), "-o", str(out), *FAST]) == 0
    results = _results(out)
    assert results["metrics"]["teacher"]["source"].startswith("--teacher-targets")
    first = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert first["teacher"]["angry"] == "angry words"  # read from the refused file
    assert not (out / "cache" / "text-random-tiny.jsonl").exists()  # nothing generated


def test_teacher_targets_must_cover_every_utterance(emotion_manifest: Path, tmp_path: Path, capsys) -> None:
    targets = _write_targets(emotion_manifest, tmp_path, 1)
    argv = ["eval", "empathy", "--model", "random-tiny", "--data", str(emotion_manifest)]
    assert main([*argv, "--teacher-targets", str(targets), "-o", str(tmp_path / "o"), *FAST]) == 2
    assert "--teacher-targets has no" in capsys.readouterr().err


def test_ser_accuracy_per_engine_and_speaker_is_recomputed_from_the_predictions() -> None:
    from blsp_emo.evaluation.dataset import Utterance
    from blsp_emo.evaluation.tasks.ser import group_accuracy, group_markdown

    def utt(i: int, emotion: str, engine: str, speaker: str) -> Utterance:
        return Utterance(f"u{i}", Path(f"/x/{i}.wav"), "text", emotion, engine=engine, speaker=speaker)

    utterances = [
        utt(0, "sad", "espeak", "a"),
        utt(1, "happy", "espeak", "a"),
        utt(2, "sad", "flite", "b"),
        utt(3, "angry", "flite", "b"),
    ]
    answers = ["sad", "sad", "sad", None]
    head = ["sad", "happy", "happy", "angry"]
    groups = group_accuracy(utterances, answers, head)
    assert groups["engine"]["espeak"] == {"n": 2, "answer": 0.5, "head": 1.0}
    assert groups["engine"]["flite"] == {"n": 2, "answer": 0.5, "head": 0.5}
    assert set(groups) == {"engine", "speaker"}
    assert "| flite | 2 | 0.500 | 0.500 |" in group_markdown(groups)
    # one value only (every clip from one engine): no table, it would repeat the overall number
    same = [utt(i, "sad", "espeak", "a") for i in range(3)]
    assert group_accuracy(same, ["sad"] * 3, None) == {}
