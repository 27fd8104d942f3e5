"""``blsp-emo demo``: the model on example clips, printed as a table.

Runs the shipped blsp-emo-tiny checkpoint when the repository has it (else the untrained ``tiny``
preset) on the example clips in ``examples/`` (one sentence spoken in each of five tones, then a question
and a piece of news whose words matter) and on a real LibriVox clip, printing the emotion-head prediction
and the empathetic reply for each. Decoding is greedy with the conversation defaults' repetition penalty
and n-gram block (:data:`blsp_emo.model.types.DEMO`): the replies do not loop and are the same on every run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

LIBRIVOX_CLIP = Path(
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
)


def examples_dir() -> Path:
    """The repository's examples/ folder."""
    return Path(__file__).resolve().parents[2] / "examples"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser("demo", help="run the model on the example clips and print a table")
    p.add_argument(
        "--model", default=None, help="checkpoint folder or preset (default: shipped model, else tiny)"
    )
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.set_defaults(func=cmd_demo)


def demo_rows(name: str, max_new_tokens: int = 48) -> list[tuple[Path, str | None, str]]:
    """``(clip, detected emotion, empathetic reply)`` for each example clip and the LibriVox clip."""
    from blsp_emo.audio import load_audio
    from blsp_emo.model import SpeechChat, load_model
    from blsp_emo.model.types import DEMO, Conversation
    from blsp_emo.prompts import SYSTEM_PROMPTS

    model, processor = load_model(name)
    chat = SpeechChat(model, processor)
    clips = sorted(examples_dir().glob("*.wav"))
    if LIBRIVOX_CLIP.exists():
        clips.append(LIBRIVOX_CLIP)
    convs = [Conversation(system=SYSTEM_PROMPTS["empathetic"]).speech(load_audio(c)) for c in clips]
    replies = chat.respond(convs, DEMO.replace(max_new_tokens=max_new_tokens))
    return [(clip, reply.emotion, reply.text) for clip, reply in zip(clips, replies)]


def cmd_demo(args: argparse.Namespace) -> int:
    """Print emotion and empathetic reply for each example clip."""
    from blsp_emo.model.loading import check_model_name, default_model_name
    from blsp_emo.model.types import DEMO

    check_model_name(args.model)  # a typo fails before anything loads
    name = args.model or default_model_name()
    print(f"model: {name} (decoding: {DEMO.describe()})")
    print("| clip | detected emotion | reply |\n|---|---|---|")
    for clip, emotion, reply in demo_rows(name, args.max_new_tokens):
        text = reply.replace("\n", " ").replace("|", "/")
        print(f"| {clip.name} | {emotion or '-'} | {text} |")
    print("\nWeb page: run `.venv/bin/blsp-emo serve` and open http://127.0.0.1:8000/ in a browser.")
    return 0
