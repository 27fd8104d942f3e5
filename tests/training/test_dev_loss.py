"""The held-out (dev) loss: configured by data.dev / data.dev_split and run.eval_steps, computed in eval
mode without gradients, logged beside the train loss and summarised in summary.json."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import tiny_config, write_tone_rows

from blsp_emo.errors import UserError
from blsp_emo.training.trainer import Trainer, train


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "logs" / "train.jsonl").read_text().splitlines()]


def test_dev_loss_is_logged_beside_the_train_loss_and_summarised(tmp_path):
    # 16 rows, every 4th of split "dev": 12 train, 4 dev rows from the same file.
    targets = write_tone_rows(tmp_path / "data", count=16, splits=("train", "train", "train", "dev"))
    config = tiny_config(
        targets,
        tmp_path / "run",
        data={"dev_split": "dev"},
        optim={"max_steps": 6},
        run={"log_steps": 2, "eval_steps": 3, "plot": True},
    )
    trainer = Trainer(config)
    assert len(trainer.dataset) == 12 and len(trainer.dev) == 4
    assert not {r.audio for r in trainer.dev.rows} & {r.audio for r in trainer.dataset.rows}
    result = trainer.fit()
    records = _log(tmp_path / "run")
    # Step 0 (before training) and step 3 are dev-only records; step 6 (a logging step) holds both.
    assert [(r["step"], "loss" in r, "dev_loss" in r) for r in records] == [
        (0, False, True),
        (2, True, False),
        (3, False, True),
        (4, True, False),
        (6, True, True),
    ]
    dev = [r for r in records if "dev_loss" in r]
    assert all(math.isfinite(r["dev_loss"]) and r["dev_kl_loss"] == r["dev_loss"] for r in dev)
    assert result.dev_losses == [(r["step"], r["dev_loss"]) for r in dev]
    assert len(result.losses) == 3  # the train-loss records are those of log_steps, as without a dev set
    # The last value is the loss of the final model on the dev rows, recomputed here.
    assert trainer.dev_loss()["dev_loss"] == pytest.approx(dev[-1]["dev_loss"], rel=1e-5)
    model = trainer.unwrapped
    assert model.training and not model.encoder.training  # train mode restored after each evaluation
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["dev"]
    assert summary["rows"] == 4 and summary["split"] == "dev" and summary["evaluations"] == 3
    assert summary["overlap_with_train"] == 0 and summary["eval_steps"] == 3
    assert summary["initial_loss"] == pytest.approx(dev[0]["dev_loss"], rel=1e-5)
    assert (
        summary["final_loss"] == pytest.approx(dev[-1]["dev_loss"], rel=1e-5) and summary["final_step"] == 6
    )
    best = min(dev, key=lambda r: r["dev_loss"])
    assert (
        summary["best_loss"] == pytest.approx(best["dev_loss"], rel=1e-5)
        and summary["best_step"] == best["step"]
    )
    assert (tmp_path / "run" / "training_curve.png").stat().st_size > 1000


def test_dev_evaluation_does_not_change_training(tmp_path):
    # Stage 2 (LoRA dropout, emotion head): evaluating must leave the RNG, the weights and train mode as
    # they were, so a run with a dev loss ends on the same weights as one without.
    targets = write_tone_rows(tmp_path / "data", count=16, splits=("train", "train", "train", "dev"))
    runs = {}
    for name, extra in [("plain", {}), ("dev", {"dev_split": "dev"})]:
        runs[name] = train(
            tiny_config(
                targets,
                tmp_path / name,
                "emotion",
                data=extra,
                optim={"max_steps": 4},
                run={"eval_steps": 1} if extra else {},
            )
        )
    records = _log(tmp_path / "dev")
    assert [r["step"] for r in records if "dev_loss" in r] == [0, 1, 2, 3, 4]
    assert all("dev_lm_loss" in r and "dev_emotion_loss" in r for r in records if "dev_loss" in r)
    assert not any("dev_loss" in r for r in _log(tmp_path / "plain"))
    assert "dev" not in json.loads((tmp_path / "plain" / "summary.json").read_text())
    a = load_file(str(runs["plain"].final_dir / "model.safetensors"))
    b = load_file(str(runs["dev"].final_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_stage1_lowers_the_dev_loss_on_clips_it_never_trained_on(tmp_path):
    train_rows = write_tone_rows(tmp_path / "train", count=12, seed=0)
    dev_rows = write_tone_rows(tmp_path / "dev", count=6, seed=1, start=100)  # other clips and transcripts
    config = tiny_config(
        train_rows,
        tmp_path / "run",
        data={"dev": dev_rows},
        optim={"max_steps": 20, "warmup_steps": 2},
        run={"eval_steps": 4},
    )
    result = train(config)
    assert [step for step, _ in result.dev_losses] == [0, 4, 8, 12, 16, 20]
    curve = [loss for _, loss in result.dev_losses]
    # Measured on random-tiny: 8.0e-5 -> 1.2e-5, falling at every evaluation (seeds 0, 1, 2 alike).
    assert all(b < a for a, b in zip(curve, curve[1:])), curve
    assert curve[-1] < 0.3 * curve[0], curve
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["dev"]
    assert summary["source"] == str(dev_rows) and summary["rows"] == 6 and summary["overlap_with_train"] == 0
    assert summary["best_step"] == summary["final_step"] == 20


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"run": {"eval_steps": 5}}, "run.eval_steps needs a dev set"),
        ({"data": {"dev_split": "train"}}, "data.dev_split='train' reads the training rows"),
        ({"data": {"dev_split": "dev", "split": ""}}, "reads the training rows"),
        ({"data": {"dev": "{train}"}}, "data.dev is the training file: set data.dev_split"),
        ({"run": {"eval_steps": -1}}, "run.eval_steps must be >= 0"),
    ],
)
def test_dev_settings_that_would_not_measure_held_out_rows_are_refused(tmp_path, overrides, message):
    train_rows = write_tone_rows(tmp_path / "data", count=2)
    sections = {
        k: {f: str(v).replace("{train}", str(train_rows)) for f, v in d.items()} for k, d in overrides.items()
    }
    with pytest.raises(UserError, match=message):
        tiny_config(train_rows, tmp_path / "run", **sections)


def test_a_dev_split_without_rows_is_a_user_error(tmp_path):
    train_rows = write_tone_rows(tmp_path / "data", count=8)
    config = tiny_config(train_rows, tmp_path / "run", data={"dev_split": "dev"}, optim={"max_steps": 1})
    with pytest.raises(UserError, match="no usable rows"):
        Trainer(config)


def test_pre_alignment_dev_loss_is_the_ctc_loss_without_time_masks(tmp_path):
    from test_alignment_stage import write_word_rows

    train_rows = write_word_rows(tmp_path / "train", count=12)
    dev_rows = write_word_rows(tmp_path / "dev", count=6, seed=1)
    config = tiny_config(
        train_rows,
        tmp_path / "align",
        "align",
        data={"dev": dev_rows},
        optim={"max_steps": 3},
        align={"time_masks": 2, "time_mask_frames": 5},
    )
    trainer = Trainer(config)
    assert trainer.loader.collate_fn.align.time_masks == 2 and trainer.dev_collate.align.time_masks == 0
    result = trainer.fit()
    records = [r for r in _log(tmp_path / "align") if "dev_loss" in r]
    assert [r["step"] for r in records] == [0, 3] == [step for step, _ in result.dev_losses]
    assert all(math.isfinite(r["dev_loss"]) and r["dev_ctc_loss"] == r["dev_loss"] for r in records)
    assert trainer.dev_loss() == trainer.dev_loss()  # nothing random in the dev loss


def test_recipes_keep_loading_with_the_dev_loss_off():
    from pathlib import Path

    from blsp_emo.training.config import load_config

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        config = load_config(path)
        assert not config.has_dev and config.run.eval_steps == 0, path.name
        assert (config.data.dev, config.data.dev_split, config.data.dev_max_rows) == ("", "", 0)


def test_cli_prints_the_dev_loss(tmp_path, capsys):
    from blsp_emo.cli import main

    targets = write_tone_rows(tmp_path / "data", count=16, splits=("train", "train", "train", "dev"))
    config = tmp_path / "c.yaml"
    config.write_text("stage: semantic\nmodel:\n  init_from: random-tiny\n")  # an old config: no dev fields
    args = ["train", "--config", str(config), f"data.train={targets}", f"run.output_dir={tmp_path / 'r'}"]
    args += ["optim.max_steps=2", "run.progress=false", "run.plot=false", "data.batching=count"]
    assert main([*args, "data.dev_split=dev", "data.dev_max_rows=2"]) == 0
    out = capsys.readouterr().out
    assert f"dev loss ({targets}): step 0: " in out and "step 2: " in out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["dev"]["rows"] == 2


def test_a_resumed_run_keeps_one_dev_curve(tmp_path):
    targets = write_tone_rows(tmp_path / "data", count=16, splits=("train", "train", "train", "dev"))
    sections = {"data": {"dev_split": "dev"}, "optim": {"max_steps": 4}}
    run = tmp_path / "run"
    stopped = train(
        tiny_config(targets, run, run={"eval_steps": 2, "save_steps": 2, "stop_after_steps": 2}, **sections)
    )
    assert stopped.final_dir is None and [s for s, _ in stopped.dev_losses] == [0, 2]
    resumed = train(
        tiny_config(targets, run, run={"eval_steps": 2, "save_steps": 2}, **sections), resume=True
    )
    assert [s for s, _ in resumed.dev_losses] == [4]  # no second "before training" value
    assert [r["step"] for r in _log(run) if "dev_loss" in r] == [0, 2, 4]
    summary = json.loads((run / "summary.json").read_text())["dev"]
    assert summary["evaluations"] == 3 and summary["initial_loss"] is not None and summary["final_step"] == 4
