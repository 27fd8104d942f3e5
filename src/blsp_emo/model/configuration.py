"""``BlspEmoConfig``: names the base models and every switch of the BLSP-Emo architecture."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig, WhisperConfig

from blsp_emo.prompts import EMOTIONS


def emotion_labels(num_emotions: int) -> dict[int, str]:
    """The emotion head's class names by id: the five emotions of the method (neutral 0, happy 1, angry 2,
    sad 3, surprise 4) for a five-class head, else ``emotion_0`` ... ``emotion_{n-1}``."""
    if num_emotions == len(EMOTIONS):
        return dict(enumerate(EMOTIONS))
    return {i: f"emotion_{i}" for i in range(num_emotions)}


class BlspEmoConfig(PretrainedConfig):
    """Configuration of a BLSP-Emo model.

    The base models are referenced by name (preset half, embedded name, folder or hub id) and rebuilt
    from there on load; a checkpoint stores only the trained parts. ``whisper_hub_id`` / ``llm_hub_id``
    record the hub ids of the same base models (filled on save for the embedded ones), so that a machine
    without the local name (another cache, no embedded package) loads the base models from the hub.
    ``id2label`` / ``label2id`` name the emotion head's classes.

    ``encoder_config`` / ``llm_config`` (dicts of a ``WhisperConfig`` and a causal-LM config) describe base
    models that have no weights to load: ``BlspEmoModel(config)`` builds them from these with random
    weights (the ``random-tiny`` preset; loading builds them from a fixed seed, so a checkpoint on such a
    base reloads the same base). A base named without one is read from its name
    (:mod:`blsp_emo.model.sources`).
    """

    model_type = "blsp_emo"

    def __init__(
        self,
        whisper_name: str = "whisper-base",  # Whisper checkpoint whose encoder is used
        llm_name: str = "smollm2-135m-instruct",  # chat LLM (any causal LM with a chat template)
        adapter_bottleneck: int = 512,  # hidden width of the adapter's residual bottleneck
        adapter_layers: int = 3,  # stride-2 conv+GLU layers (3 -> 8x shorter, 6.25 embeddings/s)
        adapter_output_scale: str | float = "embeddings",  # initial gain of the adapter's LayerNorm: the
        # RMS of the LLM's token embeddings ("embeddings"), or a number (1.0: plain LayerNorm, recipe v1)
        num_emotions: int = 5,  # emotion-head classes: neutral, happy, angry, sad, surprise
        use_emotion_head: bool = True,  # build the auxiliary emotion head
        # What the emotion head reads: "adapter" (the mean of the adapter outputs, the paper) or
        # "layer_mix" (a learned mix of every encoder layer's mean/std statistics, where prosody survives)
        emotion_features: str = "adapter",
        # After each speech segment the LLM also reads one embedding: the emotion head's probabilities times a
        # learned table of emotion embeddings (initialised from the LLM's embeddings of the emotion words)
        emotion_token: bool = False,
        alignment_head: bool = False,  # token-space pre-alignment head (CTC against the LLM's embeddings)
        # What the LLM reads for speech: "adapter" (its output, the paper) or "token_bridge" (the
        # CTC-posterior-weighted token embeddings of the tokens the alignment head hears, blanks dropped)
        speech_input: str = "adapter",
        lora_r: int = 0,  # partial-LoRA rank; 0 = no LoRA (stage 1); the paper's stage 2 uses 16
        lora_alpha: float = 16.0,  # LoRA scaling numerator (scale = alpha / r)
        lora_dropout: float = 0.05,  # dropout on the LoRA branch input
        lora_targets: str | list[str] = "auto",  # "auto" = attention + MLP names of the architecture
        encoder_trained: bool = False,  # True when the encoder weights are part of the checkpoint
        pad_to_30s: bool = False,  # paper behaviour: pad every window to 30 s before encoding
        kl_temperature: float = 2.0,  # stage-1 distillation temperature (no T^2 factor)
        emotion_loss_weight: float = 1.0,  # weight of the emotion-head loss in stage 2
        trust_remote_code: bool = False,  # allow remote code when loading the LLM (e.g. Qwen-1)
        whisper_hub_id: str | None = None,  # hub id of the Whisper named by whisper_name (portable name)
        llm_hub_id: str | None = None,  # hub id of the LLM named by llm_name (portable name)
        encoder_config: dict[str, Any] | None = None,  # WhisperConfig of a weightless (random) encoder
        llm_config: dict[str, Any] | None = None,  # causal-LM config of a weightless (random) LLM
        **kwargs: Any,
    ) -> None:
        self.whisper_name = whisper_name
        self.llm_name = llm_name
        self.adapter_bottleneck = adapter_bottleneck
        self.adapter_layers = adapter_layers
        self.adapter_output_scale = adapter_output_scale
        self.num_emotions = num_emotions
        self.use_emotion_head = use_emotion_head
        self.emotion_features = emotion_features
        self.emotion_token = emotion_token
        self.alignment_head = alignment_head
        self.speech_input = speech_input
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_targets = lora_targets
        self.encoder_trained = encoder_trained
        self.pad_to_30s = pad_to_30s
        self.kl_temperature = kl_temperature
        self.emotion_loss_weight = emotion_loss_weight
        self.trust_remote_code = trust_remote_code
        self.whisper_hub_id = whisper_hub_id
        self.llm_hub_id = llm_hub_id
        self.encoder_config = dict(encoder_config) if encoder_config is not None else None
        self.llm_config = dict(llm_config) if llm_config is not None else None
        kwargs.pop("id2label", None)  # the head's classes are fixed by num_emotions (older files: LABEL_n)
        kwargs.pop("label2id", None)
        kwargs.pop("num_labels", None)
        if not kwargs.get("architectures"):
            kwargs["architectures"] = ["BlspEmoModel"]
        super().__init__(**kwargs)
        self.id2label = emotion_labels(num_emotions)
        self.label2id = {label: i for i, label in self.id2label.items()}

    def whisper_encoder_config(self) -> WhisperConfig | None:
        """The ``WhisperConfig`` to build the encoder from, or None when the encoder is loaded by name."""
        return None if self.encoder_config is None else WhisperConfig.from_dict(self.encoder_config)

    def causal_lm_config(self) -> PretrainedConfig | None:
        """The config to build the LLM from (its ``model_type`` picks the class), or None when the LLM is
        loaded by name."""
        if self.llm_config is None:
            return None
        if "model_type" not in self.llm_config:
            raise ValueError("llm_config has no model_type: it cannot say which LLM to build")
        return AutoConfig.for_model(**self.llm_config)
