"""Portable checkpoints: metadata (architectures, emotion labels, base models by hub id), the saved
processor, the model card, hub ids as model names (offline: a cached copy, or the `hf download` hint),
AutoConfig/AutoModel, older checkpoints, the export command, and the PEFT export of the LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from blsp_emo.cli import main
from blsp_emo.errors import ModelNotAvailableError
from blsp_emo.model import load_model
from blsp_emo.model.modeling import BlspEmoModel
from blsp_emo.prompts import EMOTIONS

ROOT = Path(__file__).resolve().parents[2]


def _audio(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _emotion(model, processor) -> torch.Tensor:
    return model.predict_emotion(processor.audio_features([_audio()]))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A random-tiny stage-2 checkpoint with a non-zero LoRA, and its emotion probabilities on one clip."""
    model, processor = load_model("random-tiny", lora_r=4, device="cpu")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.copy_(torch.randn_like(param) * 0.05)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-stage2"
    model.save_pretrained(folder)
    return folder, _emotion(model, processor)


def test_saved_checkpoint_metadata_processor_and_card(saved) -> None:
    folder, _ = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BlspEmoModel"]
    assert config["id2label"] == {str(i): e for i, e in enumerate(EMOTIONS)}
    assert config["label2id"] == {e: i for i, e in enumerate(EMOTIONS)}
    # random-tiny has no hub original
    assert config["whisper_hub_id"] is None and config["llm_hub_id"] is None
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "processor_config.json",
    ):
        assert (folder / name).is_file(), name
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: blsp-emo\n")
    assert "## Emotion labels" in card and "| 4 | surprise |" in card
    assert "partial LoRA on the LLM (speech positions only): r 4" in card


def test_reload_by_load_model_and_by_auto_classes(saved) -> None:
    from transformers import AutoConfig, AutoModel

    folder, expected = saved
    model, processor = load_model(str(folder), device="cpu")
    assert torch.allclose(_emotion(model, processor), expected, atol=1e-6)
    config = AutoConfig.from_pretrained(folder)
    assert type(config).__name__ == "BlspEmoConfig" and config.id2label[3] == "sad"
    auto = AutoModel.from_pretrained(folder)
    assert isinstance(auto, BlspEmoModel)
    assert torch.allclose(_emotion(auto.eval(), processor), expected, atol=1e-6)
    half = AutoModel.from_pretrained(folder, dtype=torch.bfloat16, device_map="cpu")
    assert half.adapter.norm.weight.dtype == torch.bfloat16


def test_saved_processor_loads_from_the_folder(saved, tmp_path: Path) -> None:
    from tiny_models import tiny_processor

    from blsp_emo.model.portable import load_saved_processor

    folder, _ = saved
    processor = load_saved_processor(folder)
    reference = tiny_processor()
    assert processor.tokenizer.chat_template == reference.tokenizer.chat_template
    conversation = [{"role": "user", "content": [{"type": "text", "text": "How are you?"}]}]
    assert processor.render(conversation) == reference.render(conversation)
    assert processor.adapter_layers == reference.adapter_layers


def test_old_checkpoint_format_still_loads(saved, tmp_path: Path) -> None:
    """A checkpoint written before the portable metadata: LABEL_n labels, no architectures, no hub ids,
    no processor files, no card."""
    import shutil

    folder, expected = saved
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(folder / "model.safetensors", old / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    for key in ("whisper_hub_id", "llm_hub_id"):
        config.pop(key)
    config.update(architectures=None, id2label={"0": "LABEL_0", "1": "LABEL_1"},
                  label2id={"LABEL_0": 0, "LABEL_1": 1})  # fmt: skip
    (old / "config.json").write_text(json.dumps(config))
    model, processor = load_model(str(old), device="cpu")
    assert torch.allclose(_emotion(model, processor), expected, atol=1e-6)
    assert model.config.id2label[1] == "happy" and model.config.architectures == ["BlspEmoModel"]


def _fake_hub_cache(root: Path, repo_id: str, source: Path) -> Path:
    """The hub cache layout huggingface_hub reads offline: models--OWNER--NAME/{refs/main, snapshots/REV}."""
    import shutil

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(source, repo / "snapshots" / revision)
    return repo / "snapshots" / revision


def test_hub_id_as_model_name_from_the_hub_cache(saved, tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    folder, expected = saved
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _fake_hub_cache(tmp_path / "hub", "someone/blsp-emo-test", folder)
    model, processor = load_model("someone/blsp-emo-test", device="cpu")
    assert torch.allclose(_emotion(model, processor), expected, atol=1e-6)
    direct = BlspEmoModel.from_pretrained("someone/blsp-emo-test")
    assert torch.allclose(_emotion(direct, processor), expected, atol=1e-6)

    with pytest.raises(ModelNotAvailableError) as exc:
        load_model("someone/not-downloaded", device="cpu")
    message = str(exc.value)
    assert "hf download someone/not-downloaded" in message and "huggingface-cli" not in message
    assert "HF_HUB_OFFLINE" in message


def test_base_model_hub_id_is_used_when_the_local_name_is_missing() -> None:
    from blsp_emo.assets.loading import base_model_name, hub_id, resolve

    assert hub_id("whisper-base", "whisper") == "openai/whisper-base"
    assert hub_id("tiny", "llm") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id("Qwen/Qwen2.5-7B-Instruct", "llm") == "Qwen/Qwen2.5-7B-Instruct"
    assert hub_id("/some/local/folder", "llm") is None
    # the embedded copy is here: it is what the checkpoint was trained on
    assert base_model_name("whisper-base", "openai/whisper-base", "whisper") == "whisper-base"
    # a folder of another machine: the recorded hub id
    assert base_model_name("/elsewhere/whisper", "openai/whisper-base", "whisper") == "openai/whisper-base"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ModelNotAvailableError) as exc:
            resolve("someone/uncached-llm", "llm")
    assert "`hf download someone/uncached-llm`" in str(exc.value) and "huggingface-cli" not in str(exc.value)
    with pytest.raises(ModelNotAvailableError, match="did you mean 'whisper-base'"):
        resolve("whisper-bsae", "whisper")


def test_export_writes_card_with_run_facts_results_and_peft(saved, tmp_path: Path, capsys) -> None:
    folder, _ = saved
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    train = tmp_path / "targets.jsonl"
    train.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(7)))
    (run / "config.yaml").write_text(
        f"stage: emotion\nmodel:\n  init_from: runs/x/stage1/final\n  lora_r: 4\ndata:\n  train: {train}\n"
        "optim:\n  lr: 0.0005\n  max_steps: 12\nrun:\n  seed: 3\n"
    )
    (run / "summary.json").write_text(json.dumps({
        "stage": "emotion", "global_step": 12, "total_steps": 12, "samples_seen": 96, "train_seconds": 41.5,
        "dev": {"source": "dev split", "rows": 5, "final_loss": 1.234, "final_step": 12, "best_loss": 1.2,
                "best_step": 10},
    }))  # fmt: skip
    (run / "logs" / "train.jsonl").write_text(
        json.dumps({"step": 10, "loss": 3.0})
        + "\n"
        + json.dumps({"step": 12, "loss": 2.5, "lm_loss": 1.5})
        + "\n"
    )
    comparison = tmp_path / "comparison.json"
    comparison.write_text(json.dumps({
        "columns": ["ser.accuracy"], "data": {"ser": "m.jsonl (60 utterances)"}, "systems": ["mine", "cascade-asr"],
        "values": {"mine": {"ser.accuracy": 0.35, "ser.uar": None}, "cascade-asr": {"ser.accuracy": 0.2}},
    }))  # fmt: skip
    out = tmp_path / "exported"
    argv = ["export", str(folder), "-o", str(out), "--dtype", "float32", "--run", str(run)]
    assert main([*argv, "--results", str(comparison), "--results-system", "mien"]) == 2
    assert "did you mean 'mine'?" in capsys.readouterr().err
    assert main([*argv, "--results", str(comparison), "--results-system", "mine", "--peft"]) == 0
    card = (out / "README.md").read_text()
    assert "- stage: emotion" in card and "- initialised from: runs/x/stage1/final" in card
    assert "- steps: 12 of 12, 96 samples, 42 s" in card and "lr 0.0005" in card and "seed 3" in card
    assert f"- train: `{train}` (7 rows)" in card
    assert "- training loss at step 12: loss 2.5, lm_loss 1.5" in card
    assert "- dev loss (5 rows of dev split): 1.234 at step 12, best 1.2 at step 10" in card
    assert "| ser.accuracy | 0.35 |" in card and "ser.uar" not in card and "0.2 |" not in card
    assert (out / "tokenizer.json").is_file()
    assert json.loads((out / "training_run.json").read_text())["recipe"]["optim"]["max_steps"] == 12
    # a second export of the export keeps the run's facts (from training_run.json)
    again = tmp_path / "again"
    assert main(["export", str(out), "-o", str(again)]) == 0
    assert "- steps: 12 of 12" in (again / "README.md").read_text()
    assert (out / "peft-lora" / "adapter_config.json").is_file()


def test_peft_export_loads_in_peft_and_computes_the_same_update(saved, tmp_path: Path) -> None:
    """PEFT applies the LoRA at every position: with the partial-LoRA mask set everywhere, blsp-emo's LLM
    and PEFT's model on a fresh copy of the base LLM give the same logits."""
    peft = pytest.importorskip("peft", reason="peft is the optional [peft] extra")
    from safetensors.torch import load_file
    from tiny_models import random_tiny_bases

    from blsp_emo.model.portable import export_peft_lora

    folder, _ = saved
    config = json.loads((folder / "config.json").read_text())
    tensors = load_file(str(folder / "model.safetensors"))
    adapter = export_peft_lora(tensors, config, tmp_path / "peft")
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA" and adapter_config["r"] == 4
    assert set(adapter_config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                     "up_proj", "down_proj"}  # fmt: skip

    _, base_llm = random_tiny_bases()
    peft_model = peft.PeftModel.from_pretrained(base_llm, adapter).eval()
    model, _ = load_model(str(folder), device="cpu")
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with model.speech_positions(torch.ones_like(ids, dtype=torch.bool)):
        ours = model.llm(input_ids=ids).logits
    theirs = peft_model(input_ids=ids).logits
    plain = model.llm(input_ids=ids).logits  # no mask: the base LLM
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, plain, atol=1e-3)  # the exported update is not empty


def test_shipped_checkpoint_is_portable() -> None:
    from blsp_emo.model.loading import shipped_model_path
    from blsp_emo.model.portable import has_saved_processor

    folder = shipped_model_path()
    if folder is None:
        pytest.skip("the shipped checkpoint is not in this installation")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BlspEmoModel"]
    assert [config["id2label"][str(i)] for i in range(5)] == list(EMOTIONS)
    assert (config["whisper_hub_id"], config["llm_hub_id"]) == (
        "openai/whisper-base",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    assert has_saved_processor(folder)
    from blsp_emo.assets.loading import locally_available
    from blsp_emo.model.configuration import BlspEmoConfig
    from blsp_emo.model.loading import build_processor
    from blsp_emo.model.portable import load_saved_processor
    from blsp_emo.model.processor import stop_token_ids

    if locally_available("smollm2-135m-instruct", "llm") and locally_available("whisper-base", "whisper"):
        saved, base = load_saved_processor(folder), build_processor(BlspEmoConfig.from_dict(config))
        conversation = [
            {"role": "system", "content": "You are kind."},
            {"role": "user", "content": [{"type": "text", "text": "Héllo, how are you?"}, {"type": "audio"}]},
        ]
        pieces, _ = saved.render(conversation)
        assert pieces == base.render(conversation)[0]
        assert [saved._tokenize(p) for p in pieces] == [base._tokenize(p) for p in pieces]
        assert stop_token_ids(saved.tokenizer) == stop_token_ids(base.tokenizer)
        assert saved.feature_extractor.to_dict() == base.feature_extractor.to_dict()
    card = (folder / "README.md").read_text()
    assert "- openai/whisper-base" in card and "- HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "## Training" in card and "## Results" in card
    assert (folder / "model.safetensors").stat().st_size < 28_000_000


def test_a_model_saved_inside_a_training_run_gets_the_runs_facts(tmp_path: Path) -> None:
    """As the trainer saves RUN/.final.tmp (renamed to RUN/final) before summary.json exists: the card
    has the recipe and the last logged losses."""
    model, _ = load_model("random-tiny", device="cpu")
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "config.yaml").write_text(
        "stage: semantic\nmodel:\n  lora_r: 0\noptim:\n  lr: 0.001\nrun:\n  seed: 5\n"
    )
    (run / "logs" / "train.jsonl").write_text(json.dumps({"step": 4, "loss": 0.75, "kl_loss": 0.75}) + "\n")
    model.save_pretrained(run / ".final.tmp")
    card = (run / ".final.tmp" / "README.md").read_text()
    assert "- stage: semantic" in card and "lr 0.001" in card and "seed 5" in card
    assert "- training loss at step 4: loss 0.75, kl_loss 0.75" in card
    elsewhere = tmp_path / "plain" / "model"
    model.save_pretrained(elsewhere)  # no run around it
    assert "Not recorded" in (elsewhere / "README.md").read_text()
