"""What ``data synth`` builds and the steps its two halves share: the corpus builder
(:mod:`blsp_emo.data.synth_corpus`) and its augmentation (:mod:`blsp_emo.data.synth_augment`) both check
a resumed run's plan against the recorded one and run their per-utterance jobs in worker processes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blsp_emo.io import JsonlAppender, atomic_write_json


@dataclass
class SynthOptions:
    """What to synthesise."""

    utterances: int = 1500  # labelled emotional utterances over all splits (balanced over the 5 classes)
    general: int = 500  # unlabelled general sentences for stage 1
    seed: int = 0  # everything random derives from this
    workers: int = 2  # synthesis processes
    engines: tuple[str, ...] = ("espeak", "piper")  # TTS engines to draw voices from (synth.ENGINES)
    piper_share: float = 0.35  # fraction spoken by Piper when the engines are espeak and piper only
    holdout_engines: tuple[str, ...] = ()  # engines kept out of train/dev/test (leave-one-engine-out)
    holdout_to_test: bool = False  # held-out engines' utterances go to "test" (else "heldout-<engine>")
    ambiguous_share: float = 0.7  # fraction of emotional utterances whose words fit any emotion
    expressiveness: float = 1.0  # scales each emotion's distance from neutral prosody (2.0: acted speech)
    sentences_file: Path | None = None  # user sentences for the general part (else the grammar)
    plot: bool = True  # write prosody.png
    asr_sample: int = 0  # transcribe this many test utterances with Whisper and print the WER
    progress: bool = True  # tqdm progress bar
    augment: tuple[str, ...] = ()  # augmentation kinds (augment.KINDS); empty: none
    augment_probability: float = 0.3  # chance that each kind is applied to an utterance
    augment_strength: float = 1.0  # 0-1: scales the augmentation parameter ranges
    augment_splits: tuple[str, ...] = ("train",)  # splits whose utterances are augmented
    language: str = "en"  # "en", or "zh": Mandarin sentences spoken by espeak-ng (synth_language)


AUGMENT_OPTIONS = ("augment", "augment_probability", "augment_strength", "augment_splits")


def plan_changes(path: Path, plan: dict[str, Any]) -> list[str]:
    """The keys in which ``plan`` differs from the one recorded in ``path`` (a resumed run must match it);
    with no record yet, ``plan`` is written there and nothing differs."""
    if not path.exists():
        atomic_write_json(path, plan)
        return []
    previous = json.loads(path.read_text())
    return sorted(k for k in {*plan, *previous} if previous.get(k) != plan.get(k))


def run_parallel(
    worker: Any, args: list[Any], log_path: Path, options: SynthOptions, done: dict[str, dict], desc: str
) -> list[str]:
    """Run ``worker`` over ``args`` in ``options.workers`` processes; each returned row is appended to
    ``log_path`` (durably, as it arrives) and stored in ``done``; returns the failure messages."""
    from tqdm import tqdm

    failures: list[str] = []
    if not args:
        return failures
    bar = tqdm(total=len(args), desc=desc, unit="utt", disable=not options.progress)
    with JsonlAppender(log_path) as log:

        def record(result: dict | str) -> None:
            if isinstance(result, str):
                failures.append(result)
            else:
                log.write(result)
                done[result["id"]] = result
            bar.update(1)

        if options.workers <= 1:
            for item in args:
                record(worker(item))
        else:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(options.workers) as pool:
                for result in pool.imap_unordered(worker, args, chunksize=4):
                    record(result)
    bar.close()
    return failures
