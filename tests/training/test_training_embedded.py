"""Short real runs of both stages on the embedded Whisper-base + SmolLM2 over synthesised speech."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

from blsp_emo.model.types import DecodingOptions

pytestmark = pytest.mark.integration

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
UTTERANCES = [  # (transcript, emotion, continuation the teacher might write)
    ("I am graduating from college next week.", "happy", "My family is coming to celebrate with me."),
    ("My sister called me this morning.", "sad", "She told me that our grandmother is ill."),
    ("Somebody took my parking spot again.", "angry", "This is the third time this month."),
    ("The train leaves at seven tonight.", "neutral", "We should pack our bags after dinner."),
    ("You bought me a brand new bicycle.", "surprise", "I never expected such a big present."),
    ("We finally finished painting the house.", "happy", "It looks bright and beautiful now."),
]


@pytest.fixture(scope="module")
def speech_targets(tmp_path_factory) -> Path:
    """Six espeak-ng utterances with emotion prosody and a target JSONL over them."""
    from blsp_emo.data.synth import list_voices, synthesize

    folder = tmp_path_factory.mktemp("speech")
    voices = list_voices("train", engines=("espeak",))
    rows = []
    for i, (text, emotion, target) in enumerate(UTTERANCES):
        audio, rate = synthesize(text, emotion, voices[i % len(voices)], seed=i)
        sf.write(folder / f"u{i}.wav", audio, rate)
        rows.append(
            {"audio": f"u{i}.wav", "text": text, "emotion": emotion, "target": target, "truncated": False}
        )
    path = folder / "targets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(name: str, train: Path, out: Path, *extra: str):
    from blsp_emo.training.config import load_config

    common = [f"data.train={train}", "data.batching=count", "data.batch_size=3", f"run.output_dir={out}"]
    common += ["optim.warmup_steps=2", "run.save_steps=0", "run.log_steps=1", "run.progress=false"]
    common += ["run.num_threads=1"]  # two threads are several times slower on a busy 2-core machine
    return load_config(CONFIGS / name, [*common, *extra])


@pytest.fixture(scope="module")
def stage1(speech_targets, tmp_path_factory):
    """Stage 1 on the real models: (mean loss before, after, final folder)."""
    from blsp_emo.training.trainer import Trainer

    out = tmp_path_factory.mktemp("stage1")
    threads = torch.get_num_threads()
    trainer = Trainer(_config("tiny-stage1.yaml", speech_targets, out, "optim.max_steps=8", "optim.lr=2e-3"))
    before = trainer.mean_loss(batch_size=6)
    result = trainer.fit()
    after = trainer.mean_loss(batch_size=6)
    torch.set_num_threads(threads)
    return before, after, result.final_dir


def test_stage1_kl_goes_down(stage1):
    before, after, final = stage1
    print(f"stage 1 KL over the 6 utterances: {before:.4f} -> {after:.4f}")
    assert after < 0.8 * before
    assert (final / "model.safetensors").is_file()


def test_stage2_from_stage1_loss_goes_down_and_text_replies_are_unchanged(stage1, speech_targets, tmp_path):
    from blsp_emo.assets import load_llm
    from blsp_emo.model import SpeechChat, load_model
    from blsp_emo.training.trainer import Trainer

    config = _config(
        "tiny-stage2.yaml", speech_targets, tmp_path / "s2", f"model.init_from={stage1[2]}", "optim.max_steps=6",
        "optim.lr=1e-3",
    )  # fmt: skip
    trainer = Trainer(config)
    before = trainer.mean_loss(batch_size=6)
    result = trainer.fit()
    after = trainer.mean_loss(batch_size=6)
    print(f"stage 2 CE + emotion CE over the 6 utterances: {before:.4f} -> {after:.4f}")
    assert after < before

    model, processor = load_model(str(result.final_dir), device="cpu")
    lora_b = [p for n, p in model.named_parameters() if ".lora_B." in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    reply = SpeechChat(model, processor).respond([question], DecodingOptions(max_new_tokens=12))[0].text
    llm, tokenizer = load_llm("tiny")
    ids = tokenizer.apply_chat_template(
        question, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = llm.generate(**ids, max_new_tokens=12, do_sample=False)
    base = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert reply == base, (reply, base)


PHRASES = ["turn left now", "open the door", "call my mother", "play some music"]


def test_alignment_stage_learns_to_spell_spoken_phrases(tmp_path):
    """Pre-alignment on the real models: after a short run the greedy CTC reading of the adapter's output,
    in SmolLM2's own token space, spells the phrases of the training clips."""
    from blsp_emo.audio import load_audio
    from blsp_emo.data.synth import list_voices, synthesize
    from blsp_emo.model import load_model
    from blsp_emo.model.alignment import ctc_transcripts
    from blsp_emo.textnorm import normalize_text
    from blsp_emo.training.trainer import train

    voices = list_voices("train", engines=("espeak",))[:3]
    rows = []
    for i, (phrase, voice) in enumerate((p, v) for p in PHRASES for v in voices):
        audio, rate = synthesize(phrase, None, voice, seed=i)
        sf.write(tmp_path / f"p{i}.wav", audio, rate)
        rows.append({"audio": f"p{i}.wav", "text": phrase, "id": f"p{i}", "duration": len(audio) / rate})
    manifest = tmp_path / "phrases.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = train(
        _config(
            "tiny-v3-align.yaml",
            manifest,
            tmp_path / "align",
            "optim.max_steps=40",
            "optim.warmup_steps=5",
            "optim.lr=3e-3",
            "data.batch_size=6",
            "align.time_masks=0",
            "data.min_seconds=0.3",
        )
    )
    assert result.losses[-1] < 0.3 * result.losses[0], result.losses
    model, processor = load_model(str(result.final_dir), device="cpu")
    heard = ctc_transcripts(model, processor, [load_audio(tmp_path / r["audio"]) for r in rows])
    right = sum(normalize_text(h) == normalize_text(r["text"]) for h, r in zip(heard, rows))
    assert right >= len(rows) * 3 // 4, list(zip(heard, [r["text"] for r in rows]))
