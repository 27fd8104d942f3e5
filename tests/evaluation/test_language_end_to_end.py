"""Chinese end to end: `data synth --language zh` -> `data check` -> `data targets` (the real embedded
teacher, Chinese prompts) -> a few stage-2 training steps on random-tiny -> `eval all` on English and
Chinese speech together, reported per language, with the cascade's Whisper told each row's language."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from blsp_emo.cli import main
from blsp_emo.data.manifest import read_manifest, write_manifest
from blsp_emo.prompts import PROMPT_SETS

pytestmark = pytest.mark.integration

HAN = re.compile(r"[\u4e00-\u9fff]")


def test_chinese_corpus_through_targets_training_and_per_language_eval(
    emotion_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    corpus = tmp_path / "zh"
    argv = ["data", "synth", "-o", str(corpus), "--language", "zh", "--utterances", "10", "--general", "0"]
    assert main([*argv, "--workers", "1", "--no-plot"]) == 0
    manifest = corpus / "emotion.jsonl"
    assert main(["data", "check", str(manifest)]) == 0
    rows = list(read_manifest(manifest))
    assert len(rows) == 10 and {r.language for r in rows} == {"zh"} and all(HAN.search(r.text) for r in rows)
    assert {r.extra["engine"] for r in rows} == {"espeak"}

    # Teacher targets from the real embedded LLM, asked in Chinese.
    targets = tmp_path / "targets.jsonl"
    argv = ["data", "targets", str(manifest), "-o", str(targets), "--stage", "emotion", "--teacher", "tiny"]
    assert main([*argv, "--max-new-tokens", "8", "--batch-size", "10"]) == 0
    written = [json.loads(line) for line in targets.read_text(encoding="utf-8").splitlines()]
    refused = targets.with_name(targets.name + ".refused.jsonl")
    n_refused = len(refused.read_text().splitlines()) if refused.exists() else 0
    assert len(written) + n_refused == 10 and all(r["language"] == "zh" for r in written)
    assert all(r["target"].strip() for r in written)
    provenance = json.loads(targets.with_name(targets.name + ".provenance.json").read_text())
    zh_prompt = PROMPT_SETS["zh"].emotion_targets["continue"]
    assert provenance["language_prompts"]["zh"]["user"] == zh_prompt + "{transcript}"

    # A few stage-2 steps on the tiny random model (the rows' Chinese prompts go into the batches).
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text("stage: emotion\nmodel:\n  init_from: random-tiny\n")
    argv = ["train", "--config", str(config), f"data.train={targets}", f"run.output_dir={run}"]
    argv += ["optim.max_steps=3", "data.batching=count", "data.batch_size=4", "data.min_seconds=0"]
    assert main([*argv, "run.progress=false", "run.plot=false", "run.log_steps=1"]) == 0
    model = run / "final"
    assert (model / "model.safetensors").is_file()
    logged = [json.loads(x) for x in (run / "logs" / "train.jsonl").read_text().splitlines() if x.strip()]
    assert len(logged) == 3 and all(x["loss"] == x["loss"] for x in logged)  # finite (not NaN)

    # Evaluation on English and Chinese speech together: one table per language.
    mixed = tmp_path / "mixed.jsonl"
    both = [*read_manifest(emotion_manifest), *(r for r in rows if r.split != "train")]
    for row in both:
        row.audio = str(row.audio_path)
    write_manifest(mixed, both)
    n_zh = sum(r.language == "zh" for r in both)
    out = tmp_path / "eval"
    argv = ["eval", "all", "--model", str(model), "cascade-asr", "--data", str(mixed), "--tasks", "ser"]
    capsys.readouterr()
    assert main([*argv, "-o", str(out), "--max-new-tokens", "4", "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "ser.accuracy per language:" in printed and f"zh (n={n_zh})" in printed
    for system in ("final", "cascade-asr"):
        folder = next(p for p in out.iterdir() if p.is_dir() and p.name.endswith(system)) / "ser"
        result = json.loads((folder / "results.json").read_text())
        languages = result["metrics"]["languages"]
        assert set(languages) == {"en", "zh"} and languages["en"]["n"] == 5 and languages["zh"]["n"] == n_zh
        predictions = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
        zh_ids = {r.id for r in both if r.language == "zh"}
        right = [p["correct"] for p in predictions if p["id"] in zh_ids]
        assert languages["zh"]["accuracy"] == pytest.approx(sum(right) / len(right))
        assert "### Per language" in (folder / "report.md").read_text()
    # The cascade's Whisper heard each row in its own language: Chinese characters for the Chinese rows,
    # English words for the English ones.
    predictions = [
        json.loads(x) for x in (out / "cascade-asr" / "ser" / "predictions.jsonl").read_text().splitlines()
    ]
    heard = {p["id"]: p["user_text"] for p in predictions}
    assert all(HAN.search(heard[r.id]) for r in both if r.language == "zh"), heard
    assert not any(HAN.search(heard[r.id]) for r in both if r.language == "en"), heard
