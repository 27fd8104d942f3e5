"""Token-space pre-alignment (``stage: align``): the CTC pieces, the stage on the tiny random model, and
stage 1 starting from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from training_helpers import tiny_config

from blsp_emo.errors import UserError
from blsp_emo.model.alignment import (
    TokenAlignmentHead,
    ctc_alignment_loss,
    frames_needed,
    greedy_ctc_ids,
    sample_candidates,
    time_mask,
)
from blsp_emo.training.trainer import train

WORDS = {220.0: "a", 440.0: "b", 880.0: "c"}  # tone frequency -> the word the clip "says"


def write_word_rows(folder: Path, count: int = 24, seed: int = 0, text: str | None = None) -> Path:
    """Clips of one tone each (1.5-2.5 s); the transcript is the tone's word. Returns the manifest path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        freq = list(WORDS)[i % len(WORDS)]
        seconds = 1.5 + (i % 5) * 0.25
        t = np.arange(int(16000 * seconds)) / 16000
        audio = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))
        sf.write(folder / f"w{i}.wav", audio.astype(np.float32), 16000)
        rows.append(
            {
                "audio": f"w{i}.wav",
                "text": text or WORDS[freq],
                "duration": seconds,
                "split": "train",
                "id": f"w{i}",
            }
        )
    path = folder / "words.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_greedy_ctc_merges_repeats_and_drops_blanks():
    # classes: 0 blank, k -> token k - 1
    path = torch.tensor([[0, 3, 3, 0, 3, 5, 5, 0, 0, 2]])
    logits = torch.nn.functional.one_hot(path, 8).float()
    assert greedy_ctc_ids(logits, torch.tensor([10])) == [[2, 2, 4, 1]]
    assert greedy_ctc_ids(logits, torch.tensor([4])) == [[2]]  # only the true length is read


def test_frames_needed_counts_a_blank_between_repeats():
    assert frames_needed([5, 6, 7]) == 3
    assert frames_needed([5, 5, 7, 7]) == 6


def test_sampled_loss_equals_the_full_loss_when_every_token_is_a_candidate():
    torch.manual_seed(0)
    vocab, dim = 30, 8
    head = TokenAlignmentHead(dim)
    emb = torch.randn(vocab, dim)
    speech = torch.randn(2, 6, dim)
    lengths = torch.tensor([6, 4])
    targets = [[3, 4, 9], [7, 7]]
    full = ctc_alignment_loss(head(speech, emb), lengths, targets)
    everything = torch.arange(vocab)
    sampled = ctc_alignment_loss(head(speech, emb, everything), lengths, targets, everything)
    torch.testing.assert_close(full, sampled)
    some = sample_candidates(targets, vocab, 5, torch.Generator().manual_seed(1))
    assert set(some.tolist()) >= {3, 4, 7, 9} and len(some) < vocab
    partial = ctc_alignment_loss(head(speech, emb, some), lengths, targets, some)
    assert partial < full  # fewer competitors, lower loss
    with pytest.raises(ValueError, match="among the candidates"):
        ctc_alignment_loss(
            head(speech, emb, some),
            lengths,
            [[int(set(range(vocab)).difference(some.tolist()).pop())]] * 2,
            some,
        )


def test_speech_equal_to_a_token_embedding_scores_that_token_highest():
    torch.manual_seed(0)
    emb = torch.randn(50, 16)
    head = TokenAlignmentHead(16)
    logits = head(emb[[4, 17, 33]][None], emb)
    assert logits.argmax(-1).tolist() == [[5, 18, 34]]  # class = token id + 1


def test_time_mask_zeroes_spans_inside_the_true_length_only():
    states = torch.ones(2, 40, 3)
    lengths = torch.tensor([40, 20])
    masked = time_mask(states, lengths, masks=3, width=5, generator=torch.Generator().manual_seed(0))
    zero_frames = (masked == 0).all(-1)
    assert zero_frames.any() and zero_frames.sum(1).max() <= 15
    assert not zero_frames[1, 20:].any()  # padding is left alone
    assert torch.equal(states, torch.ones(2, 40, 3))  # the input is not modified


def test_alignment_stage_learns_ctc_structure_and_stage1_starts_from_it(tmp_path):
    # The random-tiny encoder barely tells inputs apart (pooled states of noise and tones: cosine 0.999),
    # so here the stage must learn CTC's structure (one token per one-word clip, blanks elsewhere); that it
    # learns which word is spoken is tested on the real Whisper in test_training_embedded.py.
    data = write_word_rows(tmp_path / "data")
    config = tiny_config(
        data,
        tmp_path / "align",
        "align",
        data={"batch_size": 6},
        optim={"max_steps": 200, "lr": 3e-3, "warmup_steps": 5},
        align={"negatives": 0, "time_masks": 0},
        run={"save_steps": 0},
    )
    result = train(config)
    assert result.final_dir is not None and result.losses[-1] < 0.05 * result.losses[0]
    weights = load_file(str(result.final_dir / "model.safetensors"))
    assert any(k.startswith("alignment_head.") for k in weights) and any(
        k.startswith("adapter.") for k in weights
    )
    summary = json.loads((tmp_path / "align" / "summary.json").read_text())
    assert summary["stage"] == "align" and summary["frames_per_token_min"] >= 1

    from blsp_emo.audio import load_audio
    from blsp_emo.model import load_model
    from blsp_emo.model.alignment import ctc_target_ids, ctc_transcripts

    model, processor = load_model(str(result.final_dir), device="cpu")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    audios = [load_audio(data.parent / r["audio"]) for r in rows[:9]]
    heard = ctc_transcripts(model, processor, audios)
    words = {
        processor.tokenizer.decode(ctc_target_ids(processor.tokenizer, w)).strip() for w in WORDS.values()
    }
    assert all(h in words for h in heard), heard  # exactly one of the words per clip

    stage1 = tiny_config(
        tmp_path / "targets.jsonl",
        tmp_path / "stage1",
        "semantic",
        model={"init_from": str(result.final_dir)},
        optim={"max_steps": 2},
        run={"save_steps": 0},
    )
    lines = [
        {**r, "audio": str(data.parent / r["audio"]), "target": "and so on.", "truncated": False}
        for r in rows
    ]
    (tmp_path / "targets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    start = load_file(str(result.final_dir / "model.safetensors"))
    after = train(stage1)
    ended = load_file(str(after.final_dir / "model.safetensors"))
    torch.testing.assert_close(ended["alignment_head.blank"], start["alignment_head.blank"])  # kept, frozen
    assert not torch.equal(ended["adapter.fc1.weight"], start["adapter.fc1.weight"])  # stage 1 trains on


def test_alignment_stage_refuses_clips_too_short_for_their_words(tmp_path):
    data = write_word_rows(tmp_path / "data", count=4, text="a very long sentence " * 6)
    with pytest.raises(UserError, match=r"fewer speech frames than their transcript needs.*w0"):
        train(tiny_config(data, tmp_path / "out", "align", optim={"max_steps": 1}))


def test_alignment_stage_resumes_exactly(tmp_path):
    # Time masks and sampled negatives draw random numbers: a resumed run must draw the same ones.
    data = write_word_rows(tmp_path / "data", count=12)
    sections = {
        "optim": {"max_steps": 4},
        "align": {"negatives": 40, "time_masks": 2, "time_mask_frames": 3},
        "data": {"batch_size": 3},
    }
    full = train(tiny_config(data, tmp_path / "full", "align", run={"save_steps": 0}, **sections))
    part = tmp_path / "part"
    train(tiny_config(data, part, "align", run={"save_steps": 2, "stop_after_steps": 2}, **sections))
    resumed = train(tiny_config(data, part, "align", run={"save_steps": 2}, **sections), resume=True)
    a = load_file(str(full.final_dir / "model.safetensors"))
    b = load_file(str(resumed.final_dir / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_skip_unalignable_leaves_the_too_short_rows_out_and_counts_them(tmp_path):
    data = write_word_rows(tmp_path / "data", count=6)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[2]["text"] = "a very long sentence " * 6
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tiny_config(
        data, tmp_path / "out", "align", optim={"max_steps": 1}, align={"skip_unalignable": True}
    )
    result = train(config)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert result.final_dir is not None and summary["unalignable_rows_skipped"] == 1
