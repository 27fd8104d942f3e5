"""The data commands fill their options dataclasses from the parsed flags with one helper."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from blsp_emo.data import commands
from blsp_emo.data.importers import ImportOptions
from blsp_emo.data.synth_corpus import SynthOptions
from blsp_emo.data.targets import TargetOptions
from blsp_emo.prompts import Stage


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["data", *argv])


@dataclass
class _Options:
    size: int = 1
    name: str = "x"
    ratio: float = 0.5
    untouched: bool = True


def test_options_from_args_copies_renames_computes_and_keeps_defaults() -> None:
    args = argparse.Namespace(size=7, label="y", ratio=0.1, other="ignored")
    options = commands.options_from_args(_Options, args, renames={"name": "label"}, ratio=0.9)
    assert options == _Options(size=7, name="y", ratio=0.9, untouched=True)
    with pytest.raises(TypeError, match="_Options has no field colour"):
        commands.options_from_args(_Options, args, colour="red")
    with pytest.raises(TypeError, match="_Options has no field colour"):
        commands.options_from_args(_Options, args, renames={"colour": "label"})
    with pytest.raises(TypeError, match="the parser has no flag nickname"):
        commands.options_from_args(_Options, args, renames={"name": "nickname"})
    with pytest.raises(TypeError, match="not a dataclass"):
        commands.options_from_args(int, args)


def test_targets_flags_become_target_options() -> None:
    args = _parse(
        "targets", "m.jsonl", "-o", "t.jsonl", "--stage", "emotion", "--backend", "openai",
        "--model-name", "m", "--batch-size", "4", "--max-new-tokens", "20", "--all-emotions",
        "--emotion-prompt", "reply", "--split", "train", "--split", "dev", "--limit", "9",
        "--shard", "1/3", "--seed", "5", "--samples", "4", "--temperature", "0.9", "--top-p", "0.8",
        "--scorer-embedder", "none", "--min-seconds", "2", "--max-seconds", "20",
    )  # fmt: skip
    expected = TargetOptions(
        stage=Stage.EMOTION, backend="openai", model_name="m", batch_size=4, max_new_tokens=20,
        all_emotions=True, emotion_prompt="reply", splits=("train", "dev"), limit=9, shard=(1, 3), seed=5,
        samples=4, temperature=0.9, top_p=0.8, scorer_embedder=None, min_seconds=2.0, max_seconds=20.0,
    )  # fmt: skip
    assert commands.target_options(args) == expected
    defaults = commands.target_options(_parse("targets", "m.jsonl", "-o", "t.jsonl", "--stage", "semantic"))
    assert defaults == TargetOptions(stage=Stage.SEMANTIC)  # every flag's default is the dataclass's


def test_synth_flags_become_synth_options() -> None:
    args = _parse(
        "synth", "-o", "out", "--utterances", "50", "--general", "10", "--engines", "espeak, flite",
        "--holdout-engine", "flite", "--augment", "noise,gain", "--augment-prob", "0.5",
        "--augment-splits", "train,dev", "--sentences", "s.txt", "--no-plot", "--expressiveness", "2",
    )  # fmt: skip
    options = commands.synth_options(args)
    assert options == SynthOptions(
        utterances=50, general=10, engines=("espeak", "flite"), holdout_engines=("flite",),
        augment=("noise", "gain"), augment_probability=0.5, augment_splits=("train", "dev"),
        sentences_file=Path("s.txt"), plot=False, expressiveness=2.0,
    )  # fmt: skip
    zh = commands.synth_options(_parse("synth", "-o", "out", "--language", "zh"))
    assert zh.engines == ("espeak",) and zh.language == "zh" and zh.plot and zh.augment == ()


def test_import_flags_become_import_options() -> None:
    args = _parse(
        "import", "generic", "t.csv", "-o", "m.jsonl", "--map", "audio=wav", "--label-map", "joy=happy",
        "--language", "fr", "--mosei-threshold", "2",
    )  # fmt: skip
    expected = ImportOptions(
        column_map=["audio=wav"], label_map=["joy=happy"], language="fr", mosei_threshold=2.0
    )
    assert commands.import_options(args) == expected
    assert commands.import_options(_parse("import", "generic", "t.csv", "-o", "m.jsonl")) == ImportOptions()


def test_run_import_names_unknown_options(tmp_path: Path) -> None:
    from blsp_emo.data.importers import run_import

    with pytest.raises(TypeError, match="unknown import options colour"):
        run_import("generic", tmp_path / "t.csv", tmp_path / "m.jsonl", colour="red")
