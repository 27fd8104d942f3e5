"""Broad-vocabulary English sentences from a registry package, for stage-1 and pre-alignment corpora.

The grammar of ``sentences.general_sentences`` has a few hundred words: an adapter trained on it learns
that vocabulary and maps real speech onto it (greedy-CTC word error rate 0.94 on the LibriVox clips of
pocketsphinx-testdata against 0.05 on held-out grammar sentences). WordNet (Debian ``wordnet-base``,
the Princeton WordNet 3.0 licence) carries about 28,000 short example sentences in its glosses ("he
bought the painting as an investment"): natural, varied English over a vocabulary of tens of thousands
of words. ``data sentences wordnet -o FILE`` writes them, shuffled, for ``data synth --sentences FILE``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from blsp_emo.errors import UserError

WORDNET_DIR = Path("/usr/share/wordnet")
_QUOTED = re.compile(r'"([^"]+)"')
_PLAIN = re.compile(r"[A-Za-z ,.'!?;-]+")  # letters and punctuation a TTS voice reads as written


def wordnet_examples(
    folder: str | Path = WORDNET_DIR, min_words: int = 5, max_words: int = 14, seed: int = 0
) -> list[str]:
    """The example sentences of WordNet's glosses, sentence-cased with final punctuation, deduplicated,
    shuffled by ``seed``; only those of ``min_words``..``max_words`` words in plain letters."""
    folder = Path(folder)
    files = sorted(folder.glob("data.*"))
    if not files:
        raise UserError(
            f"{folder}: no WordNet data files (apt-get install wordnet-base; scripts/setup.sh installs it)"
        )
    seen: dict[str, str] = {}
    for path in files:
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:  # the licence header, or no gloss
                continue
            for quote in _QUOTED.findall(line.split("|", 1)[1]):
                text = " ".join(quote.split()).lstrip(".'")  # leading ellipses and quote marks
                if (
                    not text
                    or not (min_words <= len(text.split()) <= max_words)
                    or not _PLAIN.fullmatch(text)
                ):
                    continue
                text = text[0].upper() + text[1:]
                if text[-1] not in ".!?":
                    text = text.rstrip(",;-") + "."
                seen.setdefault(text.lower(), text)
    sentences = sorted(seen.values())
    random.Random(seed).shuffle(sentences)
    return sentences
