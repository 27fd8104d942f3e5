"""How far apart are a synthetic corpus's emotions? A classifier on the measured prosody alone.

Fits the cascade's classifier recipe (standardisation + balanced logistic regression,
``blsp_emo.evaluation.ser_classifier.fit_classifier``) on the prosody that ``data synth`` measured for each
utterance (mean F0, F0 range, end rise, speaking rate, RMS, voiced share) of one split and prints its
accuracy on the others. Voices differ between splits, so this is the accuracy a listener of these six
numbers reaches on unseen voices. Usage:
    python scripts/prosody_probe.py runs/reproduce-tiny-v2/corpus/emotion.jsonl [--train train --eval dev test]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from blsp_emo.evaluation.ser_classifier import fit_classifier

FEATURES = ("f0_mean", "f0_range", "f0_end_rise", "rate", "rms", "voiced")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="emotion.jsonl written by `blsp-emo data synth`")
    parser.add_argument("--train", default="train")
    parser.add_argument("--eval", nargs="+", default=["dev", "test"])
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("emotion") and isinstance(r.get("prosody"), dict)]

    def split(name: str) -> tuple[np.ndarray, list[str]]:
        part = [r for r in rows if r.get("split") == name]
        return np.array([[r["prosody"][f] for f in FEATURES] for r in part], dtype=np.float64), [
            r["emotion"] for r in part
        ]

    x, y = split(args.train)
    if not y:
        raise SystemExit(f"{args.manifest}: no labelled rows with prosody in split {args.train!r}")
    classifier = fit_classifier(x, y)
    print(f"{args.manifest}: prosody classifier trained on {len(y)} {args.train} utterances")
    for name in args.eval:
        x, y = split(name)
        if y:
            accuracy = np.mean(np.array(classifier.predict(x)) == np.array(y))
            print(f"  {name}: accuracy {accuracy:.3f} on {len(y)} utterances")


if __name__ == "__main__":
    main()
