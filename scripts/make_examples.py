"""Write examples/: one emotionally neutral sentence spoken in each of the five tones (a test-split voice).

Deterministic: `python scripts/make_examples.py` rewrites the same files.
"""

from pathlib import Path

from blsp_emo.audio import save_wav
from blsp_emo.data.synth import list_voices, synthesize
from blsp_emo.prompts import EMOTIONS

SENTENCE = "My sister called me this morning."


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "examples"
    piper = [v for v in list_voices("test") if v.startswith("piper:")]
    voice = piper[0] if piper else list_voices("test")[0]
    for i, emotion in enumerate(EMOTIONS):
        audio, rate = synthesize(SENTENCE, emotion, voice, seed=7)
        save_wav(out / f"{i}_{emotion}.wav", audio, rate)
        print(f"{out / f'{i}_{emotion}.wav'}: {len(audio) / rate:.1f} s, voice {voice}")
    (out / "README.md").write_text(
        f'# Example clips\n\n"{SENTENCE}" spoken in five tones by `{voice}`, a voice held out of training.\n'
        "Made by `python scripts/make_examples.py`.\n"
    )


if __name__ == "__main__":
    main()
