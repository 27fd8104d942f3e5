"""The collator that builds each stage's model inputs from training rows.

Stage 1 (semantic): the student sees ``instruction + [speech]``; the teacher sees ``instruction +
transcript``; both share the default system prompt and the same target continuation (docs/method.md §4).
Stage 2 (emotion): the empathetic system prompt, ``continue_emotion`` instruction + [speech], the target
continuation as labels, and the emotion label per utterance (-1 when unknown).
Both stages take the prompts of each row's ``language`` (English and Chinese sets in
:mod:`blsp_emo.prompts`; other known languages fall back to English with a warning) unless the config
names its own prompt text.
Pre-alignment (align): no prompt at all; the transcript's LLM token ids are the CTC targets of the speech
(``blsp_emo.model.alignment``), and any manifest with transcripts serves (no teacher targets needed).
The rows themselves are :mod:`blsp_emo.training.dataset`; cached encoder states
:mod:`blsp_emo.training.encoder_cache`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from blsp_emo.model.types import Conversation
from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS, Stage, instruction, prompt_set, system_prompt
from blsp_emo.training.config import AlignSection
from blsp_emo.training.encoder_cache import StateCache

if TYPE_CHECKING:
    from blsp_emo.model.processor import BlspEmoProcessor


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
    """Builds a stage's batch dict from dataset items (called by the DataLoader).

    ``system`` / ``instruction_text``: a preset name or a text for every row ("" = the stage's own,
    :attr:`Stage.system_name` / :attr:`Stage.instruction_name`); ``cache``: encoder states that stand in
    for the audio features; ``stats_cache``: per-layer encoder statistics for a layer-mixed emotion head.
    """

    def __init__(
        self,
        processor: BlspEmoProcessor,
        stage: Stage | str,
        system: str = "",
        instruction_text: str = "",
        cache: StateCache | None = None,
        align: AlignSection | None = None,
        seed: int = 0,
        stats_cache: StateCache | None = None,
    ) -> None:
        self.processor = processor
        self.stage = Stage.parse(stage)
        # A configured prompt applies to every row; the stage's default comes in each row's language.
        self.system_name = system or self.stage.system_name
        self.instruction_name = instruction_text or self.stage.instruction_name
        self.custom_system = bool(system) and system not in SYSTEM_PROMPTS
        self.custom_instruction = bool(instruction_text) and instruction_text not in INSTRUCTIONS
        self.system = system_prompt(self.system_name)
        self.instruction = instruction(self.instruction_name)
        self.cache = cache
        self.align = align or AlignSection()
        self.seed = seed
        self.stats_cache = stats_cache

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

    def student_messages(
        self, audio: np.ndarray, task: str = "", language: str | None = "en"
    ) -> Conversation:
        """The speech conversation the model is trained on, in the row's ``language`` (``task``
        "recognition": the SER question, which stays the English prompt of docs/method.md §5 in every
        language since its answer is an English label word)."""
        if task == "recognition":
            return Conversation(system=system_prompt("default")).speech(
                audio, instruction("recognize_emotion")
            )
        system, text = self.prompts(language)
        return Conversation(system=system).speech(audio, text)

    def teacher_messages(self, transcript: str, language: str | None = "en") -> Conversation:
        """Stage 1's teacher conversation: the student's, with the transcript in place of the speech
        (with the stage's own prompts, :meth:`Stage.teacher_conversation` of target generation)."""
        system, text = self.prompts(language)
        return Conversation(system=system).user(text + transcript)

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
            batch: dict[str, Any] = {
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

    def _speech_batch(self, items: Sequence[dict[str, Any]], with_response: bool) -> dict[str, Any]:
        """The student's inputs (left-padded; cached encoder states in place of the audio features when
        there is a cache), with the rows' targets as labels, or ending in the generation prompt."""
        encoded = [
            self.processor.encode(
                self.student_messages(it["audio"], it.get("task", ""), it.get("language", "en")),
                response=it["target"] if with_response else None,
                truncated=it["truncated"] if with_response else False,
            )
            for it in items
        ]
        if self.cache is None:
            return self.processor.collate(encoded, with_labels=with_response)
        states = []
        for e in encoded:
            states.append(self.cache.get_or_compute(e.audios[0], _missing))
            e.audios = []  # no mel features: the cached encoder states stand in for them
        batch = self.processor.collate(encoded, with_labels=with_response)
        batch["encoder_states"], batch["encoder_lengths"] = pad_states(states)
        if self.stats_cache is not None:
            batch["encoder_layer_stats"] = torch.stack(
                [self.stats_cache.get_or_compute(it["audio"], _missing) for it in items]
            )
        return batch

    def generation_batch(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The student's prompts for generating its own continuations (on-policy distillation)."""
        return self._speech_batch(items, with_response=False)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Items of :class:`blsp_emo.training.dataset.TargetDataset` -> the model's keyword arguments (+
        num_samples)."""
        if self.stage is Stage.ALIGN:
            return self.alignment_batch(items)
        batch = self._speech_batch(items, with_response=True)
        if self.stage is Stage.SEMANTIC:
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
