"""The emotion token: the LLM reads the emotion the head hears as one embedding after each speech segment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from blsp_emo.model import load_model
from blsp_emo.model.adapter import append_per_segment
from blsp_emo.model.processor import SPEECH_TOKEN_ID
from blsp_emo.prompts import EMOTIONS

RNG = np.random.default_rng(0)


def _clips() -> list[np.ndarray]:
    return [RNG.standard_normal(int(16000 * s)).astype(np.float32) * 0.1 for s in (1.2, 2.3)]


def _token_model():
    model, processor = load_model("random-tiny", device="cpu", emotion_features="layer_mix")
    model.enable_emotion_token(processor.tokenizer)
    return model.eval(), processor


def _conversation(audio: np.ndarray) -> list[dict]:
    content = [{"type": "text", "text": "Continue: "}, {"type": "audio", "audio": audio}]
    return [{"role": "user", "content": content}]


def test_append_per_segment_writes_the_extra_embedding_after_each_segments_last_frame():
    speech = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2) + 1
    extra = torch.tensor([[-1.0, -1.0], [-2.0, -2.0]])
    out, lengths = append_per_segment(speech, torch.tensor([3, 1]), extra)
    assert lengths.tolist() == [4, 2] and out.shape == (2, 4, 2)
    assert out[0].tolist() == [[1, 2], [3, 4], [5, 6], [-1, -1]]
    assert out[1].tolist() == [[7, 8], [-2, -2], [0, 0], [0, 0]]  # padding after the token stays zero


def test_the_table_starts_at_the_llms_embeddings_of_the_emotion_words():
    model, processor = _token_model()
    assert model.config.emotion_token and model.emotion_token is not None
    table = model.token_embeddings().weight
    for k, word in enumerate(EMOTIONS):
        ids = processor.tokenizer.encode(" " + word, add_special_tokens=False)
        torch.testing.assert_close(model.emotion_token.table[k], table[ids].mean(0))
    assert any(k.startswith("emotion_token.") for k in model.trainable_state_dict())


def test_the_token_follows_each_segment_and_carries_the_heads_probabilities():
    model, processor = _token_model()
    batch = processor([_conversation(a) for a in _clips()], responses=["yes.", "no."], truncated=[False] * 2)
    slots_before = int((batch["input_ids"] == SPEECH_TOKEN_ID).sum())
    inputs = dict(batch)
    with torch.no_grad():
        embeds, mask, speech, lengths = model.prepare_embeddings(inputs)
    assert speech is not None and lengths is not None
    assert int(mask.sum()) == slots_before + 2  # one more slot per segment
    probs = inputs["emotion_head_logits"].float().softmax(-1)
    heard = model.emotion_token(probs)
    for row in range(2):
        last = int(mask[row].nonzero().max())  # the segment's last slot is the emotion token
        torch.testing.assert_close(embeds[row, last], heard[row])
        torch.testing.assert_close(embeds[row, last - 1], speech[row, int(lengths[row]) - 1])
    # the labels were re-laid with the slots: the loss still covers the same response tokens
    assert int((inputs["labels"] != -100).sum()) == int((batch["labels"] != -100).sum())


def test_what_the_head_hears_changes_the_llms_logits_only_with_the_token():
    model, processor = _token_model()
    batch = processor([_conversation(_clips()[0])], responses=["yes."], truncated=[False])

    def logits_with_head_bias(m, bias: int) -> torch.Tensor:
        assert m.emotion_head is not None
        with torch.no_grad():
            m.emotion_head.proj.bias.zero_()
            m.emotion_head.proj.bias[bias] = 30.0  # the head is sure it hears emotion `bias`
            return m(**dict(batch)).logits

    assert not torch.allclose(logits_with_head_bias(model, 0), logits_with_head_bias(model, 3))
    plain, _ = load_model("random-tiny", device="cpu", emotion_features="layer_mix")
    plain.eval()
    torch.testing.assert_close(logits_with_head_bias(plain, 0), logits_with_head_bias(plain, 3))


def test_generation_reads_the_token_and_reports_the_same_emotion(tmp_path):
    model, processor = _token_model()
    clips = _clips()
    batch = processor([_conversation(a) for a in clips], add_generation_prompt=True)
    ids, emotion = model.generate(batch)
    assert ids.shape[0] == 2 and emotion is not None
    torch.testing.assert_close(emotion, model.predict_emotion(processor.audio_features(clips)))
    model.save_pretrained(tmp_path / "ckpt", processor=processor, model_card=False)
    again, _ = load_model(str(tmp_path / "ckpt"), device="cpu")
    assert again.emotion_token is not None
    torch.testing.assert_close(again.emotion_token.table, model.emotion_token.table)
    assert torch.equal(again.generate(batch)[0], ids)


def test_the_token_needs_the_emotion_head():
    with pytest.raises(ValueError, match="emotion head"):
        load_model("random-tiny", device="cpu", use_emotion_head=False, emotion_token=True)


def test_stage2_with_the_token_and_the_head_prefit_trains_saves_and_reloads(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from training_helpers import tiny_config, write_tone_rows

    from blsp_emo.training.trainer import train

    data = write_tone_rows(tmp_path / "data")
    model_section = {"emotion_features": "layer_mix", "emotion_token": True, "emotion_head_prefit_steps": 400}
    config = tiny_config(data, tmp_path / "out", "emotion", model=model_section, optim={"max_steps": 2})
    result = train(config)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    prefit = summary["emotion_head_prefit"]
    assert prefit["steps"] == 400 and prefit["clips"] == 12 and prefit["train_accuracy"] > 0.5
    model, _ = load_model(str(result.final_dir), device="cpu")
    assert model.config.emotion_token and model.emotion_token is not None


def test_prompt_tokens_count_the_emotion_token_as_the_llm_reads_it():
    from blsp_emo.model import SpeechChat
    from blsp_emo.model.types import Conversation, DecodingOptions

    model, processor = _token_model()
    chat = SpeechChat(model, processor)
    clips = _clips()
    conversation = Conversation().speech(clips[0]).assistant("fine.").speech(clips[1])
    encoded = processor.encode(conversation, add_generation_prompt=True)
    assert chat.prompt_tokens(conversation) == len(encoded.input_ids) + 2  # one token per speech turn
    batch = processor([conversation], add_generation_prompt=True)
    with torch.no_grad():
        embeds, _, _, _ = model.prepare_embeddings(dict(batch))
    assert embeds.shape[1] == chat.prompt_tokens(conversation)  # what the LLM reads
    reply = chat.respond([conversation], DecodingOptions(max_new_tokens=2))[0]
    assert reply.prompt_tokens == chat.prompt_tokens(conversation)
