"""Training rows, the dataset over them, and the collator that builds each stage's model inputs.

Stage 1 (semantic): the student sees ``instruction + [speech]``; the teacher sees ``instruction +
transcript``; both share the default system prompt and the same target continuation (SPEC.md §4).
Stage 2 (emotion): the empathetic system prompt, ``continue_emotion`` instruction + [speech], the target
continuation as labels, and the emotion label per utterance (-1 when unknown).
Both stages take the prompts of each row's ``language`` (English and Chinese sets in
:mod:`blsp_emo.prompts`; other known languages fall back to English with a warning) unless the config
names its own prompt text.
Pre-alignment (align): no prompt at all; the transcript's LLM token ids are the CTC targets of the speech
(``blsp_emo.model.alignment``), and any manifest with transcripts serves (no teacher targets needed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from blsp_emo.data.dataset import TargetDataset
from blsp_emo.errors import UserError
from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS, instruction, prompt_set, system_prompt
from blsp_emo.training.config import AlignSection

STAGE_PROMPTS = {  # (system prompt, instruction) per stage, SPEC.md §4
    "align": ("default", "continue"),  # unused: pre-alignment builds no prompt
    "semantic": ("default", "continue"),
    "emotion": ("empathetic", "continue_emotion"),
}


def use_clean_audio(row, path: Path) -> None:
    """Point ``row`` at its recording before augmentation (its ``clean_audio`` field) and drop the
    augmented copy's duration. A relative ``clean_audio`` is relative to the corpus folder: the target
    file's folder, or the first folder above the augmented copy that holds it."""
    clean = row.extra.get("clean_audio")
    if not clean:
        return
    candidates = [Path(clean)] if Path(clean).is_absolute() else [path.parent / clean]
    candidates += [parent / clean for parent in row.audio_path.parents]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise UserError(f"{path}: row {row.id}: clean_audio {clean} not found")
    row.audio, row.base_dir, row.duration = str(found.resolve()), None, None


def load_target_dataset(
    path: str | Path,
    min_seconds: float = 0.0,
    max_seconds: float = float("inf"),
    max_rows: int = 0,
    split: str = "",
    require_target: bool = True,
    audio_field: str = "audio",
) -> TargetDataset:
    """The training rows of a target JSONL (``data targets`` output) as a ``blsp_emo.data`` dataset.

    Keeps rows of ``split`` (rows without one are kept) whose audio lasts ``min_seconds``..``max_seconds``
    (SPEC.md §3), at most ``max_rows`` of them; the dataset itself drops rows whose continuation was
    written for another emotion than the utterance's. Bad rows raise :class:`UserError` naming file:line.
    ``audio_field="clean_audio"`` trains on each row's recording before augmentation (see
    :func:`use_clean_audio`).
    """
    from blsp_emo.data.importers.common import audio_duration
    from blsp_emo.data.manifest import read_manifest

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such training file")
    rows = []
    for row in read_manifest(path):
        if split and row.split != split:  # rows without a split field count as "train"
            continue
        if audio_field == "clean_audio":
            use_clean_audio(row, path)
        elif audio_field != "audio":
            raise UserError(f"data.audio_field {audio_field!r}: expected audio or clean_audio")
        if row.duration is None:
            if not row.audio_path.is_file():
                raise UserError(f"{path}: audio file {row.audio_path} not found")
            row.duration = audio_duration(row.audio_path) or 0.0
        if min_seconds <= row.duration <= max_seconds:
            rows.append(row)
        if max_rows and len(rows) >= max_rows:
            break
    dataset = TargetDataset(rows, require_target=require_target)
    if len(dataset) == 0:
        wanted = "a target" if require_target else "a transcript"
        raise UserError(
            f"{path}: no usable rows (need {min_seconds:g}-{max_seconds:g} s audio with {wanted})"
        )
    missing = next((r.audio_path for r in dataset.rows if not r.audio_path.is_file()), None)
    if missing is not None:
        raise UserError(f"{path}: audio file {missing} not found")
    return dataset


class RecognitionMix(torch.utils.data.Dataset):
    """A stage-2 dataset plus recognition copies of a share of its labelled utterances.

    Items ``0..len(base)-1`` are the base items; after them come copies of ``share`` of the labelled
    utterances (a fixed draw from ``seed``) with ``task`` "recognition" and the emotion word as the
    target: the collator asks them the emotion-recognition question (SPEC.md section 5) instead of the
    continuation prompt, so the model learns to name the emotion it hears in words, not only in its head.
    """

    def __init__(self, base, share: float, seed: int = 0) -> None:
        import random

        self.base = base
        labelled = [i for i, row in enumerate(base.rows) if row.emotion is not None]
        count = int(round(share * len(labelled)))
        self.copies = sorted(random.Random(seed).sample(labelled, count))
        self.rows = base.rows + [base.rows[i] for i in self.copies]

    def __len__(self) -> int:
        return len(self.base) + len(self.copies)

    @property
    def durations(self) -> list[float]:
        durations = self.base.durations
        return durations + [durations[i] for i in self.copies]

    def __getitem__(self, index: int) -> dict:
        if index < len(self.base):
            return self.base[index]
        item = dict(self.base[self.copies[index - len(self.base)]])
        item.update(task="recognition", target=item["emotion"], truncated=False)
        return item


def encoder_cache_prefix(encoder: torch.nn.Module, name: str, pad_to_30s: bool) -> str:
    """The encoder-cache key prefix: encoder name, encoding mode and a fingerprint of every weight.

    Every value of every tensor goes into the fingerprint (a changed encoder must never hit a stale
    cache); "pad30v2" marks the paper path since its padded frames hold Whisper's silence (older pad30
    entries were computed on zero padding and are not reused).
    """
    digest = hashlib.sha256()
    for tensor_name, tensor in sorted(encoder.state_dict().items()):
        digest.update(tensor_name.encode() + str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return f"{name}|{'pad30v2' if pad_to_30s else 'variable'}|{digest.hexdigest()[:16]}"


def _missing(_: np.ndarray) -> torch.Tensor:
    raise RuntimeError("encoder cache is missing an utterance (was it filled before training?)")


def pad_states(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad per-utterance encoder states (T_i, D) into (S, T, D) and their lengths (S,)."""
    lengths = torch.tensor([s.shape[0] for s in states], dtype=torch.long)
    out = states[0].new_zeros(len(states), int(lengths.max()), states[0].shape[-1])
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s
    return out, lengths


class TrainingCollator:
    """Builds a stage's batch dict from dataset items (called by the DataLoader)."""

    def __init__(
        self,
        processor,
        stage: str,
        system: str = "",
        instruction_text: str = "",
        cache=None,
        align: AlignSection | None = None,
        seed: int = 0,
        stats_cache=None,
    ):
        default_system, default_instruction = STAGE_PROMPTS[stage]
        self.processor = processor
        self.stage = stage
        # A configured prompt applies to every row; the stage's default comes in each row's language.
        self.system_name = system or default_system
        self.instruction_name = instruction_text or default_instruction
        self.custom_system = bool(system) and system not in SYSTEM_PROMPTS
        self.custom_instruction = bool(instruction_text) and instruction_text not in INSTRUCTIONS
        self.system = system_prompt(self.system_name)
        self.instruction = instruction(self.instruction_name)
        self.cache = cache  # encoder-state cache: when set, encoder_states replace the audio features
        self.align = align or AlignSection()
        self.seed = seed
        self.stats_cache = stats_cache  # per-layer encoder statistics for the layer-mixed emotion head

    def prompts(self, language: str | None = "en") -> tuple[str | None, str]:
        """(system prompt, instruction) for a row in ``language``: a preset name comes from the
        language's prompt set (:func:`blsp_emo.prompts.prompt_set`), a configured text is used as is."""
        if language in (None, "en"):
            return self.system, self.instruction
        prompts = prompt_set(language)
        system = self.system
        if not self.custom_system and self.system_name in prompts.system:
            system = prompts.system[self.system_name]
        text = self.instruction
        if not self.custom_instruction and self.instruction_name in prompts.instructions:
            text = prompts.instructions[self.instruction_name]
        return system, text

    def _messages(self, user: list[dict] | str, system: str | None) -> list[dict]:
        head = [{"role": "system", "content": system}] if system else []
        return [*head, {"role": "user", "content": user}]

    def student_messages(self, audio: np.ndarray, task: str = "", language: str | None = "en") -> list[dict]:
        """The speech conversation the model is trained on, in the row's ``language`` (``task``
        "recognition": the SER question, which stays the English SPEC prompt in every language since its
        answer is an English label word)."""
        if task == "recognition":
            speech = [
                {"type": "text", "text": instruction("recognize_emotion")},
                {"type": "audio", "audio": audio},
            ]
            return self._messages(speech, system_prompt("default"))
        system, text = self.prompts(language)
        return self._messages([{"type": "text", "text": text}, {"type": "audio", "audio": audio}], system)

    def teacher_messages(self, transcript: str, language: str | None = "en") -> list[dict]:
        """Stage 1's teacher conversation: the transcript in place of the speech."""
        system, text = self.prompts(language)
        return self._messages(text + transcript, system)

    def _generator(self, items: Sequence[dict]) -> torch.Generator:
        """A generator seeded by the run seed and the batch's items: masks and negatives repeat exactly
        on resume, and differ between batches."""
        key = ",".join(str(it.get("index", it.get("id", ""))) for it in items)
        digest = hashlib.sha256(f"{self.seed}|{key}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))

    def alignment_batch(self, items: Sequence[dict]) -> dict:
        """Pre-alignment inputs: speech (cached encoder states, time-masked, or audio features) and the
        transcripts' LLM token ids as CTC targets (with sampled candidate tokens when configured)."""
        from blsp_emo.model.alignment import ctc_target_ids, sample_candidates, time_mask

        generator = self._generator(items)
        targets = [ctc_target_ids(self.processor.tokenizer, it["text"]) for it in items]
        audios = [it["audio"] for it in items]
        if self.cache is not None:
            states, lengths = pad_states([self.cache.get_or_compute(a, _missing) for a in audios])
            a = self.align
            batch: dict = {
                "encoder_states": time_mask(states, lengths, a.time_masks, a.time_mask_frames, generator),
                "encoder_lengths": lengths,
            }
        else:
            batch = self.processor.audio_features(audios)
        batch["ctc_targets"] = targets
        if self.align.negatives > 0:
            vocab = len(self.processor.tokenizer)
            batch["ctc_candidates"] = sample_candidates(targets, vocab, self.align.negatives, generator)
        batch["num_samples"] = torch.tensor(len(items))
        return batch

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Items of ``blsp_emo.data.dataset.TargetDataset`` -> the model's keyword arguments (+ num_samples)."""
        if self.stage == "align":
            return self.alignment_batch(items)
        encoded = [
            self.processor.encode(
                self.student_messages(it["audio"], it.get("task", ""), it.get("language", "en")),
                response=it["target"],
                truncated=it["truncated"],
            )
            for it in items
        ]
        if self.cache is not None:
            states = []
            for e in encoded:
                states.append(self.cache.get_or_compute(e.audios[0], _missing))
                e.audios = []  # no mel features: the cached encoder states stand in for them
            batch = self.processor.collate(encoded, with_labels=True)
            batch["encoder_states"], batch["encoder_lengths"] = pad_states(states)
            if self.stats_cache is not None:
                batch["encoder_layer_stats"] = torch.stack(
                    [self.stats_cache.get_or_compute(it["audio"], _missing) for it in items]
                )
        else:
            batch = self.processor.collate(encoded, with_labels=True)
        if self.stage == "semantic":
            teacher = [
                self.processor.encode(
                    self.teacher_messages(it["text"], it.get("language", "en")),
                    response=it["target"],
                    truncated=it["truncated"],
                )
                for it in items
            ]
            t = self.processor.collate(teacher, with_labels=True)
            batch["teacher_input_ids"] = t["input_ids"]
            batch["teacher_attention_mask"] = t["attention_mask"]
            batch["teacher_labels"] = t["labels"]
        else:
            batch["emotion_labels"] = torch.tensor([it["emotion_id"] for it in items], dtype=torch.long)
        batch["num_samples"] = torch.tensor(len(items))
        return batch
