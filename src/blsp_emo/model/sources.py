"""Where a model's parts come from: the checkpoint folder (a path or a hub id), the base models its config
names (read from an embedded model, a folder or the hub), and its processor.

:class:`~blsp_emo.model.modeling.BlspEmoModel` builds itself from a config and modules only; this module
finds those modules. It imports nothing of ``modeling`` (``modeling`` and :mod:`blsp_emo.model.loading`
import it), and it owns the ``random-tiny`` base: a tiny Whisper encoder and a tiny Llama described by
configs, with random weights, and a small byte-level BPE tokenizer with a ChatML template.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blsp_emo.errors import ModelNotAvailableError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from blsp_emo.model.configuration import BlspEmoConfig
    from blsp_emo.model.processor import BlspEmoProcessor

log = logging.getLogger(__name__)

RANDOM_TINY = "random-tiny"  # base-model name of the tiny random model in configs and checkpoints
RANDOM_BASE_SEED = 0  # a base built from its config (random weights) is built from this seed

# ---- checkpoint folders ---------------------------------------------------------------------------------


def checkpoint_folder(name: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder of a checkpoint named by a path or a hub id (``owner/name``, fetched into the hub
    cache; offline, only a cached copy is used, and a missing one fails with the command to fetch it)."""
    from blsp_emo.assets.loading import hub_download_hint, is_hub_id, offline

    path = Path(str(name)).expanduser()
    if path.exists() or not is_hub_id(str(name)):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    repo_id = str(name)
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=offline()))
    except LocalEntryNotFoundError:
        why = (
            "HF_HUB_OFFLINE is set and it is not in the local hub cache"
            if offline()
            else "the hub cannot be reached and it is not in the local hub cache"
        )
        raise ModelNotAvailableError(f"{repo_id}: {why}: {hub_download_hint(repo_id)}") from None
    except RepositoryNotFoundError:
        raise ModelNotAvailableError(f"{repo_id}: no such hub repository (or it is private)") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailableError(
            f"{repo_id}: cannot download ({str(exc).splitlines()[0]}): {hub_download_hint(repo_id)}"
        ) from None


# ---- base models ----------------------------------------------------------------------------------------


def pretrained_bases(
    config: BlspEmoConfig, encoder: WhisperEncoder | None = None, llm: PreTrainedModel | None = None
) -> tuple[WhisperEncoder | None, PreTrainedModel | None]:
    """The base modules of ``config`` that have weights to read: the given ones are kept; a missing one is
    loaded by its name (the recorded local name when it resolves here, else the recorded hub id), unless
    the config describes it (``encoder_config`` / ``llm_config``: a random base, which ``BlspEmoModel``
    builds itself) and then it stays None."""
    from blsp_emo.assets.loading import base_model_name, load_llm, load_whisper

    _describe_random_tiny(config)
    if encoder is None and config.encoder_config is None:
        name = base_model_name(config.whisper_name, config.whisper_hub_id, "whisper")
        encoder = load_whisper(name)[0].model.encoder
    if llm is None and config.llm_config is None:
        name = base_model_name(config.llm_name, config.llm_hub_id, "llm")
        llm = load_llm(name, trust_remote_code=config.trust_remote_code)[0]
    return encoder, llm


def _describe_random_tiny(config: BlspEmoConfig) -> None:
    """Give a ``random-tiny`` base named without its config (checkpoints written before configs carried
    ``encoder_config`` / ``llm_config``) the random-tiny base config."""
    if RANDOM_TINY not in (config.whisper_name, config.llm_name):
        return
    whisper, llm = random_tiny_base_configs()
    if config.whisper_name == RANDOM_TINY and config.encoder_config is None:
        config.encoder_config = whisper
    if config.llm_name == RANDOM_TINY and config.llm_config is None:
        config.llm_config = llm


# ---- the processor --------------------------------------------------------------------------------------


def build_processor(
    config: BlspEmoConfig, pad_to_30s: bool | None = None, folder: str | os.PathLike | None = None
) -> BlspEmoProcessor:
    """The processor for a config: the one saved in the checkpoint ``folder`` when it has one, else the
    Whisper feature extractor and the LLM tokenizer of its base models (random-tiny: its own tokenizer)."""
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    from blsp_emo.assets.loading import base_model_name, resolve
    from blsp_emo.model.portable import has_saved_processor, load_saved_processor
    from blsp_emo.model.processor import BlspEmoProcessor

    pad = config.pad_to_30s if pad_to_30s is None else pad_to_30s
    if config.llm_name == RANDOM_TINY:
        return BlspEmoProcessor(
            WhisperFeatureExtractor(feature_size=80),
            random_tiny_tokenizer(),
            pad_to_30s=pad,
            adapter_layers=config.adapter_layers,
        )
    if folder is not None and has_saved_processor(folder):
        return load_saved_processor(folder, pad, config.trust_remote_code)
    whisper = base_model_name(config.whisper_name, config.whisper_hub_id, "whisper")
    llm = base_model_name(config.llm_name, config.llm_hub_id, "llm")
    feature_extractor = WhisperFeatureExtractor.from_pretrained(resolve(whisper, "whisper"))
    tokenizer = AutoTokenizer.from_pretrained(resolve(llm, "llm"), trust_remote_code=config.trust_remote_code)
    return BlspEmoProcessor(
        feature_extractor, tokenizer, pad_to_30s=pad, adapter_layers=config.adapter_layers
    )


# ---- random-tiny ----------------------------------------------------------------------------------------

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


def random_tiny_tokenizer() -> PreTrainedTokenizerBase:
    """The random-tiny tokenizer: byte-level BPE (400 tokens) with ChatML special tokens and template."""
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


def whisper_encoder_config(d_model: int = 32, layers: int = 2) -> dict[str, Any]:
    """A small Whisper config with the real front end (80 mel bins, 1500 positions), as a dict."""
    from transformers import WhisperConfig

    return WhisperConfig(
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
    ).to_dict()


def llama_config(vocab_size: int, hidden: int = 48, layers: int = 2) -> dict[str, Any]:
    """A small Llama causal-LM config, as a dict."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    ).to_dict()


def random_tiny_base_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    """The random-tiny base configs: a 2-layer, 32-wide Whisper encoder and a 2-layer, 48-wide Llama over
    the random-tiny tokenizer's vocabulary."""
    return whisper_encoder_config(), llama_config(len(random_tiny_tokenizer()))
