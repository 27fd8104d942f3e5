"""Fixtures for training tests (helpers live in training_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import write_tone_rows


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads are several times slower (contention)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tone_targets(tmp_path: Path) -> Path:
    """A 12-row target JSONL over synthetic clips (for the random-tiny model)."""
    return write_tone_rows(tmp_path / "data")
