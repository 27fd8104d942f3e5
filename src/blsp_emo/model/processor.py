"""``BlspEmoProcessor``: audio -> log-mel windows, conversations -> token ids with speech slots.

Prompts come from the LLM's own chat template: each audio part is rendered as a placeholder string,
the rendered text is split there, and the pieces are tokenised separately. The placeholder positions in
``input_ids`` hold ``SPEECH_TOKEN_ID`` (one per speech embedding); the model fills them with the adapter's
output. No marker tokens surround the speech (docs/method.md §2).

Splice rule: the text piece directly before a speech placeholder loses its trailing ``' '`` characters
(never newlines), so the speech stands for " word word ..." -- the transcript's words with their leading
space. A stage-1 teacher whose user turn is ``instruction + transcript`` then tokenises to exactly the
student's text tokens around the speech: BPE tokenizers join a space to the next word (" Hello"), so
tokenising "...style: " on its own would leave the student a lone " " token that the teacher never sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from blsp_emo.audio import SAMPLE_RATE, load_audio
from blsp_emo.errors import UserError
from blsp_emo.model.encoder import MIN_SAMPLES, mel_frames, speech_embedding_count, window_bounds

SPEECH_TOKEN_ID = -200
SPEECH_PLACEHOLDER = "<|blsp_speech|>"
IGNORE_INDEX = -100

Message = dict[str, Any]


@dataclass
class EncodedConversation:
    """One conversation as token ids with speech slots, its labels, and its audio segments in order."""

    input_ids: list[int]
    labels: list[int]
    audios: list[np.ndarray] = field(default_factory=list)


def _parts(content: str | list | None) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def _as_audio(part: dict) -> np.ndarray:
    audio = part.get("audio")
    if audio is None and "path" in part:
        audio = part["path"]
    if isinstance(audio, np.ndarray):
        return audio.astype(np.float32, copy=False)
    if isinstance(audio, torch.Tensor):
        return audio.detach().cpu().float().numpy()
    if isinstance(audio, (str, bytes)):
        return load_audio(audio)
    raise UserError(f"audio part needs an 'audio' array (16 kHz mono) or a 'path'; got keys {sorted(part)}")


def splice_text(piece: str, before_speech: bool) -> str:
    """The text of one rendered piece as it is tokenised next to the speech.

    A piece directly before a speech placeholder loses its trailing spaces: the speech stands for the
    transcript's words *with* their leading space, which is how the teacher's tokenizer sees them
    (" Hello" is one token; a lone " " then "Hello" is two that the teacher never sees). Only ``' '`` is
    stripped: a newline before the speech (the end of a template's role header when the speech is the
    whole user turn) stays, as the teacher's transcript follows that newline without a space.
    """
    return piece.rstrip(" ") if before_speech else piece


class BlspEmoProcessor:
    """Owns the Whisper feature extractor, the LLM tokenizer and prompt building."""

    def __init__(self, feature_extractor, tokenizer, pad_to_30s: bool = False, adapter_layers: int = 3):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.pad_to_30s = pad_to_30s
        self.adapter_layers = adapter_layers
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_token_id = tokenizer.pad_token_id

    # ---- text side ---------------------------------------------------------------------------------

    def render(
        self, messages: Sequence[Message], add_generation_prompt: bool = True
    ) -> tuple[list[str], list]:
        """Render a conversation through the chat template.

        Returns the text pieces around the speech (one more than the number of audio parts) and the audio
        parts in order of appearance.
        """
        flat: list[dict[str, str]] = []
        audios: list = []
        for message in messages:
            texts = []
            for part in _parts(message.get("content")):
                kind = part.get("type")
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                elif kind in ("audio", "input_audio"):
                    texts.append(SPEECH_PLACEHOLDER)
                    audios.append(part)
                else:
                    raise UserError(f"unsupported content part type {kind!r} (expected 'text' or 'audio')")
            flat.append({"role": message["role"], "content": "".join(texts)})
        rendered = self.tokenizer.apply_chat_template(
            flat, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        pieces = rendered.split(SPEECH_PLACEHOLDER)
        if len(pieces) != len(audios) + 1:
            raise UserError("the chat template dropped or duplicated a speech placeholder")
        return pieces, audios

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def response_text(self, messages: Sequence[Message], response: str, truncated: bool) -> str:
        """The exact text the assistant turn adds after the generation prompt.

        Includes the template's end-of-turn marker unless the response was cut by the token cap.
        """
        prompt, _ = self.render(messages, add_generation_prompt=True)
        full, _ = self.render(
            [*messages, {"role": "assistant", "content": response}], add_generation_prompt=False
        )
        prompt_text, full_text = SPEECH_PLACEHOLDER.join(prompt), SPEECH_PLACEHOLDER.join(full)
        if full_text.startswith(prompt_text) and response in full_text[len(prompt_text) :]:
            tail = full_text[len(prompt_text) :]
        else:  # template rewrites history: fall back to response + end-of-sequence
            tail = response + (self.tokenizer.eos_token or "")
        end = tail.index(response) + len(response)
        return tail[:end] if truncated else tail.rstrip()

    def encode(
        self,
        messages: Sequence[Message],
        response: str | None = None,
        truncated: bool = False,
        add_generation_prompt: bool = True,
    ) -> EncodedConversation:
        """Token ids (speech slots = ``SPEECH_TOKEN_ID``), labels (response tokens only) and audio."""
        pieces, parts = self.render(
            messages, add_generation_prompt=add_generation_prompt or response is not None
        )
        audios = [_as_audio(p) for p in parts]
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            ids += self._tokenize(splice_text(piece, before_speech=i < len(audios)))
            if i < len(audios):
                ids += [SPEECH_TOKEN_ID] * speech_embedding_count(len(audios[i]), self.adapter_layers)
        labels = [IGNORE_INDEX] * len(ids)
        if response is not None:
            resp = self._tokenize(self.response_text(messages, response, truncated))
            ids += resp
            labels += resp
        return EncodedConversation(ids, labels, audios)

    # ---- audio side --------------------------------------------------------------------------------

    def audio_features(self, audios: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Log-mel windows for a list of speech segments.

        Returns ``input_features`` (W, n_mels, F), ``feature_lengths`` (W,) true mel frames,
        ``window_segment`` (W,) the segment each window belongs to, ``speech_lengths`` (S,) embeddings
        per segment.

        With ``pad_to_30s`` (the paper's path) each window is exactly what Whisper's feature extractor
        gives for it: the audio padded with zeros to 30 s *before* the STFT, so the padded frames hold the
        normalised log-mel of silence (not 0) and F = 3000. ``feature_lengths`` stays the true frame count.
        """
        feats: list[np.ndarray] = []
        lengths: list[int] = []
        window_segment: list[int] = []
        padding = "max_length" if self.pad_to_30s else "longest"
        for seg, audio in enumerate(audios):
            for start, end in window_bounds(len(audio)):
                window = audio[start:end]
                # Every window, not only a short clip, is padded to 0.1 s: mel_frames() counts a short last
                # window of long audio that way, and the STFT cannot reflect-pad fewer than 201 samples.
                if len(window) < MIN_SAMPLES:
                    window = np.pad(window, (0, MIN_SAMPLES - len(window)))
                out = self.feature_extractor(
                    window, sampling_rate=SAMPLE_RATE, return_tensors="np", padding=padding
                )
                feats.append(out["input_features"][0])
                lengths.append(mel_frames(len(window)))
                window_segment.append(seg)
        width = max(f.shape[-1] for f in feats)
        batch = np.zeros((len(feats), feats[0].shape[0], width), dtype=np.float32)
        for i, f in enumerate(feats):
            batch[i, :, : f.shape[-1]] = f
        return {
            "input_features": torch.from_numpy(batch),
            "feature_lengths": torch.tensor(lengths, dtype=torch.long),
            "window_segment": torch.tensor(window_segment, dtype=torch.long),
            "speech_lengths": torch.tensor(
                [speech_embedding_count(len(a), self.adapter_layers) for a in audios], dtype=torch.long
            ),
        }

    # ---- batches -----------------------------------------------------------------------------------

    def collate(
        self, encoded: Sequence[EncodedConversation], with_labels: bool = False
    ) -> dict[str, torch.Tensor]:
        """Left-pad encoded conversations into a batch (with audio features when any audio is present).

        ``labels`` (response tokens, else ``IGNORE_INDEX``) are included when ``with_labels`` is set.
        """
        width = max(len(e.input_ids) for e in encoded)
        ids = torch.full((len(encoded), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for i, e in enumerate(encoded):
            n = len(e.input_ids)
            ids[i, width - n :] = torch.tensor(e.input_ids, dtype=torch.long)
            labels[i, width - n :] = torch.tensor(e.labels, dtype=torch.long)
            mask[i, width - n :] = 1
        batch: dict[str, torch.Tensor] = {"input_ids": ids, "attention_mask": mask}
        if with_labels:
            batch["labels"] = labels
        audios = [a for e in encoded for a in e.audios]
        if audios:
            batch.update(self.audio_features(audios))
        return batch

    def __call__(
        self,
        conversations: Sequence[Sequence[Message]],
        responses: Sequence[str] | None = None,
        truncated: Sequence[bool] | None = None,
        add_generation_prompt: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Encode and collate a batch of conversations (optionally with target responses for training)."""
        encoded = [
            self.encode(
                conv,
                response=None if responses is None else responses[i],
                truncated=bool(truncated[i]) if truncated is not None else False,
                add_generation_prompt=add_generation_prompt,
            )
            for i, conv in enumerate(conversations)
        ]
        return self.collate(encoded, with_labels=responses is not None)


def batch_to(batch: dict, device: torch.device | str) -> dict:
    """The batch with every tensor moved to ``device`` (lists such as CTC targets stay as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's EOS and the chat template's end-of-turn."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    probe = [{"role": "user", "content": "x"}]
    try:
        prompt = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*probe, {"role": "assistant", "content": "REPLY"}], tokenize=False, add_generation_prompt=False
        )
    except Exception:  # a template that needs a system turn or other roles: EOS alone
        return ids
    if full.startswith(prompt) and "REPLY" in full[len(prompt) :]:
        tail = full[len(prompt) :].split("REPLY", 1)[1].strip()
        if tail:
            first = tokenizer(tail, add_special_tokens=False)["input_ids"][:1]
            if first and first[0] in tokenizer.all_special_ids and first[0] not in ids:
                ids.append(int(first[0]))
    return ids
