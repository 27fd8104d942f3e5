"""``EvalOptions``: every option of ``blsp-emo eval TASK`` and ``eval all`` as one typed record.

The command line builds it in one place (:func:`blsp_emo.evaluation.commands.eval_options`) and the
runner (:mod:`blsp_emo.evaluation.runner`) reads nothing else. :meth:`EvalOptions.check` refuses bad
values and missing files before any model (or torch) is imported, so bad input fails in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from blsp_emo.errors import UserError
from blsp_emo.model.types import DecodingOptions

TASK_NAMES: tuple[str, ...] = ("ser", "semantic", "empathy", "instructions", "multiturn")
DEFAULT_TASKS: tuple[str, ...] = ("ser", "semantic", "empathy")  # eval all (+ instructions with its data)
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_MAX_NEW_TOKENS = 128  # the answer length when a task has no default of its own
# MIN_TURNS, MAX_TURNS, DEFAULT_TURNS of blsp_emo.evaluation.tasks.multiturn, written out so that the
# command line's --help imports no task (tests/test_cli.py checks that they match).
MULTITURN_TURNS = (2, 4, 3)


def default_tasks(instructions_data: Path | None) -> tuple[str, ...]:
    """``eval all``'s tasks when none are named: ser, semantic, empathy, and instructions with its data."""
    return DEFAULT_TASKS + (("instructions",) if instructions_data is not None else ())


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate (systems x tasks on which data), how to decode, and where results go."""

    models: tuple[str, ...]  # the systems: BLSP-Emo models and cascades (NAME[@LLM])
    tasks: tuple[str, ...]  # the tasks to run, in this order
    data: Path  # the manifest of every task but semantic/instructions when those have their own
    semantic_data: Path | None = None
    instructions_data: Path | None = None
    output: Path | None = None  # None: runs/eval/...
    cache_dir: Path | None = None  # text answers and judge scores (None: OUTPUT/cache)
    recompute: bool = False  # eval all: redo finished system x task folders
    split: str | None = None
    limit: int | None = None
    seed: int = 0
    batch_size: int = 4  # conversations per generate call
    max_new_tokens: int | None = None  # None: each task's default answer length
    temperature: float = 0.0
    top_p: float = 1.0
    teacher_max_new_tokens: int | None = None  # None: each task's default teacher length
    teacher_targets: tuple[Path, ...] = ()
    llm: str | None = None  # the cascades' LLM (None: the first BLSP-Emo model, else tiny)
    asr: str = "tiny"
    ser_train: Path | None = None
    embedder: str = DEFAULT_EMBEDDER
    judge_url: str | None = None
    judge_model: str | None = None
    judge_key_env: str = "OPENAI_API_KEY"
    turns: int = MULTITURN_TURNS[2]
    trust_remote_code: bool = False

    @property
    def decoding(self) -> DecodingOptions:
        """The systems' decoding (answer length: ``max_new_tokens`` or 128; tasks apply their own default
        when it is not set)."""
        return DecodingOptions(
            max_new_tokens=self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
        )

    def manifest(self, task: str) -> Path:
        """The manifest ``task`` reads."""
        if task == "semantic" and self.semantic_data is not None:
            return self.semantic_data
        if task == "instructions":
            if self.instructions_data is None:
                raise UserError(
                    "task instructions needs --instructions-data (build it with eval build-instructions)"
                )
            return self.instructions_data
        return self.data

    def check(self) -> None:
        """Refuse bad values, missing manifests, an output path that cannot be a folder, an incomplete
        judge and unknown model names; imports no model code (and no torch)."""
        from blsp_emo.clitools import check_input_file, check_output_dir
        from blsp_emo.model.loading import check_model_name

        files = {
            "--data": self.data,
            "--semantic-data": self.semantic_data,
            "--instructions-data": self.instructions_data,
            "--ser-train": self.ser_train,
        }
        for flag, path in files.items():
            if path is not None:
                check_input_file(path, "manifest", flag)
        if self.output is not None:
            check_output_dir(self.output, "-o")
        if bool(self.judge_url) != bool(self.judge_model):
            raise UserError("an LLM judge needs both --judge-url and --judge-model")
        unknown = [t for t in self.tasks if t not in TASK_NAMES]
        if unknown or not self.tasks:
            raise UserError(f"unknown task {unknown[0] if unknown else '(none)'!r}: one of {TASK_NAMES}")
        if "instructions" in self.tasks:
            self.manifest("instructions")
        if not self.models:
            raise UserError("no system to evaluate (--model)")
        if len(set(self.models)) != len(self.models):
            raise UserError("each --model may be given once")
        from blsp_emo.evaluation.systems import split_system_name

        for spec in self.models:
            name, llm = split_system_name(spec, "")  # a cascade with its LLM, or a model name
            model = llm if llm is not None else name
            if model:
                check_model_name(model)
        for flag, value in (
            ("--batch-size", self.batch_size),
            ("--max-new-tokens", self.max_new_tokens),
            ("--limit", self.limit),
            ("--teacher-max-new-tokens", self.teacher_max_new_tokens),
        ):
            if value is not None and value < 1:
                raise UserError(f"{flag} must be at least 1, got {value}")
        low, high, _ = MULTITURN_TURNS
        if not low <= self.turns <= high:
            raise UserError(f"--turns must be between {low} and {high}, got {self.turns}")
