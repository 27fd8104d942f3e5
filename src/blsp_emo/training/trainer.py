"""The training loop of both stages, on accelerate: one process, DDP under torchrun, DeepSpeed or FSDP.

Reads top to bottom: build the model for the stage -> read rows -> (fill the encoder cache) -> optimizer
and schedule -> ``accelerator.prepare`` -> (resume) -> loop of micro-batches with gradient accumulation,
logging and checkpoints -> final model, curve and summary. See ``blsp_emo.training.checkpoint`` for what
a checkpoint holds and ``blsp_emo.training.config`` for every option.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from blsp_emo.errors import UserError
from blsp_emo.io import atomic_write_json
from blsp_emo.model.processor import batch_to
from blsp_emo.prompts import Stage
from blsp_emo.training import checkpoint as ckpt
from blsp_emo.training.config import TrainConfig, dump_config
from blsp_emo.training.data import TrainingCollator
from blsp_emo.training.dataset import RecognitionMix, TargetDataset, load_target_dataset
from blsp_emo.training.encoder_cache import EncoderCache, encoder_cache_prefix
from blsp_emo.training.sampler import TrainBatchSampler
from blsp_emo.training.tracking import TrainingLog, plot_training_curve, read_log

if TYPE_CHECKING:
    from accelerate.utils import FullyShardedDataParallelPlugin

log = logging.getLogger(__name__)


class TrainingDivergedError(UserError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


@dataclass
class TrainResult:
    """What a run produced."""

    final_dir: Path | None  # the trained model (None when the run stopped early via stop_after_steps)
    checkpoint: Path | None  # the newest checkpoint
    global_step: int
    samples_per_second: float  # training throughput of this invocation (all ranks together)
    losses: list[float] = field(default_factory=list)  # logged mean losses, in order
    is_main: bool = True  # this process is the main one (prints, writes logs)
    dev_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, dev loss) of this invocation


def load_start(init_from: str, adapter_output_scale: str | float = "embeddings"):
    """Load the model a run starts from: a preset, ``random-tiny``, or a checkpoint folder."""
    from blsp_emo.model import load_model
    from blsp_emo.model.loading import checkpoint_path

    # A checkpoint brings its own adapter weights: the initial gain only shapes a fresh adapter.
    fresh = {} if checkpoint_path(init_from) is not None else {"adapter_output_scale": adapter_output_scale}
    return load_model(init_from, device="cpu", dtype=torch.float32, **fresh)


def build_model(config: TrainConfig):
    """Load the starting model and set what the stage trains (docs/method.md §4). Returns (model, processor)."""
    m = config.model
    model, processor = load_start(m.init_from, m.adapter_output_scale)
    model.config.pad_to_30s = processor.pad_to_30s = m.pad_to_30s
    if m.speech_input:
        if m.speech_input == "token_bridge" and model.alignment_head is None:
            raise UserError(
                "model.speech_input=token_bridge needs a start with an alignment head (stage: align)"
            )
        model.config.speech_input = m.speech_input
    if config.stage is Stage.ALIGN:
        model.enable_alignment_head()
        model.set_trainable(adapter=True, alignment_head=True)
    elif config.stage is Stage.SEMANTIC:
        model.set_trainable(adapter=True)
    else:
        if m.lora_r > 0 and model.lora_mask is None:
            model.enable_lora(m.lora_r, m.lora_alpha, m.lora_dropout, m.lora_targets)
        model.config.emotion_loss_weight = m.emotion_loss_weight
        if m.emotion_features:
            model.set_emotion_features(m.emotion_features)
        if m.emotion_token:
            model.enable_emotion_token(processor.tokenizer)
        model.set_trainable(
            adapter=m.train_adapter, lora=m.lora_r > 0, emotion_head=True, encoder=m.train_encoder
        )
    if m.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    if config.encoder_frozen:
        model.encoder.eval()
    return model, processor


def check_alignment_room(dataset, processor, source: str, skip: bool = False) -> dict:
    """Pre-alignment needs at least as many speech frames as CTC needs for each transcript's tokens.

    Returns the frames-per-token statistics of the corpus. Rows whose audio is too short for their words
    (6.25 speech frames per second against the token count) raise :class:`UserError` naming the first
    of them, or with ``skip`` are left out and counted: ``report["rows"]`` holds the rows to train on.
    """
    from blsp_emo.audio import SAMPLE_RATE
    from blsp_emo.model.alignment import ctc_target_ids, frames_needed
    from blsp_emo.model.encoder import speech_embedding_count

    ratios, short, keep = [], [], []
    for row, seconds in zip(dataset.rows, dataset.durations):
        ids = ctc_target_ids(processor.tokenizer, row.text or "")
        frames = speech_embedding_count(int(round(seconds * SAMPLE_RATE)), processor.adapter_layers)
        if not ids or frames < frames_needed(ids):
            short.append(f"{row.id or row.audio} ({frames} frames for {frames_needed(ids)} CTC steps)")
            continue
        ratios.append(frames / len(ids))
        keep.append(row)
    if short and not skip:
        raise UserError(
            f"{source}: {len(short)} row(s) have fewer speech frames than their transcript needs for CTC "
            f"(6.25 frames per second of audio): {'; '.join(short[:5])}; set align.skip_unalignable=true "
            "to leave them out"
        )
    if not ratios:
        raise UserError(f"{source}: no row has enough speech frames for its transcript")
    summary = (
        f"pre-alignment: {len(ratios)} utterances ({len(short)} left out, too short for their words), "
        f"speech frames per target token: mean {sum(ratios) / len(ratios):.2f}, min {min(ratios):.2f}"
    )
    return {
        "frames_per_token_mean": sum(ratios) / len(ratios),
        "frames_per_token_min": min(ratios),
        "unalignable_rows_skipped": len(short),
        "summary": summary,
        "rows": keep,
    }


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices, none on biases and norm parameters."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _cpu_fsdp_plugin():
    """The launcher's FSDP settings (``accelerate launch --config_file configs/accelerate/fsdp.yaml``) for
    CPU processes (gloo).

    accelerate shards only on accelerators: its plugin refuses ``sync_module_states`` without a GPU, and its
    state turns an FSDP launch on CPU into plain multi-process DDP. Torch's FSDP itself shards on CPU, but
    broadcasts rank 0's weights (``sync_module_states``, which ``cpu_ram_efficient_loading`` needs) only
    from a GPU: on CPU every process loads the whole starting model itself (the same seed: the same
    weights), and both settings are off.
    """
    from accelerate.utils import FullyShardedDataParallelPlugin

    for name in ("FSDP_SYNC_MODULE_STATES", "FSDP_CPU_RAM_EFFICIENT_LOADING"):
        os.environ[name] = "false"  # this process only; transformers reads the second one while loading
    return FullyShardedDataParallelPlugin()


def _keep_present_layer_classes(plugin: FullyShardedDataParallelPlugin, model: torch.nn.Module) -> None:
    """Let one FSDP config name the layer classes of several LLMs (Llama, Qwen2, ...): accelerate refuses a
    listed class the model does not have, so only those present are wrapped (none present: an error)."""
    names = plugin.transformer_cls_names_to_wrap
    if not names:
        return
    present = {type(m).__name__ for m in model.modules()}
    keep = [n for n in names if n in present]
    if not keep:
        raise UserError(
            f"FSDP: none of the layer classes to wrap ({', '.join(names)}) is in the model; set "
            f"fsdp_transformer_layer_cls_to_wrap to some of: {', '.join(sorted(n for n in present if 'Layer' in n))}"
        )
    plugin.transformer_cls_names_to_wrap = keep


def _zero_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """Give each trained parameter zero AdamW moments where it has none yet.

    accelerate reads an FSDP optimizer checkpoint into the structure of the optimizer's current state: a
    fresh optimizer has none, so nothing would be loaded and a resumed run would restart its moments.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad and not optimizer.state.get(p):
                optimizer.state[p] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }


def _fresh_accelerator_state() -> None:
    """Let a second run in the same process choose its own precision (accelerate keeps one global state).

    The process group (``PartialState``) is kept; only the per-run settings are cleared.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


class Trainer:
    """One training run of one stage, configured by a :class:`TrainConfig`."""

    def __init__(self, config: TrainConfig):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, set_seed

        self.config = config
        self.out = Path(config.run.output_dir)
        if config.run.num_threads > 0:
            torch.set_num_threads(config.run.num_threads)
        _fresh_accelerator_state()
        ddp = DistributedDataParallelKwargs(find_unused_parameters=config.stage is Stage.EMOTION)
        on_cpu = not torch.cuda.is_available()
        launched = {
            k: os.environ.get(f"ACCELERATE_USE_{k}", "").lower() == "true" for k in ("FSDP", "DEEPSPEED")
        }
        cpu_fsdp = _cpu_fsdp_plugin() if on_cpu and launched["FSDP"] else None
        self._cpu_fsdp = cpu_fsdp is not None
        handlers = [ddp]
        if on_cpu and launched["DEEPSPEED"]:  # else accelerate, finding no accelerator, counts 1 process
            handlers.append(InitProcessGroupKwargs(backend="gloo"))
        self.accelerator = Accelerator(
            mixed_precision=config.run.mixed_precision,
            gradient_accumulation_steps=config.optim.grad_accum,
            kwargs_handlers=handlers,
            fsdp_plugin=cpu_fsdp,
            # accelerate only goes multi-process on CPU (gloo) when told, and then never runs DeepSpeed
            cpu=on_cpu and not launched["DEEPSPEED"],
        )
        if cpu_fsdp is not None:  # accelerate made it multi-CPU DDP: shard as the launcher asked
            from accelerate.state import PartialState
            from accelerate.utils import DistributedType

            # Both shared states: AcceleratorState copies PartialState's fields each time it is created.
            # FSDP's CPU compute device has no index ("cpu", not accelerate's "cpu:0").
            for state in (PartialState(), self.accelerator.state):
                state.distributed_type, state.device = DistributedType.FSDP, torch.device("cpu")
            self.accelerator.state.fsdp_plugin = cpu_fsdp
        set_seed(config.run.seed)
        self.main = self.accelerator.is_main_process
        self.model, self.processor = build_model(config)
        d = config.data
        self.dataset: TargetDataset | RecognitionMix = load_target_dataset(
            d.train,
            d.min_seconds,
            d.max_seconds,
            d.max_rows,
            d.split,
            require_target=config.stage is not Stage.ALIGN,
            audio_field=d.audio_field,
        )
        if config.stage is Stage.ALIGN:
            self.alignment_report = check_alignment_room(
                self.dataset, self.processor, d.train, config.align.skip_unalignable
            )
            if self.alignment_report["unalignable_rows_skipped"]:
                self.dataset = TargetDataset(self.alignment_report["rows"], require_target=False)
            if self.main:
                log.info("%s", self.alignment_report["summary"])
        self.dev_overlap, self.dev_seconds = 0, 0.0
        self.dev = self._load_dev()
        self.semantic: TargetDataset | None = None
        if d.semantic_train:  # stage 1's rows, trained beside stage 2's (config: data.semantic_train)
            self.semantic = load_target_dataset(
                d.semantic_train, d.min_seconds, d.max_seconds, 0, d.split, audio_field=d.audio_field
            )
            if self.main:
                log.info("semantic KL in stage 2: %d rows of %s", len(self.semantic), d.semantic_train)
        self.cache: EncoderCache | None = None
        self.stats_cache: EncoderCache | None = None
        if config.uses_cache:
            self.cache, self.stats_cache = self._fill_cache()
        self.emotion_prefit: dict[str, float] = {}
        if config.model.emotion_head_prefit_steps > 0:
            self.emotion_prefit = self._prefit_emotion_head(config.model.emotion_head_prefit_steps)
        if d.recognition_share > 0:  # after the cache: the copies share their utterances' encoder states
            self.dataset = RecognitionMix(self.dataset, d.recognition_share, config.run.seed)
        self.sampler, self.loader = self._make_loader()
        self.steps_per_epoch = self.sampler.batches_per_epoch() // config.optim.grad_accum
        if self.steps_per_epoch == 0:
            raise UserError(
                f"{config.data.train}: {len(self.dataset)} rows make no full optimizer step "
                f"(batch x grad_accum {config.optim.grad_accum} x {self.accelerator.num_processes} processes)"
            )
        o = config.optim
        self.total_steps = o.max_steps or max(1, math.ceil(o.epochs * self.steps_per_epoch))
        self._build_optimizer()

    # ---- set-up ------------------------------------------------------------------------------------

    def _load_dev(self) -> TargetDataset | None:
        """The held-out rows of data.dev / data.dev_split (None when no dev set is configured)."""
        cfg, d = self.config, self.config.data
        if not cfg.has_dev:
            return None
        dev = load_target_dataset(
            cfg.dev_source,
            d.min_seconds,
            d.max_seconds,
            d.dev_max_rows,
            d.dev_split,
            require_target=cfg.stage is not Stage.ALIGN,
            audio_field=d.audio_field,
        )
        self.dev_overlap = len(
            {r.audio_path.resolve() for r in dev.rows} & {r.audio_path.resolve() for r in self.dataset.rows}
        )
        if self.dev_overlap and self.main:
            log.warning("%d dev utterances are also training utterances (same audio file)", self.dev_overlap)
        if cfg.stage is Stage.ALIGN:  # rows too short for CTC would give an infinite loss: left out
            report = check_alignment_room(dev, self.processor, cfg.dev_source, skip=True)
            dev = TargetDataset(report["rows"], require_target=False)
        return dev

    def _fill_cache(self) -> tuple[EncoderCache, EncoderCache | None]:
        """Encode every utterance once (this rank's share) and store the states, and the per-layer
        statistics when the emotion head reads them; the encoder is frozen. Returns the two caches."""
        from tqdm.auto import tqdm

        cfg, acc = self.config, self.accelerator
        folder = Path(cfg.data.cache_dir or self.out / "encoder-cache")
        name = self.model.config.whisper_name
        prefix = encoder_cache_prefix(self.model.encoder, name, cfg.model.pad_to_30s)
        cache = EncoderCache(folder, prefix)
        stats_cache = EncoderCache(folder, prefix + "|layer-stats") if self.model.needs_layer_stats else None
        caches = [c for c in (cache, stats_cache) if c is not None]
        self.model.encoder.to(acc.device)
        # The dev rows are encoded too (the dev loss reads the same cache), in batches of their own:
        # batch composition changes padded encoder outputs in the last bits, and the training rows must
        # be encoded exactly as without a dev set.
        todo: list[list] = []
        for dataset in (self.dataset, self.dev, self.semantic):
            if dataset is None:
                continue
            durations = dataset.durations
            mine = [i for i in range(len(dataset)) if i % acc.num_processes == acc.process_index]
            mine.sort(key=lambda i: durations[i])  # similar lengths encode together
            missing = []
            for i in mine:  # each clip loaded once, whatever the number of caches
                audio = dataset[i]["audio"]
                if any(audio not in c for c in caches):
                    missing.append(i)
            todo += [[dataset, missing[start : start + 8]] for start in range(0, len(missing), 8)]
        total = sum(len(chunk) for _, chunk in todo)
        bar = tqdm(total=total, desc="encoder cache", disable=not (self.main and cfg.run.progress and total))
        for dataset, chunk in todo:
            audios = [dataset[i]["audio"] for i in chunk]
            feats = self.processor.audio_features(audios)
            with torch.no_grad():
                states, lengths, layer_stats = self.model.encode_speech_with_stats(
                    **{k: v.to(acc.device) for k, v in feats.items()}, stats=stats_cache is not None
                )
            for k, (audio, s, n) in enumerate(zip(audios, states, lengths)):
                cache.get_or_compute(audio, _computed(s[: int(n)].float().cpu()))
                if stats_cache is not None:
                    stats_cache.get_or_compute(audio, _computed(layer_stats[k].float().cpu()))
            bar.update(len(audios))
        bar.close()
        self.model.encoder.to("cpu")
        acc.wait_for_everyone()
        return cache, stats_cache

    def _prefit_emotion_head(self, steps: int) -> dict[str, float]:
        """Fit the layer-mixed emotion head alone (full batch, class-balanced, seeded) on the cached layer
        statistics of the labelled training clips, before the first step; returns its training accuracy and
        loss. A resumed run then loads its checkpoint's head over this one."""
        from blsp_emo.training.head_refit import fit_layer_mix_head

        head = self.model.emotion_head
        if self.stats_cache is None or head is None:
            raise UserError(
                "model.emotion_head_prefit_steps needs model.emotion_features=layer_mix and the cache"
            )
        stats, labels = [], []
        for i in range(len(self.dataset)):
            item = self.dataset[i]
            if item["emotion_id"] < 0:
                continue
            stats.append(self.stats_cache.get_or_compute(item["audio"], self._layer_stats_of))
            labels.append(int(item["emotion_id"]))
        if len(set(labels)) < 2:
            raise UserError(f"{self.config.data.train}: the emotion head prefit needs at least two emotions")
        x = torch.stack(stats).float()
        state = fit_layer_mix_head(x, labels, [steps], self.config.run.seed)[steps]
        dtype = next(head.parameters()).dtype
        head.load_state_dict({k: v.to(dtype) for k, v in state.items()})
        with torch.no_grad():
            logits = head(x.to(dtype)).float()
        target = torch.tensor(labels)
        report = {
            "steps": float(steps),
            "clips": float(len(labels)),
            "train_accuracy": float((logits.argmax(-1) == target).float().mean()),
            "train_loss": float(torch.nn.functional.cross_entropy(logits, target)),
        }
        if self.main:
            log.info("emotion head prefit: %s", report)
        return report

    def _layer_stats_of(self, audio) -> torch.Tensor:
        feats = self.processor.audio_features([audio])
        with torch.no_grad():
            return self.model.encode_speech_with_stats(**feats)[2][0].float().cpu()

    def _make_loader(self):
        d, acc = self.config.data, self.accelerator
        sampler = TrainBatchSampler(
            self.dataset.durations,
            mode=d.batching,
            batch_seconds=d.batch_seconds,
            batch_size=d.batch_size,
            num_replicas=acc.num_processes,
            rank=acc.process_index,
            seed=self.config.run.seed,
            shuffle=d.shuffle,
            multiple_of=self.config.optim.grad_accum,
        )
        collator = TrainingCollator(
            self.processor,
            self.config.stage,
            d.system_prompt,
            d.instruction,
            self.cache,
            align=self.config.align,
            stats_cache=self.stats_cache,
            seed=self.config.run.seed,
        )
        # A private generator: creating an iterator must not draw from the global RNG (exact resume).
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=collator,
            generator=torch.Generator().manual_seed(0),
        )
        self.semantic_stream: SemanticStream | None = None
        if self.semantic is not None:
            semantic_sampler = TrainBatchSampler(
                self.semantic.durations,
                mode=d.batching,
                batch_seconds=d.semantic_batch_seconds or d.batch_seconds,
                batch_size=d.batch_size,
                num_replicas=acc.num_processes,
                rank=acc.process_index,
                seed=self.config.run.seed + 1,
                shuffle=d.shuffle,
            )
            # stage 1's prompts (the default system prompt and instruction), the same encoder caches
            semantic_collator = TrainingCollator(
                self.processor, Stage.SEMANTIC, cache=self.cache, stats_cache=self.stats_cache
            )
            self.semantic_stream = SemanticStream(self.semantic, semantic_sampler, semantic_collator)
        # The dev loss: the same inputs as training, without SpecAugment-style time masks.
        self.dev_collate = None
        if self.dev is not None:
            self.dev_collate = copy.copy(collator)
            self.dev_collate.align = dataclasses.replace(self.config.align, time_masks=0)
        return sampler, loader

    def _build_optimizer(self) -> None:
        from transformers import get_linear_schedule_with_warmup

        o = self.config.optim
        optimizer = torch.optim.AdamW(
            param_groups(self.model, o.weight_decay), lr=o.lr, betas=(o.betas[0], o.betas[1]), eps=o.eps
        )
        from accelerate.utils import DistributedType

        plugin = self.accelerator.deepspeed_plugin
        if plugin is not None:  # our loader is not prepared, so DeepSpeed cannot infer the micro-batch size
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = self.config.data.batch_size
        if self.accelerator.distributed_type == DistributedType.FSDP:
            _keep_present_layer_classes(self.accelerator.state.fsdp_plugin, self.model)
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        # Not prepared: accelerate would step it once per process; this schedule counts optimizer steps.
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, min(o.warmup_steps, self.total_steps), self.total_steps
        )
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

    @property
    def unwrapped(self):
        """The model without DDP/DeepSpeed wrapping."""
        return self.accelerator.unwrap_model(self.model)

    @property
    def checkpoint_root(self) -> Path:
        """Folder holding ``checkpoint-<step>`` folders."""
        return self.out / "checkpoints"

    @property
    def _sharded(self) -> bool:
        from accelerate.utils import DistributedType

        return self.accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)

    def _gathered_state(self) -> dict[str, torch.Tensor]:
        """The whole state dict of a sharded model, on the main process (every process must call this).

        FSDP on CPU gathers without ``offload_to_cpu``: with the weights already on CPU, that option frees
        the gathered tensors before they are copied (a segmentation fault).
        """
        if self._cpu_fsdp:
            from torch.distributed.fsdp import FullStateDictConfig, StateDictType
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            config = FullStateDictConfig(offload_to_cpu=False, rank0_only=True)
            with FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT, config):
                return self.model.state_dict()
        return self.accelerator.get_state_dict(self.model)

    @torch.no_grad()
    def mean_loss(self, batch_size: int = 4) -> float:
        """Mean training loss of the current model over all rows (fixed order, this process, no update).

        A sharded model (FSDP, DeepSpeed) runs its own forward: every process must call this together."""
        model = self.model if self._sharded else self.unwrapped
        collate = self.loader.collate_fn
        total, count = 0.0, 0
        with eval_mode(model):
            for start in range(0, len(self.dataset), batch_size):
                batch = collate(
                    [self.dataset[i] for i in range(start, min(start + batch_size, len(self.dataset)))]
                )
                n = int(batch.pop("num_samples"))
                out = model(**batch_to(batch, self.accelerator.device))
                total, count = total + float(out.loss) * n, count + n
        return total / max(count, 1)

    @torch.no_grad()
    def dev_loss(self) -> dict[str, float]:
        """Loss on the dev rows: model in eval mode, no gradients, fixed batches (rows sorted by duration,
        data.batch_size per batch), mean over utterances. Every process computes it on all dev rows (the
        same forward passes on each, so sharded models stay in step). Returns ``dev_loss`` and the stage's
        part (``dev_kl_loss``, ``dev_ctc_loss``, or ``dev_lm_loss`` and ``dev_emotion_loss``)."""
        assert self.dev is not None and self.dev_collate is not None
        model = self.model if self._sharded else self.unwrapped
        durations = self.dev.durations
        order = sorted(range(len(self.dev)), key=lambda i: (durations[i], i))
        size = self.config.data.batch_size
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        with eval_mode(model):
            for start in range(0, len(order), size):
                batch = self.dev_collate([self.dev[i] for i in order[start : start + size]])
                n = int(batch.pop("num_samples"))
                with self.accelerator.autocast():
                    out = model(**batch_to(batch, self.accelerator.device))
                parts = {
                    "dev_loss": out.loss,
                    "dev_kl_loss": out.kl_loss,
                    "dev_ctc_loss": out.ctc_loss,
                    "dev_lm_loss": out.lm_loss,
                    "dev_emotion_loss": out.emotion_loss,
                }
                for key, value in parts.items():
                    if value is not None:
                        sums[key] = sums.get(key, 0.0) + float(value) * n
                        counts[key] = counts.get(key, 0) + n
        return {key: sums[key] / counts[key] for key in sums}

    def _evaluate(self, state: ckpt.TrainerState, tracker: TrainingLog | None, record: dict | None) -> float:
        """Compute the dev loss, add it to ``record`` (written by the caller) or log it as its own record."""
        started = time.perf_counter()
        values = self.dev_loss()
        self.dev_seconds += time.perf_counter() - started
        if record is not None:
            record.update(values)
        elif tracker is not None:
            tracker.write({"step": state.global_step, "epoch": state.epoch, **values})
        return values["dev_loss"]

    # ---- checkpoints -------------------------------------------------------------------------------

    def save_checkpoint(self, state: ckpt.TrainerState) -> Path:
        """Write a complete checkpoint atomically; keep the newest ``run.keep_last``."""
        acc, root = self.accelerator, self.checkpoint_root
        tmp = ckpt.temporary_dir(root, state.global_step)
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        full_state = None
        if self._sharded:  # sharded state: accelerate's own format, written by every rank, + gathered weights
            acc.save_state(str(tmp / "accelerate"))
            full_state = self._gathered_state()
        if self.main:
            optimizer = None if self._sharded else self.optimizer
            state.sampler = self.sampler.state_dict()
            ckpt.save_main_parts(tmp, self.unwrapped, optimizer, self.scheduler, state, full_state)
        ckpt.save_rng_state(tmp / f"rng_state_{acc.process_index}.safetensors")
        acc.wait_for_everyone()
        final = root / f"{ckpt.CHECKPOINT_PREFIX}{state.global_step}"
        if self.main:
            final = ckpt.finalize(tmp, root, state.global_step, self.config.run.keep_last)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, folder: Path) -> ckpt.TrainerState:
        """Restore weights, optimizer, schedule, RNG and position from a checkpoint."""
        state = ckpt.load_trainer_state(folder)
        now = (self.total_steps, self.accelerator.num_processes, self.config.optim.grad_accum)
        if (state.total_steps, state.world_size, state.grad_accum) != now:
            raise UserError(
                f"{folder}: saved by a run of {state.total_steps} steps on {state.world_size} processes with "
                f"grad_accum {state.grad_accum}, but this one has {now[0]} steps, {now[1]} processes, "
                f"grad_accum {now[2]}; resume with the same data, batching and processes, or use a new output_dir"
            )
        if self._sharded:
            from accelerate.utils import DistributedType

            if self.accelerator.distributed_type == DistributedType.FSDP:
                _zero_adam_state(self.optimizer.optimizer)
            self.accelerator.load_state(str(folder / "accelerate"))
        else:
            ckpt.load_trained_weights(self.unwrapped, folder)
            ckpt.load_optimizer(self.optimizer, folder / "optimizer.safetensors")
        self.scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))
        rng = folder / f"rng_state_{self.accelerator.process_index}.safetensors"
        if rng.is_file():
            ckpt.load_rng_state(rng)
        try:  # the rest of the epoch the checkpoint was written in, batch for batch
            self.sampler.load_state_dict(state.sampler)
        except ValueError as exc:
            raise UserError(f"{folder}: {exc}; resume with the same data and processes") from None
        state.epoch = self.sampler.epoch
        return state

    # ---- the loop ----------------------------------------------------------------------------------

    def _micro_step(self, batch: dict, window: dict, state: ckpt.TrainerState) -> None:
        """Forward, finite-loss check (all ranks agree), backward, and the optimizer step when due."""
        acc = self.accelerator
        num = batch.pop("num_samples")
        batch = batch_to(batch, acc.device)
        with acc.accumulate(self.model):
            out = self.model(**batch)
            zero = out.loss.detach() * 0
            # The stage's own loss (KL, CTC or LM) goes in one slot: a stage has exactly one of them.
            own = out.kl_loss if out.kl_loss is not None else out.ctc_loss
            parts = [out.loss.detach()] + [
                (p.detach() if p is not None else zero) for p in (own, out.lm_loss, out.emotion_loss)
            ]
            flags = torch.tensor([1.0, float(out.emotion_loss is not None), float(num)], device=acc.device)
            stats = acc.reduce(torch.cat([torch.stack(parts).float(), flags]), reduction="sum")
            if not torch.isfinite(stats[:4]).all():
                self._diverged(stats[0] / stats[4], state)
            acc.backward(out.loss)
            if self.semantic_stream is not None:
                self._semantic_micro_step(window, state)
            if acc.sync_gradients and self.config.optim.max_grad_norm > 0:
                norm = acc.clip_grad_norm_(self.trainable, self.config.optim.max_grad_norm)
                window["grad_norm"] = float(norm) if norm is not None else float("nan")
            self.optimizer.step()
            if acc.sync_gradients:
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        n_proc = stats[4]
        window["loss"] = window.get("loss", 0.0) + float(stats[0] / n_proc)
        window["stage_loss"] = window.get("stage_loss", 0.0) + float(stats[1] / n_proc)
        window["lm_loss"] = window.get("lm_loss", 0.0) + float(stats[2] / n_proc)
        if stats[5] > 0:
            window["emotion_loss"] = window.get("emotion_loss", 0.0) + float(stats[3] / stats[5])
            window["emotion_n"] = window.get("emotion_n", 0) + 1
        window["micro"] = window.get("micro", 0) + 1
        window["samples"] = window.get("samples", 0) + int(stats[6])

    def _semantic_micro_step(self, window: dict, state: ckpt.TrainerState) -> None:
        """One micro-batch of data.semantic_train as in stage 1 (KL to the LLM fed the transcript), its
        gradient weighted by model.semantic_loss_weight and added to the stage-2 micro-batch's (a forward
        and a backward of its own: DDP allows one forward per backward)."""
        acc, stream, m = self.accelerator, self.semantic_stream, self.config.model
        assert stream is not None
        n = self.semantic_micro
        if on_policy_turn(n, m.semantic_on_policy):
            batch = stream.on_policy_batch(n, lambda b: self._continue_speech(b, n))
            window["on_policy"] = window.get("on_policy", 0) + 1
        else:
            batch = stream.batch(n)
        self.semantic_micro += 1
        batch.pop("num_samples")
        out = self.model(**batch_to(batch, acc.device))
        kl = acc.reduce(out.kl_loss.detach().float().reshape(1), reduction="mean")
        if not torch.isfinite(kl).all():
            self._diverged(kl[0], state)
        weight = self.config.model.semantic_loss_weight
        acc.backward(weight * out.kl_loss)
        window["semantic_kl"] = window.get("semantic_kl", 0.0) + float(kl[0])
        window["loss"] = window.get("loss", 0.0) + weight * float(kl[0])

    def _continue_speech(self, batch: dict, n: int) -> list[tuple[str, bool]]:
        """The model's own continuations of a generation batch (model.semantic_on_policy_*): greedy, or
        sampled with a seed fixed by the run seed and micro-batch ``n``; in eval mode, without gradient.
        Returns (text, truncated by the token cap) per row."""
        from blsp_emo.model.inference import decode_reply
        from blsp_emo.model.processor import stop_token_ids
        from blsp_emo.model.types import DecodingOptions

        m, device = self.config.model, self.accelerator.device
        options = DecodingOptions(
            max_new_tokens=m.semantic_on_policy_tokens, temperature=m.semantic_on_policy_temperature
        )
        stops = stop_token_ids(self.processor.tokenizer)
        cuda = [device.index or 0] if device.type == "cuda" else []
        with eval_mode(self.unwrapped), torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.config.run.seed * 1_000_003 + n)
            ids, _ = self.unwrapped.generate(batch_to(batch, device), stops, options)
        replies = [decode_reply(self.processor.tokenizer, stops, row) for row in ids.cpu()]
        return [(text, finish == "length") for text, _, finish in replies]

    def _diverged(self, value: torch.Tensor, state: ckpt.TrainerState) -> None:
        last = ckpt.latest_checkpoint(self.checkpoint_root)
        where = f"last good checkpoint kept: {last}" if last else "no checkpoint was written yet"
        raise TrainingDivergedError(
            f"loss is {float(value)} at step {state.global_step + 1} (epoch {state.epoch}); training stopped, "
            f"{where}. Lower optim.lr or check the data, then rerun with --resume"
        )

    def _log_record(self, window: dict, state: ckpt.TrainerState, seconds: float) -> dict:
        micro = max(window.get("micro", 1), 1)
        record = {"step": state.global_step, "epoch": state.epoch, "loss": window["loss"] / micro}
        if self.config.stage is Stage.SEMANTIC:
            record["kl_loss"] = window["stage_loss"] / micro
        elif self.config.stage is Stage.ALIGN:
            record["ctc_loss"] = window["stage_loss"] / micro
        else:
            record["lm_loss"] = window["lm_loss"] / micro
            if "semantic_kl" in window:
                record["kl_loss"] = window["semantic_kl"] / micro
                if window.get("on_policy"):  # the share of semantic micro-batches on the model's own replies
                    record["on_policy"] = window["on_policy"] / micro
            if window.get("emotion_n"):
                record["emotion_loss"] = window["emotion_loss"] / window["emotion_n"]
        record["lr"] = self.scheduler.get_last_lr()[0]
        record["grad_norm"] = window.get("grad_norm", float("nan"))
        record["samples_per_s"] = window["samples"] / max(seconds, 1e-9)
        record["samples_seen"] = state.samples_seen
        record["elapsed_s"] = round(state.elapsed_seconds, 2)
        return record

    def _resume_or_start(self, resume: bool) -> tuple[ckpt.TrainerState, Path | None]:
        state = ckpt.TrainerState(
            total_steps=self.total_steps,
            world_size=self.accelerator.num_processes,
            grad_accum=self.config.optim.grad_accum,
        )
        latest = ckpt.latest_checkpoint(self.checkpoint_root) if resume else None
        if resume and latest is None:
            log.warning("--resume: no checkpoint under %s; starting from the beginning", self.checkpoint_root)
        if latest is not None:
            state = self.load_checkpoint(latest)
            log.info("resumed from %s (step %d of %d)", latest, state.global_step, self.total_steps)
            return state, latest
        self.sampler.set_epoch(0)
        if ckpt.checkpoint_dirs(self.checkpoint_root) and not self.config.run.overwrite:
            raise UserError(
                f"{self.checkpoint_root} holds checkpoints of an earlier run: pass --resume to continue it, "
                "or run.overwrite=true to start over (deletes them), or choose another run.output_dir"
            )
        elif self.main and self.checkpoint_root.exists():
            shutil.rmtree(self.checkpoint_root)  # a fresh run must never resume from an older run's files
        return state, latest

    def fit(self, resume: bool = False) -> TrainResult:
        """Train to the end of the schedule (or ``run.stop_after_steps``); returns what was produced."""
        from tqdm.auto import tqdm

        cfg, acc = self.config, self.accelerator
        state, last_saved = self._resume_or_start(resume)
        # the semantic stream's place follows the micro-batches trained (checkpoints fall on step ends)
        self.semantic_micro = state.global_step * cfg.optim.grad_accum
        tracker = None
        if self.main:
            tracker = TrainingLog(self.out / "logs", resume_step=state.global_step if last_saved else None)
            dump_config(cfg, self.out / "config.yaml")
        acc.wait_for_everyone()
        stop_at = state.global_step + cfg.run.stop_after_steps if cfg.run.stop_after_steps else None
        bar = tqdm(
            total=self.total_steps,
            initial=state.global_step,
            desc=f"train {cfg.stage}",
            disable=not (self.main and cfg.run.progress),
            dynamic_ncols=True,
        )
        losses: list[float] = []
        dev_losses: list[tuple[int, float]] = []
        done = state.global_step >= self.total_steps
        if self.dev is not None and state.global_step == 0 and not done:  # the start of the dev curve
            dev_losses.append((0, self._evaluate(state, tracker, None)))
        self.dev_seconds = 0.0  # dev time inside the loop, taken out of the throughput
        run_start, run_samples, base_elapsed = time.perf_counter(), 0, state.elapsed_seconds
        window: dict = {}
        window_start = time.perf_counter()
        try:
            while not done:
                for batch in self.loader:  # the sampler's epoch, from its position (resume: mid-epoch)
                    self._micro_step(batch, window, state)
                    if not acc.sync_gradients:
                        continue
                    state.global_step += 1
                    state.samples_seen += window["samples"] - window.get("counted", 0)
                    run_samples += window["samples"] - window.get("counted", 0)
                    window["counted"] = window["samples"]
                    state.elapsed_seconds = base_elapsed + time.perf_counter() - run_start
                    bar.update(1)
                    finished = state.global_step >= self.total_steps
                    evaluate = self.dev is not None and (
                        finished or (cfg.run.eval_steps and state.global_step % cfg.run.eval_steps == 0)
                    )
                    if state.global_step % cfg.run.log_steps == 0 or finished:
                        record = self._log_record(window, state, time.perf_counter() - window_start)
                        losses.append(record["loss"])
                        if evaluate:  # in the same record, after its samples/s was measured
                            dev_losses.append((state.global_step, self._evaluate(state, tracker, record)))
                        bar.set_postfix(
                            loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_s']:.2f}"
                        )
                        if tracker is not None:
                            tracker.write(record)
                        window, window_start = {}, time.perf_counter()
                    elif evaluate:
                        eval_start = time.perf_counter()
                        dev_losses.append((state.global_step, self._evaluate(state, tracker, None)))
                        window_start += time.perf_counter() - eval_start  # not training time
                    stopping = stop_at is not None and state.global_step >= stop_at
                    if (
                        finished
                        or stopping
                        or (cfg.run.save_steps and state.global_step % cfg.run.save_steps == 0)
                    ):
                        last_saved = self.save_checkpoint(state)
                    if finished or stopping:
                        done = True
                        break
                if not done:
                    self.sampler.set_epoch(self.sampler.epoch + 1)
                    state.epoch = self.sampler.epoch
        finally:
            bar.close()
            if tracker is not None:
                tracker.close()
        rate = run_samples / max(time.perf_counter() - run_start - self.dev_seconds, 1e-9)
        result = self._finish(state, last_saved, losses, rate)
        result.dev_losses = dev_losses
        return result

    def _dev_summary(self) -> dict:
        """summary.json's ``dev``: the dev set and its losses as logged (all invocations of a resumed run)."""
        logged = (
            read_log(self.out / "logs" / "train.jsonl")
            if (self.out / "logs" / "train.jsonl").is_file()
            else []
        )
        curve = [(r["step"], r["dev_loss"]) for r in logged if r.get("dev_loss") is not None]
        assert self.dev is not None
        summary: dict[str, Any] = {
            "source": self.config.dev_source,
            "split": self.config.data.dev_split or None,
            "rows": len(self.dev),
            "overlap_with_train": self.dev_overlap,
            "eval_steps": self.config.run.eval_steps,
            "evaluations": len(curve),
        }
        if curve:
            best = min(curve, key=lambda c: c[1])
            summary.update(
                initial_loss=_digits(curve[0][1]) if curve[0][0] == 0 else None,
                final_loss=_digits(curve[-1][1]),
                final_step=curve[-1][0],
                best_loss=_digits(best[1]),
                best_step=best[0],
            )
        return summary

    def _finish(
        self, state: ckpt.TrainerState, last_saved: Path | None, losses: list[float], rate: float
    ) -> TrainResult:
        """Write the final model, the curve and a summary when the schedule is complete."""
        final_dir = None
        if state.global_step >= self.total_steps:
            final_dir = self.out / "final"
            full_state = self._gathered_state() if self._sharded else None
            if self.main:
                tmp = self.out / ".final.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                ckpt.save_trained_parts(tmp, self.unwrapped, full_state)
                shutil.rmtree(final_dir, ignore_errors=True)
                tmp.rename(final_dir)
        if self.main:
            if self.config.run.plot:
                plot_training_curve(
                    self.out / "logs" / "train.jsonl",
                    self.out / "training_curve.png",
                    f"stage {self.config.stage} ({Path(self.config.data.train).name})",
                )
            atomic_write_json(
                self.out / "summary.json",
                {
                    "stage": self.config.stage,
                    "global_step": state.global_step,
                    "total_steps": self.total_steps,
                    "samples_seen": state.samples_seen,
                    "train_seconds": round(state.elapsed_seconds, 2),
                    "samples_per_s_this_run": round(rate, 3),
                    "final_dir": str(final_dir) if final_dir else None,
                    "checkpoint": str(last_saved) if last_saved else None,
                    "processes": self.accelerator.num_processes,
                    **(
                        {
                            k: round(v, 3)
                            for k, v in self.alignment_report.items()
                            if k not in ("summary", "rows")
                        }
                        if self.config.stage is Stage.ALIGN
                        else {}
                    ),
                    **({"dev": self._dev_summary()} if self.dev is not None else {}),
                    **({"emotion_head_prefit": self.emotion_prefit} if self.emotion_prefit else {}),
                    **(
                        {"semantic_rows": len(self.semantic), "semantic_micro_batches": self.semantic_micro}
                        if self.semantic is not None
                        else {}
                    ),
                },
            )
        self.accelerator.wait_for_everyone()
        return TrainResult(final_dir, last_saved, state.global_step, rate, losses, self.main)


class SemanticStream:
    """Stage 1's rows as an endless stream of micro-batches beside stage 2's (data.semantic_train).

    Micro-batch ``n`` is a pure function of ``n`` (epoch ``n // per_epoch`` of the sampler, then its place in
    it), so a resumed run continues the stream exactly where the checkpoint's step left it.
    """

    def __init__(self, dataset: TargetDataset, sampler: TrainBatchSampler, collator: TrainingCollator):
        self.dataset, self.sampler, self.collator = dataset, sampler, collator
        self.per_epoch = sampler.batches_per_epoch()
        if self.per_epoch == 0:
            raise UserError(f"data.semantic_train: {len(dataset)} rows make no micro-batch on every process")
        self._epoch: int | None = None
        self._batches: list[list[int]] = []

    def indices(self, n: int) -> list[int]:
        """The dataset rows of micro-batch ``n``."""
        epoch, k = divmod(n, self.per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._batches = epoch, self.sampler.epoch_batches()
        return self._batches[k]

    def items(self, n: int) -> list[dict]:
        """The dataset items of micro-batch ``n``."""
        return [self.dataset[i] for i in self.indices(n)]

    def batch(self, n: int) -> dict:
        """Micro-batch ``n``, collated as stage 1 (teacher inputs included)."""
        return self.collator(self.items(n))

    def on_policy_batch(self, n: int, continue_speech: Callable[[dict], list[tuple[str, bool]]]) -> dict:
        """Micro-batch ``n`` with the student's own continuations as the targets: ``continue_speech`` gets
        the student's generation batch and returns (text, truncated) per row; the teacher is fed the
        transcript and that same text, as in :meth:`batch`."""
        items = self.items(n)
        replies = continue_speech(self.collator.generation_batch(items))
        for item, (text, truncated) in zip(items, replies, strict=True):
            item.update(target=text, truncated=truncated)
        return self.collator(items)


def on_policy_turn(n: int, share: float) -> bool:
    """Whether micro-batch ``n`` of the semantic stream is on-policy: ``share`` of them, evenly spread
    (1 of 2 at 0.5) and a pure function of ``n``, so a resumed run makes the same choices."""
    return math.floor((n + 1) * share + 1e-9) > math.floor(n * share + 1e-9)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """The model in eval mode (no dropout) for the block; every module's own mode restored after (a
    frozen encoder stays in eval mode)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _computed(tensor: torch.Tensor) -> Callable[[np.ndarray], torch.Tensor]:
    """An encoder-cache ``compute`` that hands back a tensor computed already (in a batch)."""
    return lambda _audio: tensor


def _digits(value: float) -> float:
    """Six significant digits (losses of tiny models are far below 1e-3)."""
    return float(f"{value:.6g}")


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Run one training stage as configured (see ``configs/*.yaml``)."""
    return Trainer(config).fit(resume=resume)
