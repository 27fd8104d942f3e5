"""Augmentation: determinism and records, what each kind does to the signal, emotion cues surviving."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from blsp_emo.data import augment as aug
from blsp_emo.data.prosody import measure, track_f0
from blsp_emo.data.synth import class_prosody, render, synthesize
from blsp_emo.data.synth_corpus import SynthOptions, build_corpus
from blsp_emo.errors import UserError

RATE = 16_000
TEXT = "My sister called this morning about the trip."


@cache
def _clip(text: str = TEXT, voice: str = "espeak:en-us+m1", emotion: str = "neutral") -> np.ndarray:
    audio, _ = synthesize(text, emotion, voice, seed=1)
    return audio


def _band_share(audio: np.ndarray, low: float, high: float = RATE / 2) -> float:
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / RATE)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / power.sum())


def _snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return 20 * np.log10(aug.speech_level(clean, RATE) / np.sqrt((noise**2).mean()))


def _median_f0(audio: np.ndarray) -> float:
    f0, _ = track_f0(audio, RATE)
    return float(np.nanmedian(f0))


def test_augment_is_deterministic_recorded_and_replayable() -> None:
    clean = _clip()
    babble = [_clip("The weather was fine on Sunday.", "espeak:en-gb+f3"), _clip(voice="espeak:en-us+f2")] * 2
    config = aug.AugmentConfig(probability=1.0)
    out, records = aug.augment(clean, RATE, seed=3, config=config, speaker="spk", babble=babble)
    again, records_again = aug.augment(clean, RATE, seed=3, config=config, speaker="spk", babble=babble)
    assert np.array_equal(out, again) and records == records_again
    assert [r["type"] for r in records] == list(aug.KINDS)  # probability 1: every kind, in order
    assert json.loads(json.dumps(records)) == records  # plain JSON for the manifest
    replay = aug.apply_augmentations(clean, RATE, records, lambda key: babble[int(key)])
    assert np.array_equal(out, replay)
    other, other_records = aug.augment(clean, RATE, seed=4, config=config, speaker="spk", babble=babble)
    assert other_records != records and not np.array_equal(other[: out.size], out[: other.size])
    # The vocal-tract perturbation belongs to the speaker: the same for every utterance of "spk".
    vtlp = {json.dumps(aug.augment(clean, RATE, seed=3, config=config, speaker="spk")[1][0])}
    vtlp.add(json.dumps(aug.augment(_clip(voice="espeak:en-gb+f3"), RATE, 3, config, speaker="spk")[1][0]))
    assert len(vtlp) == 1
    # Probability 0 leaves the clip alone; unknown kinds and ranges are refused.
    untouched, none = aug.augment(clean, RATE, seed=3, config=aug.AugmentConfig(probability=0.0))
    assert none == [] and np.array_equal(untouched, clean)
    with pytest.raises(UserError, match="unknown augmentation"):
        aug.parse_kinds("noise,chorus")
    assert aug.parse_kinds("gain, noise") == ("noise", "gain") and aug.parse_kinds("all") == aug.KINDS
    with pytest.raises(UserError, match="strength"):
        aug.AugmentConfig(strength=2.0)


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.06, 1.1])
def test_tempo_changes_duration_only(factor: float) -> None:
    clean = _clip()
    out = aug.tempo(clean, RATE, factor)
    assert out.size / clean.size == pytest.approx(1 / factor, rel=0.01)
    assert 12 * np.log2(_median_f0(out) / _median_f0(clean)) == pytest.approx(0, abs=0.3)
    with pytest.raises(UserError, match="blur the emotion"):
        aug.tempo(clean, RATE, 1.2)


def test_tempo_draws_stay_within_ten_percent() -> None:
    rng = np.random.default_rng(0)
    config = aug.AugmentConfig(kinds=("tempo",), probability=1.0)
    factors = [aug.plan_augmentation(rng, config)[0]["factor"] for _ in range(300)]
    assert 0.9 <= min(factors) < 0.93 and 1.07 < max(factors) <= 1.1


def _vowel(f0: float = 120.0, formants: tuple[float, ...] = (700.0, 2000.0)) -> np.ndarray:
    """One second of a synthetic vowel: a pulse train through two resonators (a source-filter model)."""
    from scipy.signal import lfilter

    audio = np.zeros(RATE)
    audio[:: int(RATE / f0)] = 1.0
    for freq, bandwidth in zip(formants, (80.0, 120.0)):
        radius, theta = np.exp(-np.pi * bandwidth / RATE), 2 * np.pi * freq / RATE
        audio = lfilter([1 - radius], [1, -2 * radius * np.cos(theta), radius**2], audio)
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def _formant(audio: np.ndarray, low: float, high: float) -> float:
    """The frequency of the smoothed spectrum's peak between ``low`` and ``high`` Hz."""
    power = np.abs(np.fft.rfft(audio * np.hanning(audio.size))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / RATE)
    smooth = np.convolve(power, np.ones(301) / 301, mode="same")
    band = (freqs > low) & (freqs < high)
    return float(freqs[band][smooth[band].argmax()])


def test_vtlp_shifts_f0_level_and_formants() -> None:
    clean = _clip()
    shifted = aug.vtlp(clean, RATE, semitones=2.0, warp=1.0)
    assert 12 * np.log2(_median_f0(shifted) / _median_f0(clean)) == pytest.approx(2.0, abs=0.4)
    up = aug.formant_warp(clean, RATE, 1.1)
    assert 12 * np.log2(_median_f0(up) / _median_f0(clean)) == pytest.approx(0, abs=0.3)
    assert aug.speech_level(up, RATE) == pytest.approx(aug.speech_level(clean, RATE), rel=0.02)
    # On a vowel of known formants: the formant moves with the warp while the harmonics (F0) stay.
    vowel = _vowel()
    f2 = _formant(vowel, 1400, 3000)
    for warp in (0.9, 1.1):
        warped = aug.formant_warp(vowel, RATE, warp)
        assert _formant(warped, 1400, 3000) == pytest.approx(f2 * warp, rel=0.05)
        assert _median_f0(warped) == pytest.approx(_median_f0(vowel), rel=0.02)


def test_reverb_smears_the_energy_envelope_at_the_same_level() -> None:
    clean = _clip()
    wet = aug.reverb(clean, RATE, reverberance=70, hf_damping=50, room_scale=100, pre_delay_ms=10)
    assert wet.size == clean.size and not np.allclose(wet, clean)
    assert aug.speech_level(wet, RATE) == pytest.approx(aug.speech_level(clean, RATE), rel=0.02)

    def valleys(audio: np.ndarray) -> float:  # quiet frames (pauses, closures) relative to the loud ones
        _, rms = track_f0(audio, RATE)
        return float(np.percentile(rms, 30) / np.percentile(rms, 90))

    assert valleys(wet) > 1.5 * valleys(clean)


@pytest.mark.parametrize("color", aug.NOISE_COLORS)
@pytest.mark.parametrize("snr", [5.0, 15.0, 25.0])
def test_noise_hits_the_asked_snr(color: str, snr: float) -> None:
    clean = _clip()
    noisy = aug.add_noise(clean, RATE, snr, color, seed=2)
    assert _snr(clean, noisy) == pytest.approx(snr, abs=1.0)
    noise = noisy - clean
    low, high = _band_share(noise, 0, 1000), _band_share(noise, 4000)
    if color == "white":
        assert high > 2 * low  # flat: the upper half of the band holds half the power
    else:
        assert low > 3 * high  # pink and brown: power falls with frequency


def test_babble_mixes_other_clips_at_the_asked_snr() -> None:
    clean = _clip()
    talkers = [_clip("The weather was fine on Sunday.", "espeak:en-gb+f3"), _clip(voice="espeak:en-us+f2")]
    mixed = aug.add_babble(clean, RATE, [*talkers, talkers[0]], 15.0, [0.0, 0.4, 0.7])
    assert mixed.size == clean.size and _snr(clean, mixed) == pytest.approx(15.0, abs=1.0)


def test_telephone_removes_the_band_above_4khz_and_below_300hz() -> None:
    clean = _clip()
    phone = aug.telephone(clean, RATE)
    assert phone.size == clean.size and _band_share(clean, 4000) > 0.005
    assert _band_share(phone, 4000) < 1e-5
    assert _band_share(phone, 0, 150) < 0.1 * _band_share(clean, 0, 150)
    assert aug.speech_level(phone, RATE) == pytest.approx(aug.speech_level(clean, RATE), rel=0.02)


@pytest.mark.parametrize(("name", "kbps"), [("opus", 8.0), ("mp3", 8.0), ("amr", 12.2)])
def test_codec_degrades_but_keeps_the_speech(name: str, kbps: float) -> None:
    clean = _clip()
    coded = aug.codec(clean, RATE, name, kbps)
    assert coded.size == clean.size and not np.allclose(coded, clean, atol=1e-3)
    assert _band_share(coded, 4000) < 0.5 * _band_share(clean, 4000)  # low bit rates drop the top band
    _, env_clean = track_f0(clean, RATE)
    _, env_coded = track_f0(coded, RATE)
    assert np.corrcoef(env_clean, env_coded)[0, 1] > 0.9  # same timing and energy contour
    assert measure(coded, RATE, words=8).rate == pytest.approx(measure(clean, RATE, words=8).rate, rel=0.05)


def test_gain_moves_the_level_by_the_asked_db() -> None:
    clean = _clip()
    louder = aug.apply_augmentations(clean, RATE, [{"type": "gain", "db": 4.0}])
    assert 20 * np.log10(aug.speech_level(louder, RATE) / aug.speech_level(clean, RATE)) == pytest.approx(
        4.0, abs=0.2
    )


def test_per_class_prosody_ordering_survives_augmentation() -> None:
    # A small corpus: each (sentence, voice) spoken in every emotion at the class means, and every
    # utterance of a group gets the same augmentation chain (all kinds, full strength): as in data synth,
    # the draw never depends on the emotion.
    sentences = ("My sister called this morning about the trip.", "We will meet at the station after lunch.")
    voices = ("espeak:en-us+m1", "flite:slt#1")
    emotions = ("neutral", "happy", "angry", "sad", "surprise")
    config = aug.AugmentConfig(probability=1.0)
    before: dict[str, list] = {e: [] for e in emotions}
    after: dict[str, list] = {e: [] for e in emotions}
    for g, (text, voice) in enumerate((t, v) for t in sentences for v in voices):
        clips = {e: render(text, voice, class_prosody(e)) for e in emotions}
        babble = [_clip("The weather was fine on Sunday.", "espeak:en-gb+f3"), _clip(voice="espeak:en-us+f2")]
        words = len(text.split())
        for emotion, clip in clips.items():
            out, records = aug.augment(clip, RATE, seed=g, config=config, speaker=voice, babble=babble * 2)
            assert len(records) == len(aug.KINDS)
            before[emotion].append(measure(clip, RATE, words=words, noise_aware=True))
            after[emotion].append(measure(out, RATE, words=words, noise_aware=True))

    for feats in (before, after):
        keys = ("f0_mean", "f0_range", "rate", "rms")
        mean = {e: {k: np.mean([getattr(p, k) for p in feats[e]]) for k in keys} for e in emotions}
        assert mean["angry"]["rms"] > mean["neutral"]["rms"] > mean["sad"]["rms"]
        assert mean["angry"]["rate"] > mean["neutral"]["rate"] > mean["sad"]["rate"]
        assert mean["surprise"]["f0_mean"] > mean["happy"]["f0_mean"] > mean["neutral"]["f0_mean"]
        assert mean["neutral"]["f0_mean"] > mean["sad"]["f0_mean"]
        assert min(mean["angry"]["f0_range"], mean["happy"]["f0_range"]) > mean["sad"]["f0_range"]


def test_synth_augment_records_rows_and_writes_the_before_after_table(tmp_path: Path) -> None:
    options = SynthOptions(
        utterances=10,
        general=2,
        workers=1,
        engines=("espeak",),
        progress=False,
        augment=aug.KINDS,
        augment_probability=0.7,
        augment_splits=("train", "dev", "test"),
    )
    out = tmp_path / "c"
    summary = build_corpus(out, options)
    assert not summary["failures"]
    rows = [json.loads(line) for line in (out / "emotion.jsonl").read_text().splitlines()]
    assert all(isinstance(r["augment"], list) for r in rows)
    augmented = [r for r in rows if r["augment"]]
    assert augmented and all(
        r["audio"].startswith("audio-aug/") and (out / r["audio"]).is_file() for r in augmented
    )
    assert all((out / r["clean_audio"]).is_file() and "before" in r["augment_prosody"] for r in augmented)
    babble = [rec for r in augmented for rec in r["augment"] if rec["type"] == "babble"]
    ids_by_split = {r["id"]: r["split"] for r in rows}
    for row in augmented:  # babble talkers come from the same split, never the utterance itself
        for rec in (x for x in row["augment"] if x["type"] == "babble"):
            assert row["id"] not in rec["sources"]
            assert {ids_by_split.get(s, row["split"]) for s in rec["sources"]} == {row["split"]}
    assert babble and "before -> after" in (out / "prosody-augmented.txt").read_text()
    # The same options elsewhere draw the same augmentations; a rerun resumes; other options are refused.
    twin = build_corpus(tmp_path / "twin", options)
    assert not twin["failures"]
    twin_rows = [json.loads(line) for line in (tmp_path / "twin" / "emotion.jsonl").read_text().splitlines()]
    assert [r["augment"] for r in twin_rows] == [r["augment"] for r in rows]
    build_corpus(out, options)
    with pytest.raises(UserError, match="augmented with other options"):
        build_corpus(out, SynthOptions(**{**vars(options), "augment_probability": 0.2}))
