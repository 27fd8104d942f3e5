"""CLI: ``blsp-emo assets prepare|list`` and ``blsp-emo transcribe``."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``assets`` and ``transcribe`` sub-commands."""
    assets = subparsers.add_parser("assets", help="prepare and list the embedded default models")
    sub = assets.add_subparsers(dest="assets_command", metavar="ACTION", required=True)
    prepare = sub.add_parser("prepare", help="convert the packaged Whisper and LLM into the cache (offline)")
    prepare.add_argument("names", nargs="*", help="embedded models to prepare (default: all)")
    prepare.set_defaults(func=cmd_prepare)
    listing = sub.add_parser("list", help="list presets and embedded models with their cache state")
    listing.set_defaults(func=cmd_list)

    tr = subparsers.add_parser("transcribe", help="speech recognition with Whisper")
    tr.add_argument("audio", nargs="+", help="audio files")
    tr.add_argument("--model", default="tiny", help="Whisper: preset, embedded name, folder or hub id")
    tr.add_argument("--language", default="en", help="language code, or 'none' to let Whisper decide")
    tr.add_argument("--json", action="store_true", help="print one JSON object per file")
    tr.set_defaults(func=cmd_transcribe)


def cmd_prepare(args: argparse.Namespace) -> int:
    """Materialise the embedded models in the cache; a second run is a no-op."""
    from blsp_emo.assets import EMBEDDED
    from blsp_emo.errors import UserError

    names = args.names or list(EMBEDDED)
    for name in names:
        if name not in EMBEDDED:
            raise UserError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
        print(f"{name}: {EMBEDDED[name].prepare()}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print presets and embedded models."""
    from blsp_emo.assets import EMBEDDED, PRESETS, cache_dir
    from blsp_emo.model.loading import SHIPPED_NAME, shipped_model_path

    print(f"cache: {cache_dir()}")
    print("presets:")
    for name, p in PRESETS.items():
        print(f"  {name:8s} whisper={p.whisper}  llm={p.llm}  ({p.description})")
    print("embedded models:")
    for name, m in EMBEDDED.items():
        state = "prepared" if m.is_prepared() else "not prepared"
        print(f"  {name:24s} {state:13s} {m.description} (hub: {m.hub_id})")
    print("trained models:")
    shipped = shipped_model_path()
    if shipped is None:
        print(f"  {SHIPPED_NAME:24s} not in this installation (`make reproduce-tiny` trains it)")
    else:
        print(f"  {SHIPPED_NAME:24s} {_describe_checkpoint(shipped)}")
    return 0


def _describe_checkpoint(folder) -> str:
    """One line about a checkpoint folder: where, size, base models, trained parts (read from its files)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{folder} (unreadable config.json: {exc})"
    weights = folder / "model.safetensors"
    size = f"{weights.stat().st_size / 1e6:.1f} MB" if weights.is_file() else "no weights"
    parts = ["adapter"]
    if config.get("lora_r"):
        parts.append(f"LoRA r{config['lora_r']}")
    if config.get("use_emotion_head"):
        parts.append(f"emotion head ({config.get('emotion_features', 'adapter')})")
    if config.get("emotion_token"):
        parts.append("emotion token")
    if config.get("alignment_head"):
        parts.append("alignment head")
    whisper = config.get("whisper_hub_id") or config.get("whisper_name")
    llm = config.get("llm_hub_id") or config.get("llm_name")
    return f"{folder} ({size}; {', '.join(parts)}; on {whisper} + {llm}; the default --model)"


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Transcribe audio files with Whisper and print the text."""
    from blsp_emo.clitools import check_audio_file

    for path in args.audio:  # every file is checked before Whisper loads
        check_audio_file(path)
    from blsp_emo.assets.transcribe import transcribe
    from blsp_emo.audio import load_audio

    audios = [load_audio(path) for path in args.audio]
    language = None if args.language == "none" else args.language
    for path, text in zip(args.audio, transcribe(audios, name=args.model, language=language)):
        print(json.dumps({"audio": path, "text": text}) if args.json else f"{path}\t{text}")
    return 0
