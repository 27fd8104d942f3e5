"""The training loop on the tiny random model: exact resume, NaN stop, stage 2 parts, fast-path parity."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import tiny_config

from blsp_emo.errors import UserError
from blsp_emo.model.processor import batch_to
from blsp_emo.prompts import Stage
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


def _log(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "logs" / "train.jsonl").read_text().splitlines() if line]


def test_resume_with_duration_batching_matches_uninterrupted(tone_targets, tmp_path):
    # Duration batching (8 s of padded audio, at most 4 rows): 6 micro-batches of 1-4 rows per epoch, so 3
    # steps of grad_accum 2. Stopped after step 4, in the middle of the second epoch, the resumed run must
    # take the same batches at the same steps (the same rows per step) and end on the same weights.
    sections = {
        "optim": {"max_steps": 7, "grad_accum": 2},
        "data": {"batching": "duration", "batch_seconds": 8, "batch_size": 4},
    }
    full = train(tiny_config(tone_targets, tmp_path / "full", "emotion", **sections, run={"save_steps": 2}))
    assert full.final_dir is not None and full.global_step == 7
    part = tmp_path / "part"
    stopped = train(
        tiny_config(tone_targets, part, "emotion", **sections, run={"save_steps": 2, "stop_after_steps": 4})
    )
    assert stopped.final_dir is None and stopped.checkpoint.name == "checkpoint-4"
    where = json.loads((stopped.checkpoint / "trainer_state.json").read_text())
    assert (where["epoch"], where["sampler"]["epoch"], where["sampler"]["position"]) == (1, 1, 2)  # mid-epoch
    resumed = train(
        tiny_config(tone_targets, part, "emotion", **sections, run={"save_steps": 2}), resume=True
    )
    assert resumed.global_step == 7
    a, b = _weights(full.final_dir), _weights(resumed.final_dir)
    assert a.keys() == b.keys() and any(".lora_B." in k for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    expected, got = _log(tmp_path / "full"), _log(part)
    assert [r["step"] for r in got] == list(range(1, 8))
    assert [r["samples_seen"] for r in got] == [r["samples_seen"] for r in expected]
    per_step = {b["samples_seen"] - a["samples_seen"] for a, b in zip(expected, expected[1:])}
    assert len(per_step) > 1  # batches of different sizes: the duration budget really made them
    for x, y in zip(expected, got):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5), (x, y)


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


def test_stage2_with_a_frozen_adapter_keeps_stage1s_adapter(tone_targets, tmp_path):
    config = tiny_config(
        tone_targets, tmp_path / "s2", "emotion", optim={"max_steps": 2},
        model={"train_adapter": False, "emotion_token": True, "emotion_features": "layer_mix"},
    )  # fmt: skip
    trainer = Trainer(config)
    model = trainer.unwrapped
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    after = _weights(trainer.fit().final_dir)
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"emotion_head", "emotion_token", "llm"}  # the adapter is saved, unchanged


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


def _count_calls(module: torch.nn.Module, dtypes: set | None = None) -> list[int]:
    """A list that grows by one at every forward call of ``module`` (noting its output dtype in ``dtypes``)."""
    calls: list[int] = []

    def hook(_module, _inputs, output) -> None:
        calls.append(1)
        if dtypes is not None:
            dtypes.add(output.dtype)

    module.register_forward_hook(hook)
    return calls


def _checkpointing(llm) -> bool:
    """Whether the LLM checkpoints its layers (transformers 5 renamed the flag)."""
    flag = getattr(type(llm), "is_activation_checkpointing", None)
    return bool(llm.is_activation_checkpointing if flag is not None else llm.is_gradient_checkpointing)


def test_bf16_gradient_checkpointing_and_trained_encoder(tone_targets, tmp_path):
    # Stage 2 with the encoder trained, in bf16 autocast, with checkpointed LLM layers: the LLM really
    # computes in bf16, the loss goes down over 4 steps (fp32: 7.626 -> 7.591 on this data), and every
    # trainable encoder weight moves and is saved.
    config = tiny_config(
        tone_targets, tmp_path / "run", "emotion", optim={"max_steps": 4},
        model={"gradient_checkpointing": True, "train_encoder": True}, run={"mixed_precision": "bf16"},
    )  # fmt: skip
    assert not config.uses_cache  # a trained encoder is recomputed every step
    trainer = Trainer(config)
    model = trainer.unwrapped
    assert _checkpointing(model.llm)
    encoder_before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    assert all(p.requires_grad for p in model.encoder.parameters())
    before = trainer.mean_loss()
    dtypes: set = set()
    linear = next(m for m in model.llm.modules() if isinstance(m, torch.nn.Linear))
    _count_calls(linear, dtypes)
    result = trainer.fit()
    assert dtypes == {torch.bfloat16}  # autocast was on in every training forward
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    after = trainer.mean_loss()
    assert after < before - 0.02, (before, after)
    assert result.losses[-1] < result.losses[0], result.losses
    weights = _weights(result.final_dir)
    assert not (tmp_path / "run" / "encoder-cache").exists()
    for name, old in encoder_before.items():
        saved = weights[f"encoder.{name}"]
        assert not torch.equal(saved, old), name  # trained
        torch.testing.assert_close(saved, model.encoder.get_parameter(name).detach(), msg=name)
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_frozen_encoder_stays_equal_while_the_rest_trains(tone_targets, tmp_path):
    # The encoder runs in every step (no cache) with checkpointing and bf16, but is not trained: not one of
    # its weights may move, while the adapter, LoRA and the emotion head do.
    config = tiny_config(
        tone_targets, tmp_path / "run", "emotion", optim={"max_steps": 3}, data={"cache_encoder": False},
        model={"gradient_checkpointing": True}, run={"mixed_precision": "bf16"},
    )  # fmt: skip
    trainer = Trainer(config)
    model = trainer.unwrapped
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trained_before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    runs = _count_calls(model.encoder.conv1)
    result = trainer.fit()
    assert len(runs) >= 3  # the encoder ran in the training steps
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    weights = _weights(result.final_dir)
    assert not any(k.startswith("encoder.") for k in weights)
    changed = {k.split(".")[0] for k in weights if not torch.equal(weights[k], trained_before[k])}
    assert changed == {"adapter", "emotion_head", "llm"}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tone_targets, tmp_path):
    # fp32, stage 2 with the encoder trained and LoRA dropout on: one batch through the model with and
    # without checkpointing, from the same random state, gives the same loss and the same gradient for
    # every trainable weight; with checkpointing the LLM layers really are recomputed in the backward pass.
    results = {}
    for checkpointing in (False, True):
        config = tiny_config(
            tone_targets, tmp_path / f"gc{checkpointing}", "emotion", optim={"max_steps": 1},
            model={"gradient_checkpointing": checkpointing, "train_encoder": True},
        )  # fmt: skip
        trainer = Trainer(config)
        model = trainer.unwrapped
        assert model.training and _checkpointing(model.llm) == checkpointing
        norm = next(m for n, m in model.llm.named_modules() if n.endswith("layers.0.input_layernorm"))
        calls = _count_calls(norm)
        batch = next(iter(trainer.loader))
        batch.pop("num_samples")
        torch.manual_seed(0)
        out = model(**batch_to(batch, trainer.accelerator.device))
        assert len(calls) == 1
        out.loss.backward()
        assert len(calls) == (2 if checkpointing else 1)  # recomputed in the backward pass
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert {n.split(".")[0] for n, g in grads.items() if g.abs().sum() > 0} == {
            "adapter", "emotion_head", "encoder", "llm"
        }  # fmt: skip
        results[checkpointing] = (out.loss.detach(), grads)
    (loss, grads), (loss_gc, grads_gc) = results[False], results[True]
    torch.testing.assert_close(loss_gc, loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == grads_gc.keys()
    for name in grads:
        torch.testing.assert_close(grads_gc[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_recognition_share_adds_emotion_questions_to_stage2(tone_targets, tmp_path):
    from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS
    from blsp_emo.training.dataset import RecognitionMix

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


def _resumed_matches(tone_targets, part, sections: dict, full) -> dict[str, torch.Tensor]:
    """The stage-2 run of ``sections`` stopped after step 2 and resumed ends on ``full``'s weights (returned)."""
    run = {"save_steps": 2, "stop_after_steps": 2}
    stopped = train(tiny_config(tone_targets, part, "emotion", **{**sections, "run": run}))
    assert stopped.final_dir is None
    resumed = train(tiny_config(tone_targets, part, "emotion", **sections), resume=True)
    a, b = _weights(full.final_dir), _weights(resumed.final_dir)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    return a


def test_semantic_kl_beside_stage2_trains_and_resumes_exactly(tone_targets, tmp_path):
    # data.semantic_train: every stage-2 micro-batch is followed by one of stage 1's rows with its KL to
    # the LLM fed the transcript; the stream's place follows the steps, so a resumed run ends on the same
    # weights as an uninterrupted one.
    from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS

    sections = {
        "optim": {"max_steps": 4, "grad_accum": 2},
        "run": {"save_steps": 2},
        "data": {"batch_size": 3, "semantic_train": str(tone_targets), "semantic_batch_seconds": 5},
        "model": {"emotion_features": "layer_mix", "emotion_token": True, "semantic_loss_weight": 0.5},
    }
    trainer = Trainer(tiny_config(tone_targets, tmp_path / "full", "emotion", **sections))
    stream = trainer.semantic_stream
    assert stream is not None and len(stream.dataset) == 12
    batch = stream.batch(0)
    assert {"teacher_input_ids", "teacher_labels", "encoder_layer_stats"} <= batch.keys()
    tokenizer = trainer.processor.tokenizer
    prompt = tokenizer.decode(batch["input_ids"][0][batch["input_ids"][0] >= 0])
    assert SYSTEM_PROMPTS["default"] in prompt and SYSTEM_PROMPTS["empathetic"] not in prompt
    teacher = tokenizer.decode(batch["teacher_input_ids"][0])
    assert INSTRUCTIONS[Stage.SEMANTIC.instruction_name].split("\n")[0] in teacher
    # micro-batch n is a function of n: epochs follow each other, every row once per epoch
    first = [stream.indices(n) for n in range(stream.per_epoch)]
    assert sorted(i for b in first for i in b) == list(range(12))
    assert stream.indices(stream.per_epoch) != first[0] or stream.per_epoch == 1
    assert stream.indices(1) == first[1]
    full = trainer.fit()
    records = _log(tmp_path / "full")
    assert all(r["kl_loss"] > 0 and r["lm_loss"] > 0 for r in records)
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["semantic_rows"] == 12 and summary["semantic_micro_batches"] == 8

    a = _resumed_matches(tone_targets, tmp_path / "part", sections, full)

    # the KL term moves the weights: without it the same run ends elsewhere
    plain = {**sections, "data": {"batch_size": 3}}
    alone = _weights(train(tiny_config(tone_targets, tmp_path / "plain", "emotion", **plain)).final_dir)
    assert any(not torch.equal(a[k], alone[k]) for k in a if ".lora_" in k)
    assert "kl_loss" not in _log(tmp_path / "plain")[0]


def test_on_policy_turns_are_an_even_share_and_a_function_of_the_index():
    from blsp_emo.training.trainer import on_policy_turn

    for share in (0.0, 0.25, 0.5, 1 / 3, 1.0):
        turns = [on_policy_turn(n, share) for n in range(120)]
        assert sum(turns) == round(120 * share)
    assert [on_policy_turn(n, 0.5) for n in range(4)] == [False, True, False, True]
    assert not any(on_policy_turn(n, 0.0) for n in range(50)) and all(
        on_policy_turn(n, 1.0) for n in range(50)
    )


def test_eval_mode_restores_each_modules_mode():
    from blsp_emo.training.trainer import eval_mode

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    model.train()
    model[0].eval()  # a frozen part that stays in eval mode (the encoder in stage 2)
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model[1].training and not model[0].training


def test_on_policy_semantic_kl_trains_on_the_models_own_replies_and_resumes_exactly(tone_targets, tmp_path):
    # model.semantic_on_policy: a share of the semantic micro-batches take the model's own continuation of
    # the speech as the target (the KL to the LLM fed the transcript along it); sampled continuations
    # are seeded by the micro-batch, so a resumed run ends on the same weights.
    from blsp_emo.model.inference import decode_reply
    from blsp_emo.model.processor import stop_token_ids
    from blsp_emo.model.types import DecodingOptions
    from blsp_emo.training.trainer import eval_mode

    policy = {
        "semantic_on_policy": 0.5,
        "semantic_on_policy_tokens": 6,
        "semantic_on_policy_temperature": 0.8,
    }
    sections = {
        "optim": {"max_steps": 4, "grad_accum": 2},
        "run": {"save_steps": 2},
        "data": {"batch_size": 3, "semantic_train": str(tone_targets), "semantic_batch_seconds": 5},
        "model": {"emotion_features": "layer_mix", "emotion_token": True, **policy},
    }
    greedy = {**sections, "model": {**sections["model"], "semantic_on_policy_temperature": 0}}
    trainer = Trainer(tiny_config(tone_targets, tmp_path / "probe", "emotion", **greedy))
    stream = trainer.semantic_stream
    assert stream is not None
    # greedy: the targets are exactly the model's reply to the speech under the stage-1 prompt
    items = stream.items(0)
    gen = stream.collator.generation_batch(items)
    assert "labels" not in gen and {"encoder_states", "encoder_layer_stats"} <= gen.keys()
    tokenizer = trainer.processor.tokenizer
    stops = stop_token_ids(tokenizer)
    with eval_mode(trainer.unwrapped):
        ids, _ = trainer.unwrapped.generate(gen, stops, DecodingOptions(max_new_tokens=6))
    expected = [decode_reply(tokenizer, stops, row) for row in ids]
    batch = stream.on_policy_batch(0, lambda b: trainer._continue_speech(b, 0))
    teacher_targets = stream.batch(0)
    for i, (text, _, finish) in enumerate(expected):
        labels = batch["labels"][i][batch["labels"][i] >= 0]
        reply = tokenizer.decode(labels, skip_special_tokens=True).strip()
        assert reply == text and items[i]["target"] != text  # the model's reply, not the teacher's
        t_labels = batch["teacher_labels"][i][batch["teacher_labels"][i] >= 0]
        assert torch.equal(labels, t_labels)  # the teacher is scored along the same tokens
        # a reply cut by the token cap gets no end-of-turn marker; one that stopped ends with it
        marked = tokenizer.decode(labels).strip() != reply
        assert marked == (finish == "stop")
    assert not torch.equal(batch["labels"], teacher_targets["labels"])
    assert trainer.unwrapped.training and not trainer.unwrapped.encoder.training  # modes restored

    full = train(tiny_config(tone_targets, tmp_path / "full", "emotion", **sections))
    records = _log(tmp_path / "full")
    assert all(r["on_policy"] == 0.5 and r["kl_loss"] > 0 for r in records)
    a = _resumed_matches(tone_targets, tmp_path / "part", sections, full)
    # the on-policy micro-batches move the weights elsewhere than the teacher's continuations do
    off = {**sections, "model": {"emotion_features": "layer_mix", "emotion_token": True}}
    teacher_only = _weights(train(tiny_config(tone_targets, tmp_path / "off", "emotion", **off)).final_dir)
    assert any(not torch.equal(a[k], teacher_only[k]) for k in a if ".lora_" in k)
    assert "on_policy" not in _log(tmp_path / "off")[0]


def test_on_policy_settings_are_checked(tone_targets, tmp_path):
    for model, match in (
        ({"semantic_on_policy": 0.5}, "semantic_on_policy needs data.semantic_train"),
        ({"semantic_on_policy": 1.5}, "between 0 and 1"),
        ({"semantic_on_policy_tokens": 0}, "semantic_on_policy_tokens must be >= 1"),
        ({"semantic_on_policy_temperature": -1}, "semantic_on_policy_temperature must be >= 0"),
    ):
        with pytest.raises(UserError, match=match):
            tiny_config(tone_targets, tmp_path / "c", "emotion", model=model).validate()


def test_semantic_train_needs_stage2(tone_targets, tmp_path):
    with pytest.raises(UserError, match="semantic_train needs stage: emotion"):
        tiny_config(tone_targets, tmp_path / "s1", "semantic", data={"semantic_train": str(tone_targets)})
    with pytest.raises(UserError, match="semantic_loss_weight"):
        tiny_config(tone_targets, tmp_path / "s2", "emotion", model={"semantic_loss_weight": -1})
