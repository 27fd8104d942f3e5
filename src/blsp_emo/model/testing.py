"""A tiny random-weight BLSP-Emo for fast tests: no files, builds in well under a second."""

from __future__ import annotations

from functools import lru_cache

import torch

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "You are a helpful assistant. Continue the following sentence in a coherent style.",
    "Please identify the emotion tone of the speech provided below. Select from the following options:",
    "neutral, sad, angry, happy, or surprise. Speech: I'm graduating soon and my sister called.",
    "The quick brown fox jumps over the lazy dog while the weather is nice today, isn't it?",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"-()[]{}<>/\\|@#$%^&*_+=~`",
]


@lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return tok.to_str()


def tiny_tokenizer():
    """A byte-level BPE tokenizer with ChatML special tokens and chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_whisper_encoder(d_model: int = 32, layers: int = 2):
    """A random Whisper encoder with the real front end (80 mel bins, 1500 positions)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
        decoder_start_token_id=0,
        num_mel_bins=80,
        max_source_positions=1500,
    )
    return WhisperEncoder(config)


def tiny_llm(vocab_size: int, hidden: int = 48, layers: int = 2):
    """A random Llama causal LM."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


RANDOM_TINY = "random-tiny"  # base-model name of the test model in configs and checkpoints


def random_tiny_bases(seed: int = 0):
    """The tiny random (Whisper encoder, Llama LLM) pair; the same seed always gives the same weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = tiny_whisper_encoder()
        llm = tiny_llm(len(tiny_tokenizer()))
    return encoder, llm


def tiny_processor():
    """The processor of the tiny random model."""
    from transformers import WhisperFeatureExtractor

    from blsp_emo.model.processor import BlspEmoProcessor

    return BlspEmoProcessor(WhisperFeatureExtractor(feature_size=80), tiny_tokenizer())


def build_random_tiny(seed: int = 0, lora_r: int = 0, use_emotion_head: bool = True, **overrides: object):
    """Build ``(model, processor)``: tiny random Whisper encoder + tiny random Llama + tiny tokenizer;
    ``overrides`` sets further ``BlspEmoConfig`` fields."""
    from blsp_emo.model.configuration import BlspEmoConfig
    from blsp_emo.model.modeling import BlspEmoModel

    encoder, llm = random_tiny_bases(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        config = BlspEmoConfig(
            whisper_name=RANDOM_TINY,
            llm_name=RANDOM_TINY,
            adapter_bottleneck=16,
            lora_r=lora_r,
            lora_alpha=lora_r or 16,
            use_emotion_head=use_emotion_head,
            **overrides,
        )
        model = BlspEmoModel(config, encoder=encoder, llm=llm)
    return model.eval(), tiny_processor()
