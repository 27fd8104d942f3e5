"""Teacher-forced KL / top-1 (``blsp_emo.evaluation.teacher_forcing``) and their use in the semantic task,
on the tiny random model: recomputed by hand, the references, the ceiling, LoRA handling, CTC WER."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from blsp_emo.audio import save_wav
from blsp_emo.evaluation.dataset import Utterance
from blsp_emo.evaluation.systems import (
    BlspEmoSystem,
    CascadeSystem,
)
from blsp_emo.evaluation.tasks.common import RunContext
from blsp_emo.evaluation.tasks.semantic import run_semantic, semantic_teacher_forcing
from blsp_emo.evaluation.teacher_forcing import (
    Student,
    _resize_slots,
    gap_closed,
    score_students,
    teacher_forced_scores,
)
from blsp_emo.model import SPEECH_TOKEN_ID, SpeechChat, load_model
from blsp_emo.model.alignment import ctc_target_ids, ctc_transcripts
from blsp_emo.model.encoder import speech_embedding_count
from blsp_emo.model.plora import lora_parameters
from blsp_emo.model.types import Conversation, DecodingOptions, Reply
from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS

PROMPT, INSTRUCTION = SYSTEM_PROMPTS["default"], INSTRUCTIONS["continue"]
TEXTS = ("The quick brown fox jumps.", "My sister called today, isn't it nice?", "The weather is nice.")
RESPONSES = ("the lazy dog", "neutral, sad or happy", "the lazy dog")


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)


def _speech_conversation(audio: np.ndarray) -> Conversation:
    return Conversation(system=PROMPT).speech(audio, INSTRUCTION)


def _teacher_conversation(text: str) -> Conversation:
    return Conversation(system=PROMPT).user(INSTRUCTION + text)


def _lora_model():
    """random-tiny with partial LoRA whose update is not zero, so a pass with LoRA differs from one without."""
    model, processor = load_model("random-tiny", device="cpu", lora_r=4)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in lora_parameters(model.llm):
            p.add_(torch.randn(p.shape, generator=generator) * 0.5)
    return model, processor


def _kl_by_hand(student: torch.Tensor, teacher: torch.Tensor) -> tuple[float, int]:
    """Sum over positions of sum_v p_t (log p_t - log p_s), in float64, and the argmax agreements."""
    log_s, log_t = student.double().log_softmax(-1), teacher.double().log_softmax(-1)
    kl = float((log_t.exp() * (log_t - log_s)).sum())
    return kl, int((student.argmax(-1) == teacher.argmax(-1)).sum())


def _utterances(folder: Path, texts: tuple[str, ...], samples: list[int] | None = None) -> list[Utterance]:
    out = []
    for i, text in enumerate(texts):
        path = folder / f"u{i}.wav"
        n = samples[i] if samples else int(16000 * (0.8 + 0.3 * i))
        save_wav(path, (np.random.default_rng(i).standard_normal(n) * 0.1).astype(np.float32))
        out.append(Utterance(id=f"u{i}", audio_path=path, text=text, emotion=None))
    return out


def _context(folder: Path) -> RunContext:
    options = DecodingOptions(max_new_tokens=6)
    return RunContext(folder / "out", folder / "cache", options, batch_size=2, max_new_tokens_set=True)


def test_kl_and_top1_match_a_hand_computation_through_forward() -> None:
    # Batches of two utterances of different lengths (padding) against one utterance at a time through
    # BlspEmoModel.forward, which applies partial LoRA at the speech positions.
    model, processor = _lora_model()
    students = [_speech_conversation(_noise(0.6 + 0.5 * i, i)) for i in range(3)]
    teachers = [_teacher_conversation(t) for t in TEXTS]
    truncated = [False, True, True]
    scores = teacher_forced_scores(
        model, processor, students, teachers, list(RESPONSES), truncated, batch_size=2
    )
    assert model.lora_mask.mask is None  # nothing after the evaluation sees LoRA
    for i in range(3):
        s_batch = processor([students[i]], responses=[RESPONSES[i]], truncated=[truncated[i]])
        t_batch = processor([teachers[i]], responses=[RESPONSES[i]], truncated=[truncated[i]])
        with torch.no_grad():
            s_logits = model(**s_batch).logits
            assert model.lora_mask.mask is None  # forward sets the speech positions for its pass only
            t_logits = model(**t_batch).logits
        kl, agree = _kl_by_hand(s_logits, t_logits)
        assert scores.tokens[i] == s_logits.shape[0] > 0
        assert scores.kl_sums[i] == pytest.approx(kl, rel=1e-4, abs=1e-7)
        assert scores.agreements[i] == agree
    total = sum(scores.tokens)
    assert scores.kl == pytest.approx(sum(scores.kl_sums) / total)
    assert scores.top1 == sum(scores.agreements) / total
    assert scores.per_utterance_kl()[0] == pytest.approx(scores.kl_sums[0] / scores.tokens[0])
    # The same reply cut by the token cap has no end-of-turn token: one position fewer.
    assert scores.tokens[0] == scores.tokens[2] + 1
    # LoRA was on for the student: without it the distributions differ.
    off = teacher_forced_scores(
        model, processor, students, teachers, list(RESPONSES), truncated, 2, lora=False
    )
    assert off.kl_sums != pytest.approx(scores.kl_sums, rel=1e-3)


def test_zero_speech_reference_matches_an_independent_computation() -> None:
    # Zeros in the speech slots through the raw LLM with LoRA off, built without any evaluation code.
    model, processor = _lora_model()
    students = [_speech_conversation(_noise(0.7 + 0.4 * i, i)) for i in range(2)]
    teachers = [_teacher_conversation(t) for t in TEXTS[:2]]
    flags = [False, True]
    scores = teacher_forced_scores(
        model, processor, students, teachers, list(RESPONSES[:2]), flags, speech="zeros", lora=False
    )
    table = model.llm.get_input_embeddings()
    for i in range(2):
        logits = []
        for conv in (students[i], teachers[i]):
            enc = processor.encode(conv, response=RESPONSES[i], truncated=flags[i])
            ids = torch.tensor([enc.input_ids])
            slots = ids == SPEECH_TOKEN_ID
            assert slots.any() == (conv is students[i])
            with torch.no_grad(), model.speech_positions(None):
                embeds = table(ids.clamp(min=0)).masked_fill(slots[..., None], 0.0)
                out = model.llm(inputs_embeds=embeds).logits[0, :-1]
            keep = torch.tensor(enc.labels[1:]) != -100
            logits.append(out[keep])
        kl, agree = _kl_by_hand(*logits)
        assert scores.kl_sums[i] == pytest.approx(kl, rel=1e-4, abs=1e-7)
        assert scores.agreements[i] == agree and scores.tokens[i] == logits[0].shape[0]
    assert scores.kl > 0  # zeros are not the transcript


def test_transcript_in_the_slots_is_the_teacher_input(tmp_path: Path) -> None:
    # With partial LoRA that changes the output: the references must be the base LLM's.
    model, processor = _lora_model()
    utterances = _utterances(tmp_path, TEXTS)
    # The splice: the slots resized to the transcript's tokens give exactly the teacher's token ids.
    for u in utterances:
        enc = processor.encode(_speech_conversation(u.load()), response="x")
        tokens = ctc_target_ids(processor.tokenizer, u.text)
        resized = _resize_slots(enc, len(tokens)).input_ids
        start = resized.index(SPEECH_TOKEN_ID)
        resized[start : start + len(tokens)] = tokens
        assert resized == processor.encode(_teacher_conversation(u.text), response="x").input_ids
    system = BlspEmoSystem(name="random-tiny", chat=SpeechChat(model, processor), llm_name="random-tiny")
    references = [
        Reply("the lazy dog", finish_reason="stop"),
        Reply("neutral", finish_reason="length"),
        Reply("fox", finish_reason="length"),
    ]
    forced = semantic_teacher_forcing(system, utterances, references, batch_size=2)
    assert forced["transcript"].kl == pytest.approx(0.0, abs=1e-6)
    assert max(forced["transcript"].kl_sums) == pytest.approx(0.0, abs=1e-5)
    assert forced["transcript"].top1 == 1.0
    assert forced["no_speech"].kl > 1e-5 and forced["model"].kl > 1e-5
    assert forced["model"].tokens == forced["no_speech"].tokens == forced["transcript"].tokens
    # The no-speech reference is the zero-slot student of teacher_forced_scores on the same prompt.
    zeros = teacher_forced_scores(
        model,
        processor,
        [_speech_conversation(u.load()) for u in utterances],
        [_teacher_conversation(u.text) for u in utterances],
        [r.text for r in references],
        [r.finish_reason == "length" for r in references],
        speech="zeros",
        lora=False,
    )
    assert zeros.kl_sums == pytest.approx(forced["no_speech"].kl_sums, rel=1e-5, abs=1e-9)
    assert model.lora_mask.mask is None


def test_speech_embeddings_equal_to_the_transcript_close_the_gap(
    random_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "perfect" adapter: the speech embeddings are the transcript's token embeddings. Each clip is cut to
    # give exactly as many slots as the transcript has tokens; the slot count tells the clips apart.
    model, processor = random_model
    texts = ("The quick brown fox jumps over the lazy dog.", "The weather is nice today.")
    tokens = [ctc_target_ids(processor.tokenizer, t) for t in texts]
    assert len({len(t) for t in tokens}) == len(texts)
    samples = [
        next(n for n in range(1600, 16000 * 10, 40) if speech_embedding_count(n) == len(t)) for t in tokens
    ]
    utterances = _utterances(tmp_path, texts, samples)
    table = model.llm.get_input_embeddings()
    by_count = {len(t): t for t in tokens}

    def perfect_speech(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = batch["speech_lengths"]
        speech = torch.zeros(len(lengths), int(lengths.max()), table.embedding_dim)
        for i, n in enumerate(lengths.tolist()):
            speech[i, :n] = table(torch.tensor(by_count[n]))
        return speech, lengths

    monkeypatch.setattr(model, "speech_from_batch", perfect_speech)
    system = BlspEmoSystem(name="perfect", chat=SpeechChat(model, processor), llm_name="random-tiny")
    result = run_semantic(system, utterances, _context(tmp_path))
    tf = result.metrics["teacher_forced"]
    assert result.headline["gap_closed"] == pytest.approx(1.0, abs=1e-3)
    assert result.headline["kl"] == pytest.approx(0.0, abs=1e-6) and result.headline["top1"] == 1.0
    assert tf["no_speech"]["kl"] > 1e-5 and tf["transcript"]["top1"] == 1.0
    assert "ctc_wer" not in result.headline  # no alignment head
    assert any("Gap closed" in s for s in result.sections)


def test_alignment_head_gives_a_ctc_wer(random_model, tmp_path: Path) -> None:
    model, processor = random_model
    model.enable_alignment_head()
    utterances = _utterances(tmp_path, TEXTS[:2])
    system = BlspEmoSystem(name="aligned", chat=SpeechChat(model, processor), llm_name="random-tiny")
    result = run_semantic(system, utterances, _context(tmp_path))
    from blsp_emo.textnorm import word_error_rate

    readings = ctc_transcripts(model, processor, [u.load() for u in utterances])
    assert result.headline["ctc_wer"] == pytest.approx(word_error_rate(list(TEXTS[:2]), readings))
    assert result.metrics["ctc_wer"] == result.headline["ctc_wer"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["ctc_text"] for r in rows] == readings
    assert all({"kl", "top1", "kl_no_speech", "kl_transcript", "response_tokens"} <= set(r) for r in rows)


def test_cascade_student_is_its_own_text(random_model, tmp_path: Path) -> None:
    # An ASR cascade (transcripts given, so no Whisper runs) is scored on the text it shows the LLM.
    model, processor = random_model
    utterances = _utterances(tmp_path, TEXTS[:2])
    heard = {"u0": "The quick brown dog.", "u1": "My sister called today, isn't it nice?"}
    chat = SpeechChat(model, processor)
    cascade = CascadeSystem(
        name="cascade-asr", chat=chat, llm_name="random-tiny", kind="cascade-asr", _transcripts=heard
    )
    references = [Reply("the lazy dog", finish_reason="stop"), Reply("neutral, sad", finish_reason="length")]
    forced = semantic_teacher_forcing(cascade, utterances, references, batch_size=2)
    own = teacher_forced_scores(
        model,
        processor,
        [_teacher_conversation(heard[u.id]) for u in utterances],
        [_teacher_conversation(u.text) for u in utterances],
        [r.text for r in references],
        [False, True],
    )
    assert forced["model"].kl_sums == pytest.approx(own.kl_sums, rel=1e-5, abs=1e-9)
    assert forced["model"].kl_sums[1] == pytest.approx(0.0, abs=1e-6)  # heard right: the teacher's input
    assert forced["model"].kl_sums[0] > 1e-6
    # The references do not depend on the system: the same as a BLSP-Emo system's over the same LLM.
    speech = BlspEmoSystem(name="random-tiny", chat=chat, llm_name="random-tiny")
    same = semantic_teacher_forcing(speech, utterances, references, batch_size=1)
    for name in ("no_speech", "transcript"):
        assert forced[name].kl_sums == pytest.approx(same[name].kl_sums, rel=1e-4, abs=1e-8)


def test_gap_closed_formula_and_bad_input(random_model) -> None:
    assert gap_closed(1.0, 2.0, 0.0) == pytest.approx(0.5)
    assert gap_closed(3.0, 2.0, 0.0) == pytest.approx(-0.5)  # worse than no speech
    assert gap_closed(1.0, 0.0, 0.0) is None and gap_closed(None, 1.0, 0.0) is None
    model, processor = random_model
    teacher = [_teacher_conversation("hello")]
    with pytest.raises(ValueError, match="one input per teacher"):
        score_students(model, processor, {"s": Student([])}, teacher, ["x"], [False])
    with pytest.raises(ValueError, match="text only"):
        score_students(model, processor, {}, [_speech_conversation(_noise(0.5, 0))], ["x"], [False])
