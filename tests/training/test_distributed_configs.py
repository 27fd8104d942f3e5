"""The multi-process launcher configs of configs/accelerate/ exercised on CPU.

FSDP, DeepSpeed ZeRO-2 and ZeRO-3 (configs/accelerate/fsdp.yaml, deepspeed-zero2.yaml, deepspeed-zero3.yaml):
a real ``accelerate launch`` of 2 CPU processes (gloo) trains the tiny random model, saves a sharded
checkpoint, resumes it in fresh processes, and the shards load back into a single-process model. The
DeepSpeed JSON configs also pass DeepSpeed's own config parser with the values the training configs fill in.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from training_helpers import gathered_weights

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("sharded_worker.py")
DEEPSPEED_INSTALL = (
    "DeepSpeed is a promised dependency of the distributed configs: run scripts/setup.sh, or "
    "DS_BUILD_OPS=0 .venv/bin/python -m pip install --no-build-isolation 'deepspeed>=0.14'"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(config: str, *args: str) -> None:
    """``accelerate launch --config_file configs/accelerate/<config>.yaml`` of sharded_worker.py on 2 CPU
    processes (the config's own 4 processes are for 4 GPUs)."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(ROOT / "configs" / "accelerate" / f"{config}.yaml"), "--num_processes", "2",
        "--main_process_port", str(_free_port()), str(WORKER), *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "logs" / "train.jsonl").read_text().splitlines() if line]


# (launcher config, distributed type, shard files of the step-2 checkpoint)
LAUNCHERS = [
    ("fsdp", "FSDP", ["optimizer_0/__0_0.distcp", "optimizer_0/__1_0.distcp",
                      "pytorch_model_fsdp_0/__0_0.distcp", "pytorch_model_fsdp_0/__1_0.distcp"]),
    ("deepspeed-zero2", "DEEPSPEED", ["pytorch_model/mp_rank_00_model_states.pt",
                                      "pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt",
                                      "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt"]),
    ("deepspeed-zero3", "DEEPSPEED", ["pytorch_model/zero_pp_rank_0_mp_rank_00_model_states.pt",
                                      "pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt",
                                      "pytorch_model/zero_pp_rank_1_mp_rank_00_model_states.pt",
                                      "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt"]),
]  # fmt: skip


@pytest.mark.parametrize(("launcher", "kind", "shards"), LAUNCHERS, ids=[c[0] for c in LAUNCHERS])
def test_launcher_config_trains_resumes_and_loads_back_in_one_process(
    launcher, kind, shards, tone_targets, tmp_path
):
    from training_helpers import tiny_config

    from blsp_emo.training import checkpoint as ckpt
    from blsp_emo.training.trainer import build_model

    if kind == "DEEPSPEED":
        _deepspeed()
    out = tmp_path / launcher
    _launch(launcher, str(tone_targets), str(out), "first")
    _launch(launcher, str(tone_targets), str(out), "resumed")

    # Sharded for real on both processes, and the loss fell.
    records = [json.loads((out / "full" / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world"] == 2 and r["kind"] == f"DistributedType.{kind}" for r in records), records
    assert all(r["after"] < r["before"] for r in records), records
    if launcher == "deepspeed-zero2":  # parameters whole on each rank, optimizer state partitioned
        assert all(r["zero_stage"] == 2 and r["optimizer"] == "DeepSpeedZeroOptimizer" for r in records)
        assert all(r["local_numel"] == r["full_numel"] for r in records), records
    else:  # FSDP, ZeRO-3: each rank holds part of the trained parameters
        assert all(r["local_numel"] < r["full_numel"] for r in records), records
        assert sum(r["local_numel"] for r in records) >= records[0]["full_numel"]
        assert launcher == "fsdp" or all(r["zero_stage"] == 3 for r in records), records
    step2 = out / "part" / "checkpoints" / "checkpoint-2" / "accelerate"
    written = sorted(str(p.relative_to(step2)) for p in step2.glob("*/*") if p.suffix in (".distcp", ".pt"))
    assert written == shards

    # Both ranks gather the same full weights; the resumed run ends exactly where the uninterrupted one did.
    full, resumed = gathered_weights(out)
    expected, got = _log(out / "full"), _log(out / "part")
    assert [r["step"] for r in got] == [r["step"] for r in expected] == [1, 2, 3, 4]
    for x, y in zip(expected, got):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5), (x, y)
    # The gathered final model holds the same trained weights.
    final = load_file(str(out / "full" / "final" / "model.safetensors"))
    assert final.keys() == full[0].keys()
    assert all(torch.equal(final[k], full[0][k]) for k in final)

    # The step-4 shards, written by 2 processes, load into a plain single-process model.
    model, _ = build_model(tiny_config(tone_targets, tmp_path / "single", "emotion"))
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    loaded = ckpt.load_sharded_weights(model, out / "part" / "checkpoints" / "checkpoint-4")
    assert set(full[0]) <= set(loaded)
    state = model.trainable_state_dict()
    assert any(not torch.equal(before[k], state[k]) for k in full[0])
    for key in full[0]:
        torch.testing.assert_close(state[key], full[0][key], rtol=0, atol=0, msg=key)


def test_load_sharded_weights_names_what_is_missing(tmp_path):
    from training_helpers import tiny_config

    from blsp_emo.training import checkpoint as ckpt
    from blsp_emo.training.trainer import build_model

    model, _ = build_model(tiny_config(tmp_path / "x.jsonl", tmp_path / "run", "emotion"))
    with pytest.raises(ValueError, match="no sharded model state"):
        ckpt.load_sharded_weights(model, tmp_path)


def test_trained_key_rule_matches_the_model(tmp_path):
    # save_trained_parts picks the trained parts of a gathered state dict by name (a sharded model cannot
    # be asked on one process): the rule must pick exactly what the model's own trainable_state_dict does.
    from training_helpers import tiny_config

    from blsp_emo.training.checkpoint import is_trained_key
    from blsp_emo.training.trainer import build_model

    for stage in ("semantic", "emotion"):
        model, _ = build_model(tiny_config(tmp_path / "x.jsonl", tmp_path / "run", stage))
        by_rule = {k for k in model.state_dict() if is_trained_key(k, model.config.encoder_trained)}
        assert by_rule == set(model.trainable_state_dict()), stage


def _deepspeed():
    try:
        import deepspeed  # noqa: F401
    except ImportError as err:
        pytest.fail(f"{DEEPSPEED_INSTALL} ({err})")
    from deepspeed.runtime.config import DeepSpeedConfig

    return DeepSpeedConfig


@pytest.mark.parametrize(("launcher", "stage"), [("deepspeed-zero2", 2), ("deepspeed-zero3", 3)])
def test_deepspeed_configs_pass_deepspeeds_parser(launcher, stage):
    parse = _deepspeed()
    accelerate_config = yaml.safe_load((ROOT / "configs" / "accelerate" / f"{launcher}.yaml").read_text())
    assert accelerate_config["distributed_type"] == "DEEPSPEED"
    ds = accelerate_config["deepspeed_config"]
    assert ds["zero3_init_flag"] is (stage == 3)
    raw = json.loads((ROOT / ds["deepspeed_config_file"]).read_text())
    # The "auto" values, as the trainer and accelerate fill them from the training config.
    filled = {
        **raw,
        "bf16": {"enabled": True},
        "fp16": {"enabled": False},
        "gradient_accumulation_steps": 2,
        "train_micro_batch_size_per_gpu": 4,
    }
    parsed = parse(filled)
    assert parsed.zero_optimization_stage == stage
    assert parsed.gradient_clipping == 1.0
    assert parsed.bfloat16_config.enabled and not parsed.float16_config.enabled
    assert parsed.train_batch_size == 2 * 4  # one process here
    if stage == 3:
        assert parsed.zero_config.gather_16bit_weights_on_model_save  # the final model is gathered
    # The parser is strict: a misspelt ZeRO option is an error, not ignored.
    typo = {**filled, "zero_optimization": {**raw["zero_optimization"], "overlap_comms": True}}
    with pytest.raises(Exception, match="overlap_comms"):
        parse(typo)
