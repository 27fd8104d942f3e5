"""Training rows, the dataset over them, and the collator that builds each stage's model inputs.

Stage 1 (semantic): the student sees ``instruction + [speech]``; the teacher sees ``instruction +
transcript``; both share the default system prompt and the same target continuation (SPEC.md §4).
Stage 2 (emotion): the empathetic system prompt, ``continue_emotion`` instruction + [speech], the target
continuation as labels, and the emotion label per utterance (-1 when unknown).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from blsp_emo.audio import load_audio
from blsp_emo.errors import UserError
from blsp_emo.model.encoder import encoder_frames, mel_frames, window_bounds
from blsp_emo.prompts import EMOTION_TO_ID, instruction, system_prompt

STAGE_PROMPTS = {  # (system prompt, instruction) per stage, SPEC.md §4
    "semantic": ("default", "continue"),
    "emotion": ("empathetic", "continue_emotion"),
}


@dataclass
class TrainingRow:
    """One target row: an utterance and the continuation the model must produce for it."""

    audio_path: Path
    transcript: str
    target: str
    truncated: bool
    emotion: str | None
    duration: float


def _duration(path: Path) -> float:
    import soundfile

    try:
        return float(soundfile.info(str(path)).duration)
    except Exception:
        return len(load_audio(str(path))) / 16000.0


def _jsonl(path: Path):
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise UserError(f"{path}:{number}: a row must be a JSON object")
            yield number, data


def read_training_rows(
    path: str | Path,
    min_seconds: float = 0.0,
    max_seconds: float = float("inf"),
    max_rows: int = 0,
    split: str = "",
) -> list[TrainingRow]:
    """Read a target JSONL (``data targets`` output).

    Drops rows outside the duration range, rows of another ``split`` (when given and the row has one),
    and rows whose continuation was written for another emotion than the utterance's
    (``target_emotion``, from ``data targets --all-emotions``). Raises :class:`UserError` naming the file
    and line of a row without a target or with an unknown emotion.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such training file")
    base = path.resolve().parent
    rows: list[TrainingRow] = []
    for line, data in _jsonl(path):
        where = f"{path}:{line}"
        if not isinstance(data.get("audio"), str) or not isinstance(data.get("target"), str):
            raise UserError(f"{where}: a training row needs string fields 'audio' and 'target'")
        emotion = data.get("emotion")
        if split and data.get("split", split) != split:
            continue
        if data.get("target_emotion", emotion) != emotion:
            continue
        if emotion is not None and emotion not in EMOTION_TO_ID:
            raise UserError(
                f"{where}: unknown emotion {emotion!r} (expected one of {', '.join(EMOTION_TO_ID)})"
            )
        audio = Path(data["audio"]) if Path(data["audio"]).is_absolute() else base / data["audio"]
        if not audio.is_file():
            raise UserError(f"{where}: audio file {audio} not found")
        duration = data.get("duration")
        duration = float(duration) if isinstance(duration, (int, float)) else _duration(audio)
        if not min_seconds <= duration <= max_seconds:
            continue
        rows.append(
            TrainingRow(
                audio,
                str(data.get("text") or ""),
                data["target"],
                bool(data.get("truncated")),
                emotion,
                duration,
            )
        )
        if max_rows and len(rows) >= max_rows:
            break
    if not rows:
        raise UserError(
            f"{path}: no usable rows (need {min_seconds:g}-{max_seconds:g} s audio with a target)"
        )
    return rows


class TargetDataset(Dataset):
    """Target rows with their audio loaded (16 kHz mono float32)."""

    def __init__(self, rows: Sequence[TrainingRow]):
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        return {"row": row, "audio": load_audio(str(row.audio_path))}

    @property
    def durations(self) -> list[float]:
        """Seconds of audio per row (for duration batching)."""
        return [r.duration for r in self.rows]


def encoder_length(num_samples: int) -> int:
    """Encoder frames for a signal of ``num_samples`` (all windows together)."""
    return sum(int(encoder_frames(mel_frames(e - s))) for s, e in window_bounds(num_samples))


def pad_states(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad per-utterance encoder states (T_i, D) into (S, T, D) and their lengths (S,)."""
    lengths = torch.tensor([s.shape[0] for s in states], dtype=torch.long)
    out = states[0].new_zeros(len(states), int(lengths.max()), states[0].shape[-1])
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s
    return out, lengths


class TrainingCollator:
    """Builds a stage's batch dict from dataset items (called by the DataLoader)."""

    def __init__(self, processor, stage: str, system: str = "", instruction_text: str = "", cache=None):
        default_system, default_instruction = STAGE_PROMPTS[stage]
        self.processor = processor
        self.stage = stage
        self.system = system_prompt(system or default_system)
        self.instruction = instruction(instruction_text or default_instruction)
        self.cache = cache  # encoder-state cache: when set, encoder_states replace the audio features

    def _messages(self, user: list[dict] | str) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": user}]

    def student_messages(self, audio: np.ndarray) -> list[dict]:
        """The speech conversation the model is trained on."""
        return self._messages([{"type": "text", "text": self.instruction}, {"type": "audio", "audio": audio}])

    def teacher_messages(self, transcript: str) -> list[dict]:
        """Stage 1's teacher conversation: the transcript in place of the speech."""
        return self._messages(self.instruction + transcript)

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        rows = [item["row"] for item in items]
        encoded = [
            self.processor.encode(
                self.student_messages(item["audio"]), response=r.target, truncated=r.truncated
            )
            for item, r in zip(items, rows)
        ]
        if self.cache is not None:
            states = []
            for e in encoded:
                cached = self.cache.get(e.audios[0])
                if cached is None:
                    raise RuntimeError(
                        "encoder cache is missing an utterance (was it filled before training?)"
                    )
                states.append(cached)
                e.audios = []  # no mel features: the cached encoder states stand in for them
            batch = self.processor.collate(encoded, with_labels=True)
            batch["encoder_states"], batch["encoder_lengths"] = pad_states(states)
        else:
            batch = self.processor.collate(encoded, with_labels=True)
        if self.stage == "semantic":
            teacher = [
                self.processor.encode(
                    self.teacher_messages(r.transcript), response=r.target, truncated=r.truncated
                )
                for r in rows
            ]
            t = self.processor.collate(teacher, with_labels=True)
            batch["teacher_input_ids"] = t["input_ids"]
            batch["teacher_attention_mask"] = t["attention_mask"]
            batch["teacher_labels"] = t["labels"]
        else:
            batch["emotion_labels"] = torch.tensor(
                [EMOTION_TO_ID.get(r.emotion, -1) if r.emotion else -1 for r in rows], dtype=torch.long
            )
        batch["num_samples"] = torch.tensor(len(rows))
        return batch
