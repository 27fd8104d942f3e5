"""Remote code runs only when the command line says so, never because a checkpoint or config asks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import build_random_tiny

from blsp_emo.cli import build_parser
from blsp_emo.errors import ModelNotAvailableError
from blsp_emo.model import loading
from blsp_emo.model.loading import load_model
from blsp_emo.model.modeling import BlspEmoModel


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    """A random-tiny checkpoint whose config.json asks for trust_remote_code."""
    model, _ = build_random_tiny()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["trust_remote_code"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_checkpoint_asking_for_remote_code_is_refused_without_the_flag(checkpoint: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="--trust-remote-code"):
        load_model(str(checkpoint), device="cpu")
    with pytest.raises(ModelNotAvailableError, match="--trust-remote-code"):
        BlspEmoModel.from_pretrained(checkpoint)


def test_the_explicit_flag_allows_it(checkpoint: Path) -> None:
    model, _ = load_model(str(checkpoint), device="cpu", trust_remote_code=True)
    assert model.config.trust_remote_code is True


def test_process_setting_from_the_command_line(checkpoint: Path, monkeypatch) -> None:
    """eval and train load models deep inside; the command line's flag reaches them as a process setting."""
    monkeypatch.setattr(loading, "_TRUST_REMOTE_CODE", False)
    loading.set_trust_remote_code(True)
    model, _ = load_model(str(checkpoint), device="cpu")
    assert model.config.trust_remote_code is True
    loading.set_trust_remote_code(False)
    with pytest.raises(ModelNotAvailableError):
        load_model(str(checkpoint), device="cpu")


def test_a_plain_checkpoint_never_gets_remote_code(tmp_path: Path) -> None:
    model, _ = build_random_tiny()
    model.save_pretrained(tmp_path)
    restored, _ = load_model(str(tmp_path), device="cpu")
    assert restored.config.trust_remote_code is False


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--audio", "a.wav"],
        ["serve"],
        ["chat"],
        ["train", "--config", "c.yaml"],
        ["eval", "ser", "--data", "m.jsonl"],
        ["eval", "all", "--data", "m.jsonl"],
    ],
)
def test_commands_that_load_models_take_the_flag(argv: list[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(argv).trust_remote_code is False
    assert parser.parse_args([*argv, "--trust-remote-code"]).trust_remote_code is True
