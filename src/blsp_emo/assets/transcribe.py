"""Whisper speech recognition (used by the cascade baselines and for checking synthetic corpora).

A small batched greedy decoder over ``WhisperForConditionalGeneration`` with the standard 30 s windows;
audio longer than 30 s is transcribed window by window.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from blsp_emo.audio import SAMPLE_RATE
from blsp_emo.errors import UserError

WINDOW_SAMPLES = 30 * SAMPLE_RATE


@lru_cache(maxsize=2)
def _cached_whisper(name: str):
    from blsp_emo.assets.loading import load_whisper

    return load_whisper(name)


def _prompt_ids(tokenizer, language: str | None) -> list[int]:
    """<|startoftranscript|> [<|xx|> <|transcribe|>] <|notimestamps|>.

    The language token is the row's ISO 639-1 code (:data:`blsp_emo.prompts.WHISPER_LANGUAGE_TOKENS`
    where Whisper's differs); ``None`` lets a multilingual Whisper detect the language. An English-only
    Whisper has no language tokens: its prompt has none whatever the language.
    """
    from blsp_emo.prompts import WHISPER_LANGUAGE_TOKENS, check_language

    ids = [tokenizer.convert_tokens_to_ids("<|startoftranscript|>")]
    unk = tokenizer.unk_token_id
    multilingual = tokenizer.convert_tokens_to_ids("<|en|>") not in (None, unk)
    if language and multilingual:
        check_language(language)
        token = f"<|{WHISPER_LANGUAGE_TOKENS.get(language, language)}|>"
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id in (None, unk):
            raise UserError(f"this Whisper has no language token {token} (language {language!r})")
        ids += [token_id, tokenizer.convert_tokens_to_ids("<|transcribe|>")]
    ids.append(tokenizer.convert_tokens_to_ids("<|notimestamps|>"))
    return ids


@torch.no_grad()
def transcribe(
    audios: list[np.ndarray],
    name: str = "tiny",
    batch_size: int = 8,
    language: str | None | Sequence[str | None] = "en",
    max_new_tokens: int = 224,
    model=None,
    processor=None,
) -> list[str]:
    """Transcribe 16 kHz mono arrays; returns one string per input (windows of long audio joined).

    ``language`` is one ISO 639-1 code for every input, or one per input (e.g. each manifest row's
    ``language``): Whisper's decoder prompt carries that language's token, so a Chinese row is
    transcribed as Chinese. ``None`` lets Whisper detect the language.
    """
    if model is None or processor is None:
        model, processor = _cached_whisper(name)
    if language is None or isinstance(language, str):
        languages: list[str | None] = [language] * len(audios)
    else:
        languages = list(language)
        if len(languages) != len(audios):
            raise UserError(f"transcribe: {len(languages)} languages for {len(audios)} audios")
    windows: list[tuple[str | None, np.ndarray]] = []
    owner: list[int] = []
    for i, audio in enumerate(audios):
        for start in range(0, max(len(audio), 1), WINDOW_SAMPLES):
            windows.append((languages[i], audio[start : start + WINDOW_SAMPLES]))
            owner.append(i)
    texts = [""] * len(windows)
    # One decoder prompt per batch: windows are batched within their language.
    for lang in dict.fromkeys(lang for lang, _ in windows):
        index = [i for i, (other, _) in enumerate(windows) if other == lang]
        for start in range(0, len(index), batch_size):
            part = index[start : start + batch_size]
            chunk = [windows[i][1] for i in part]
            for i, text in zip(part, _decode_batch(model, processor, chunk, lang, max_new_tokens)):
                texts[i] = text
    joined: list[list[str]] = [[] for _ in audios]
    for i, text in zip(owner, texts):
        joined[i].append(text.strip())
    return [" ".join(t for t in parts if t) for parts in joined]


def _decode_batch(model, processor, chunk, language, max_new_tokens) -> list[str]:
    tokenizer = processor.tokenizer
    device = next(model.parameters()).device
    feats = processor.feature_extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    feats = feats.to(device=device, dtype=next(model.parameters()).dtype)
    encoder_out = model.model.encoder(feats)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    prompt = torch.tensor([_prompt_ids(tokenizer, language)] * len(chunk), device=device)
    generated = torch.empty((len(chunk), 0), dtype=torch.long, device=device)
    finished = torch.zeros(len(chunk), dtype=torch.bool, device=device)
    step_ids, past = prompt, None
    for _ in range(max_new_tokens):
        out = model(
            encoder_outputs=encoder_out, decoder_input_ids=step_ids, past_key_values=past, use_cache=True
        )
        logits = out.logits[:, -1, :].float()
        logits[:, eot + 1 :] = -torch.inf  # text tokens and end-of-text only: no timestamps or specials
        if generated.shape[1] == 0:
            logits[:, eot] = -torch.inf  # an empty transcript is never the answer to speech
        next_ids = logits.argmax(-1)
        next_ids = torch.where(finished, torch.full_like(next_ids, eot), next_ids)
        generated = torch.cat([generated, next_ids[:, None]], dim=1)
        finished |= next_ids == eot
        if bool(finished.all()):
            break
        step_ids, past = next_ids[:, None], out.past_key_values
    return tokenizer.batch_decode(generated, skip_special_tokens=True)
