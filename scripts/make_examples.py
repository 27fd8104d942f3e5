"""Write examples/: one emotionally neutral sentence spoken in each of the five tones (a test-split voice),
then two clips whose words matter: a question and a piece of news.

Deterministic: `python scripts/make_examples.py` rewrites the same files. The tones are rendered with the
shipped model's training corpus expressiveness (recipe v2: 2.0, acted speech; recipe v1 used 1.0). The
clips whose words matter are rendered at 1.0 (`--words-expressiveness`): at 2.0 the happy news is too
fast and high for Whisper base to make out the words ("I just have to leave that effect my drawing has to
go"); at 1.0 it hears "I just got the news that I passed my drawing test today".
"""

import argparse
from pathlib import Path

from blsp_emo.audio import save_wav
from blsp_emo.data.synth import list_voices, synthesize
from blsp_emo.prompts import EMOTIONS

SENTENCE = "My sister called me this morning."
# Clips whose words matter (the reply should answer them), after the five tones: (name, text, tone).
WORD_CLIPS = (
    ("question", "Can you tell me how to get to the train station from here?", "neutral"),
    ("news", "I just got the news that I passed my driving test today!", "happy"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expressiveness", type=float, default=2.0, help="as `data synth --expressiveness`")
    parser.add_argument(
        "--words-expressiveness", type=float, default=1.0, help="for the question and the news (default 1)"
    )
    args = parser.parse_args()
    out = Path(__file__).resolve().parents[1] / "examples"
    piper = [v for v in list_voices("test") if v.startswith("piper:")]
    voice = piper[0] if piper else list_voices("test")[0]
    clips = [(emotion, SENTENCE, emotion, args.expressiveness) for emotion in EMOTIONS]
    clips += [(name, text, emotion, args.words_expressiveness) for name, text, emotion in WORD_CLIPS]
    for i, (name, text, emotion, expressiveness) in enumerate(clips):
        audio, rate = synthesize(text, emotion, voice, seed=7, expressiveness=expressiveness)
        save_wav(out / f"{i}_{name}.wav", audio, rate)
        print(f"{out / f'{i}_{name}.wav'}: {len(audio) / rate:.1f} s, voice {voice}")
    words = "\n".join(
        f'- `{len(EMOTIONS) + i}_{name}.wav`: "{text}" ({emotion} tone)'
        for i, (name, text, emotion) in enumerate(WORD_CLIPS)
    )
    (out / "README.md").write_text(
        f'# Example clips\n\n"{SENTENCE}" spoken in five tones by `{voice}`, a voice held out of training,\n'
        f"at expressiveness {args.expressiveness:g} (as the shipped model's training corpus), as\n"
        f"`0_neutral.wav` ... `4_surprise.wav`: the words are the same, only the tone differs.\n\n"
        f"Two clips whose words matter, by the same voice at expressiveness {args.words_expressiveness:g} "
        f"(clearer words),\nfor the reply to answer:\n\n{words}\n\n"
        f"Made by `python scripts/make_examples.py --expressiveness {args.expressiveness:g} "
        f"--words-expressiveness {args.words_expressiveness:g}`;\n"
        f"`blsp-emo demo` (`make demo`) prints the emotion heard and the reply for each.\n"
    )


if __name__ == "__main__":
    main()
