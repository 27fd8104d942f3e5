"""Config loading, overrides and errors; every recipe in configs/ parses."""

from pathlib import Path

import pytest

from blsp_emo.errors import UserError
from blsp_emo.training.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["paper-stage1", "paper-stage2", "tiny-stage1", "tiny-stage2"])
def test_recipes_parse(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.stage == ("semantic" if name.endswith("1") else "emotion")
    assert config.optim.weight_decay == 0.05 and config.optim.max_grad_norm == 1.0


def test_every_recipe_in_configs_parses_with_its_stage():
    stages = {"align": "align", "stage1": "semantic", "stage2": "emotion"}
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert {"paper-align", "tiny-v3-align", "tiny-v3-stage1"} <= set(names)
    for name in names:
        config = load_config(CONFIGS / f"{name}.yaml")
        assert config.stage == stages[name.rsplit("-", 1)[1]], name


def test_paper_hyper_parameters():
    s1, s2 = load_config(CONFIGS / "paper-stage1.yaml"), load_config(CONFIGS / "paper-stage2.yaml")
    assert (s1.optim.lr, s1.optim.warmup_steps, s1.optim.epochs) == (1e-4, 1000, 1.0)
    assert s1.data.batch_size * s1.optim.grad_accum * 4 == 768
    assert (s2.optim.lr, s2.optim.warmup_steps, s2.optim.epochs) == (2e-5, 200, 3.0)
    assert s2.data.batch_size * s2.optim.grad_accum * 4 == 128
    assert (s2.model.lora_r, s2.model.lora_alpha, s2.model.lora_dropout) == (16, 16.0, 0.05)
    assert s1.run.mixed_precision == s2.run.mixed_precision == "bf16"


def test_overrides_are_typed():
    config = load_config(
        CONFIGS / "tiny-stage1.yaml", ["optim.lr=1e-4", "run.save_steps=7", "data.cache_encoder=false"]
    )
    assert config.optim.lr == 1e-4 and isinstance(config.optim.lr, float)
    assert config.run.save_steps == 7 and config.data.cache_encoder is False


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.lrr=1"], "unknown config field optim.lrr"),
        (["optim.lr=fast"], "optim.lr"),
        (["stage=third"], "config field stage: .*'align', 'semantic' or 'emotion'"),
        (["data.batching=random"], "data.batching"),
        (["nokey"], "expected key=value"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(CONFIGS / "tiny-stage1.yaml", overrides)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")


def test_audio_field_clean_audio_trains_on_the_recording_before_augmentation(tmp_path):
    import json

    import pytest
    from training_helpers import write_tone_rows

    from blsp_emo.errors import UserError
    from blsp_emo.training.dataset import load_target_dataset

    corpus = tmp_path / "corpus"
    path = write_tone_rows(corpus / "audio-aug", count=3)  # the "augmented" copies
    (corpus / "audio").mkdir()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:  # clean copies, listed relative to the corpus folder (as synth writes them)
        (corpus / "audio" / row["audio"]).write_bytes((corpus / "audio-aug" / row["audio"]).read_bytes())
        row["clean_audio"] = f"audio/{row['audio']}"
    targets = tmp_path / "targets" / "t.jsonl"
    targets.parent.mkdir()
    for row in rows:
        row["audio"] = str(corpus / "audio-aug" / row["audio"])  # data targets writes absolute paths
    targets.write_text("".join(json.dumps(r) + "\n" for r in rows))
    augmented = load_target_dataset(targets, audio_field="audio")
    clean = load_target_dataset(targets, audio_field="clean_audio")
    assert all("/audio-aug/" in str(r.audio_path) for r in augmented.rows)
    assert [r.audio_path for r in clean.rows] == [
        (corpus / "audio" / f"clip{i}.wav").resolve() for i in range(3)
    ]
    assert all(r.duration and r.duration > 1.0 for r in clean.rows)
    rows[1]["clean_audio"] = "audio/missing.wav"
    targets.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match="clean_audio audio/missing.wav not found"):
        load_target_dataset(targets, audio_field="clean_audio")
    with pytest.raises(UserError, match="expected audio or clean_audio"):
        load_target_dataset(targets, audio_field="noisy")
