"""A real 2-process DDP run on CPU (gloo) under torchrun, on the tiny random model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes(tone_targets, tmp_path):
    out = tmp_path / "ddp"
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", str(worker), str(tone_targets), str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world"] == 2 for r in records)
    assert all(r["after"] < r["before"] for r in records), records
    a, b = (load_file(str(out / f"rank{r}.safetensors")) for r in range(2))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    logged = [json.loads(line) for line in (out / "logs" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 7))
    assert logged[-1]["samples_seen"] == 6 * 2 * 2  # 6 steps x 2 rows x 2 processes
