"""CLI: ``blsp-emo generate`` — one reply to one spoken input."""

from __future__ import annotations

import argparse
import json


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
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    """Load the model, build the conversation, print the reply."""
    from blsp_emo.audio import load_audio
    from blsp_emo.model import SpeechChat, load_model
    from blsp_emo.model.loading import default_model_name
    from blsp_emo.prompts import instruction, system_prompt

    audio = load_audio(args.audio)
    model, processor = load_model(args.model or default_model_name())
    messages = []
    system = system_prompt(args.system)
    if system:
        messages.append({"role": "system", "content": system})
    content = []
    text = instruction(args.instruction)
    if text:
        content.append({"type": "text", "text": text})
    content.append({"type": "audio", "audio": audio})
    messages.append({"role": "user", "content": content})
    reply = SpeechChat(model, processor).respond(
        [messages],
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
    )[0]
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
