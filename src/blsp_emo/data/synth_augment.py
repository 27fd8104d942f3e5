"""``data synth --augment``: augment a synthesised corpus after its clean audio exists, resumably.

Each utterance of the augmented splits draws its augmentations (:func:`blsp_emo.data.augment.
plan_augmentation`) from the corpus seed and its id, never from its emotion; the vocal-tract-length
perturbation is drawn per speaker. Babble talkers are other clean clips of the same split (so splits stay
disjoint). The augmented audio goes to ``audio-aug/{part}/{split}/{id}.wav`` and the row points at it,
keeping ``clean_audio`` and recording ``augment`` (the applied augmentations with their parameters: an
empty list for a row left clean). ``augment.json`` holds the augmentation options; a rerun with other
options is refused, a rerun with the same ones resumes from ``augment-progress.jsonl``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blsp_emo.data.augment import AugmentConfig, apply_augmentations, plan_augmentation
from blsp_emo.data.synth import utterance_seed
from blsp_emo.data.synth_options import plan_changes, run_parallel
from blsp_emo.errors import UserError
from blsp_emo.io import atomic_write_text, read_jsonl_dicts
from blsp_emo.prompts import EMOTIONS

if TYPE_CHECKING:
    from blsp_emo.data.synth_options import SynthOptions


class _Others(Sequence[str]):
    """The ids of a split without one of them (babble never mixes an utterance with itself)."""

    def __init__(self, ids: list[str], skip: int) -> None:
        self.ids, self.skip = ids, skip

    def __len__(self) -> int:
        return len(self.ids) - 1

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self.ids[index if index < self.skip else index + 1]


def _config(options: SynthOptions) -> AugmentConfig:
    return AugmentConfig(
        kinds=tuple(options.augment),
        probability=options.augment_probability,
        strength=options.augment_strength,
    )


def validate(options: SynthOptions) -> None:
    """Fail early (before any synthesis) on bad augmentation options."""
    _config(options)
    if not options.augment_splits:
        raise UserError("--augment-splits names no split")


def _check_augment_plan(out: Path, options: SynthOptions) -> None:
    plan = {
        "kinds": list(options.augment),
        "probability": options.augment_probability,
        "strength": options.augment_strength,
        "splits": list(options.augment_splits),
        "seed": options.seed,
    }

    changed = plan_changes(out / "augment.json", plan)
    if changed:
        raise UserError(
            f"{out}: this corpus was augmented with other options ({', '.join(changed)}); use the same "
            "--augment options, or remove augment.json, augment-progress.jsonl and audio-aug/"
        )


def plan_corpus_augmentation(rows: list[dict[str, Any]], options: SynthOptions) -> dict[str, list[dict]]:
    """The augmentation records of every row (by id): deterministic, from the seed and the ids alone."""
    config = _config(options)
    by_split: dict[str, list[str]] = {}
    for row in rows:
        by_split.setdefault(str(row["split"]), []).append(str(row["id"]))
    position = {rid: i for ids in by_split.values() for i, rid in enumerate(ids)}
    plans: dict[str, list[dict]] = {}
    for row in rows:
        rid, split = str(row["id"]), str(row["split"])
        if split not in options.augment_splits:
            plans[rid] = []
            continue
        rng = np.random.default_rng(utterance_seed("augment", options.seed, rid))
        others = _Others(by_split[split], position[rid])
        plans[rid] = plan_augmentation(rng, config, str(row["speaker"]), options.seed, others)
    return plans


def augment_job(args: tuple[dict[str, Any], list[dict], dict[str, str], str]) -> dict[str, Any] | str:
    """Worker: augment one clean clip as recorded, write it, measure it; returns its progress row."""
    row, records, sources, root = args
    try:
        from blsp_emo.audio import SAMPLE_RATE, load_audio, save_wav
        from blsp_emo.data.prosody import measure

        base = Path(root)
        clean = load_audio(base / row["audio"])
        audio = apply_augmentations(clean, SAMPLE_RATE, records, lambda key: load_audio(base / sources[key]))
        target = re.sub(r"^audio/", "audio-aug/", row["audio"])
        save_wav(base / target, audio, SAMPLE_RATE)
        from blsp_emo.data.synth_language import count_words

        words = count_words(row["text"], str(row.get("language") or "en"))
        return {
            "id": row["id"],
            "audio": target,
            "clean_audio": row["audio"],
            "prosody_clean": row.get("prosody"),
            "augment": records,
            "duration": round(audio.size / SAMPLE_RATE, 3),
            "prosody": measure(audio, SAMPLE_RATE, words=words).to_dict(),
            # Both versions measured over the speech span above the noise floor, for the before/after table.
            "augment_prosody": {
                "before": measure(clean, SAMPLE_RATE, words=words, noise_aware=True).to_dict(),
                "after": measure(audio, SAMPLE_RATE, words=words, noise_aware=True).to_dict(),
            },
        }
    except Exception as exc:  # reported per utterance; the rest goes on
        return f"{row['id']} (augment): {exc}"


def augment_corpus(
    out: Path, rows: list[dict[str, Any]], options: SynthOptions
) -> tuple[list[dict[str, Any]], list[str]]:
    """Augment the rows of ``options.augment_splits``; returns the final rows and the failures."""

    _check_augment_plan(out, options)
    plans = plan_corpus_augmentation(rows, options)
    audio_of = {str(r["id"]): str(r["audio"]) for r in rows}
    log = out / "augment-progress.jsonl"
    done = {r["id"]: r for _, r in read_jsonl_dicts(log) if (out / str(r.get("audio", ""))).is_file()}
    todo = [r for r in rows if plans[str(r["id"])] and r["id"] not in done]
    augmented = sum(bool(p) for p in plans.values())
    print(f"augment: {augmented} of {len(rows)} utterances augmented, {len(todo)} to go")
    args = []
    for row in todo:
        records = plans[str(row["id"])]
        keys = {k for rec in records if rec["type"] == "babble" for k in rec["sources"]}
        args.append((row, records, {k: audio_of[k] for k in keys}, str(out)))
    failures = run_parallel(augment_job, args, log, options, done, "augment")
    final = []
    for row in rows:
        update = done.get(row["id"]) if plans[str(row["id"])] else None
        final.append({**row, **update} if update else {**row, "augment": []})
    return final, failures


def summarize_augmentation(out: Path, rows: list[dict[str, Any]], plot: bool = True) -> str:
    """Write prosody-augmented.txt/.png: per-class prosody of the augmented utterances, before -> after."""
    from blsp_emo.data.prosody import comparison_table, group_by_label, plot_prosody_comparison

    done = [r for r in rows if r.get("augment") and r.get("augment_prosody")]
    label = [(r.get("emotion") or "(general)", r["augment_prosody"]) for r in done]
    before = group_by_label((lab, p["before"]) for lab, p in label)
    after = group_by_label((lab, p["after"]) for lab, p in label)
    order = [*EMOTIONS, "(general)"]
    kinds: dict[str, int] = {}
    for row in done:
        for record in row["augment"]:
            kinds[record["type"]] = kinds.get(record["type"], 0) + 1
    table = comparison_table(before, after, order)
    text = "\n".join(
        [
            f"augmentation: {len(done)} of {len(rows)} utterances augmented "
            f"({', '.join(f'{k} {n}' for k, n in kinds.items()) or 'none'})",
            "",
            "prosody per class of the augmented utterances, before -> after (mean; speech span above the",
            "noise floor, so noise does not stretch the span):",
            table,
        ]
    )
    print(text)
    atomic_write_text(out / "prosody-augmented.txt", text + "\n")
    if plot and done:
        png = plot_prosody_comparison(before, after, order, out / "prosody-augmented.png")
        if png:
            print(f"plot: {png}")
    return table
