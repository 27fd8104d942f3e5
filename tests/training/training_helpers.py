"""Helpers for training tests: small target files over synthetic audio, and a config builder.

A plain module (not conftest) so that tests and the torchrun worker import it by a unique name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

EMOTIONS = ("neutral", "happy", "angry", "sad", "surprise")


def write_tone_rows(
    folder: Path, count: int = 12, seed: int = 0, start: int = 0, splits: tuple[str, ...] = ("train",)
) -> Path:
    """Write ``count`` 1.2-4.5 s tone+noise clips and a target JSONL over them; returns the JSONL path.

    ``start``: the number of the first clip (clips of another ``start`` and ``seed`` have other names,
    transcripts, noise and duration order); ``splits``: the rows' split, cycling (e.g. 3 x "train", "dev").
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(start, start + count):
        seconds = 1.2 + (i * 0.3) % 3.3
        t = np.arange(int(16000 * seconds)) / 16000
        audio = 0.3 * np.sin(2 * np.pi * (110 + 35 * (i % 5)) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"clip{i}.wav", audio.astype(np.float32), 16000)
        rows.append(
            {
                "audio": f"clip{i}.wav",
                "text": f"the quick brown fox number {i}",
                "target": "jumps over the lazy dog.",
                "truncated": i % 3 == 0,
                "emotion": EMOTIONS[i % 5],
                "duration": seconds,
                "split": splits[(i - start) % len(splits)],
            }
        )
    path = folder / "targets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(train: Path, output: Path, stage: str = "semantic", **sections: dict):
    """A small random-tiny training config; ``sections`` update model/data/optim/run fields."""
    from blsp_emo.training.config import load_config

    overrides = [
        f"stage={stage}",
        "model.init_from=random-tiny",
        f"data.train={train}",
        "data.batching=count",
        "data.batch_size=4",
        "optim.lr=3e-3",
        "optim.warmup_steps=1",
        f"run.output_dir={output}",
        "run.log_steps=1",
        "run.progress=false",
        "run.plot=false",
    ]
    for section, values in sections.items():
        overrides += [f"{section}.{k}={v}" for k, v in values.items()]
    return load_config(None, overrides)


def gathered_weights(out: Path) -> tuple[list[dict], list[dict]]:
    """The full weights each of the 2 ranks gathered: of the uninterrupted run (``full``) and of the run
    stopped and resumed (``part``); checks that the ranks agree and that the resumed run ends on the
    uninterrupted run's weights."""
    from safetensors.torch import load_file

    full = [load_file(str(out / "full" / f"rank{r}.safetensors")) for r in range(2)]
    resumed = [load_file(str(out / "part" / f"rank{r}.safetensors")) for r in range(2)]
    assert any(".lora_B." in k for k in full[0])
    for rank in range(2):
        assert full[rank].keys() == resumed[rank].keys() == full[0].keys()
        for key in full[0]:
            assert torch.equal(full[rank][key], full[0][key]), key  # the ranks agree
            torch.testing.assert_close(resumed[rank][key], full[0][key], rtol=1e-5, atol=1e-6, msg=key)
    return full, resumed
