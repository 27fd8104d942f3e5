"""Typed training configuration: dataclasses per concern, read from YAML with ``key=value`` overrides.

A config file has one top-level ``stage`` and five sections (``model``, ``data``, ``align``, ``optim``, ``run``).
Overrides on the command line use dotted keys (``optim.lr=3e-4``, ``run.output_dir=runs/x``); values are
parsed as YAML scalars, so ``true``, ``1e-4`` and ``[a, b]`` work as expected. Values are checked and
converted to the fields' types by pydantic; a bad value or an unknown key is a :class:`UserError` naming
the field (``optim.lr``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from blsp_emo.errors import UserError
from blsp_emo.io import atomic_write_text
from blsp_emo.prompts import Stage

# Every section refuses keys it does not know; numbers given for a text field (a split named 2024) are text.
_STRICT_KEYS = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


@dataclass
class ModelSection:
    """Which model to start from and which parts are trained."""

    __pydantic_config__ = _STRICT_KEYS

    init_from: str = (
        "tiny"  # preset (tiny, paper), "random-tiny", or a checkpoint folder (stage 2: stage 1's)
    )
    pad_to_30s: bool = False  # paper path: pad every window to 30 s before encoding (slow; for comparison)
    # Initial gain of a fresh adapter's LayerNorm: "embeddings" (the RMS of the LLM's token embeddings) or a
    # number (1.0 = plain LayerNorm, as in recipe v1); a checkpoint start keeps its own weights.
    adapter_output_scale: Any = "embeddings"
    train_encoder: bool = (
        False  # stage 2: also train the Whisper encoder, as the paper does (disables the cache)
    )
    # stage 2: train the adapter too (the paper); false keeps stage 1's adapter as it is, so the words it
    # conveys are not worn away, and only the LoRA, the emotion head (and token) and the encoder train
    train_adapter: bool = True
    lora_r: int = 16  # stage 2: partial-LoRA rank (0 = no LoRA)
    lora_alpha: float = 16.0  # stage 2: LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.05  # stage 2: dropout on the LoRA branch input
    lora_targets: Any = "auto"  # stage 2: module names to wrap, or "auto" for the architecture's list
    # What the LLM reads for speech: "" = what the start model uses; "adapter"; or "token_bridge" (needs a
    # start with an alignment head: the embeddings of the tokens it hears, see BlspEmoConfig.speech_input)
    speech_input: str = ""
    gradient_checkpointing: bool = False  # recompute LLM activations in the backward pass to save memory
    emotion_loss_weight: float = 1.0  # stage 2: weight of the emotion-head cross-entropy
    # stage 2: what the emotion head reads: "" = the start model's; "adapter" (the paper: the mean of the
    # adapter output) or "layer_mix" (a learned mix of every encoder layer's mean/std statistics)
    emotion_features: str = ""
    # stage 2: the LLM also reads the emotion the head hears, as one embedding after each speech segment
    # (the head's probabilities times a learned table that starts at the LLM's embeddings of the emotion
    # words; BlspEmoConfig.emotion_token); a start that has the token keeps it
    emotion_token: bool = False
    # stage 2, layer-mixed head: before the first step, fit the emotion head alone for this many full-batch
    # steps on the frozen encoder's statistics of the training clips (as `blsp-emo refit-head` does), so the
    # LLM trains with an emotion token that is right from the start; 0 = off
    emotion_head_prefit_steps: int = 0
    # stage 2: weight of the semantic KL term on data.semantic_train (this project's addition): stage 1's
    # loss kept in stage 2, so the LoRA does not wear away the words the adapter conveys
    semantic_loss_weight: float = 1.0
    # stage 2, data.semantic_train: the share of its micro-batches trained on the model's own continuation
    # of the speech instead of the teacher's (on-policy distillation: the KL to the LLM fed the transcript
    # is taken along the student's reply, the tokens it will generate, so a reply that drifts from the
    # words is corrected where it drifts); 0 = off (always the teacher's continuation), 1 = always
    semantic_on_policy: float = 0.0
    semantic_on_policy_tokens: int = 48  # the student's continuation length (the stage-1 target length)
    semantic_on_policy_temperature: float = 0.0  # 0 = greedy (how the replies are evaluated), else sampled


@dataclass
class DataSection:
    """Training rows, prompts and batching."""

    __pydantic_config__ = _STRICT_KEYS

    train: str = (
        ""  # target JSONL written by `blsp-emo data targets` (audio, text, target, truncated, emotion)
    )
    split: str = "train"  # use rows of this split only (rows without a split field are kept); "" = all
    system_prompt: str = ""  # preset name or text; "" = the stage's default (default / empathetic)
    instruction: str = ""  # preset name or text before the speech; "" = the stage's default
    batching: str = (
        "duration"  # "duration": batches of about batch_seconds of audio; "count": batch_size rows
    )
    batch_seconds: float = 60.0  # duration batching: seconds of audio per micro-batch per device
    batch_size: int = 8  # count batching: rows per micro-batch per device; duration batching: the most rows
    min_seconds: float = 1.0  # drop shorter utterances (docs/method.md §3)
    max_seconds: float = 30.0  # drop longer utterances (docs/method.md §3)
    max_rows: int = 0  # use only the first N rows (0 = all); for smoke tests
    cache_encoder: bool = True  # cache encoder outputs on disk while the encoder is frozen (fast path)
    cache_dir: str = ""  # encoder cache folder; "" = <output_dir>/encoder-cache
    shuffle: bool = True  # shuffle batches each epoch (deterministic from run.seed and the epoch)
    # Stage 2: add a recognition copy of this share of the labelled utterances (default system prompt,
    # the emotion-recognition instruction, target = the emotion word), so the model also answers that
    # question in words; 0 = the paper's stage 2 (empathetic continuations only).
    recognition_share: float = 0.0
    # Which recording of each row to train on: "audio" (as listed: the augmented copy in an augmented
    # corpus) or "clean_audio" (the recording before augmentation; rows without one keep "audio")
    audio_field: str = "audio"
    # Stage 2: a stage-1 target JSONL (`blsp-emo data targets --stage semantic`, e.g. of the same training
    # transcripts). With it every micro-batch of stage 2 is followed by one micro-batch of these rows
    # trained as in stage 1 (the default prompt + speech, KL to the LLM fed the transcript, the LoRA
    # active on the speech as in stage 2), weighted by model.semantic_loss_weight; "" = off (the paper)
    semantic_train: str = ""
    semantic_batch_seconds: float = (
        0.0  # duration batching of those rows: seconds per micro-batch (0 = batch_seconds)
    )
    # Held-out (dev) loss, off by default. ``dev``: a target JSONL of held-out rows (same format as
    # ``train``); ``dev_split``: take the rows of this split ("dev") from ``dev`` when given, else from
    # ``train`` (it must then differ from ``split``, or the dev rows would be training rows). With either
    # set, the loss of the model on these rows (eval mode, no gradients, no time masks; the same
    # min/max_seconds and audio_field as training, no recognition copies) is logged before the first step
    # and after the last one of the schedule, and every ``run.eval_steps``, as ``dev_loss`` (+ the stage's part:
    # ``dev_kl_loss``, ``dev_ctc_loss`` or ``dev_lm_loss``/``dev_emotion_loss``) in logs/train.jsonl, and
    # summarised under ``dev`` in summary.json.
    dev: str = ""
    dev_split: str = ""
    dev_max_rows: int = 0  # use only the first N dev rows (0 = all)


@dataclass
class AlignSection:
    """Token-space pre-alignment (``stage: align``): CTC of the adapter output on the LLM's token embeddings."""

    __pydantic_config__ = _STRICT_KEYS

    negatives: int = (
        4096  # sampled softmax: the batch's target tokens plus N random others; 0 = whole vocabulary
    )
    time_masks: int = 2  # SpecAugment-style masks per utterance on the encoder states (0 = off)
    time_mask_frames: int = 10  # the longest mask, in encoder frames (50 per second)
    # Rows whose audio has fewer speech frames than CTC needs for their transcript: false = stop with an
    # error naming them; true = leave them out and report how many (very fast speech, long numbers)
    skip_unalignable: bool = False


@dataclass
class OptimSection:
    """AdamW with linear warm-up and linear decay to zero (docs/method.md §4)."""

    __pydantic_config__ = _STRICT_KEYS

    lr: float = 1e-4  # peak learning rate
    weight_decay: float = 0.05  # AdamW weight decay (not applied to biases and norms)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    warmup_steps: int = 1000  # optimizer steps of linear warm-up from 0 to lr
    epochs: float = 1.0  # passes over the data (a fraction stops part-way)
    max_steps: int = 0  # optimizer steps in all; 0 = from epochs; the schedule decays to zero at the end
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch = batch x grad_accum x devices)
    max_grad_norm: float = 1.0  # gradient clipping (global L2 norm); 0 = off


@dataclass
class RunSection:
    """Where outputs go, precision, checkpoints and logging."""

    __pydantic_config__ = _STRICT_KEYS

    output_dir: str = "runs/train"  # checkpoints, logs, curve and the final model (in <output_dir>/final)
    overwrite: bool = False  # allow a fresh run (no --resume) to delete checkpoints already in output_dir
    seed: int = 0  # seeds shuffling, dropout and LoRA initialisation
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (accelerate); the paper trains in bf16
    save_steps: int = 500  # write a checkpoint every N optimizer steps (0 = only at the end)
    keep_last: int = 2  # checkpoints kept on disk (older ones are deleted after a new one is complete)
    log_steps: int = 10  # log loss, learning rate and samples/s every N optimizer steps
    # Compute the dev loss (data.dev / data.dev_split) every N optimizer steps; 0 = only before the first
    # step and at the end. Needs a dev set.
    eval_steps: int = 0
    stop_after_steps: int = (
        0  # stop (as if interrupted) after N steps of this run, schedule unchanged; 0 = off
    )
    num_threads: int = (
        0  # torch CPU threads per process (0 = torch's default; 1 is fastest on a busy machine)
    )
    progress: bool = True  # show a progress bar on the main process
    plot: bool = True  # write training_curve.png at the end


@dataclass
class TrainConfig:
    """A complete training recipe (one stage)."""

    __pydantic_config__ = _STRICT_KEYS

    # "align" (token-space pre-alignment, CTC; this project's addition), "semantic" (stage 1, KL to the
    # transcript teacher) or "emotion" (stage 2)
    stage: Stage = Stage.SEMANTIC
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    align: AlignSection = field(default_factory=AlignSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        self.stage = Stage.parse(self.stage)  # built in code with the stage's word: still a Stage

    def validate(self) -> TrainConfig:
        """Check value ranges; raises :class:`UserError` naming the field."""
        checks = [
            (self.data.batching in ("duration", "count"), "data.batching must be 'duration' or 'count'"),
            (self.data.batch_size >= 1, "data.batch_size must be >= 1"),
            (self.data.batch_seconds > 0, "data.batch_seconds must be > 0"),
            (self.optim.lr > 0, "optim.lr must be > 0"),
            (self.optim.grad_accum >= 1, "optim.grad_accum must be >= 1"),
            (
                self.optim.epochs > 0 or self.optim.max_steps > 0,
                "optim.epochs or optim.max_steps must be > 0",
            ),
            (
                self.run.mixed_precision in ("no", "bf16", "fp16"),
                "run.mixed_precision must be no, bf16 or fp16",
            ),
            (self.run.keep_last >= 1, "run.keep_last must be >= 1"),
            (self.run.log_steps >= 1, "run.log_steps must be >= 1"),
            (bool(self.data.train), "data.train: no training file given (set data.train=PATH)"),
            (0.0 <= self.data.recognition_share <= 1.0, "data.recognition_share must be within 0..1"),
            (self.align.negatives >= 0, "align.negatives must be >= 0 (0 = the whole vocabulary)"),
            (
                self.align.time_masks >= 0 and self.align.time_mask_frames >= 0,
                "align time masks must be >= 0",
            ),
            (
                self.data.recognition_share == 0 or self.stage is Stage.EMOTION,
                "data.recognition_share needs stage: emotion (the rows need emotion labels)",
            ),
            (self.run.eval_steps >= 0, "run.eval_steps must be >= 0"),
            (
                not self.data.semantic_train or self.stage is Stage.EMOTION,
                "data.semantic_train needs stage: emotion (stage 1 trains on data.train itself)",
            ),
            (self.model.semantic_loss_weight >= 0, "model.semantic_loss_weight must be >= 0"),
            (
                0 <= self.model.semantic_on_policy <= 1,
                "model.semantic_on_policy must be between 0 and 1 (a share of the semantic micro-batches)",
            ),
            (
                self.model.semantic_on_policy == 0 or bool(self.data.semantic_train),
                "model.semantic_on_policy needs data.semantic_train (the rows whose speech it continues)",
            ),
            (self.model.semantic_on_policy_tokens >= 1, "model.semantic_on_policy_tokens must be >= 1"),
            (
                self.model.semantic_on_policy_temperature >= 0,
                "model.semantic_on_policy_temperature must be >= 0",
            ),
            (self.data.semantic_batch_seconds >= 0, "data.semantic_batch_seconds must be >= 0"),
            (self.data.dev_max_rows >= 0, "data.dev_max_rows must be >= 0"),
            (
                self.run.eval_steps == 0 or self.has_dev,
                "run.eval_steps needs a dev set: set data.dev=PATH or data.dev_split=dev",
            ),
            (
                not self.has_dev or not self.dev_is_train_file or bool(self.data.dev_split),
                "data.dev is the training file: set data.dev_split to the split that holds the dev rows",
            ),
            (
                not (self.has_dev and self.dev_is_train_file)
                or (bool(self.data.split) and self.data.dev_split != self.data.split),
                f"data.dev_split={self.data.dev_split!r} reads the training rows of {self.data.train or 'data.train'}"
                f" (data.split={self.data.split!r}): choose another split for the dev loss",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self

    @property
    def has_dev(self) -> bool:
        """True when a dev set is configured (data.dev or data.dev_split): the dev loss is logged."""
        return bool(self.data.dev or self.data.dev_split)

    @property
    def dev_source(self) -> str:
        """The file the dev rows come from (data.dev, else data.train)."""
        return self.data.dev or self.data.train

    @property
    def dev_is_train_file(self) -> bool:
        """True when the dev rows are read from the training file (selected by data.dev_split)."""
        if not self.data.dev:
            return True
        return Path(self.data.dev).expanduser().resolve() == Path(self.data.train).expanduser().resolve()

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of plain values (for YAML/JSON: the stage as its word, betas as a list)."""
        data: dict[str, Any] = _ADAPTER.dump_python(self, mode="json")
        return data

    @property
    def encoder_frozen(self) -> bool:
        """True when no encoder weight is trained (pre-alignment and stage 1 always; stage 2 unless
        train_encoder)."""
        return self.stage is not Stage.EMOTION or not self.model.train_encoder

    @property
    def uses_cache(self) -> bool:
        """True when encoder outputs are read from the cache instead of recomputed every step."""
        return self.data.cache_encoder and self.encoder_frozen


_ADAPTER: TypeAdapter[TrainConfig] = TypeAdapter(TrainConfig)
SECTIONS: dict[str, type[Any]] = {
    "model": ModelSection,
    "data": DataSection,
    "align": AlignSection,
    "optim": OptimSection,
    "run": RunSection,
}


def _field_names(cls: type[Any]) -> list[str]:
    return sorted(f.name for f in fields(cls))


def _config_error(exc: ValidationError) -> UserError:
    """The first problem pydantic found, as one line naming the field (``optim.lr``)."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if first["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        section = SECTIONS.get(str(first["loc"][0])) if len(first["loc"]) > 1 else TrainConfig
        known = f" (known: {', '.join(_field_names(section))})" if section is not None else ""
        return UserError(f"unknown config field {loc}{known}{more}")
    if first["type"] == "dataclass_type":
        return UserError(
            f"config section {loc or '<root>'}: expected a mapping, got {first['input']!r}{more}"
        )
    return UserError(f"config field {loc or '<root>'}: {first['msg']} (got {first['input']!r}){more}")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings to a nested dict (values parsed as YAML scalars)."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {part} is not a section")
        value = yaml.safe_load(raw) if raw.strip() else ""
        if isinstance(value, str) and _looks_numeric(value):
            value = float(value)  # PyYAML reads "1e-4" (no dot) as a string
        node[parts[-1]] = value
    return data


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe (or start from defaults when ``path`` is None) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of config sections, got {type(data).__name__}")
    data = apply_overrides(data, list(overrides or []))
    for key in SECTIONS:  # an empty section ("model:" with nothing under it) reads as None
        if data.get(key) is None:
            data.pop(key, None)
    try:
        config = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _config_error(exc) from None
    return config.validate()


def dump_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (the run's record of what it trained with)."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
