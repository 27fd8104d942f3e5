"""``BlspEmoModel``: Whisper encoder -> adapter -> chat LLM, with partial LoRA and an emotion head.

One function, :meth:`BlspEmoModel.embed_inputs`, splices speech embeddings into the text embeddings at
the ``SPEECH_TOKEN_ID`` slots; training, generation and multi-turn chat all go through it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, LogitsProcessorList, PreTrainedModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import ModelOutput

from blsp_emo.model.adapter import (
    EmotionHead,
    EmotionToken,
    LayerMixEmotionHead,
    SpeechAdapter,
    append_per_segment,
)
from blsp_emo.model.alignment import (
    TokenAlignmentHead,
    bridge_to_tokens,
    ctc_alignment_loss,
    greedy_ctc_ids,
    resize_speech_slots,
)
from blsp_emo.model.configuration import BlspEmoConfig
from blsp_emo.model.encoder import (
    encode_windows_with_stats,
    layer_statistics,
    merge_windows,
    num_layer_states,
)
from blsp_emo.model.plora import LoraMask, apply_partial_lora, lora_parameters
from blsp_emo.model.processor import IGNORE_INDEX, SPEECH_TOKEN_ID, BlspEmoProcessor, batch_to
from blsp_emo.model.repetition import logits_processors
from blsp_emo.model.types import PLAIN, DecodingOptions
from blsp_emo.prompts import EMOTIONS

WEIGHTS_NAME = "model.safetensors"
# What the LLM gets for speech: the adapter's output, or (after pre-alignment) the token-space bridge.
SPEECH_INPUTS = ("adapter", "token_bridge")
EMOTION_FEATURES = ("adapter", "layer_mix")  # what the emotion head reads (BlspEmoConfig.emotion_features)
# Keyword arguments that transformers' AutoModel forwards to from_pretrained for hub downloads; a blsp-emo
# checkpoint is resolved by sources.checkpoint_folder() instead.
HUB_LOAD_KWARGS = (
    "cache_dir", "force_download", "local_files_only", "token", "proxies", "subfolder", "_from_auto",
    "_commit_hash", "code_revision", "adapter_kwargs", "attn_implementation",
)  # fmt: skip
# The precisions a checkpoint can be loaded in or exported to, by name.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def torch_dtype(name: str) -> torch.dtype:
    """The ``torch.dtype`` called ``name`` (one of :data:`DTYPES`); another name raises ``ValueError``."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}") from None


def write_checkpoint(
    folder: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    config: dict,
    dtype: torch.dtype | None = None,
) -> None:
    """Write a blsp-emo checkpoint folder: the trained-parts ``tensors`` as safetensors (floating-point
    ones cast to ``dtype`` when given) and ``config``; each file is written aside and renamed into place."""
    from safetensors.torch import save_file

    from blsp_emo.io import atomic_path, atomic_write_json
    from blsp_emo.model.portable import portable_config

    folder = Path(folder)
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[name] = tensor.contiguous().cpu()
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(out, str(tmp), metadata={"format": "pt", "blsp_emo": "trained-parts"})
    atomic_write_json(folder / "config.json", portable_config(config), sort_keys=True)


def encoder_from_config(config: BlspEmoConfig) -> WhisperEncoder:
    """A Whisper encoder with random weights, built from ``config.encoder_config``."""
    whisper = config.whisper_encoder_config()
    if whisper is None:
        raise ValueError(
            f"the config names its Whisper ({config.whisper_name!r}) but describes no encoder "
            "(encoder_config): pass the encoder module, or load the model with blsp_emo.model.load_model "
            "or BlspEmoModel.from_pretrained, which read the base weights"
        )
    return WhisperEncoder(whisper)


def llm_from_config(config: BlspEmoConfig) -> PreTrainedModel:
    """A causal LM with random weights, built from ``config.llm_config``."""
    llm = config.causal_lm_config()
    if llm is None:
        raise ValueError(
            f"the config names its LLM ({config.llm_name!r}) but describes no LLM (llm_config): pass the "
            "LLM module, or load the model with blsp_emo.model.load_model or BlspEmoModel.from_pretrained, "
            "which read the base weights"
        )
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    if type(llm) in MODEL_FOR_CAUSAL_LM_MAPPING:
        # the class itself, not from_config: under DeepSpeed ZeRO-3, from_config would partition the
        # weights while they are built, and the adapter's initial gain reads the token embeddings
        model_class: type[PreTrainedModel] = MODEL_FOR_CAUSAL_LM_MAPPING[type(llm)]  # type: ignore[assignment]
        return model_class(llm)
    return AutoModelForCausalLM.from_config(llm, trust_remote_code=config.trust_remote_code)


def adapter_output_gain(scale: str | float, llm: PreTrainedModel) -> float:
    """The initial LayerNorm gain of the adapter: ``"embeddings"`` = the RMS of the LLM's token embeddings.

    A unit-gain LayerNorm makes every speech embedding about sqrt(llm_dim) long: 7.5x the length of
    SmolLM2's text embeddings (24 vs 3.2), so the speech swamps the prompt around it; starting at the
    embeddings' own scale lets stage 1 spend its steps on content instead of on shrinking the gain.
    """
    if scale == "embeddings":
        table = llm.get_input_embeddings()
        if not isinstance(table, nn.Embedding):
            raise TypeError(f"the LLM's input embeddings are a {type(table).__name__}, not an nn.Embedding")
        return float(table.weight.detach().float().pow(2).mean().sqrt())
    try:
        return float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"adapter_output_scale must be 'embeddings' or a number, got {scale!r}") from None


@dataclass
class BlspEmoOutput(ModelOutput):
    """Losses and logits of a forward pass. ``logits`` are at response positions only when labels are given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    kl_loss: torch.Tensor | None = None
    ctc_loss: torch.Tensor | None = None
    emotion_loss: torch.Tensor | None = None
    emotion_logits: torch.Tensor | None = None


def kl_distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0
) -> torch.Tensor:
    """KL(teacher || student) with temperature on both sides and no T^2 factor, averaged over tokens."""
    return nn.functional.kl_div(
        nn.functional.log_softmax(student.float() / temperature, dim=-1),
        nn.functional.softmax(teacher.float() / temperature, dim=-1),
        reduction="batchmean",
    )


class BlspEmoModel(PreTrainedModel):
    """A BLSP-Emo speech-language model built on any Whisper encoder and any chat LLM."""

    config_class = BlspEmoConfig
    base_model_prefix = "blsp_emo"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    config: BlspEmoConfig

    def __init__(
        self, config: BlspEmoConfig, encoder: WhisperEncoder | None = None, llm: PreTrainedModel | None = None
    ) -> None:
        """Build the model from ``config``: the given base modules (a transformers ``WhisperEncoder`` and a
        causal LM), else ones built from ``config.encoder_config`` / ``config.llm_config`` with random
        weights; the adapter, heads and partial LoRA are new. Pretrained bases are read by
        :meth:`from_pretrained` and :func:`blsp_emo.model.load_model`."""
        super().__init__(config)
        self.encoder: WhisperEncoder = encoder if encoder is not None else encoder_from_config(config)
        self.llm: PreTrainedModel = llm if llm is not None else llm_from_config(config)
        llm_dim = self.llm_dim
        self.adapter = SpeechAdapter(
            self.encoder_dim, llm_dim, config.adapter_bottleneck, config.adapter_layers
        )
        with torch.no_grad():
            self.adapter.norm.weight.fill_(adapter_output_gain(config.adapter_output_scale, self.llm))
        self.emotion_head: nn.Module | None = self._new_emotion_head() if config.use_emotion_head else None
        self.alignment_head = TokenAlignmentHead(llm_dim) if config.alignment_head else None
        self.emotion_token: EmotionToken | None = None
        if config.emotion_token:
            if self.emotion_head is None:
                raise ValueError("emotion_token needs the emotion head (use_emotion_head)")
            self.emotion_token = EmotionToken(config.num_emotions, llm_dim)
        if config.speech_input not in SPEECH_INPUTS:
            raise ValueError(
                f"speech_input must be one of {', '.join(SPEECH_INPUTS)}, got {config.speech_input!r}"
            )
        if config.speech_input == "token_bridge" and self.alignment_head is None:
            raise ValueError(
                "speech_input 'token_bridge' needs the alignment head (train a pre-alignment stage)"
            )
        self.lora_mask: LoraMask | None = None
        if config.lora_r > 0:
            self._wrap_lora()
        self.post_init()

    # ---- structure ---------------------------------------------------------------------------------

    @property
    def encoder_dim(self) -> int:
        """Width of the encoder's states (Whisper's ``d_model``)."""
        return int(self.encoder.config.d_model)

    @property
    def llm_dim(self) -> int:
        """Width of the LLM's token embeddings."""
        return int(self.token_embeddings().embedding_dim)

    def token_embeddings(self) -> nn.Embedding:
        """The LLM's input token-embedding table."""
        table = self.llm.get_input_embeddings()
        if not isinstance(table, nn.Embedding):
            raise TypeError(f"the LLM's input embeddings are a {type(table).__name__}, not an nn.Embedding")
        return table

    def output_head(self) -> nn.Module:
        """The LLM's output projection (hidden states -> token logits)."""
        head = self.llm.get_output_embeddings()
        if head is None:
            raise TypeError(f"the LLM ({type(self.llm).__name__}) has no output projection")
        return head

    @contextmanager
    def speech_positions(self, mask: torch.Tensor | None) -> Iterator[None]:
        """Within the block, partial LoRA acts at the True positions of ``mask`` (B, T) and nowhere else
        (None, or a mask with no True: nowhere); the previous setting is restored on leaving the block,
        exceptions included. A model without LoRA ignores it."""
        if self.lora_mask is None:
            yield
            return
        with self.lora_mask.positions(mask if mask is not None and bool(mask.any()) else None):
            yield

    def _checkpoint_contexts(self) -> tuple[AbstractContextManager[None], AbstractContextManager[None]]:
        """``torch.utils.checkpoint``'s ``context_fn``: a recomputed layer (backward pass) sees the LoRA
        speech positions its forward pass saw, though the block that set them has ended."""
        if self.lora_mask is None:
            return nullcontext(), nullcontext()
        return nullcontext(), self.lora_mask.positions(self.lora_mask.mask)

    def _wrap_lora(self) -> None:
        c = self.config
        self.lora_mask = apply_partial_lora(self.llm, c.lora_r, c.lora_alpha, c.lora_dropout, c.lora_targets)

    def enable_lora(self, r: int = 16, alpha: float = 16.0, dropout: float = 0.05, targets="auto") -> None:
        """Add partial LoRA to the LLM (stage 2 starting from a stage-1 checkpoint)."""
        if self.lora_mask is not None:
            raise ValueError("partial LoRA is already enabled")
        self.config.lora_r, self.config.lora_alpha = r, alpha
        self.config.lora_dropout, self.config.lora_targets = dropout, targets
        self._wrap_lora()

    def _init_weights(self, module: nn.Module) -> None:  # base models come pretrained; ours init themselves
        pass

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None, **_: Any
    ) -> None:
        """Enable activation checkpointing in the LLM (the encoder, small next to it, is not checkpointed).

        ``gradient_checkpointing_kwargs`` go to ``torch.utils.checkpoint`` (default: non-reentrant); a
        non-reentrant checkpoint gets a ``context_fn`` that gives each recomputed layer the partial-LoRA
        speech positions of its forward pass."""
        kwargs = dict(gradient_checkpointing_kwargs or {"use_reentrant": False})
        if not kwargs.get("use_reentrant", True) and "context_fn" not in kwargs:
            kwargs["context_fn"] = self._checkpoint_contexts
        if hasattr(self.llm, "activation_checkpointing_enable"):  # the name of later transformers 5 releases
            self.llm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self.llm.enable_input_require_grads()

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The parts a checkpoint stores: adapter, emotion head, LoRA, and the encoder if it was trained."""
        keep: dict[str, torch.Tensor] = {}
        for name, tensor in self.state_dict().items():
            if (
                name.startswith(("adapter.", "emotion_head.", "alignment_head.", "emotion_token."))
                or ".lora_A." in name
                or ".lora_B." in name
            ):
                keep[name] = tensor
            elif name.startswith("encoder.") and self.config.encoder_trained:
                keep[name] = tensor
        return keep

    def _new_emotion_head(self) -> nn.Module:
        c = self.config
        head: nn.Module
        if c.emotion_features not in EMOTION_FEATURES:
            raise ValueError(
                f"emotion_features must be one of {', '.join(EMOTION_FEATURES)}, got {c.emotion_features!r}"
            )
        if c.emotion_features == "layer_mix":
            head = LayerMixEmotionHead(num_layer_states(self.encoder), self.encoder_dim, c.num_emotions)
        else:
            head = EmotionHead(self.adapter.norm.weight.shape[0], c.num_emotions)
        return head.to(self.adapter.norm.weight.device)

    def set_emotion_features(self, features: str) -> None:
        """Make the emotion head read ``features`` ("adapter" or "layer_mix"); a change starts a fresh head."""
        if features != self.config.emotion_features or self.emotion_head is None:
            self.config.emotion_features = features
            self.config.use_emotion_head = True
            self.emotion_head = self._new_emotion_head()

    def enable_emotion_token(self, tokenizer: Any = None) -> None:
        """Let the LLM read the emotion the head hears as one embedding after each speech segment
        (``config.emotion_token``). A new table starts from the LLM's mean embedding of each emotion word's
        tokens (``tokenizer`` given, five-class head), else from small random vectors at the embeddings'
        scale; a model that has the token keeps its own."""
        if self.emotion_token is not None:
            return
        if self.emotion_head is None:
            raise ValueError("the emotion token needs the emotion head")
        table = self.token_embeddings().weight.detach()
        token = EmotionToken(self.config.num_emotions, self.llm_dim).to(device=table.device)
        labels = dict(enumerate(EMOTIONS)) if self.config.num_emotions == len(EMOTIONS) else {}
        rms = adapter_output_gain("embeddings", self.llm)
        with torch.no_grad():
            for k in range(self.config.num_emotions):
                word = labels.get(k)
                ids = tokenizer.encode(" " + word, add_special_tokens=False) if tokenizer and word else []
                if ids:
                    token.table[k] = table[ids].float().mean(0)
                else:
                    token.table[k] = torch.randn(self.llm_dim, device=table.device) * rms
        self.emotion_token = token.to(dtype=self.adapter.norm.weight.dtype)
        self.config.emotion_token = True

    @property
    def needs_layer_stats(self) -> bool:
        """True when the emotion head reads the encoder's per-layer statistics."""
        return self.emotion_head is not None and self.config.emotion_features == "layer_mix"

    def enable_alignment_head(self) -> None:
        """Add the token-space pre-alignment head (a fresh one; a checkpoint that has one keeps its own)."""
        if self.alignment_head is None:
            device = self.adapter.norm.weight.device
            self.alignment_head = TokenAlignmentHead(self.adapter.norm.weight.shape[0]).to(device)
            self.config.alignment_head = True

    def set_trainable(
        self,
        adapter: bool = True,
        lora: bool = False,
        emotion_head: bool = False,
        encoder: bool = False,
        alignment_head: bool = False,
    ):
        """Freeze everything, then unfreeze the named parts (the emotion token's table trains with the
        emotion head); returns the trainable parameter count."""
        self.requires_grad_(False)
        self.adapter.requires_grad_(adapter)
        if self.emotion_token is not None:
            self.emotion_token.requires_grad_(emotion_head)
        if self.alignment_head is not None:
            self.alignment_head.requires_grad_(alignment_head)
        if self.emotion_head is not None:
            self.emotion_head.requires_grad_(emotion_head)
        for p in lora_parameters(self.llm):
            p.requires_grad_(lora)
        self.encoder.requires_grad_(encoder)
        self.config.encoder_trained = self.config.encoder_trained or encoder
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ---- speech ------------------------------------------------------------------------------------

    def encode_speech(
        self,
        input_features: torch.Tensor,
        feature_lengths: torch.Tensor,
        window_segment: torch.Tensor | None = None,
        **_: object,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mel windows -> encoder states per segment (S, T, D) and their lengths (S,)."""
        states, lengths, _stats = self.encode_speech_with_stats(
            input_features, feature_lengths, window_segment, stats=False
        )
        return states, lengths

    def encode_speech_with_stats(
        self,
        input_features: torch.Tensor,
        feature_lengths: torch.Tensor,
        window_segment: torch.Tensor | None = None,
        stats: bool = True,
        **_: object,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """As :meth:`encode_speech`, plus each segment's layer statistics (S, L, 2 * D) when ``stats``."""
        dtype = next(self.encoder.parameters()).dtype
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(grad):
            states, lengths, sums = encode_windows_with_stats(
                self.encoder, input_features.to(dtype), feature_lengths, self.config.pad_to_30s, stats
            )
        layer_stats = None if sums is None else layer_statistics(sums, lengths, window_segment)
        if window_segment is not None:
            num_segments = int(window_segment.max()) + 1
            if num_segments != states.shape[0]:
                states, lengths = merge_windows(states, lengths, window_segment, num_segments)
        return states, lengths, layer_stats

    def speech_embeddings(self, encoder_states: torch.Tensor, encoder_lengths: torch.Tensor):
        """Encoder states -> speech embeddings in the LLM's space (S, T', D_llm) and lengths (S,)."""
        dtype = next(self.adapter.parameters()).dtype
        return self.adapter(encoder_states.to(dtype), encoder_lengths)

    def embed_inputs(
        self, input_ids: torch.Tensor, speech: torch.Tensor | None, speech_lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text embeddings with speech embeddings written into the ``SPEECH_TOKEN_ID`` slots, in order.

        Returns ``inputs_embeds`` (B, T, D) and the boolean speech-position mask (B, T).
        """
        slots = input_ids == SPEECH_TOKEN_ID
        embeds = self.token_embeddings()(input_ids.masked_fill(slots, 0))
        n_slots = int(slots.sum())
        if n_slots == 0:
            return embeds, slots
        if speech is None or speech_lengths is None:
            raise ValueError(f"input has {n_slots} speech slots but no speech was given")
        flat = torch.cat([speech[i, : int(n)] for i, n in enumerate(speech_lengths)], dim=0)
        if flat.shape[0] != n_slots:
            raise ValueError(f"{flat.shape[0]} speech embeddings for {n_slots} speech slots in the prompt")
        embeds = embeds.masked_scatter(slots[..., None], flat.to(embeds.dtype))
        return embeds, slots

    def prepare_embeddings(
        self, batch: dict
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """From a processor batch (or cached encoder states) to LLM input embeddings.

        Returns ``(inputs_embeds, speech_mask, speech, speech_lengths)``; ``speech`` is the adapter's
        output (what the emotion head reads). With ``config.speech_input == "token_bridge"`` the LLM gets
        one embedding per token the alignment head hears instead (``alignment.bridge_to_tokens``); with
        ``config.emotion_token`` each segment gets one more embedding, the emotion the head hears (its
        logits are kept in ``batch["emotion_head_logits"]`` for :meth:`emotion_logits`). Either changes
        the slot counts, so ``batch["input_ids"]``, ``["attention_mask"]`` and ``["labels"]`` are
        replaced in the dict by their re-laid versions.
        """
        speech: torch.Tensor | None = None
        lengths: torch.Tensor | None = None
        if batch.get("encoder_states") is not None or batch.get("input_features") is not None:
            speech, lengths = self.speech_from_batch(batch)
        llm_speech, llm_lengths = speech, lengths
        if speech is not None and lengths is not None:
            bridged: tuple[torch.Tensor, torch.Tensor] = (speech, lengths)
            if self.config.speech_input == "token_bridge":
                table = self.token_embeddings().weight
                bridged = bridge_to_tokens(self.alignment_logits(speech), lengths, table)
            if self.emotion_token is not None:
                logits = self.emotion_logits(batch, speech, lengths)
                batch["emotion_head_logits"] = logits
                heard = self.emotion_token(logits.float().softmax(-1))
                bridged = append_per_segment(*bridged, heard)
            llm_speech, llm_lengths = bridged
        if lengths is not None and llm_lengths is not None and llm_lengths is not lengths:
            ids, mask, labels = resize_speech_slots(
                batch["input_ids"], batch["attention_mask"], batch.get("labels"), lengths, llm_lengths
            )
            batch.update(input_ids=ids, attention_mask=mask)
            if labels is not None:
                batch["labels"] = labels
        embeds, mask = self.embed_inputs(batch["input_ids"], llm_speech, llm_lengths)
        return embeds, mask, speech, lengths

    def _llm_hidden(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The LLM's last hidden states (partial LoRA where :meth:`speech_positions` says)."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.llm.base_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids
        )
        return out.last_hidden_state

    def _response_logits(
        self, hidden: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at the positions that predict response tokens, and those tokens (flattened)."""
        select = labels[:, 1:] != IGNORE_INDEX
        h = hidden[:, :-1][select]
        return self.output_head()(h), labels[:, 1:][select]

    # ---- forward -----------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        teacher_input_ids: torch.Tensor | None = None,
        teacher_attention_mask: torch.Tensor | None = None,
        teacher_labels: torch.Tensor | None = None,
        emotion_labels: torch.Tensor | None = None,
        ctc_targets: list[list[int]] | None = None,
        ctc_candidates: torch.Tensor | None = None,
        **speech: torch.Tensor,
    ) -> BlspEmoOutput:
        """Losses of both stages.

        Stage 1 (teacher inputs given): KL(teacher || student) at T = ``config.kl_temperature`` over the
        response positions; the teacher is the same LLM fed the transcript, without gradient or LoRA.
        Stage 2 (labels, no teacher): cross-entropy on response tokens, plus the emotion-head
        cross-entropy (weight ``config.emotion_loss_weight``) when ``emotion_labels`` (per speech
        segment, -1 = unknown) are given. ``speech`` holds the processor's audio fields or cached
        ``encoder_states``/``encoder_lengths``.
        Pre-alignment (``ctc_targets`` given: LLM token ids per utterance): CTC of the speech embeddings
        against the LLM's token embeddings, optionally over ``ctc_candidates`` only; no LLM pass.
        """
        if ctc_targets is not None:
            return self.alignment_loss(ctc_targets, ctc_candidates, **speech)
        if input_ids is None or attention_mask is None:
            raise ValueError("input_ids and attention_mask are required (unless ctc_targets are given)")
        inputs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            **speech,
        }
        embeds, speech_mask, speech_emb, speech_lengths = self.prepare_embeddings(inputs)
        attention_mask, labels = inputs["attention_mask"], inputs["labels"]  # re-laid in token-bridge mode
        with self.speech_positions(speech_mask):
            hidden = self._llm_hidden(embeds, attention_mask)
        if labels is None:
            return BlspEmoOutput(logits=self.output_head()(hidden))
        logits, targets = self._response_logits(hidden, labels)
        out = BlspEmoOutput(logits=logits)
        if teacher_input_ids is not None:
            if teacher_attention_mask is None or teacher_labels is None:
                raise ValueError("teacher_input_ids need teacher_attention_mask and teacher_labels")
            with torch.no_grad(), self.speech_positions(None):  # the teacher is the plain LLM
                t_embeds, _ = self.embed_inputs(teacher_input_ids, None, None)
                t_hidden = self._llm_hidden(t_embeds, teacher_attention_mask)
                t_logits, _ = self._response_logits(t_hidden, teacher_labels)
            if t_logits.shape[0] != logits.shape[0]:
                raise ValueError(
                    f"teacher has {t_logits.shape[0]} response tokens, student {logits.shape[0]}"
                )
            out.kl_loss = kl_distillation_loss(logits, t_logits, self.config.kl_temperature)
            out.loss = out.kl_loss
        else:
            out.lm_loss = nn.functional.cross_entropy(logits.float(), targets)
            out.loss = out.lm_loss
        if (
            emotion_labels is not None
            and self.emotion_head is not None
            and speech_emb is not None
            and speech_lengths is not None
        ):
            out.emotion_logits = self.emotion_logits(inputs, speech_emb, speech_lengths)
            if (emotion_labels >= 0).any():
                out.emotion_loss = nn.functional.cross_entropy(
                    out.emotion_logits.float(), emotion_labels.to(out.emotion_logits.device), ignore_index=-1
                )
                out.loss = out.loss + self.config.emotion_loss_weight * out.emotion_loss
        return out

    def speech_from_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech embeddings (S, T, D) and lengths (S,) from audio features or cached encoder states.

        When the emotion head reads layer statistics and the batch has none (no cache), they are
        computed with the encoder states and put in ``batch["encoder_layer_stats"]``.
        """
        if batch.get("encoder_states") is not None:
            return self.speech_embeddings(batch["encoder_states"], batch["encoder_lengths"])
        stats = self.needs_layer_stats and batch.get("encoder_layer_stats") is None
        states, enc_lengths, layer_stats = self.encode_speech_with_stats(**batch, stats=stats)
        if layer_stats is not None:
            batch["encoder_layer_stats"] = layer_stats
        return self.speech_embeddings(states, enc_lengths)

    def emotion_logits(self, batch: dict, speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The emotion head's logits (S, 5): on the adapter output, or on the batch's layer statistics
        (those :meth:`prepare_embeddings` computed for the emotion token when the batch has them)."""
        if self.emotion_head is None:
            raise ValueError("this model has no emotion head")
        if batch.get("emotion_head_logits") is not None:
            return batch["emotion_head_logits"]
        if not self.needs_layer_stats:
            return self.emotion_head(speech, lengths)
        layer_stats = batch.get("encoder_layer_stats")
        if layer_stats is None:
            raise ValueError(
                "the layer-mixed emotion head needs encoder_layer_stats (audio features or a cache)"
            )
        return self.emotion_head(layer_stats.to(next(self.emotion_head.parameters()).dtype))

    @torch.no_grad()
    def predict_emotion(self, batch: dict) -> torch.Tensor:
        """Emotion-head probabilities (S, 5) for a batch of audio features (``processor.audio_features``)."""
        batch = batch_to(batch, self.adapter.norm.weight.device)
        speech, lengths = self.speech_from_batch(batch)
        return self.emotion_logits(batch, speech, lengths).float().softmax(-1)

    def alignment_logits(self, speech: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """The pre-alignment head's logits (S, T, 1 + V) over [blank, the LLM's tokens] (or candidates)."""
        if self.alignment_head is None:
            raise ValueError("this model has no alignment head (train a pre-alignment stage first)")
        return self.alignment_head(speech, self.token_embeddings().weight, candidates)

    def alignment_loss(
        self, ctc_targets: list[list[int]], ctc_candidates: torch.Tensor | None = None, **speech: torch.Tensor
    ) -> BlspEmoOutput:
        """CTC loss of the adapter output against the LLM's token embeddings (token-space pre-alignment)."""
        emb, lengths = self.speech_from_batch(speech)
        logits = self.alignment_logits(emb, ctc_candidates)
        loss = ctc_alignment_loss(logits, lengths, ctc_targets, ctc_candidates)
        return BlspEmoOutput(loss=loss, ctc_loss=loss)

    @torch.no_grad()
    def transcribe_ctc(self, batch: dict) -> list[list[int]]:
        """Greedy CTC decoding of the alignment head: the LLM token ids the speech embeddings spell out."""
        batch = batch_to(batch, self.adapter.norm.weight.device)
        emb, lengths = self.speech_from_batch(batch)
        return greedy_ctc_ids(self.alignment_logits(emb), lengths)

    # ---- generation --------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        batch: dict,
        stop_token_ids: list[int] | None = None,
        options: DecodingOptions = PLAIN,
        *,
        streamer: Any = None,
        on_emotion: Callable[[torch.Tensor], None] | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Generate replies for a left-padded processor batch.

        Greedy when ``options.temperature`` is 0, else sampling with the temperature and top-p; the
        penalties and the n-gram block act on each row's generated tokens (:mod:`blsp_emo.model.repetition`;
        all off by default). ``options.seed`` and ``options.stop`` are the caller's
        (:class:`~blsp_emo.model.SpeechChat`). Partial LoRA acts in the prefill only. Returns the new token
        ids (B, N) and emotion-head probabilities per speech segment (S, 5) or None; ``on_emotion(probabilities)``
        is called with the latter before the first token is generated (a streamed reply can be spoken in the
        heard tone). Other keyword arguments go to the LLM's ``generate``.
        """
        batch = batch_to(batch, self.token_embeddings().weight.device)
        embeds, speech_mask, speech, lengths = self.prepare_embeddings(batch)
        emotion = None
        if self.emotion_head is not None and speech is not None and lengths is not None:
            emotion = self.emotion_logits(batch, speech, lengths).float().softmax(-1)
            if on_emotion is not None:
                on_emotion(emotion)
        sample = not options.greedy
        processors = logits_processors(options)
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(
                [*processors, *kwargs.get("logits_processor", [])]
            )
        if not isinstance(self.llm, GenerationMixin):
            raise TypeError(f"the LLM ({type(self.llm).__name__}) cannot generate (no GenerationMixin)")
        with self.speech_positions(speech_mask):  # the prefill only: later steps' lengths differ
            out = self.llm.generate(
                inputs_embeds=embeds,
                attention_mask=batch["attention_mask"],
                max_new_tokens=options.max_new_tokens,
                do_sample=sample,
                temperature=options.temperature if sample else None,
                top_p=options.top_p if sample else None,
                top_k=None,
                eos_token_id=stop_token_ids,
                pad_token_id=(stop_token_ids or [0])[0],
                streamer=streamer,
                **kwargs,
            )
        return out, emotion

    # ---- checkpoints -------------------------------------------------------------------------------

    def save_pretrained(  # type: ignore[override]  # trained parts only: not transformers' full-model save
        self,
        save_directory: str | os.PathLike,
        dtype: torch.dtype | None = None,
        processor: BlspEmoProcessor | None = None,
        model_card: bool = True,
        **_: object,
    ) -> None:
        """Write a portable checkpoint folder: ``config.json`` (with ``architectures``, the emotion labels
        and the base models' hub ids) and ``model.safetensors`` with the trained parts only (atomic per
        file), the processor (LLM tokenizer with its chat template, feature extractor; ``processor`` or the
        one of the base models) and a model card (README.md). ``dtype`` stores floating-point weights in
        that precision (loading casts them back)."""
        from blsp_emo.model.portable import find_run_dir, run_facts, save_processor, write_model_card
        from blsp_emo.model.sources import build_processor

        tensors = self.trainable_state_dict()
        write_checkpoint(save_directory, tensors, self.config.to_dict(), dtype)
        save_processor(processor if processor is not None else build_processor(self.config), save_directory)
        if model_card:
            config = json.loads((Path(save_directory) / "config.json").read_text(encoding="utf-8"))
            run_dir = find_run_dir(save_directory, finished=False)  # saved by the trainer: its run so far
            run = run_facts(run_dir) if run_dir is not None else None
            write_model_card(
                save_directory,
                config,
                tensors,
                run=run,
                dtype=str(dtype).replace("torch.", "") if dtype else None,
            )

    @classmethod
    def from_pretrained(  # type: ignore[override]  # a folder of trained parts over named base models
        cls,
        path: str | os.PathLike,
        *model_args: object,
        encoder: WhisperEncoder | None = None,
        llm: PreTrainedModel | None = None,
        trust_remote_code: bool = False,
        config: BlspEmoConfig | None = None,
        revision: str | None = None,
        **overrides: Any,
    ) -> BlspEmoModel:
        """Read the base models named in the config, build the model, then load the trained parts from
        safetensors.

        ``path`` is a checkpoint folder or a hub id (``owner/name``) of one, downloaded into the hub cache
        (at ``revision``); offline, a hub id that is not cached fails with the download command to run.
        ``encoder`` / ``llm`` replace the base models the config names (:mod:`blsp_emo.model.sources` reads
        the others; a base the config describes instead is built from the seed
        ``sources.RANDOM_BASE_SEED``, as the ``random-tiny`` preset built it).
        ``config`` (as ``AutoModel`` passes it) replaces the folder's ``config.json``; other keyword
        arguments override config fields; ``dtype`` (a ``torch.dtype`` or one of :data:`DTYPES`) and
        ``device_map`` (a device) place the loaded model. ``trust_remote_code`` is the caller's explicit
        permission (the command line's ``--trust-remote-code``); the checkpoint's own ``config.json``
        cannot grant it, and a checkpoint that asks for it without the permission is refused.
        """
        from safetensors.torch import load_file

        from blsp_emo.errors import ModelNotAvailableError
        from blsp_emo.model.sources import RANDOM_BASE_SEED, checkpoint_folder, pretrained_bases

        if model_args:
            raise TypeError(f"BlspEmoModel.from_pretrained takes no extra positional arguments: {model_args}")
        dtype = overrides.pop("dtype", None) or overrides.pop("torch_dtype", None)
        device_map = overrides.pop("device_map", None)
        for key in HUB_LOAD_KWARGS:  # what AutoModel forwards; loading here reads only the folder
            overrides.pop(key, None)
        folder = checkpoint_folder(path, revision=revision)
        if not (folder / "config.json").is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise ModelNotAvailableError(
                f"{folder}: not a blsp-emo checkpoint (needs config.json and {WEIGHTS_NAME})"
            )
        if config is None:
            config = BlspEmoConfig.from_json_file(str(folder / "config.json"))
        for key, value in overrides.items():
            setattr(config, key, value)
        if config.trust_remote_code and not trust_remote_code:
            raise ModelNotAvailableError(
                f"{folder}: this checkpoint's base LLM needs remote code (trust_remote_code in its "
                "config.json), which runs code from the model's files; if you trust them, pass "
                "--trust-remote-code"
            )
        config.trust_remote_code = bool(trust_remote_code)
        encoder, llm = pretrained_bases(config, encoder, llm)
        with torch.random.fork_rng():
            torch.manual_seed(RANDOM_BASE_SEED)
            model = cls(config, encoder=encoder, llm=llm)
        state = load_file(str(folder / WEIGHTS_NAME))
        _, unexpected = model.load_state_dict(state, strict=False)
        absent = sorted(set(model.trainable_state_dict()) - set(state))
        if unexpected or absent:
            raise ModelNotAvailableError(
                f"{folder}: checkpoint does not match its config (unexpected {unexpected[:5]}, "
                f"missing {absent[:5]})"
            )
        if isinstance(dtype, str) and dtype != "auto":
            dtype = torch_dtype(dtype)
        # transformers wraps PreTrainedModel.to in functools.wraps(nn.Module.to), which hides its signature
        if isinstance(dtype, torch.dtype):
            model = model.to(dtype=dtype)  # type: ignore[call-arg]
        if isinstance(device_map, (str, torch.device)) and device_map != "auto":
            model = model.to(device=device_map)  # type: ignore[call-arg]
        return model.eval()


def _register_auto_classes() -> None:
    """Let ``transformers.AutoConfig`` / ``AutoModel`` load blsp-emo folders (model type ``blsp_emo``)."""
    from transformers import AutoConfig, AutoModel

    try:
        AutoConfig.register(BlspEmoConfig.model_type, BlspEmoConfig)
    except ValueError:  # already registered (module reloaded)
        pass
    try:
        AutoModel.register(BlspEmoConfig, BlspEmoModel)
    except ValueError:
        pass


_register_auto_classes()
