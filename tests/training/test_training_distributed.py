"""A real 2-process DDP run on CPU (gloo) under torchrun, on the tiny random model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import gathered_weights


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> None:
    """Run ddp_worker.py with ``args`` in 2 CPU processes (gloo) under torchrun."""
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", str(worker), *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "logs" / "train.jsonl").read_text().splitlines() if line]


def test_torchrun_two_processes(tone_targets, tmp_path):
    out = tmp_path / "ddp"
    _torchrun(str(tone_targets), str(out))
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world"] == 2 for r in records)
    assert all(r["after"] < r["before"] for r in records), records
    a, b = (load_file(str(out / f"rank{r}.safetensors")) for r in range(2))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    logged = _log(out)
    assert [r["step"] for r in logged] == list(range(1, 7))
    assert logged[-1]["samples_seen"] == 6 * 2 * 2  # 6 steps x 2 rows x 2 processes


def test_torchrun_resume_with_duration_batching_matches_uninterrupted(tone_targets, tmp_path):
    # Two launches of 2 processes: an uninterrupted 7-step run and the same run stopped after step 4 (the
    # middle of the second epoch), then, in fresh processes, that run resumed. Every rank must end on the
    # uninterrupted run's weights, and the resumed log must match its steps, rows and losses.
    out = tmp_path / "ddp"
    _torchrun(str(tone_targets), str(out), "interrupted")
    state = json.loads((out / "part" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert (state["world_size"], state["epoch"], state["sampler"]["position"]) == (2, 1, 1)
    assert state["sampler"]["num_replicas"] == 2
    assert not (out / "part" / "final").exists()
    _torchrun(str(tone_targets), str(out), "resumed")
    full, resumed = gathered_weights(out)
    expected, got = _log(out / "full"), _log(out / "part")
    assert [r["step"] for r in got] == [r["step"] for r in expected] == list(range(1, 8))
    assert [r["samples_seen"] for r in got] == [r["samples_seen"] for r in expected]
    # every other semantic micro-batch (one per step here) trained on the model's own continuations
    assert (
        [r.get("on_policy", 0) for r in got] == [r.get("on_policy", 0) for r in expected] == [0, 1] * 3 + [0]
    )
    for x, y in zip(expected, got):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5), (x, y)
