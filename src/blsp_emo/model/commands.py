"""CLI: ``blsp-emo generate`` (one reply to one spoken input) and ``blsp-emo export`` (a checkpoint's
trained parts in another precision, e.g. float16 to ship a model at half the size)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from blsp_emo.errors import UserError

EXPORT_DTYPES = ("float16", "bfloat16", "float32")
WEIGHTS_NAME = "model.safetensors"  # blsp_emo.model.modeling.WEIGHTS_NAME
PEFT_FOLDER = "peft-lora"  # blsp_emo.model.portable.PEFT_FOLDER (not imported here: --help stays light)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` sub-command."""
    p = subparsers.add_parser("generate", help="reply to a spoken input (speech in, text out)")
    p.add_argument(
        "--model",
        default=None,
        help="checkpoint folder, blsp-emo-tiny (the shipped trained model) or a preset "
        "(default: blsp-emo-tiny when shipped, else 'tiny')",
    )
    p.add_argument("--audio", required=True, help="audio file (any format and sample rate)")
    p.add_argument(
        "--instruction",
        default="none",
        help="text before the speech: a preset (continue, continue_emotion, recognize_emotion, none) or any text",
    )
    p.add_argument(
        "--system", default="empathetic", help="system prompt: default, empathetic, none, or any text"
    )
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object (response, emotion, usage)")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the base LLM run code shipped with its files (transformers trust_remote_code); "
        "never taken from a checkpoint or config",
    )
    p.set_defaults(func=cmd_generate)

    e = subparsers.add_parser(
        "export", help="copy a checkpoint's trained parts in another precision (e.g. float16 to ship it)"
    )
    e.add_argument("checkpoint", help="checkpoint folder, or blsp-emo-tiny (the shipped model)")
    e.add_argument("-o", "--output", type=Path, required=True, help="folder for the exported checkpoint")
    e.add_argument(
        "--dtype", choices=EXPORT_DTYPES, default="float16", help="weight precision (default float16)"
    )
    e.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --output")
    e.add_argument(
        "--speech-input",
        choices=("adapter", "token_bridge"),
        help="what the LLM reads for speech in the exported model (token_bridge needs an alignment head)",
    )
    e.add_argument(
        "--run",
        type=Path,
        metavar="RUN_DIR",
        help="training run folder (config.yaml, summary.json, logs/) whose recipe, data and losses go into "
        "the model card (default: the checkpoint's own run when it is RUN/final, else what the source "
        "checkpoint recorded)",
    )
    e.add_argument(
        "--results",
        type=Path,
        metavar="FILE",
        help="evaluation output whose numbers go into the model card: an `eval all` comparison.json or a "
        "task's results.json",
    )
    e.add_argument(
        "--results-system",
        metavar="NAME",
        help="the system of --results that is this checkpoint (needed when the file compares several)",
    )
    e.add_argument(
        "--peft",
        action="store_true",
        help=f"also write the LoRA in PEFT's format to OUTPUT/{PEFT_FOLDER}/ (adapter_config.json, "
        "adapter_model.safetensors)",
    )
    e.set_defaults(func=cmd_export)


def cmd_generate(args: argparse.Namespace) -> int:
    """Load the model, build the conversation, print the reply."""
    from blsp_emo.clitools import check_audio_file
    from blsp_emo.model.loading import check_model_name

    check_audio_file(args.audio, "--audio")  # before anything heavy loads
    check_model_name(args.model)
    from blsp_emo.audio import load_audio
    from blsp_emo.model import SpeechChat, load_model
    from blsp_emo.model.loading import default_model_name
    from blsp_emo.model.types import Conversation, DecodingOptions
    from blsp_emo.prompts import instruction, system_prompt

    audio = load_audio(args.audio)
    model, processor = load_model(
        args.model or default_model_name(), trust_remote_code=args.trust_remote_code
    )
    messages = Conversation(system=system_prompt(args.system)).speech(audio, instruction(args.instruction))
    options = DecodingOptions(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
    )
    reply = SpeechChat(model, processor).respond([messages], options)[0]
    if args.json:
        out = {
            "response": reply.text,
            "emotion": reply.emotion,
            "emotion_scores": reply.emotion_scores,
            "finish_reason": reply.finish_reason,
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens},
        }
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(reply.text)
        if reply.emotion:
            print(f"[emotion: {reply.emotion}]")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the checkpoint's config and trained weights (floating point cast to ``--dtype``) to ``-o``,
    with the processor, a model card and, with ``--peft``, the LoRA in PEFT's format."""
    from blsp_emo.clitools import check_output_dir
    from blsp_emo.model.loading import checkpoint_folder, checkpoint_path

    source = checkpoint_path(args.checkpoint)
    if source is None and "/" in args.checkpoint and not Path(args.checkpoint).exists():
        source = checkpoint_path(str(checkpoint_folder(args.checkpoint)))  # a hub id
    if source is None:
        raise UserError(
            f"{args.checkpoint}: not a blsp-emo checkpoint (needs config.json and {WEIGHTS_NAME})"
        )
    out: Path = check_output_dir(args.output, "-o")
    if (out / WEIGHTS_NAME).exists() and not args.overwrite and out.resolve() != source.resolve():
        raise UserError(f"{out}: already holds a checkpoint (--overwrite replaces it)")
    if args.results is not None and not args.results.is_file():
        raise UserError(f"{args.results} (--results): no such file")
    if args.run is not None and not (args.run / "config.yaml").is_file():
        raise UserError(f"{args.run} (--run): not a training run folder (no config.yaml)")

    from safetensors.torch import load_file

    from blsp_emo.model.modeling import torch_dtype, write_checkpoint
    from blsp_emo.model.portable import (
        checkpoint_run,
        copy_processor,
        evaluation_facts,
        export_peft_lora,
        write_model_card,
    )

    try:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(source / WEIGHTS_NAME))
    except (OSError, ValueError) as exc:
        raise UserError(f"{source}: unreadable checkpoint ({exc})") from exc
    if args.speech_input:
        if args.speech_input == "token_bridge" and not config.get("alignment_head"):
            raise UserError(
                f"{source}: --speech-input token_bridge needs a checkpoint with an alignment head"
            )
        config["speech_input"] = args.speech_input
    dtype = torch_dtype(args.dtype)
    # The largest change a weight sees, relative to the largest weight: what the cast costs.
    worst = max(
        (
            float((t.float() - t.to(dtype).float()).abs().max() / t.float().abs().max().clamp_min(1e-12))
            for t in tensors.values()
            if t.is_floating_point() and t.numel()
        ),
        default=0.0,
    )
    if args.peft and not config.get("lora_r"):
        raise UserError(f"{source}: --peft: this checkpoint has no LoRA (a stage-1 checkpoint?)")
    run = checkpoint_run(source, args.run)
    if args.results is not None:
        run = dict(run or {})
        run["evaluation"] = evaluation_facts(args.results, args.results_system)
    before = (source / WEIGHTS_NAME).stat().st_size
    write_checkpoint(out, tensors, config, dtype)
    written = json.loads((out / "config.json").read_text(encoding="utf-8"))
    if not copy_processor(source, out):
        _save_base_processor(written, out)
    write_model_card(out, written, tensors, run=run, dtype=args.dtype)
    after = (out / WEIGHTS_NAME).stat().st_size
    print(
        f"exported {source} -> {out} ({args.dtype}): {len(tensors)} tensors, "
        f"{before / 1e6:.1f} MB -> {after / 1e6:.1f} MB, largest relative rounding {worst:.2e}; "
        f"processor and model card ({'with' if run else 'without'} training-run facts) written"
    )
    if args.peft:
        peft_dir = export_peft_lora(tensors, written, out / PEFT_FOLDER, dtype)
        print(f"PEFT adapter: {peft_dir}")
    return 0


def _save_base_processor(config: dict, out: Path) -> None:
    """Save the processor of the checkpoint's base models into ``out`` (the source folder had none)."""
    from blsp_emo.model.configuration import BlspEmoConfig
    from blsp_emo.model.loading import build_processor
    from blsp_emo.model.portable import save_processor

    save_processor(build_processor(BlspEmoConfig.from_dict(config)), out)
