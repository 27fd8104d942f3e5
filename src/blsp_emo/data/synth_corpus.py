"""``data synth``: build the embedded default's synthetic emotional speech corpus.

Output folder::

    plan.json            the options the corpus was planned with (a rerun must match them)
    progress.jsonl       one row per finished utterance, appended (flush + fsync) as workers finish
    emotion.jsonl        labelled utterances (stage 2 / evaluation), sorted by id, all splits
    general.jsonl        unlabelled general sentences (stage 1), sorted by id, all splits
    audio/{part}/{split}/{id}.wav
    prosody.txt, prosody.png   per-class prosody measured from the produced audio
    augment.json, augment-progress.jsonl, audio-aug/...   with --augment (:mod:`synth_augment`)
    prosody-augmented.txt, prosody-augmented.png          per-class prosody before -> after augmentation

The plan (sentence, emotion, voice, seed of every utterance) is a pure function of the options, so the
corpus is deterministic; a rerun skips utterances whose row and audio already exist. Splits are disjoint in
sentences and in voices. Every row names its TTS ``engine``. With ``holdout_engines`` every utterance of
those engines goes to its own split ``heldout-<engine>`` (or to ``test``), spoken by all of the engine's
voices over test-split sentences, and no other split uses the engine: the leave-one-engine-out protocol.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blsp_emo.data.manifest import write_manifest
from blsp_emo.data.prosody import group_by_label, plot_prosody, prosody_table
from blsp_emo.data.sentences import (
    ambiguous_sentences,
    emotional_sentences,
    general_sentences,
    read_sentence_file,
    sentence_split,
)
from blsp_emo.data.synth import ENGINES, list_voices, piper_available, voice_engine
from blsp_emo.data.synth_language import (
    ambiguous_sentences_zh,
    check_synth_language,
    count_words,
    emotional_sentences_zh,
    error_units,
    general_sentences_zh,
)
from blsp_emo.data.synth_options import AUGMENT_OPTIONS, SynthOptions, plan_changes, run_parallel
from blsp_emo.errors import UserError
from blsp_emo.io import atomic_write_text, read_jsonl_dicts
from blsp_emo.prompts import EMOTIONS
from blsp_emo.textnorm import edit_distance

SPLIT_SHARES = {"train": 0.8, "dev": 0.1, "test": 0.1}


@dataclass
class Job:
    """One utterance to synthesise."""

    id: str
    part: str  # "emotion" | "general"
    split: str
    text: str
    emotion: str | None
    voice: str
    seed: int
    wording: str = ""  # "ambiguous" | "emotional" | "general"
    expressiveness: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    language: str = "en"  # ISO 639-1 code of the text

    @property
    def audio(self) -> str:
        """Audio path relative to the corpus folder."""
        return f"audio/{self.part}/{self.split}/{self.id}.wav"


def _pick_voice(rng: random.Random, pools: dict[str, list[str]], piper_share: float) -> str:
    """One voice for an utterance: an engine (uniformly), then one of its voices.

    With espeak and Piper alone the draw is the original one (Piper with ``piper_share``), so that corpora
    planned before the other engines existed keep their plan.
    """
    if set(pools) <= {"espeak", "piper"}:
        espeak, piper = pools.get("espeak", []), pools.get("piper", [])
        if piper and (not espeak or rng.random() < piper_share):
            return rng.choice(piper)
        if not espeak:
            raise UserError("no voices available for the chosen engines (is espeak-ng installed?)")
        return rng.choice(espeak)
    engines = [e for e in pools if pools[e]]
    if not engines:
        raise UserError("no voices available for the chosen engines")
    return rng.choice(pools[engines[int(rng.random() * len(engines))]])


@dataclass(frozen=True)
class _Block:
    """A run of utterances: the manifest split, the sentences' split, the voices, the count."""

    name: str  # id infix: train | dev | test | heldout-<engine>
    split: str  # the rows' split
    sentences: str  # sentence_split() value the texts come from
    pools: dict[str, list[str]]
    count: int


def _engines(options: SynthOptions) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(engines in use, held-out engines), validated."""
    unknown = set(options.engines) - set(ENGINES)
    if unknown:
        raise UserError(f"unknown TTS engine(s) {', '.join(sorted(unknown))} (expected {', '.join(ENGINES)})")
    engines = tuple(e for e in options.engines if e != "piper" or piper_available())
    check_synth_language(options.language, engines)
    holdout = tuple(options.holdout_engines)
    missing = [e for e in holdout if e not in engines]
    if missing:
        raise UserError(
            f"held-out engine(s) {', '.join(missing)} not among the engines in use ({', '.join(engines)})"
        )
    if holdout and not set(engines) - set(holdout):
        raise UserError("every engine is held out: nothing is left for train/dev/test")
    return engines, holdout


def _blocks(total: int, options: SynthOptions) -> list[_Block]:
    engines, holdout = _engines(options)
    kept = tuple(e for e in engines if e not in holdout)
    counts = _split_counts(total, holdout)
    blocks = [
        _Block(
            split,
            split,
            split,
            {e: list_voices(split, engines=(e,), language=options.language) for e in kept},
            counts[split],
        )
        for split in SPLIT_SHARES
    ]
    for engine in holdout:
        name = f"heldout-{engine}"
        split = "test" if options.holdout_to_test else name
        # All of the engine's voices, over test sentences: unseen voices, engine and sentences.
        blocks.append(
            _Block(
                name,
                split,
                "test",
                {engine: list_voices(None, engines=(engine,), language=options.language)},
                counts[name],
            )
        )
    return blocks


def plan_jobs(options: SynthOptions) -> list[Job]:
    """The full, deterministic list of utterances for these options."""
    rng = random.Random(options.seed)
    jobs: list[Job] = []
    zh = options.language == "zh"
    neutral_words = ambiguous_sentences_zh() if zh else ambiguous_sentences()
    worded_words = emotional_sentences_zh() if zh else emotional_sentences()
    ambiguous = {s: [x for x in neutral_words if sentence_split(x) == s] for s in SPLIT_SHARES}
    worded = {s: [p for p in worded_words if sentence_split(p[1]) == s] for s in SPLIT_SHARES}
    for block in _blocks(options.utterances, options):
        for index in range(block.count):
            emotion = EMOTIONS[index % len(EMOTIONS)]
            congruent = [text for label, text in worded[block.sentences] if label == emotion]
            if congruent and rng.random() >= options.ambiguous_share:
                text, wording = rng.choice(congruent), "emotional"
            else:
                text, wording = rng.choice(ambiguous[block.sentences]), "ambiguous"
            voice = _pick_voice(rng, block.pools, options.piper_share)
            jobs.append(
                Job(
                    f"emo-{block.name}-{index:06d}",
                    "emotion",
                    block.split,
                    text,
                    emotion,
                    voice,
                    rng.randrange(2**31),
                    wording,
                    options.expressiveness,
                    language=options.language,
                )
            )
    if options.general > 0:
        holdouts = len(options.holdout_engines)
        if options.sentences_file is not None:
            pool = read_sentence_file(options.sentences_file)
        else:
            make = general_sentences_zh if zh else general_sentences
            pool = make(max(options.general * (2 + 2 * holdouts), 100), seed=options.seed)
        by_split: dict[str, list[str]] = {s: [] for s in SPLIT_SHARES}
        for sentence in pool:
            by_split[sentence_split(sentence)].append(sentence)
        used = dict.fromkeys(SPLIT_SHARES, 0)  # held-out blocks take the test sentences after test's own
        for block in _blocks(options.general, options):
            texts = by_split[block.sentences][used[block.sentences] : used[block.sentences] + block.count]
            used[block.sentences] += block.count
            for index, text in enumerate(texts):
                voice = _pick_voice(rng, block.pools, options.piper_share)
                jobs.append(
                    Job(
                        f"gen-{block.name}-{index:06d}",
                        "general",
                        block.split,
                        text,
                        None,
                        voice,
                        rng.randrange(2**31),
                        "general",
                        language=options.language,
                    )
                )
    return jobs


def _split_counts(total: int, holdout: tuple[str, ...] = ()) -> dict[str, int]:
    dev = int(round(total * SPLIT_SHARES["dev"]))
    test = int(round(total * SPLIT_SHARES["test"]))
    # Each held-out engine gets as many utterances as test, taken from train.
    counts = {"train": total - dev - test - len(holdout) * test, "dev": dev, "test": test}
    if counts["train"] < 0:
        raise UserError(f"too few utterances ({total}) for {len(holdout)} held-out engine(s)")
    return counts | {f"heldout-{engine}": test for engine in holdout}


def synthesize_job(job: Job, root: str) -> dict[str, Any]:
    """Worker: synthesise one utterance, write its wav, measure its prosody; returns its manifest row."""
    from blsp_emo.audio import save_wav
    from blsp_emo.data.prosody import measure
    from blsp_emo.data.synth import synthesize

    audio, rate = synthesize(
        job.text, job.emotion, job.voice, seed=job.seed, expressiveness=job.expressiveness
    )
    save_wav(Path(root) / job.audio, audio, rate)
    words = count_words(job.text, job.language)
    return {
        "id": job.id,
        "audio": job.audio,
        "text": job.text,
        **({"emotion": job.emotion} if job.emotion else {}),
        "language": job.language,
        "speaker": job.voice,
        "engine": voice_engine(job.voice),
        "duration": round(audio.size / rate, 3),
        "split": job.split,
        "corpus": "synth",
        "part": job.part,
        "wording": job.wording,
        "seed": job.seed,
        "prosody": measure(audio, rate, words=words).to_dict(),
    }


def _run_job(args: tuple[Job, str]) -> dict[str, Any] | str:
    job, root = args
    try:
        return synthesize_job(job, root)
    except Exception as exc:  # reported per utterance; the rest of the corpus goes on
        return f"{job.id} ({job.voice}): {exc}"


def _check_plan(out: Path, options: SynthOptions) -> None:
    plan = {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
        for k, v in asdict(options).items()
    }
    # Augmentation is checked on its own (augment.json): a clean corpus can be augmented later.
    for key in ("workers", "plot", "asr_sample", "progress", *AUGMENT_OPTIONS):
        plan.pop(key)
    # Options at their defaults are left out, so corpora planned before they existed resume unchanged.
    if plan["expressiveness"] == 1.0:
        plan.pop("expressiveness")
    if plan["language"] == "en":
        plan.pop("language")
    if not plan["holdout_engines"]:
        plan.pop("holdout_engines")
        plan.pop("holdout_to_test")
    plan["engines"] = [e for e in options.engines if e != "piper" or piper_available()]
    changed = plan_changes(out / "plan.json", plan)
    if changed:
        raise UserError(
            f"{out}: this folder holds a corpus planned with other options ({', '.join(changed)}); "
            "use a new folder or the same options to resume"
        )


def build_corpus(out: str | Path, options: SynthOptions | None = None) -> dict[str, Any]:
    """Synthesise (or finish) the corpus in ``out``; prints and returns a summary with the prosody table."""
    from blsp_emo.data.synth_engines import check_engine

    options = options or SynthOptions()
    out = Path(out)
    engines, _ = _engines(options)
    for engine in engines:
        check_engine(engine)  # a missing Debian package fails here, naming it, not once per utterance
    if options.augment:
        from blsp_emo.data.synth_augment import validate

        validate(options)
    _check_plan(out, options)
    jobs = plan_jobs(options)
    log = out / "progress.jsonl"
    done = {row["id"]: row for _, row in read_jsonl_dicts(log) if (out / str(row.get("audio", ""))).is_file()}
    todo = [job for job in jobs if job.id not in done]
    print(f"synth: {len(jobs)} utterances planned, {len(jobs) - len(todo)} already done, {len(todo)} to go")
    failures = _run_jobs(todo, out, options, done)
    rows = [done[job.id] for job in jobs if job.id in done]
    for row in rows:  # rows written before the field existed
        row.setdefault("engine", voice_engine(str(row.get("speaker", ""))))
    if options.augment and failures:
        # Babble draws from the whole split: augmenting before it is complete would change the draws.
        print("augment: waiting until every utterance is synthesised (rerun to retry the failed ones)")
    elif options.augment:
        from blsp_emo.data.synth_augment import augment_corpus

        rows, augment_failures = augment_corpus(out, rows, options)
        failures += augment_failures
    write_manifest(out / "emotion.jsonl", [r for r in rows if r["part"] == "emotion"])
    write_manifest(out / "general.jsonl", [r for r in rows if r["part"] == "general"])
    summary = summarize(out, rows, options)
    if failures:
        print(f"synth: {len(failures)} utterance(s) failed (rerun to retry):")
        for failure in failures[:10]:
            print(f"  {failure}")
    summary["failures"] = failures
    return summary


def _run_jobs(todo: list[Job], out: Path, options: SynthOptions, done: dict[str, dict]) -> list[str]:
    return run_parallel(
        _run_job, [(job, str(out)) for job in todo], out / "progress.jsonl", options, done, "synth"
    )


def _split_order(rows: list[dict[str, Any]]) -> list[str]:
    present = {str(r["split"]) for r in rows}
    return [s for s in SPLIT_SHARES if s in present] + sorted(present - set(SPLIT_SHARES))


def summarize(out: Path, rows: list[dict[str, Any]], options: SynthOptions) -> dict[str, Any]:
    """Print counts per split, engine and class and the per-class prosody table; write prosody.txt/.png
    (and prosody-augmented.txt/.png when the corpus is augmented)."""
    emo = [r for r in rows if r["part"] == "emotion"]
    gen = [r for r in rows if r["part"] == "general"]
    lines = [f"corpus {out}: {len(emo)} emotional + {len(gen)} general utterances"]
    order = _split_order(rows) or list(SPLIT_SHARES)
    width = max(5, *(len(s) for s in order))
    for split in order:
        in_split = [r for r in rows if r["split"] == split]
        voices = {r["speaker"] for r in in_split}
        hours = sum(r["duration"] for r in in_split) / 3600
        lines.append(
            f"  {split:<{width}} {len(in_split):>6} utterances, {len(voices):>3} voices, {hours:.2f} h"
        )
        per_engine = [
            f"{e} {sum(r.get('engine') == e for r in in_split)} "
            f"({len({r['speaker'] for r in in_split if r.get('engine') == e})} voices)"
            for e in sorted({str(r.get("engine", "")) for r in in_split})
        ]
        lines.append(f"        engines: {', '.join(per_engine)}")
    groups = group_by_label((r["emotion"], r["prosody"]) for r in emo)
    groups.update(group_by_label(("(general)", r["prosody"]) for r in gen))
    table = prosody_table(groups, [*EMOTIONS, "(general)"])
    lines += ["", "prosody per class, measured from the produced audio (mean ± std):", table]
    text = "\n".join(lines)
    print(text)
    atomic_write_text(out / "prosody.txt", text + "\n")
    summary: dict[str, Any] = {"emotion": len(emo), "general": len(gen), "table": table}
    if options.plot and emo:
        png = plot_prosody(groups, [*EMOTIONS, "(general)"], out / "prosody.png")
        if png:
            print(f"plot: {png}")
    if options.augment:
        from blsp_emo.data.synth_augment import summarize_augmentation

        summary["augmented_table"] = summarize_augmentation(out, rows, options.plot)
    if options.asr_sample > 0:
        summary["wer"] = asr_check(out, [r for r in emo if r["split"] == "test"] or emo, options.asr_sample)
    return summary


def asr_check(out: Path, rows: list[dict[str, Any]], sample: int, seed: int = 0) -> float:
    """Transcribe a sample with the embedded Whisper (each row's language token) and print the error rate
    per class and overall: word error rate, character error rate for Chinese (:func:`error_units`)."""
    from blsp_emo.assets.transcribe import transcribe  # the function (the package name is also the module)
    from blsp_emo.audio import load_audio

    chosen = random.Random(seed).sample(rows, min(sample, len(rows)))
    languages = [str(r.get("language") or "en") for r in chosen]
    hyps = transcribe([load_audio(out / r["audio"]) for r in chosen], language=languages)
    errors: dict[str, list[int]] = {}
    for row, hyp, language in zip(chosen, hyps, languages):
        ref = error_units(row["text"], language)
        errs = errors.setdefault(row.get("emotion") or "(general)", [0, 0])
        errs[0] += edit_distance(ref, error_units(hyp, language))
        errs[1] += len(ref)
    total = sum(e for e, _ in errors.values()) / max(1, sum(n for _, n in errors.values()))
    per_class = ", ".join(f"{k} {e / max(n, 1):.1%}" for k, (e, n) in sorted(errors.items()))
    measure = "CER" if set(languages) == {"zh"} else "WER"
    print(f"Whisper ASR on {len(chosen)} utterances: {measure} {total:.1%} ({per_class})")
    return float(total)


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a corpus manifest as plain dicts."""
    return [row for _, row in read_jsonl_dicts(path)]


def class_means(rows: list[dict[str, Any]], feature: str) -> dict[str, float]:
    """Mean of one prosody feature per emotion (for checks and tests)."""
    groups = group_by_label((r.get("emotion") or "(general)", r["prosody"]) for r in rows)
    return {label: float(np.mean(values[feature])) for label, values in groups.items() if values.get(feature)}
