"""Text normalisation and WER on hand-made cases."""

from blsp_emo.textnorm import edit_distance, normalize_text, word_error_rate


def test_normalize_text():
    assert normalize_text("He's ill-disposed, Mr. Smith!") == "he's ill disposed mr smith"
    assert normalize_text("4 of Clubs") == "four of clubs"
    assert normalize_text("'quoted' words") == "quoted words"


def test_word_error_rate_counts_edits_over_reference_words():
    assert edit_distance(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert word_error_rate(["four of clubs", "go forward"], ["4 of clubs.", "go"]) == 1 / 5
