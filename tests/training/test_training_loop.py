"""The training loop on the tiny random model: exact resume, NaN stop, stage 2 parts, fast-path parity."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import tiny_config

from blsp_emo.errors import UserError
from blsp_emo.training.trainer import Trainer, TrainingDivergedError, train


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_interrupted_and_resumed_run_matches_uninterrupted(tone_targets, tmp_path):
    # Stage 2 (LoRA dropout draws random numbers), accumulation 2 and 3 epochs: the resumed run must
    # restore optimizer, schedule, RNG and the sampler position to end on the same weights.
    sections = {
        "optim": {"max_steps": 6, "grad_accum": 2},
        "run": {"save_steps": 2},
        "data": {"batch_size": 3},
    }
    full = train(tiny_config(tone_targets, tmp_path / "full", "emotion", **sections))
    assert full.final_dir is not None and full.global_step == 6

    part = tmp_path / "part"
    stopped = train(
        tiny_config(
            tone_targets,
            part,
            "emotion",
            optim=sections["optim"],
            data=sections["data"],
            run={"save_steps": 2, "stop_after_steps": 3},
        )
    )
    assert stopped.final_dir is None and stopped.checkpoint.name == "checkpoint-3"
    resumed = train(tiny_config(tone_targets, part, "emotion", **sections), resume=True)
    assert resumed.global_step == 6
    a, b = _weights(full.final_dir), _weights(resumed.final_dir)
    assert a.keys() == b.keys() and any(".lora_B." in k for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    logged = [line for line in (part / "logs" / "train.jsonl").read_text().splitlines() if line]
    assert len(logged) == 6  # the resumed log continues the interrupted one, without duplicates


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tone_targets, tmp_path, monkeypatch):
    from blsp_emo.model.modeling import BlspEmoModel

    original = BlspEmoModel.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(BlspEmoModel, "forward", poisoned)
    config = tiny_config(tone_targets, tmp_path / "run", optim={"max_steps": 8}, run={"save_steps": 2})
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 5 .*checkpoint-4"):
        train(config)
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "run" / "final").exists()


def test_stage2_trains_lora_adapter_and_emotion_head_only(tone_targets, tmp_path):
    trainer = Trainer(tiny_config(tone_targets, tmp_path / "s2", "emotion", optim={"max_steps": 2}))
    model = trainer.unwrapped
    names = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"adapter", "emotion_head", "llm"}
    assert all(".lora_" in n for n, p in model.llm.named_parameters() if p.requires_grad)
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    result = trainer.fit()
    after = _weights(result.final_dir)
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"adapter", "emotion_head", "llm"}


def test_cached_encoder_states_give_the_same_loss(tone_targets, tmp_path):
    cached = Trainer(tiny_config(tone_targets, tmp_path / "a", optim={"max_steps": 1}))
    fresh = Trainer(
        tiny_config(tone_targets, tmp_path / "b", optim={"max_steps": 1}, data={"cache_encoder": False})
    )
    assert cached.cache is not None and fresh.cache is None
    assert cached.mean_loss() == pytest.approx(fresh.mean_loss(), rel=1e-4)


def test_training_improves_the_loss_and_writes_logs(tone_targets, tmp_path):
    config = tiny_config(tone_targets, tmp_path / "run", optim={"max_steps": 9}, run={"plot": True})
    trainer = Trainer(config)
    before = trainer.mean_loss()
    result = trainer.fit()
    assert trainer.mean_loss() < before
    out = tmp_path / "run"
    assert (out / "training_curve.png").stat().st_size > 1000
    assert any((out / "logs" / "tensorboard").iterdir())
    assert len((out / "logs" / "train.jsonl").read_text().splitlines()) == 9
    assert result.final_dir == out / "final" and (out / "config.yaml").is_file()
    shutil.rmtree(out / "encoder-cache")


def test_cli_trains_and_refuses_to_clobber_a_run(tone_targets, tmp_path, capsys):
    from blsp_emo.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("stage: semantic\nmodel:\n  init_from: random-tiny\n")
    args = [
        "train",
        "--config",
        str(config),
        f"data.train={tone_targets}",
        f"run.output_dir={tmp_path / 'r'}",
    ]
    args += ["optim.max_steps=2", "run.progress=false", "run.plot=false", "data.batching=count"]
    assert main(args) == 0
    assert (tmp_path / "r" / "final" / "model.safetensors").is_file()
    assert main(args) == 2  # checkpoints exist and neither --resume nor run.overwrite=true was given
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # the run is complete: nothing left to do
    assert main([*args, "optim.lr=oops"]) == 2


def test_bf16_gradient_checkpointing_and_trained_encoder(tone_targets, tmp_path):
    config = tiny_config(
        tone_targets, tmp_path / "run", "emotion", optim={"max_steps": 2},
        model={"gradient_checkpointing": True, "train_encoder": True}, run={"mixed_precision": "bf16"},
    )  # fmt: skip
    assert not config.uses_cache  # a trained encoder is recomputed every step
    result = train(config)
    weights = _weights(result.final_dir)
    assert (
        any(k.startswith("encoder.") for k in weights) and not (tmp_path / "run" / "encoder-cache").exists()
    )
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_recognition_share_adds_emotion_questions_to_stage2(tone_targets, tmp_path):
    from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS
    from blsp_emo.training.data import RecognitionMix

    config = tiny_config(
        tone_targets, tmp_path / "s2", "emotion", optim={"max_steps": 2}, data={"recognition_share": 0.5}
    )
    trainer = Trainer(config)
    dataset = trainer.dataset
    assert isinstance(dataset, RecognitionMix) and len(dataset) == 12 + 6
    assert len(dataset.durations) == len(dataset) == len(dataset.rows)
    copy = dataset[12]
    assert copy["task"] == "recognition" and copy["target"] == copy["emotion"] and not copy["truncated"]
    assert "task" not in dataset[0] and dataset[0]["target"] == "jumps over the lazy dog."
    # The copy is asked the emotion-recognition question under the default system prompt and answers
    # with the emotion word (+ end of turn); the base item keeps the stage-2 prompt and its target.
    collate = trainer.loader.collate_fn
    tokenizer = trainer.processor.tokenizer
    both = collate([dataset[0], copy])
    prompts = [tokenizer.decode(ids[ids >= 0]) for ids in both["input_ids"]]  # < 0: speech slots
    assert INSTRUCTIONS["recognize_emotion"].split("\n")[0] in prompts[1]
    assert SYSTEM_PROMPTS["default"] in prompts[1] and SYSTEM_PROMPTS["empathetic"] not in prompts[1]
    assert SYSTEM_PROMPTS["empathetic"] in prompts[0]
    answer = tokenizer.decode(both["labels"][1][both["labels"][1] != -100])
    assert answer.startswith(copy["emotion"]) and both["emotion_labels"].tolist()[1] == copy["emotion_id"]
    assert trainer.fit().final_dir.is_dir()
    with pytest.raises(UserError, match="recognition_share"):
        tiny_config(tone_targets, tmp_path / "s1", "semantic", data={"recognition_share": 0.5}).validate()
    with pytest.raises(UserError, match="recognition_share"):
        tiny_config(tone_targets, tmp_path / "s3", "emotion", data={"recognition_share": 1.5}).validate()
