"""The collator's conversations: built from the Stage's prompts, the teacher as target generation's."""

from __future__ import annotations

import numpy as np
import pytest

from blsp_emo.model.types import Conversation
from blsp_emo.prompts import Stage, instruction, system_prompt
from blsp_emo.training.data import TrainingCollator


@pytest.mark.parametrize("language", ["en", "zh", None])
def test_the_stage1_teacher_is_the_one_target_generation_asks(language):
    collator = TrainingCollator(None, Stage.SEMANTIC)  # the prompts need no processor
    teacher = collator.teacher_messages("It rained all day.", language)
    assert teacher == Stage.SEMANTIC.teacher_conversation("It rained all day.", language=language)
    assert isinstance(teacher, Conversation)


def test_student_conversations_use_the_stage_prompts():
    audio = np.zeros(1600, np.float32)
    for stage in (Stage.SEMANTIC, Stage.EMOTION):
        student = TrainingCollator(None, stage).student_messages(audio)
        expected = Conversation(system=system_prompt(stage.system_name)).speech(
            audio, instruction(stage.instruction_name)
        )
        assert student[0] == expected[0] and student[1]["content"][0] == expected[1]["content"][0]
        assert student[1]["content"][1]["audio"] is audio
    recognition = TrainingCollator(None, "emotion").student_messages(audio, "recognition")
    assert recognition[0]["content"] == system_prompt("default")
    assert recognition[1]["content"][0]["text"] == instruction("recognize_emotion")


def test_an_unknown_stage_is_named():
    from blsp_emo.errors import UserError

    with pytest.raises(UserError, match="unknown stage 'third'"):
        TrainingCollator(None, "third")
