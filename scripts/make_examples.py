"""Write examples/: one emotionally neutral sentence spoken in each of the five tones (a test-split voice).

Deterministic: `python scripts/make_examples.py` rewrites the same files. The tones are rendered with the
shipped model's training corpus expressiveness (recipe v2: 2.0, acted speech; recipe v1 used 1.0).
"""

import argparse
from pathlib import Path

from blsp_emo.audio import save_wav
from blsp_emo.data.synth import list_voices, synthesize
from blsp_emo.prompts import EMOTIONS

SENTENCE = "My sister called me this morning."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expressiveness", type=float, default=2.0, help="as `data synth --expressiveness`")
    args = parser.parse_args()
    out = Path(__file__).resolve().parents[1] / "examples"
    piper = [v for v in list_voices("test") if v.startswith("piper:")]
    voice = piper[0] if piper else list_voices("test")[0]
    for i, emotion in enumerate(EMOTIONS):
        audio, rate = synthesize(SENTENCE, emotion, voice, seed=7, expressiveness=args.expressiveness)
        save_wav(out / f"{i}_{emotion}.wav", audio, rate)
        print(f"{out / f'{i}_{emotion}.wav'}: {len(audio) / rate:.1f} s, voice {voice}")
    (out / "README.md").write_text(
        f'# Example clips\n\n"{SENTENCE}" spoken in five tones by `{voice}`, a voice held out of training,\n'
        f"at expressiveness {args.expressiveness:g} (as the shipped model's training corpus).\n"
        f"Made by `python scripts/make_examples.py --expressiveness {args.expressiveness:g}`.\n"
    )


if __name__ == "__main__":
    main()
