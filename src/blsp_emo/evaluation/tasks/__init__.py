"""Evaluation tasks: each is a function (system, utterances, context) -> TaskResult."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from blsp_emo.evaluation.tasks.common import RunContext, TaskResult
from blsp_emo.evaluation.tasks.empathy import run_empathy
from blsp_emo.evaluation.tasks.instructions import run_instructions
from blsp_emo.evaluation.tasks.multiturn import run_multiturn
from blsp_emo.evaluation.tasks.semantic import run_semantic
from blsp_emo.evaluation.tasks.ser import run_ser


@dataclass(frozen=True)
class Task:
    """A task: its runner and what its data must provide."""

    name: str
    run: Callable[..., TaskResult]
    need_emotion: bool
    need_text: bool
    description: str


TASKS: dict[str, Task] = {
    "ser": Task("ser", run_ser, True, False, "speech emotion recognition through the model's answer"),
    "semantic": Task("semantic", run_semantic, False, True, "continuation of speech vs of its transcript"),
    "empathy": Task("empathy", run_empathy, True, True, "emotion agreement of empathetic replies"),
    "instructions": Task(
        "instructions", run_instructions, True, True, "spoken instructions: emotion accuracy and empathy"
    ),
    "multiturn": Task(
        "multiturn",
        run_multiturn,
        True,
        True,
        "empathy at the last turn of scripted multi-turn conversations",
    ),
}

__all__ = ["TASKS", "RunContext", "Task", "TaskResult"]
