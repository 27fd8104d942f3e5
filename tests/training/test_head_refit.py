"""``blsp-emo refit-head``: the layer-mixed emotion head fitted again on frozen encoder statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from blsp_emo.cli import main
from blsp_emo.errors import UserError
from blsp_emo.evaluation.metrics import classification_report
from blsp_emo.model import load_model
from blsp_emo.prompts import EMOTIONS
from blsp_emo.training.head_refit import refit_emotion_head

FREQUENCIES = (150, 300, 600, 1200, 2400)  # one tone per emotion: separable from the encoder's statistics


def _tone_manifest(folder: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count in per_class.items():
        for i in range(count * len(EMOTIONS)):
            emotion = EMOTIONS[i % len(EMOTIONS)]
            seconds = 1.0 + 0.5 * rng.random()
            t = np.arange(int(16000 * seconds)) / 16000
            freq = FREQUENCIES[i % len(EMOTIONS)] * (1 + 0.04 * rng.standard_normal())
            audio = (0.2 + 0.1 * rng.random()) * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(
                t.size
            )
            name = f"{split}{i}.wav"
            sf.write(folder / name, audio.astype(np.float32), 16000)
            rows.append(
                {"audio": name, "text": "a tone", "emotion": emotion, "split": split, "duration": seconds}
            )
    manifest = folder / "tones.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    return _tone_manifest(tmp_path_factory.mktemp("tones"), {"train": 8, "dev": 4})


@pytest.fixture(scope="module")
def layer_mix_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model, _ = load_model("random-tiny", device="cpu", lora_r=4, emotion_features="layer_mix")
    folder = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(folder)
    return folder


def test_refit_replaces_only_the_head_and_beats_the_untrained_one(
    tones: Path, layer_mix_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "refit"
    assert main(["refit-head", str(layer_mix_checkpoint), "--data", str(tones), "-o", str(out),
                 "--steps", "50", "1000", "--lr", "1e-2"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    report = json.loads((out / "head_refit.json").read_text())
    assert report["train_rows"] == 40 and report["dev_rows"] == 20
    assert set(report["dev_uar"]) == {"current", "steps=50", "steps=1000"}
    assert report["chosen"] != "current" and "<- chosen" in printed
    chosen = report["dev_uar"][report["chosen"]]
    assert chosen == max(report["dev_uar"].values()) and chosen >= 0.6 > report["dev_uar"]["current"] + 0.3

    before, after = (
        load_file(str(layer_mix_checkpoint / "model.safetensors")),
        load_file(str(out / "model.safetensors")),
    )
    assert before.keys() == after.keys()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same != name.startswith("emotion_head."), name  # the head changed, nothing else did

    # The saved head is the chosen one: the new checkpoint scores the dev clips as the report says.
    from blsp_emo.data.manifest import read_manifest
    from blsp_emo.training.head_refit import layer_statistics_of

    model, processor = load_model(str(out), device="cpu")
    dev = [r for r in read_manifest(tones) if r.split == "dev"]
    stats = layer_statistics_of(model, processor, [r.audio_path for r in dev])
    with torch.no_grad():
        predicted = model.emotion_head(stats).argmax(-1).tolist()
    scores = classification_report([r.emotion for r in dev], [EMOTIONS[i] for i in predicted])
    assert scores.unweighted_average_recall == pytest.approx(chosen)
    card = (out / "README.md").read_text()
    assert "## Emotion head refit" in card and f"chosen: {report['chosen']}" in card
    assert json.loads((out / "training_run.json").read_text())["head_refit"]["chosen"] == report["chosen"]


def test_refit_keeps_the_current_head_when_no_candidate_beats_it_on_dev(
    tones: Path, layer_mix_checkpoint: Path, tmp_path: Path
) -> None:
    first = refit_emotion_head(layer_mix_checkpoint, tones, tmp_path / "a", steps=[1000], lr=1e-2)
    run_file = tmp_path / "a" / "training_run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "evaluation": {"metrics": {"x": 1}}}))
    again = refit_emotion_head(tmp_path / "a", tones, tmp_path / "b", steps=[1])  # one step of a fresh head
    assert again.chosen == "current" and again.dev_uar["current"] == pytest.approx(
        first.dev_uar[first.chosen]
    )
    a, b = (
        load_file(str(tmp_path / "a" / "model.safetensors")),
        load_file(str(tmp_path / "b" / "model.safetensors")),
    )
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert "evaluation" not in json.loads(
        (tmp_path / "b" / "training_run.json").read_text()
    )  # of another head


def test_a_refit_of_an_emotion_token_model_says_that_the_replies_change(
    tones: Path, tmp_path: Path, capsys
) -> None:
    torch.manual_seed(0)
    model, processor = load_model("random-tiny", device="cpu", lora_r=4, emotion_features="layer_mix")
    model.enable_emotion_token(processor.tokenizer)
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "refit"
    assert main(["refit-head", str(tmp_path / "ckpt"), "--data", str(tones), "-o", str(out),
                 "--steps", "1000", "--lr", "1e-2"]) == 0  # fmt: skip
    report = json.loads((out / "head_refit.json").read_text())
    assert report["changes_replies"] and report["chosen"] == "steps=1000"
    assert "changes its replies" in capsys.readouterr().out
    refit, _ = load_model(str(out), device="cpu")
    assert refit.emotion_token is not None  # the token's table is kept as it was
    torch.testing.assert_close(refit.emotion_token.table, model.emotion_token.table)


def test_a_refit_that_only_ties_on_dev_up_to_rounding_does_not_replace_the_head():
    from blsp_emo.training.head_refit import choose_head

    # 13/15 recalls averaged in two orders: 0.8666666666666666 vs 0.8666666666666668
    tied = {"current": 0.8666666666666666, "steps=400": 0.8666666666666666, "steps=800": 0.8666666666666668}
    assert choose_head(tied) == "current"
    assert choose_head({"current": 0.5, "steps=100": 0.8, "steps=200": 0.8 + 1e-12}) == "steps=100"
    assert choose_head({"current": 0.5, "steps=100": 0.7, "steps=200": 0.8}) == "steps=200"


def test_refit_refuses_what_it_cannot_do(
    tones: Path, layer_mix_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    adapter_head = tmp_path / "adapter-head"
    model, _ = load_model("random-tiny", device="cpu", lora_r=4)
    model.save_pretrained(adapter_head)
    with pytest.raises(UserError, match="needs a layer-mixed emotion head"):
        refit_emotion_head(adapter_head, tones, tmp_path / "x")
    one_class = tmp_path / "one.jsonl"
    one_class.write_text(
        "".join(line + "\n" for line in tones.read_text().splitlines() if '"neutral"' in line)
    )
    with pytest.raises(UserError, match="fewer than two emotions"):
        refit_emotion_head(layer_mix_checkpoint, one_class.resolve(), tmp_path / "y")
    assert main(["refit-head", str(layer_mix_checkpoint), "--data", str(tmp_path / "none.jsonl"),
                 "-o", str(tmp_path / "z")]) == 2  # fmt: skip
    assert "none.jsonl (--data): no such manifest file" in capsys.readouterr().err
    assert (
        main(["refit-head", str(layer_mix_checkpoint), "--data", str(tones), "-o", str(layer_mix_checkpoint)])
        == 2
    )
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()  # nothing written before the files were checked
