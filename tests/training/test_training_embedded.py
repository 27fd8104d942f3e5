"""Short real runs of both stages on the embedded Whisper-base + SmolLM2 over synthesised speech."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

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
    reply = SpeechChat(model, processor).respond([question], max_new_tokens=12)[0].text
    llm, tokenizer = load_llm("tiny")
    ids = tokenizer.apply_chat_template(
        question, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = llm.generate(**ids, max_new_tokens=12, do_sample=False)
    base = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert reply == base, (reply, base)
