"""BlspEmoModel on tiny random weights: losses, partial LoRA, generation, checkpoints."""

import numpy as np
import pytest
import torch

from blsp_emo.model import BlspEmoModel, SpeechChat, kl_distillation_loss, load_model
from blsp_emo.model.types import DecodingOptions
from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS


def _speech_conv(audio, instruction="continue"):
    return [
        {"role": "system", "content": SYSTEM_PROMPTS["default"]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": INSTRUCTIONS[instruction]},
                {"type": "audio", "audio": audio},
            ],
        },
    ]


def _text_conv(text):
    return [
        {"role": "system", "content": SYSTEM_PROMPTS["default"]},
        {"role": "user", "content": INSTRUCTIONS["continue"] + text},
    ]


@pytest.fixture
def audio():
    return (np.random.default_rng(0).standard_normal(24000) * 0.1).astype(np.float32)


def test_kl_is_zero_when_student_equals_teacher():
    logits = torch.randn(7, 50)
    assert kl_distillation_loss(logits, logits.clone()).abs().item() < 1e-6
    assert kl_distillation_loss(logits, torch.randn(7, 50)).item() > 0


def test_stage1_loss_trains_adapter_only(random_model, audio):
    model, processor = random_model
    model.set_trainable(adapter=True)
    student = processor([_speech_conv(audio)], responses=["it was fine"], truncated=[False])
    teacher = processor([_text_conv("hello there")], responses=["it was fine"], truncated=[False])
    out = model(
        **student,
        teacher_input_ids=teacher["input_ids"],
        teacher_attention_mask=teacher["attention_mask"],
        teacher_labels=teacher["labels"],
    )
    assert out.kl_loss is not None and out.loss.item() > 0
    out.loss.backward()
    assert model.adapter.fc1.weight.grad is not None and model.adapter.fc1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.llm.parameters())


def test_stage2_loss_has_response_and_emotion_terms(audio):
    model, processor = load_model("random-tiny", device="cpu", lora_r=4)
    model.set_trainable(adapter=True, lora=True, emotion_head=True)
    batch = processor([_speech_conv(audio, "continue_emotion")], responses=["oh no"], truncated=[False])
    out = model(**batch, emotion_labels=torch.tensor([3]))
    assert out.lm_loss is not None and out.emotion_loss is not None
    torch.testing.assert_close(out.loss, out.lm_loss + out.emotion_loss)
    out.loss.backward()
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None for p in lora_b)


def test_partial_lora_leaves_text_only_prompts_bit_identical(audio):
    base, processor = load_model("random-tiny", device="cpu", lora_r=0)
    lora, _ = load_model("random-tiny", device="cpu", lora_r=4)
    with torch.no_grad():  # make the LoRA update non-zero so that it would show if applied
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_()
    batch = processor([_text_conv("the weather is nice")])
    a = base(**batch).logits
    b = lora(**batch).logits
    assert torch.equal(a, b)
    # ...while speech prompts do change
    speech = processor([_speech_conv(audio)])
    assert not torch.equal(base(**speech).logits, lora(**speech).logits)
    # ...and generation after the prefill sees the base LLM: text-only replies identical
    ra = SpeechChat(base, processor).respond([_text_conv("hi")], DecodingOptions(max_new_tokens=8))
    rb = SpeechChat(lora, processor).respond([_text_conv("hi")], DecodingOptions(max_new_tokens=8))
    assert ra[0].text == rb[0].text


def test_batched_generation_matches_single(random_model, audio):
    model, processor = random_model
    chat = SpeechChat(model, processor)
    convs = [_speech_conv(audio), _speech_conv(audio[:9000]), _text_conv("good morning")]
    together = chat.respond(convs, DecodingOptions(max_new_tokens=6))
    alone = [chat.respond([c], DecodingOptions(max_new_tokens=6))[0] for c in convs]
    assert [r.text for r in together] == [r.text for r in alone]
    assert together[0].emotion in {"neutral", "happy", "angry", "sad", "surprise"}
    assert together[2].emotion is None


def test_stream_yields_same_text_as_respond(random_model, audio):
    model, processor = random_model
    chat = SpeechChat(model, processor)
    reply = chat.respond([_speech_conv(audio)], DecodingOptions(max_new_tokens=8))[0]
    stream = chat.stream(_speech_conv(audio), DecodingOptions(max_new_tokens=8))
    pieces = list(stream)
    assert "".join(pieces).strip() == reply.text
    assert stream.reply is not None and stream.reply.completion_tokens == reply.completion_tokens


def test_save_load_round_trip_gives_identical_outputs(tmp_path, audio):
    model, processor = load_model("random-tiny", device="cpu", lora_r=4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "adapter" in name:
                p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert [f for f in files if f.endswith((".safetensors", ".bin", ".pt"))] == ["model.safetensors"]
    assert {"config.json", "README.md", "processor_config.json", "tokenizer_config.json"} <= set(files)
    fresh, _ = load_model("random-tiny", device="cpu")  # same base weights (fixed seed), no LoRA yet
    restored = BlspEmoModel.from_pretrained(tmp_path, encoder=fresh.encoder, llm=fresh.llm)
    batch = processor([_speech_conv(audio)])
    assert torch.equal(model(**batch).logits, restored(**batch).logits)


def test_cancelled_stream_stops_early(random_model, audio):
    model, processor = random_model
    chat = SpeechChat(model, processor)
    stream = chat.stream(_speech_conv(audio), DecodingOptions(max_new_tokens=400))
    stream.cancel()
    list(stream)
    assert stream.reply is not None and stream.reply.completion_tokens < 400
    assert stream.reply.finish_reason in ("cancelled", "stop")


def test_load_model_rebuilds_a_random_tiny_checkpoint(tmp_path, audio):
    model, processor = load_model("random-tiny", device="cpu", lora_r=4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    model.save_pretrained(tmp_path)
    restored, restored_processor = load_model(str(tmp_path), device="cpu")
    batch = processor([_speech_conv(audio)])
    assert torch.equal(model(**batch).logits, restored(**restored_processor([_speech_conv(audio)])).logits)


def test_shipped_model_name_is_the_default_when_present(tmp_path, monkeypatch, audio):
    from blsp_emo.errors import ModelNotAvailableError
    from blsp_emo.model import loading
    from blsp_emo.serving.commands import model_id

    monkeypatch.setattr(loading, "shipped_model_path", lambda: None)
    assert loading.default_model_name() == "tiny" and loading.checkpoint_path("blsp-emo-tiny") is None
    with pytest.raises(ModelNotAvailableError, match="blsp-emo-tiny"):
        load_model("blsp-emo-tiny")
    model, processor = load_model("random-tiny", device="cpu", lora_r=4)
    model.save_pretrained(tmp_path)
    monkeypatch.setattr(loading, "shipped_model_path", lambda: tmp_path)
    assert (
        loading.default_model_name() == "blsp-emo-tiny"
        and loading.checkpoint_path("blsp-emo-tiny") == tmp_path
    )
    shipped, _ = load_model("blsp-emo-tiny", device="cpu")
    batch = processor([_speech_conv(audio)])
    assert torch.equal(model(**batch).logits, shipped(**batch).logits)
    assert model_id("blsp-emo-tiny") == "blsp-emo-tiny" and model_id("tiny") == "blsp-emo-tiny-untrained"


def test_float16_export_halves_the_checkpoint_and_keeps_outputs_close(tmp_path, audio, capsys):
    from safetensors.torch import load_file

    from blsp_emo.cli import main

    model, processor = load_model("random-tiny", device="cpu", lora_r=4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02)
    model.save_pretrained(tmp_path / "fp32")
    assert main(["export", str(tmp_path / "fp32"), "-o", str(tmp_path / "fp16")]) == 0
    assert "float16" in capsys.readouterr().out
    weights = {name: load_file(str(tmp_path / name / "model.safetensors")) for name in ("fp32", "fp16")}
    assert weights["fp16"].keys() == weights["fp32"].keys()
    assert {t.dtype for t in weights["fp16"].values()} == {torch.float16}
    size = {name: (tmp_path / name / "model.safetensors").stat().st_size for name in ("fp32", "fp16")}
    assert size["fp16"] < 0.55 * size["fp32"]
    restored, _ = load_model(str(tmp_path / "fp16"), device="cpu")
    assert next(restored.adapter.parameters()).dtype == torch.float32  # loading casts back
    batch = processor([_speech_conv(audio)])
    with torch.no_grad():
        before, after = model(**batch).logits, restored(**batch).logits
    assert not torch.equal(before, after) and torch.allclose(before, after, atol=1e-2, rtol=1e-2)
    # An existing checkpoint is not replaced unless asked; a folder that is no checkpoint is named.
    assert main(["export", str(tmp_path / "fp32"), "-o", str(tmp_path / "fp16")]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "fp32"), "-o", str(tmp_path / "fp16"), "--overwrite"]) == 0
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "x")]) == 2
    assert "not a blsp-emo checkpoint" in capsys.readouterr().err


def test_fresh_adapter_starts_at_the_scale_of_the_llm_token_embeddings(tmp_path, audio):
    from blsp_emo.training.trainer import load_start

    model, processor = load_model("random-tiny", device="cpu")
    token_rms = model.llm.get_input_embeddings().weight.pow(2).mean().sqrt().item()
    plain, _ = load_model("random-tiny", device="cpu", adapter_output_scale=1.0)  # recipe v1's LayerNorm
    feats = processor.audio_features([audio])
    with torch.no_grad():
        rms = {
            name: m.speech_embeddings(*m.encode_speech(**feats))[0].pow(2).mean().sqrt().item()
            for name, m in (("embeddings", model), ("plain", plain))
        }
    assert rms["embeddings"] == pytest.approx(token_rms, rel=0.05) and rms["plain"] == pytest.approx(
        1.0, rel=0.05
    )
    with pytest.raises(ValueError, match="adapter_output_scale"):
        load_model("random-tiny", device="cpu", adapter_output_scale="large")
    # A training run that starts from a checkpoint keeps the checkpoint's adapter and its recorded scale.
    plain.save_pretrained(tmp_path)
    restarted, _ = load_start(str(tmp_path), adapter_output_scale="embeddings")
    assert restarted.config.adapter_output_scale == 1.0
    assert torch.equal(restarted.adapter.norm.weight, plain.adapter.norm.weight)


def test_speech_positions_sets_the_lora_mask_for_the_block_and_restores_it_after_an_exception():
    model, _ = load_model("random-tiny", device="cpu", lora_r=4)
    outer = torch.tensor([[True, False, True]])
    inner = torch.tensor([[False, True, True]])
    assert model.lora_mask is not None and model.lora_mask.mask is None
    with model.speech_positions(outer):
        assert model.lora_mask.mask is outer
        with pytest.raises(RuntimeError, match="inside the block"):
            with model.speech_positions(inner):
                assert model.lora_mask.mask is inner
                raise RuntimeError("inside the block")
        assert model.lora_mask.mask is outer  # the exception left the outer setting in place
        with model.speech_positions(torch.zeros(1, 3, dtype=torch.bool)):
            assert model.lora_mask.mask is None  # no speech position: no LoRA anywhere
    assert model.lora_mask.mask is None
    plain, _ = load_model("random-tiny", device="cpu")  # no LoRA: the block is a no-op
    with plain.speech_positions(outer):
        assert plain.lora_mask is None


def test_forward_leaves_no_lora_mask_behind_even_when_it_fails(audio):
    model, processor = load_model("random-tiny", device="cpu", lora_r=4)
    batch = processor([_speech_conv(audio)], responses=["fine"], truncated=[False])
    model(**batch)
    assert model.lora_mask.mask is None
    with pytest.raises(ValueError, match="teacher_attention_mask"):
        model(**batch, teacher_input_ids=batch["input_ids"])
    assert model.lora_mask.mask is None


def test_model_is_built_from_its_config_alone():
    from transformers import LlamaForCausalLM
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from blsp_emo.model import BlspEmoConfig
    from blsp_emo.model.loading import random_tiny_config

    config = random_tiny_config(lora_r=2)
    model = BlspEmoModel(config)
    assert isinstance(model.encoder, WhisperEncoder) and isinstance(model.llm, LlamaForCausalLM)
    assert model.encoder_dim == config.encoder_config["d_model"] == 32
    assert model.llm_dim == config.llm_config["hidden_size"] == 48
    assert model.llm.config.vocab_size == config.llm_config["vocab_size"]
    assert model.lora_mask is not None  # LoRA from the config too
    named_only = BlspEmoConfig(whisper_name="whisper-base", llm_name="smollm2-135m-instruct")
    with pytest.raises(ValueError, match="load_model"):  # nothing to build from, and no asset lookup
        BlspEmoModel(named_only)
    # A checkpoint's config carries the base configs: it reloads without the preset's help.
    reloaded = BlspEmoConfig.from_dict(config.to_dict())
    assert reloaded.encoder_config == config.encoder_config and reloaded.llm_config == config.llm_config


def test_gradient_checkpointing_recomputes_lora_layers_with_their_speech_positions(audio):
    # The backward pass recomputes checkpointed layers after forward has left its speech_positions block:
    # the recomputation must still apply LoRA at the speech positions, or the LoRA gradients change.
    grads = {}
    for checkpointing in (False, True):
        model, processor = load_model("random-tiny", device="cpu", lora_r=4)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
        model.set_trainable(adapter=True, lora=True)
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        batch = processor([_speech_conv(audio)], responses=["it was fine"], truncated=[False])
        torch.manual_seed(0)  # the same LoRA dropout in both runs
        model(**batch).loss.backward()
        grads[checkpointing] = {n: p.grad.clone() for n, p in model.named_parameters() if "lora_A" in n}
    assert grads[False].keys() == grads[True].keys() and grads[False]
    assert any(g.abs().sum() > 0 for g in grads[True].values())
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, msg=name)
