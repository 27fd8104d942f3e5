"""Token-space bridge: the LLM reads the embeddings of the tokens the alignment head hears."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blsp_emo.model.alignment import BLANK, bridge_to_tokens, ctc_target_ids, resize_speech_slots
from blsp_emo.model.processor import IGNORE_INDEX, SPEECH_TOKEN_ID
from blsp_emo.model.types import DecodingOptions

S = SPEECH_TOKEN_ID
I = IGNORE_INDEX  # noqa: E741


def test_resize_speech_slots_relays_each_segment_and_keeps_text_and_labels():
    ids = torch.tensor([[1, S, S, S, 2, S, S, 3, 9], [0, 0, 0, 0, 1, S, S, 4, 9]])
    mask = (torch.arange(9)[None] >= torch.tensor([[0], [4]])).long()
    labels = torch.tensor([[I, I, I, I, I, I, I, I, 9], [I, I, I, I, I, I, I, I, 9]])
    new_ids, new_mask, new_labels = resize_speech_slots(
        ids, mask, labels, torch.tensor([3, 2, 2]), torch.tensor([1, 4, 0])
    )
    assert new_ids[0].tolist() == [1, S, 2, S, S, S, S, 3, 9]
    assert new_ids[1][new_mask[1].bool()].tolist() == [1, 4, 9]  # a segment can shrink to nothing
    assert new_mask[1].tolist() == [0] * 6 + [1] * 3  # still left-padded
    assert new_labels[0].tolist() == [I] * 8 + [9] and new_labels[1].tolist()[-1] == 9
    with pytest.raises(ValueError, match="speech segments"):
        resize_speech_slots(ids, mask, labels, torch.tensor([3, 2, 2, 5]), torch.tensor([1, 1, 1, 1]))


def test_bridge_emits_one_embedding_per_token_on_the_best_path():
    table = torch.randn(10, 4)
    path = torch.tensor([[BLANK, 3, 3, BLANK, 3, 8, BLANK], [BLANK] * 7])
    logits = torch.nn.functional.one_hot(path, 11).float() * 60  # near one-hot posteriors
    out, counts = bridge_to_tokens(logits, torch.tensor([7, 7]), table)
    assert counts.tolist() == [3, 1]  # 3 3 merge, blank splits the second 3; a silent row keeps one frame
    torch.testing.assert_close(out[0, :3], table[[2, 2, 7]], atol=1e-4, rtol=0)


def test_with_a_perfect_alignment_head_the_student_reads_the_transcript(random_model, monkeypatch):
    model, processor = random_model
    model.enable_alignment_head()
    model.config.speech_input = "token_bridge"
    transcript = "go left"
    tokens = ctc_target_ids(processor.tokenizer, transcript)
    instruction = "Continue the following sentence in a coherent style: "

    def perfect(speech, candidates=None):  # spells the transcript's tokens, blanks in between
        frames = speech.shape[1]
        path = torch.full((speech.shape[0], frames), BLANK)
        for k, t in enumerate(tokens):
            path[:, 2 * k + 1] = t + 1
        return torch.nn.functional.one_hot(path, model.llm.get_input_embeddings().weight.shape[0] + 1) * 80.0

    monkeypatch.setattr(model, "alignment_logits", perfect)
    audio = np.zeros(16000 * 3, dtype=np.float32)
    student = [
        {
            "role": "user",
            "content": [{"type": "text", "text": instruction}, {"type": "audio", "audio": audio}],
        }
    ]
    teacher = [{"role": "user", "content": instruction + transcript}]
    s = processor([student], responses=["and then right."], truncated=[False])
    t = processor([teacher], responses=["and then right."], truncated=[False])
    with torch.no_grad():
        s_logits = model(**s).logits
        t_logits = model(**t).logits
    torch.testing.assert_close(s_logits, t_logits, atol=1e-4, rtol=1e-4)


def test_token_bridge_needs_an_alignment_head():
    from blsp_emo.model import load_model

    with pytest.raises(ValueError, match="alignment head"):
        load_model("random-tiny", device="cpu", speech_input="token_bridge")


def test_export_switches_a_checkpoint_to_the_token_bridge(tmp_path, capsys):
    from blsp_emo.cli import main
    from blsp_emo.model import load_model

    model, processor = load_model("random-tiny", device="cpu")
    model.save_pretrained(tmp_path / "plain")
    assert (
        main(["export", str(tmp_path / "plain"), "-o", str(tmp_path / "x"), "--speech-input", "token_bridge"])
        == 2
    )
    assert "needs a checkpoint with an alignment head" in capsys.readouterr().err
    model.enable_alignment_head()
    model.save_pretrained(tmp_path / "aligned")
    out = tmp_path / "bridged"
    assert main(["export", str(tmp_path / "aligned"), "-o", str(out), "--speech-input", "token_bridge"]) == 0
    bridged, _ = load_model(str(out), device="cpu")
    assert bridged.config.speech_input == "token_bridge"
    audio = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    conv = [{"role": "user", "content": [{"type": "audio", "audio": audio}]}]
    ids, _ = bridged.generate(processor([conv]), None, DecodingOptions(max_new_tokens=3))
    assert ids.shape == (1, 3)
