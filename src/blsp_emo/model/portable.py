"""What makes a checkpoint folder usable on another machine, next to its weights and config:

- :func:`portable_config`: ``architectures``, the emotion labels, and the base models' hub ids;
- :func:`save_processor` / :func:`load_saved_processor`: the LLM tokenizer with its chat template, the
  Whisper feature extractor and the processor's own settings, so the text side loads from the folder;
- :func:`write_model_card`: README.md (base models, trained parts, labels, data, recipe, results known
  from the training run's files), with the run's facts kept in ``training_run.json`` for later exports;
- :func:`export_peft_lora`: the partial LoRA in PEFT's format (``adapter_config.json`` +
  ``adapter_model.safetensors``), loadable with ``peft.PeftModel.from_pretrained`` on the base LLM.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from blsp_emo.io import atomic_path, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    import torch

    from blsp_emo.model.processor import BlspEmoProcessor

log = logging.getLogger(__name__)

PROCESSOR_CONFIG = "processor_config.json"
RUN_FILE = "training_run.json"
CARD_FILE = "README.md"
PEFT_FOLDER = "peft-lora"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
)


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a ``BlspEmoConfig`` dict) with ``architectures``, ``id2label``/``label2id`` and the
    base models' hub ids filled in where missing (a hub id already recorded is kept)."""
    from blsp_emo.assets.loading import hub_id
    from blsp_emo.model.configuration import emotion_labels

    out = dict(config)
    out["architectures"] = ["BlspEmoModel"]
    labels = emotion_labels(int(out.get("num_emotions", 5)))
    out["id2label"] = {str(i): label for i, label in labels.items()}
    out["label2id"] = {label: i for i, label in labels.items()}
    kinds: tuple[tuple[Literal["whisper", "llm"], str], ...] = (
        ("whisper", "whisper_name"),
        ("llm", "llm_name"),
    )
    for kind, key in kinds:
        if not out.get(f"{kind}_hub_id"):
            out[f"{kind}_hub_id"] = hub_id(out.get(key), kind)
    return out


def save_processor(processor: BlspEmoProcessor, folder: str | os.PathLike) -> list[str]:
    """Write the processor's files into ``folder``: tokenizer (with its chat template), feature extractor
    and ``processor_config.json``. Returns the names written."""
    folder = Path(folder)
    before = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    processor.tokenizer.save_pretrained(folder)
    processor.feature_extractor.save_pretrained(folder)
    settings = {
        "processor_class": "BlspEmoProcessor",
        "pad_to_30s": bool(processor.pad_to_30s),
        "adapter_layers": int(processor.adapter_layers),
    }
    atomic_write_json(folder / PROCESSOR_CONFIG, settings)
    after = {p.name for p in folder.iterdir()}
    return sorted((after - before) | {PROCESSOR_CONFIG})


def has_saved_processor(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a processor written by :func:`save_processor`."""
    folder = Path(folder)
    return (folder / PROCESSOR_CONFIG).is_file() and (folder / "tokenizer_config.json").is_file()


def load_saved_processor(
    folder: str | os.PathLike, pad_to_30s: bool | None = None, trust_remote_code: bool = False
) -> BlspEmoProcessor:
    """The :class:`BlspEmoProcessor` saved in ``folder`` (no base model needed)."""
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    from blsp_emo.model.configuration import BlspEmoConfig
    from blsp_emo.model.processor import BlspEmoProcessor

    folder = Path(folder)
    settings = json.loads((folder / PROCESSOR_CONFIG).read_text(encoding="utf-8"))
    # The folder's config.json is a blsp-emo config: handed over, so the tokenizer does not guess from it.
    config = (
        BlspEmoConfig.from_json_file(str(folder / "config.json"))
        if (folder / "config.json").is_file()
        else None
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, config=config, trust_remote_code=trust_remote_code)
    if not tokenizer.chat_template:
        raise ValueError(f"{folder}: the saved tokenizer has no chat template")
    feature_extractor = WhisperFeatureExtractor.from_pretrained(folder)
    return BlspEmoProcessor(
        feature_extractor,
        tokenizer,
        pad_to_30s=settings.get("pad_to_30s", False) if pad_to_30s is None else pad_to_30s,
        adapter_layers=int(settings.get("adapter_layers", 3)),
    )


def copy_processor(source: str | os.PathLike, target: str | os.PathLike) -> bool:
    """Copy a saved processor's files from ``source`` to ``target``; False when ``source`` has none."""
    import shutil

    source, target = Path(source), Path(target)
    if not has_saved_processor(source):
        return False
    if source.resolve() == target.resolve():
        return True
    names = [*TOKENIZER_FILES, "preprocessor_config.json", PROCESSOR_CONFIG]
    for name in names:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    return True


# ---- training-run facts and the model card ---------------------------------------------------------------


def _last_json_line(path: Path) -> dict | None:
    if not path.is_file():
        return None
    last = None
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("{"):
                try:
                    last = json.loads(line)
                except json.JSONDecodeError:
                    continue
    return last


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None


def run_facts(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What a training run's files say about the model it made: its recipe (``config.yaml``), steps and
    time (``summary.json``), the last logged losses (``logs/train.jsonl``) and dev losses, and the rows of
    its training data. None when ``run_dir`` is not a training run folder."""
    import yaml

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        return None
    try:
        recipe = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    facts: dict[str, Any] = {"run_dir": str(run), "recipe": recipe}
    summary_path = run / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            summary = {}
        facts["summary"] = {
            k: summary[k]
            for k in (
                "stage",
                "global_step",
                "total_steps",
                "samples_seen",
                "train_seconds",
                "processes",
                "dev",
            )
            if k in summary
        }
    last = _last_json_line(run / "logs" / "train.jsonl")
    if last:
        facts["last_log"] = {k: v for k, v in last.items() if isinstance(v, (int, float))}
    data = recipe.get("data") or {}
    datasets = {}
    for key in ("train", "dev"):
        if data.get(key):
            rows = _count_lines(Path(data[key]))
            datasets[key] = {"path": str(data[key]), "rows": rows}
    if datasets:
        facts["data"] = datasets
    return facts


def evaluation_facts(path: str | os.PathLike, system: str | None) -> dict[str, Any]:
    """One system's numbers from an evaluation's output: ``comparison.json`` of ``eval all`` (pick
    ``system`` among its systems; the only one when there is one) or a task's ``results.json``."""
    from blsp_emo.clitools import did_you_mean
    from blsp_emo.errors import UserError

    path = Path(path)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} (--results): unreadable evaluation output ({exc})") from None
    if isinstance(saved, dict) and "values" in saved and "systems" in saved:
        systems = list(saved["systems"])
        if system is None and len(systems) == 1:
            system = systems[0]
        if system not in saved["values"]:
            raise UserError(
                f"{path} (--results): no system {system!r} in it{did_you_mean(str(system), systems)} "
                f"(systems: {', '.join(systems)}; pick one with --results-system)"
            )
        metrics = {k: v for k, v in saved["values"][system].items() if v is not None}
        return {"file": str(path), "system": system, "data": saved.get("data", {}), "metrics": metrics}
    if isinstance(saved, dict) and "headline" in saved and "task" in saved:
        metrics = {f"{saved['task']}.{k}": v for k, v in saved["headline"].items() if v is not None}
        name = (saved.get("system") or {}).get("name")
        return {"file": str(path), "system": name, "data": saved.get("data", {}), "metrics": metrics}
    raise UserError(f"{path} (--results): neither an `eval all` comparison.json nor a task's results.json")


def checkpoint_run(
    checkpoint: str | os.PathLike, run_dir: str | os.PathLike | None = None
) -> dict[str, Any] | None:
    """What is known of the training run behind a checkpoint folder: the facts of ``run_dir`` (default: the
    run folder the checkpoint sits in), else the ``training_run.json`` an earlier export left in it."""
    checkpoint = Path(checkpoint)
    run_dir = run_dir or find_run_dir(checkpoint)
    run = run_facts(run_dir) if run_dir is not None else None
    if run is None and (checkpoint / RUN_FILE).is_file():
        run = json.loads((checkpoint / RUN_FILE).read_text(encoding="utf-8"))
    return run


def find_run_dir(checkpoint: str | os.PathLike, finished: bool = True) -> Path | None:
    """The training run a checkpoint folder belongs to (``RUN/final``, or ``RUN/checkpoints/checkpoint-N/
    model`` while training): the nearest ancestor with the run's ``config.yaml`` (a recipe with ``stage``
    and ``run``), and with ``finished`` also its ``summary.json``."""
    import yaml

    folder = Path(checkpoint).resolve()
    for candidate in (folder.parent, folder.parent.parent, folder.parent.parent.parent):
        recipe = candidate / "config.yaml"
        if not recipe.is_file() or (finished and not (candidate / "summary.json").is_file()):
            continue
        try:
            loaded = yaml.safe_load(recipe.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(loaded, dict) and "stage" in loaded and "run" in loaded:
            return candidate
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _param_count(tensors: dict[str, Any], prefix: str | tuple[str, ...]) -> int:
    return sum(int(t.numel()) for name, t in tensors.items() if name.startswith(prefix))


def model_card(
    config: dict[str, Any],
    tensors: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    name: str = "blsp-emo model",
    weights_bytes: int | None = None,
    dtype: str | None = None,
) -> str:
    """The README.md text of a checkpoint folder."""
    from blsp_emo.assets.loading import PRESETS

    hub_whisper, hub_llm = config.get("whisper_hub_id"), config.get("llm_hub_id")
    front = ["---", "library_name: blsp-emo", "pipeline_tag: audio-text-to-text"]
    bases = [b for b in (hub_whisper, hub_llm) if b]
    if bases:
        front += ["base_model:"] + [f"- {b}" for b in bases]
    front += [
        "tags:",
        "- speech",
        "- emotion-recognition",
        "- speech-language-model",
        "- blsp-emo",
        "---",
        "",
    ]
    lines = [*front, f"# {name}", ""]
    lines += [
        "A BLSP-Emo speech-language model (Wang et al., EMNLP 2024): a Whisper encoder, a modality adapter "
        "and a chat LLM, aligned so that the LLM answers what was said and how it was said. This folder "
        "holds the trained parts only; the base models are loaded from the names below.",
        "",
        "## Base models",
        "",
        "| part | hub id | name it was trained with |",
        "| --- | --- | --- |",
        f"| speech encoder | {hub_whisper or '-'} | {config.get('whisper_name')} |",
        f"| chat LLM | {hub_llm or '-'} | {config.get('llm_name')} |",
        "",
        "Loading uses the trained-with name when it resolves on the machine (an embedded model of "
        "blsp-emo's packages, a folder), else the hub id.",
    ]
    if config.get("whisper_name") in ("whisper-base",) or config.get("llm_name") in (
        "smollm2-135m-instruct",
    ):
        lines += [
            "The embedded names are blsp-emo's offline copies: `whisper-base` is openai/whisper-base "
            "converted from a CTranslate2 float16 file, `smollm2-135m-instruct` is SmolLM2-135M-Instruct "
            "dequantised from a GGUF Q4_1 file (so its weights differ slightly from the hub's).",
        ]
    preset = next(
        (
            p
            for p, v in PRESETS.items()
            if (v.whisper, v.llm) == (config.get("whisper_name"), config.get("llm_name"))
        ),
        None,
    )
    if preset:
        lines += ["", f"The pair is blsp-emo's `{preset}` preset."]
    lines += ["", "## Trained parts", ""]
    parts = [
        f"- adapter: {config.get('adapter_layers')} stride-2 conv layers, bottleneck {config.get('adapter_bottleneck')}"
    ]
    if config.get("lora_r"):
        parts.append(
            f"- partial LoRA on the LLM (speech positions only): r {config.get('lora_r')}, alpha "
            f"{config.get('lora_alpha')}, targets {config.get('lora_targets')}"
        )
    if config.get("use_emotion_head"):
        parts.append(f"- emotion head reading {config.get('emotion_features')} features")
    if config.get("emotion_token"):
        parts.append("- emotion token: the LLM reads the heard emotion as one embedding after the speech")
    if config.get("alignment_head"):
        parts.append(f"- token-space alignment head (speech input: {config.get('speech_input')})")
    if config.get("encoder_trained"):
        parts.append("- the Whisper encoder (trained)")
    if tensors is not None:
        total = sum(int(t.numel()) for t in tensors.values())
        lora = sum(int(t.numel()) for n, t in tensors.items() if ".lora_A." in n or ".lora_B." in n)
        parts.append(
            f"- {total:,} parameters in {len(tensors)} tensors (adapter {_param_count(tensors, 'adapter.'):,}, "
            f"emotion head {_param_count(tensors, 'emotion_head.'):,}, LoRA {lora:,}, alignment head "
            f"{_param_count(tensors, 'alignment_head.'):,})"
        )
    if weights_bytes is not None:
        parts.append(
            f"- `model.safetensors`: {weights_bytes / 1e6:.1f} MB" + (f" ({dtype})" if dtype else "")
        )
    lines += parts
    labels = config.get("id2label") or {}
    if labels:
        lines += ["", "## Emotion labels", "", "| id | label |", "| ---: | --- |"]
        lines += [f"| {i} | {label} |" for i, label in sorted(labels.items(), key=lambda kv: int(kv[0]))]
    if run:
        lines += _run_sections(run)
    else:
        lines += [
            "",
            "## Training",
            "",
            "Not recorded (no training-run files were found for this checkpoint).",
        ]
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "# with the blsp-emo package installed (its repository: make setup)",
        "blsp-emo generate --model PATH_OR_HUB_ID --audio clip.wav --json",
        "blsp-emo chat --model PATH_OR_HUB_ID",
        "```",
        "",
        "```python",
        "from blsp_emo.model import load_model, SpeechChat",
        "",
        'model, processor = load_model("PATH_OR_HUB_ID")',
        "```",
        "",
        "`transformers.AutoConfig` / `AutoModel` load the folder once `blsp_emo.model.modeling` is "
        "imported (it registers the `blsp_emo` model type).",
        "",
    ]
    return "\n".join(lines)


def _run_sections(run: dict[str, Any]) -> list[str]:
    recipe = run.get("recipe") or {}
    summary = run.get("summary") or {}
    model, optim, data = recipe.get("model") or {}, recipe.get("optim") or {}, recipe.get("data") or {}
    lines = ["", "## Training", ""]
    if not recipe and not summary:
        lines.append("Not recorded (no training-run files were found for this checkpoint).")
    stage = summary.get("stage") or recipe.get("stage")
    facts = [f"- stage: {stage}"] if stage else []
    if model.get("init_from"):
        facts.append(f"- initialised from: {model['init_from']}")
    if summary.get("global_step") is not None:
        facts.append(
            f"- steps: {summary['global_step']}"
            + (f" of {summary['total_steps']}" if summary.get("total_steps") else "")
            + (f", {summary['samples_seen']} samples" if summary.get("samples_seen") else "")
            + (
                f", {summary['train_seconds']:.0f} s"
                if isinstance(summary.get("train_seconds"), (int, float))
                else ""
            )
        )
    recipe_keys = [
        ("lr", optim.get("lr")),
        ("warmup_steps", optim.get("warmup_steps")),
        ("max_steps", optim.get("max_steps")),
        ("batch_seconds", data.get("batch_seconds")),
        ("lora_r", model.get("lora_r")),
        ("emotion_loss_weight", model.get("emotion_loss_weight")),
        ("emotion_features", model.get("emotion_features")),
        ("emotion_token", model.get("emotion_token") or None),
        ("emotion_head_prefit_steps", model.get("emotion_head_prefit_steps") or None),
        ("seed", (recipe.get("run") or {}).get("seed")),
    ]
    shown = ", ".join(f"{k} {_fmt(v)}" for k, v in recipe_keys if v not in (None, ""))
    if shown:
        facts.append(f"- recipe: {shown}")
    if run.get("run_dir"):
        facts.append(f"- run folder: `{run['run_dir']}` (its `config.yaml` is the full recipe)")
    lines += facts
    datasets = run.get("data") or {}
    if datasets:
        lines += ["", "## Data", ""]
        for key, item in datasets.items():
            rows = f" ({item['rows']} rows)" if item.get("rows") is not None else ""
            lines.append(f"- {key}: `{item['path']}`{rows}")
    last = run.get("last_log") or {}
    dev = summary.get("dev") or {}
    results = []
    if last:
        keys = [k for k in ("loss", "lm_loss", "kl_loss", "ctc_loss", "emotion_loss") if k in last]
        if keys:
            results.append(
                f"- training loss at step {last.get('step', '?')}: "
                + ", ".join(f"{k} {_fmt(last[k])}" for k in keys)
            )
    if isinstance(dev, dict) and dev.get("final_loss") is not None:
        where = f"{dev.get('rows', '?')} rows of {dev.get('source') or 'the dev set'}"
        results.append(
            f"- dev loss ({where}): {_fmt(dev['final_loss'])} at step {dev.get('final_step')}"
            + (
                f", best {_fmt(dev['best_loss'])} at step {dev.get('best_step')}"
                if dev.get("best_loss")
                else ""
            )
        )
    refit = run.get("head_refit")
    if refit:
        scores = ", ".join(f"{name} {_fmt(value)}" for name, value in (refit.get("dev_uar") or {}).items())
        lines += [
            "",
            "## Emotion head refit",
            "",
            f"After stage 2 the layer-mixed emotion head was fitted again on its own (`blsp-emo refit-head`) on "
            f"the frozen encoder's statistics of {refit.get('train_rows')} training clips of "
            f"`{refit.get('manifest')}`; the step count was chosen on {refit.get('dev_rows')} dev clips by "
            f"unweighted average recall (dev UAR: {scores}); chosen: {refit.get('chosen')}.",
        ]
    if results:
        lines += ["", "## Results", "", "From the training run's logs:", "", *results]
    evaluation = run.get("evaluation")
    if evaluation:
        if not results:
            lines += ["", "## Results"]
        data = evaluation.get("data") or {}
        described = "; ".join(f"{k}: {v}" for k, v in data.items() if k not in ("seed",))
        lines += [
            "",
            f"Evaluation (`{evaluation.get('file')}`, system `{evaluation.get('system')}`"
            + (f"; {described}" if described else "")
            + "):",
            "",
            "| metric | value |",
            "| --- | ---: |",
        ]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in evaluation.get("metrics", {}).items()]
    return lines


def write_model_card(
    folder: str | os.PathLike,
    config: dict[str, Any],
    tensors: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    dtype: str | None = None,
) -> Path:
    """Write README.md (and ``training_run.json`` when the run is known) into the checkpoint ``folder``.
    Without ``run``, a ``training_run.json`` already in the folder is used."""
    folder = Path(folder)
    run_file = folder / RUN_FILE
    if run is None and run_file.is_file():
        try:
            run = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            run = None
    if run is not None:
        atomic_write_text(run_file, json.dumps(run, indent=2, default=str) + "\n")
    weights = folder / "model.safetensors"
    text = model_card(
        config,
        tensors,
        run,
        name=folder.resolve().name,
        weights_bytes=weights.stat().st_size if weights.is_file() else None,
        dtype=dtype,
    )
    atomic_write_text(folder / CARD_FILE, text)
    return folder / CARD_FILE


# ---- PEFT ------------------------------------------------------------------------------------------------


def export_peft_lora(
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    folder: str | os.PathLike,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write the checkpoint's LoRA as a PEFT adapter in ``folder``: ``adapter_config.json`` and
    ``adapter_model.safetensors`` with PEFT's key names, for ``PeftModel.from_pretrained(base_llm, folder)``.

    PEFT applies the update at every position; BLSP-Emo's partial LoRA applies it at speech positions
    only, so the PEFT adapter on a text-only prompt is not what this model computes: it is for inspecting,
    merging into other tools' speech pipelines, or continuing training elsewhere.
    """
    from safetensors.torch import save_file

    from blsp_emo.errors import UserError

    lora = {n: t for n, t in tensors.items() if ".lora_A." in n or ".lora_B." in n}
    if not lora or not config.get("lora_r"):
        raise UserError("this checkpoint has no LoRA (a stage-1 checkpoint?): nothing to export for PEFT")
    out: dict[str, torch.Tensor] = {}
    targets: set[str] = set()
    for name, tensor in lora.items():
        if not name.startswith("llm."):
            raise UserError(f"unexpected LoRA tensor {name!r} outside the LLM")
        inner = name[len("llm.") :]
        module = inner.split(".lora_")[0]
        targets.add(module.rsplit(".", 1)[-1])
        tensor = tensor.detach()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[f"base_model.model.{inner}"] = tensor.contiguous().cpu()
    folder = Path(folder)
    target_modules = sorted(targets)
    adapter_config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": config.get("llm_hub_id") or config.get("llm_name"),
        "r": int(config["lora_r"]),
        "lora_alpha": float(config.get("lora_alpha", 16.0)),
        "lora_dropout": float(config.get("lora_dropout", 0.0)),
        "target_modules": target_modules,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
    }
    with atomic_path(folder / "adapter_model.safetensors") as tmp:
        save_file(out, str(tmp), metadata={"format": "pt"})
    atomic_write_json(folder / "adapter_config.json", adapter_config)
    atomic_write_text(
        folder / "README.md",
        "# PEFT export of a blsp-emo LoRA\n\n"
        f"Base LLM: {adapter_config['base_model_name_or_path']}; r {adapter_config['r']}, alpha "
        f"{adapter_config['lora_alpha']}, targets {', '.join(target_modules)}.\n\n"
        "BLSP-Emo applies this LoRA at speech positions only (partial LoRA); PEFT applies it at every "
        "position. Use `blsp_emo` to run the speech model; this copy is for PEFT-based tools.\n",
    )
    return folder
