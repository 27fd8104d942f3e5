"""The student's text tokens around the speech equal the teacher's around the transcript (stage 1).

The student's user turn is ``instruction + [speech]``; the teacher's is ``instruction + transcript`` as
plain text. The speech must stand for exactly the tokens the transcript occupies in the teacher's prompt,
so that the student and teacher share every text token before and after it.
"""

from __future__ import annotations

import numpy as np
import pytest

from blsp_emo.model.processor import SPEECH_TOKEN_ID, BlspEmoProcessor, splice_text
from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS

TRANSCRIPT = "The weather is nice today."
CASES = {
    "continue": INSTRUCTIONS["continue"],  # ends in ": "
    "recognize_emotion": INSTRUCTIONS["recognize_emotion"],  # ends in "\n\nSpeech: "
    "whole_turn": INSTRUCTIONS["none"],  # the speech is the whole user turn: "user\n" stays
}


def _check_splice(processor: BlspEmoProcessor, instruction: str) -> None:
    """Student ids = teacher ids with the transcript's tokens replaced by the speech slots."""
    audio = np.zeros(16000, dtype=np.float32)
    system = {"role": "system", "content": SYSTEM_PROMPTS["default"]}
    student_parts = [{"type": "text", "text": instruction}] if instruction else []
    student_parts.append({"type": "audio", "audio": audio})
    student = processor.encode([system, {"role": "user", "content": student_parts}]).input_ids
    teacher = processor.encode([system, {"role": "user", "content": instruction + TRANSCRIPT}]).input_ids

    slots = [i for i, t in enumerate(student) if t == SPEECH_TOKEN_ID]
    before, after = student[: slots[0]], student[slots[-1] + 1 :]
    assert len(before) + len(after) < len(teacher)
    assert teacher[: len(before)] == before  # the teacher's ids up to the transcript's first token
    assert teacher[len(teacher) - len(after) :] == after  # ... and after its last token
    # What the speech stands for: the transcript with the instruction's trailing spaces, i.e. " The ...".
    spoken = instruction[len(instruction.rstrip(" ")) :] + TRANSCRIPT
    tok = processor.tokenizer
    assert tok.decode(teacher[len(before) : len(teacher) - len(after)]) == spoken
    rendered_before = processor.render([system, {"role": "user", "content": student_parts}])[0][0]
    assert tok.decode(before) == rendered_before.rstrip(" ")
    if not instruction:  # nothing to strip: the template's newline before the user text is kept
        assert rendered_before.endswith("\n") and tok.decode(before).endswith("\n")


@pytest.mark.parametrize(
    ("piece", "before_speech", "expected"),
    [
        ("style: ", True, "style:"),
        ("Speech:   ", True, "Speech:"),
        ("user\n", True, "user\n"),
        ("Speech:\n ", True, "Speech:\n"),  # only spaces go, never the newline
        ("style: ", False, "style: "),  # the last piece (after all speech) is left alone
    ],
)
def test_splice_text_strips_only_trailing_spaces_before_speech(piece, before_speech, expected):
    assert splice_text(piece, before_speech) == expected


@pytest.mark.parametrize("instruction", list(CASES.values()), ids=list(CASES))
def test_student_tokens_match_teacher_random_tokenizer(random_model, instruction):
    # This byte-level BPE keeps " " as its own token before "The", so its teacher ids match either way;
    # what fails without the splice rule is the speech standing for "The ..." instead of " The ...".
    _, processor = random_model
    _check_splice(processor, instruction)


@pytest.mark.integration
@pytest.mark.parametrize("instruction", list(CASES.values()), ids=list(CASES))
def test_student_tokens_match_teacher_smollm2(embedded_model, instruction):
    # SmolLM2 joins the space to the word (": The" -> ":", " The"): without the rule the student's last
    # token before the speech is a lone " " that the teacher never sees.
    _, processor = embedded_model
    _check_splice(processor, instruction)
