"""``blsp-emo data ...``: check manifests, import corpora, synthesise emotional speech, write targets.

A command with many options fills its typed options dataclass (:class:`~blsp_emo.data.importers.ImportOptions`,
:class:`~blsp_emo.data.synth_corpus.SynthOptions`, :class:`~blsp_emo.data.targets.TargetOptions`) from the
parsed flags with one helper, :func:`options_from_args`: each field takes the flag of the same name, a few
are renamed or computed from flags; the library functions take only the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from blsp_emo.prompts import EMOTION_TARGET_PROMPTS

if TYPE_CHECKING:
    from blsp_emo.data.importers import ImportOptions
    from blsp_emo.data.synth_corpus import SynthOptions
    from blsp_emo.data.targets import TargetOptions

T = TypeVar("T")

# Layout, label rule and split rule of the importers whose rules are not obvious from the options.
IMPORT_EPILOG = """\
corpora with non-obvious rules (the importers' docstrings give the full layouts):
  mosei   a label table (*.csv/*.tsv at the root, or --mosei-labels) with video id, clip id and/or
          start/end, sentiment, the six emotion intensities (0-3), optionally text and a fold column;
          audio {video}_{clip}.wav anywhere below (e.g. Audio/Segmented/), else cut from {video}.wav
          (Audio/Full/WAV_16000/) by start/end. Label: neutral if no emotion marked and |sentiment| < 0.5,
          else the strongest of happiness/sadness/anger/surprise if unique, >= --mosei-threshold and
          above disgust and fear; else dropped. Split: the fold column (standard folds), else by video.
  mead    {speaker}/audio/{emotion}/level_{1-3}/{NNN}.m4a, decoded to 16 kHz wavs in {OUT stem}_audio/.
          surprised -> surprise; contempt, disgusted, fear dropped; level kept as 'intensity'.
          Split by speaker unless --split; text from --mead-sentences, else empty.
  aesdd   Greek, {anger,disgust,fear,happiness,sadness}/xAA (B).wav; disgust, fear dropped.
  cafe    French, [{Emotion}/{Faible|Fort}/]AA-E-I-S.wav; dégoût (D), peur (P) dropped.
  resd    Russian, *.csv (name, path, emotion[, speech, text]); enthusiasm -> happy (--resd-enthusiasm),
          disgust, fear dropped.
  aesdd, cafe and resd are evaluation only: every row is split test with evaluation_only: true.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group (check, import, synth, targets) to the CLI."""
    data = subparsers.add_parser("data", help="manifests, corpus import, synthetic speech, teacher targets")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: (data.print_help(), 1)[1])

    check = sub.add_parser("check", help="validate a manifest; names file:line of every bad row")
    check.add_argument("manifest", type=Path)
    check.add_argument("--no-audio", action="store_true", help="only check that audio files exist (faster)")
    check.set_defaults(func=cmd_check)

    imp = sub.add_parser(
        "import",
        help="import a corpus in its standard layout into a manifest",
        description="Import a corpus in its standard layout into a manifest; prints what was kept per "
        "label and split and what was dropped, and why.",
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument(
        "name",
        help="librispeech, common_voice, sphinx, iemocap, meld, ravdess, cremad, esd, mosei, mead, aesdd, "
        "cafe, resd, generic, hf (Hugging Face datasets), lhotse",
    )
    imp.add_argument(
        "root",
        type=Path,
        help="the corpus folder (generic: the CSV/TSV/JSONL file; hf: a save_to_disk/audiofolder/parquet "
        "folder, a .parquet file or a Hub name; lhotse: the cuts.jsonl.gz manifest)",
    )
    imp.add_argument("-o", "--output", type=Path, required=True, help="manifest JSONL to write")
    imp.add_argument(
        "--iemocap-excited", default="happy", choices=("happy", "drop"), help="IEMOCAP 'exc' rule"
    )
    imp.add_argument(
        "--ravdess-calm", default="neutral", choices=("neutral", "drop"), help="RAVDESS calm rule"
    )
    imp.add_argument(
        "--split",
        help="force one split: train, dev or test (ravdess, cremad, mead, sphinx, generic, lhotse); "
        "hf: the dataset split to import (default: all; validation -> dev)",
    )
    imp.add_argument(
        "--mosei-threshold",
        type=float,
        default=1.0,
        metavar="X",
        help="MOSEI: least intensity (0-3) of the strongest emotion for a label (default 1.0)",
    )
    imp.add_argument(
        "--mosei-labels",
        type=Path,
        metavar="FILE",
        help="MOSEI: the label table (default: the one at the root)",
    )
    imp.add_argument(
        "--mead-sentences",
        type=Path,
        metavar="FILE",
        help="MEAD: transcripts, lines EMOTION<TAB>NUMBER<TAB>sentence (default: none, empty text)",
    )
    imp.add_argument(
        "--resd-enthusiasm", default="happy", choices=("happy", "drop"), help="RESD enthusiasm rule"
    )
    imp.add_argument("--language", help="generic, sphinx, hf, lhotse: language code for every row")
    imp.add_argument("--map", dest="column_map", action="append", metavar="FIELD=COLUMN", help="generic")
    imp.add_argument(
        "--label-map", action="append", metavar="LABEL=EMOTION", help="generic, hf, lhotse; empty = drop"
    )
    imp.add_argument("--config", help="hf: the dataset configuration (subset) name")
    imp.add_argument("--audio-column", help="hf: the audio column (default: audio)")
    imp.add_argument(
        "--text-column", help="hf: the transcript column (default: text, transcription, sentence if present)"
    )
    imp.add_argument(
        "--label-column",
        help="hf: the emotion column (default: emotion or label if present); lhotse: the custom field "
        "(default: emotion)",
    )
    imp.set_defaults(func=cmd_import)

    synth = sub.add_parser(
        "synth", help="synthesise a labelled emotional speech corpus (espeak-ng, Piper, flite, festival)"
    )
    synth.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    synth.add_argument(
        "--utterances", type=int, default=1500, help="emotional utterances (stage 2), all splits"
    )
    synth.add_argument("--general", type=int, default=500, help="unlabelled general sentences (stage 1)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=2)
    synth.add_argument(
        "--engines",
        default=None,
        help="comma list of espeak, piper, flite, festival (or 'all'); default espeak,piper (zh: espeak)",
    )
    synth.add_argument(
        "--language",
        default="en",
        choices=("en", "zh"),
        help="en: English (every engine); zh: Mandarin sentences spoken by espeak-ng (rows carry language zh)",
    )
    synth.add_argument(
        "--holdout-engine",
        action="append",
        default=[],
        metavar="ENGINE",
        help="keep ENGINE out of train/dev/test: all its utterances go to split heldout-ENGINE (repeatable)",
    )
    synth.add_argument(
        "--holdout-to-test", action="store_true", help="put held-out engines' utterances in test instead"
    )
    synth.add_argument(
        "--augment",
        default="",
        metavar="KINDS",
        help="augment with a comma list of vtlp, tempo, reverb, noise, babble, telephone, codec, gain "
        "(or 'all')",
    )
    synth.add_argument(
        "--augment-prob", type=float, default=0.3, help="chance that each augmentation kind is applied"
    )
    synth.add_argument(
        "--augment-strength", type=float, default=1.0, help="0-1: scales every augmentation's range"
    )
    synth.add_argument(
        "--augment-splits", default="train", help="comma list of splits to augment (default: train)"
    )
    synth.add_argument("--sentences", type=Path, help="text file, one sentence a line, for the general part")
    synth.add_argument("--no-plot", action="store_true", help="skip the prosody PNG")
    synth.add_argument("--asr-sample", type=int, default=0, help="Whisper-transcribe N test clips, print WER")
    synth.add_argument(
        "--expressiveness",
        type=float,
        default=1.0,
        help="scale each emotion's distance from neutral prosody (1: conversational, 2: acted)",
    )
    synth.set_defaults(func=cmd_synth)

    sentences = sub.add_parser(
        "sentences", help="write broad-vocabulary sentences from a package for `data synth --sentences`"
    )
    sentences.add_argument("source", choices=("wordnet",), help="wordnet: WordNet's example sentences")
    sentences.add_argument("-o", "--output", type=Path, required=True, help="text file, one sentence a line")
    sentences.add_argument("--min-words", type=int, default=5)
    sentences.add_argument("--max-words", type=int, default=14)
    sentences.add_argument("--seed", type=int, default=0, help="shuffle order")
    sentences.set_defaults(func=cmd_sentences)

    reint = sub.add_parser(
        "reintone",
        help="render real recordings in each emotion's prosody (an evaluation-only test set)",
    )
    reint.add_argument(
        "manifest", type=Path, help="manifest of clean real recordings (e.g. data import sphinx)"
    )
    reint.add_argument(
        "-o", "--output", type=Path, required=True, help="output folder (reintoned.jsonl, audio/)"
    )
    reint.add_argument(
        "--expressiveness", type=float, default=2.0, help="distance from neutral prosody (default 2: acted)"
    )
    reint.set_defaults(func=cmd_reintone)

    targets = sub.add_parser(
        "targets",
        help="write teacher-LLM continuations (docs/method.md §3)",
        description="Write teacher-LLM continuations (docs/method.md §3). Each row is asked in the prompt "
        "set of its language field (en, zh; other languages fall back to English with a warning).",
    )
    targets.add_argument("manifest", type=Path)
    targets.add_argument(
        "-o", "--output", type=Path, required=True, help="target JSONL (appended, resumable)"
    )
    targets.add_argument("--stage", required=True, choices=("semantic", "emotion"))
    targets.add_argument("--backend", default="hf", choices=("hf", "openai", "vllm"))
    targets.add_argument("--teacher", default="tiny", help="'tiny' (embedded) or a model folder / hub name")
    targets.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai backend endpoint")
    targets.add_argument("--api-key", default=None, help="openai backend key (default: $OPENAI_API_KEY)")
    targets.add_argument("--model-name", default=None, help="openai backend: model name sent to the server")
    targets.add_argument(
        "--batch-size", type=int, default=16, help="hf/vllm batch, openai concurrent requests"
    )
    targets.add_argument("--max-new-tokens", type=int, default=48)
    targets.add_argument("--all-emotions", action="store_true", help="emotion stage: one row per emotion")
    targets.add_argument(
        "--emotion-prompt",
        default="continue",
        choices=tuple(EMOTION_TARGET_PROMPTS),
        help="emotion stage: the paper's continuation prompt, or a direct reply to 'I feel {emotion}.'",
    )
    targets.add_argument("--split", action="append", help="only rows of this split (repeatable)")
    targets.add_argument("--limit", type=int, default=None, help="only the first N input rows")
    targets.add_argument(
        "--shard", default="0/1", help="K/M: only input rows whose index is K modulo M (parallel runs)"
    )
    targets.add_argument("--seed", type=int, default=0)
    targets.add_argument(
        "--samples", type=int, default=1,
        help="1 = greedy (the method); N > 1 = best-of-N: N sampled candidates, the scorer keeps one",
    )  # fmt: skip
    targets.add_argument("--temperature", type=float, default=0.7, help="best-of-N sampling temperature")
    targets.add_argument("--top-p", type=float, default=0.95, help="best-of-N nucleus sampling")
    targets.add_argument(
        "--scorer-embedder", default="all-MiniLM-L6-v2",
        help="best-of-N: sentence embedder for the reply-transcript similarity term ('none': off)",
    )  # fmt: skip
    targets.add_argument(
        "--min-seconds", type=float, default=1.0, help="drop shorter audio (docs/method.md §3: 1 s)"
    )
    targets.add_argument(
        "--max-seconds", type=float, default=30.0, help="drop longer audio (docs/method.md §3: 30 s)"
    )
    targets.set_defaults(func=cmd_targets)

    diversity = sub.add_parser(
        "diversity", help="diversity of a target file: distinct-2, common openings, echo and refusal rates"
    )
    diversity.add_argument("targets", type=Path, nargs="+", help="target JSONL file(s) of `data targets`")
    diversity.add_argument("--json", action="store_true", help="print the report as JSON")
    diversity.set_defaults(func=cmd_diversity)


def options_from_args(
    cls: type[T], args: argparse.Namespace, renames: Mapping[str, str] | None = None, **computed: Any
) -> T:
    """An options dataclass ``cls`` filled from parsed flags: a field takes ``computed[field]`` when given,
    else the flag ``renames.get(field, field)`` when the parser has it; the other fields keep their
    defaults. A computed or renamed name that is no field, or a renamed flag the parser lacks, is a
    :class:`TypeError` (a mistake in the command's code, not in the user's input)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    renames = renames or {}
    flags = vars(args)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted((set(computed) | set(renames)) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(unknown)}")
    missing = sorted(flag for flag in renames.values() if flag not in flags)
    if missing:
        raise TypeError(f"the parser has no flag {', '.join(missing)}")
    values = {}
    for name in names:
        if name in computed:
            values[name] = computed[name]
        elif renames.get(name, name) in flags:
            values[name] = flags[renames.get(name, name)]
    return cls(**values)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a manifest: print every bad row as ``file:line: problem``; exit 1 if any."""
    from blsp_emo.clitools import check_input_file
    from blsp_emo.data.manifest import check_manifest

    check_input_file(args.manifest, "manifest")

    report = check_manifest(args.manifest, read_audio=not args.no_audio)
    for problem in report.problems:
        print(problem)
    if report.ok:
        print(f"{args.manifest}: {report.rows} rows, no problems")
        return 0
    print(f"{args.manifest}: {report.rows} rows, {len(report.problems)} problem(s)")
    return 1


def cmd_import(args: argparse.Namespace) -> int:
    """Import a corpus into a manifest and print what was kept per label and what was dropped."""
    from blsp_emo.data.importers import run_import

    report = run_import(args.name, args.root, args.output, import_options(args))
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Synthesise the embedded default's emotional speech corpus (resumable) and print its prosody table."""
    from blsp_emo.clitools import check_output_dir

    check_output_dir(args.output, "-o")
    from blsp_emo.data.synth_corpus import build_corpus

    build_corpus(args.output, synth_options(args))
    return 0


def import_options(args: argparse.Namespace) -> ImportOptions:
    """The options of ``data import`` (every field is the flag of its name)."""
    from blsp_emo.data.importers import ImportOptions

    return options_from_args(ImportOptions, args)


def _names(spec: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in spec.split(",") if e.strip())


def synth_options(args: argparse.Namespace) -> SynthOptions:
    """The options of ``data synth``: comma lists split, the engines defaulting by language."""
    from blsp_emo.data.augment import parse_kinds
    from blsp_emo.data.synth import ENGINES
    from blsp_emo.data.synth_corpus import SynthOptions

    spec = args.engines or ("espeak" if args.language == "zh" else "espeak,piper")
    return options_from_args(
        SynthOptions,
        args,
        renames={"augment_probability": "augment_prob", "sentences_file": "sentences"},
        engines=ENGINES if spec.strip() == "all" else _names(spec),
        holdout_engines=tuple(e for spec in args.holdout_engine for e in _names(spec)),
        augment=parse_kinds(args.augment) if args.augment.strip() else (),
        augment_splits=_names(args.augment_splits),
        plot=not args.no_plot,
    )


def cmd_sentences(args: argparse.Namespace) -> int:
    """Write the sentences of a packaged text source, one a line (atomically)."""
    from blsp_emo.data.text_sources import wordnet_examples
    from blsp_emo.io import atomic_write_text

    lines = wordnet_examples(min_words=args.min_words, max_words=args.max_words, seed=args.seed)
    atomic_write_text(args.output, "".join(line + "\n" for line in lines))
    print(f"wrote {len(lines)} sentences from {args.source} to {args.output}")
    return 0


def cmd_reintone(args: argparse.Namespace) -> int:
    """Write every recording of the manifest in the five emotions (split test, engine real-reintoned)."""
    from blsp_emo.data.reintone import build_reintoned
    from blsp_emo.errors import UserError

    if not args.manifest.is_file():
        raise UserError(f"{args.manifest}: no such manifest file")
    path = build_reintoned(args.manifest, args.output, expressiveness=args.expressiveness)
    print(f"wrote {path} (evaluation only: never train on it)")
    return 0


def cmd_diversity(args: argparse.Namespace) -> int:
    """Print the diversity report of target files (their refused lines counted when present)."""
    import json

    from blsp_emo.data.target_scoring import describe_diversity
    from blsp_emo.data.targets import file_diversity
    from blsp_emo.errors import UserError

    reports = {}
    for path in args.targets:
        if not path.is_file():
            raise UserError(f"{path}: no such target file")
        reports[str(path)] = file_diversity(path)
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        for path, report in reports.items():
            print(f"{path}\n{describe_diversity(report)}")
    return 0


def _shard(text: str) -> tuple[int, int]:
    from blsp_emo.errors import UserError

    try:
        k, m = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected K/M, e.g. 0/2") from None
    if not 0 <= k < m:
        raise UserError(f"--shard {text!r}: K must be in 0..M-1")
    return k, m


def cmd_targets(args: argparse.Namespace) -> int:
    """Write teacher continuations for a manifest (stage 1 'semantic' or stage 2 'emotion'), resumably."""
    from blsp_emo.clitools import check_input_file, check_output_dir

    check_input_file(args.manifest, "manifest")  # files first: the teacher loads for minutes
    if args.output.is_dir():
        from blsp_emo.errors import UserError

        raise UserError(f"{args.output} (-o): is a directory; name the target JSONL file")
    check_output_dir(args.output.parent, "-o")
    from blsp_emo.data.targets import generate_targets

    summary = generate_targets(args.manifest, args.output, target_options(args))
    print(summary.describe())
    return 0


def target_options(args: argparse.Namespace) -> TargetOptions:
    """The options of ``data targets``: ``--split`` (repeatable) becomes the splits, ``--shard K/M`` a pair,
    ``--scorer-embedder none`` no embedder."""
    from blsp_emo.data.targets import TargetOptions

    return options_from_args(
        TargetOptions,
        args,
        splits=tuple(args.split) if args.split else None,
        shard=_shard(args.shard),
        scorer_embedder=None if args.scorer_embedder == "none" else args.scorer_embedder,
    )
