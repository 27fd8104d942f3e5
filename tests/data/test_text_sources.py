"""Broad-vocabulary sentences from the packaged WordNet (Debian wordnet-base, installed by the set-up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blsp_emo.data.sentences import sentence_split
from blsp_emo.data.text_sources import WORDNET_DIR, wordnet_examples
from blsp_emo.errors import UserError


def test_wordnet_gives_many_varied_plain_sentences_deterministically() -> None:
    assert WORDNET_DIR.is_dir(), "wordnet-base is part of the set-up (scripts/setup.sh installs it)"
    sentences = wordnet_examples(min_words=5, max_words=14, seed=0)
    assert len(sentences) > 20000 and len(set(s.lower() for s in sentences)) == len(sentences)
    assert all(5 <= len(s.split()) <= 14 and s[0].isupper() and s[-1] in ".!?" for s in sentences)
    vocabulary = {w.strip(".,!?;'").lower() for s in sentences for w in s.split()}
    assert len(vocabulary) > 15000  # the grammar corpus has a few hundred words
    assert sentences == wordnet_examples(seed=0) and sentences != wordnet_examples(seed=1)
    splits = {sentence_split(s) for s in sentences[:200]}
    assert splits == {"train", "dev", "test"}  # every split gets its own sentences


def test_missing_wordnet_names_the_install_step(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="apt-get install wordnet-base"):
        wordnet_examples(tmp_path)


def test_data_sentences_command_writes_the_file(tmp_path: Path, capsys) -> None:
    from blsp_emo.cli import main

    out = tmp_path / "s.txt"
    assert main(["data", "sentences", "wordnet", "-o", str(out), "--max-words", "6"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) > 1000 and all(len(line.split()) <= 6 for line in lines)
    assert f"wrote {len(lines)} sentences" in capsys.readouterr().out
