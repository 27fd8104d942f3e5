"""``BlspEmoConfig``: names the base models and every switch of the BLSP-Emo architecture."""

from __future__ import annotations

from transformers import PretrainedConfig


class BlspEmoConfig(PretrainedConfig):
    """Configuration of a BLSP-Emo model.

    The base models are referenced by name (preset half, embedded name, folder or hub id) and rebuilt
    from there on load; a checkpoint stores only the trained parts.
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
        **kwargs,
    ):
        self.whisper_name = whisper_name
        self.llm_name = llm_name
        self.adapter_bottleneck = adapter_bottleneck
        self.adapter_layers = adapter_layers
        self.adapter_output_scale = adapter_output_scale
        self.num_emotions = num_emotions
        self.use_emotion_head = use_emotion_head
        self.emotion_features = emotion_features
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
        super().__init__(**kwargs)
