"""``data targets``: teacher-written continuations for stage 1 and stage 2 (docs/method.md §3).

Stage 1 ("semantic"): default system prompt; ``Continue the following sentence in a coherent style: `` +
transcript. Stage 2 ("emotion"): empathetic system prompt; ``Continue the following sentence that reflects
a '{emotion}' emotion tone in a coherent style: `` + transcript (both built by
:meth:`blsp_emo.prompts.Stage.teacher_conversation`). Greedy, 48 new tokens; ``truncated`` marks a
continuation that hit the cap. Stage-2 refusals are filtered out (kept in :func:`refused_path`).
Each row is asked in the prompt set of its ``language`` (:func:`blsp_emo.prompts.prompt_set`: English and
Chinese; other known languages fall back to English with a warning, an unknown code is an error).

Best-of-N (``samples`` > 1): N candidates sampled per prompt, one kept by
:class:`~blsp_emo.data.target_scoring.BestOfN` (echoes, refusals and off-emotion replies rejected; replies
that take up the transcript's content preferred; openings already common in the file penalised). Every
line records its score and how many candidates were rejected for what; the provenance sidecar gets the
file's diversity report (distinct-2, most common opening, echo and refusal rates, per emotion).

The output is appended one complete, fsynced line at a time: a rerun skips finished rows and Ctrl-C loses
nothing written. ``OUT.provenance.json`` records the teacher, prompts, decoding, seed, code version and input.

A row is finished when a line with its ``target_key`` (``id|emotion``) and its ``target_hash`` is there: the
hash covers everything that determines the target (the teacher conversation -- prompt, transcript, emotion
-- the teacher and the decoding), so a row whose transcript changed under the same id is generated again
and its stale line removed, while unchanged rows are kept. Lines written before the hash existed get it
computed from the transcript they carry (the provenance check guarantees the same teacher and prompts).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from blsp_emo import __version__
from blsp_emo.data.manifest import (
    ManifestRow,
    read_manifest,
    relative_audio,
    write_manifest,
)
from blsp_emo.data.target_backends import TeacherBackend, teacher_reply, truncated
from blsp_emo.data.target_scoring import SCORER_VERSION, BestOfN, describe_diversity, diversity_report
from blsp_emo.errors import UserError
from blsp_emo.io import JsonlAppender, atomic_write_json, read_jsonl_dicts, sha256_file
from blsp_emo.model.types import Conversation, DecodingOptions, Reply
from blsp_emo.prompts import (
    EMOTIONS,
    INSTRUCTIONS,
    SYSTEM_PROMPTS,
    Stage,
    check_language,
    emotion_target_prompt,
    is_refusal,
    prompt_set,
)

TEACHER_STAGES: tuple[Stage, ...] = (Stage.SEMANTIC, Stage.EMOTION)  # the stages that have teacher targets


@dataclass
class TargetOptions:
    """How to write targets."""

    stage: Stage = Stage.SEMANTIC  # SEMANTIC (stage 1) or EMOTION (stage 2); its name is accepted too
    backend: str = "hf"  # hf | openai | vllm
    teacher: str = "tiny"  # model for hf/vllm (preset, embedded name, folder, hub id)
    base_url: str = "http://127.0.0.1:8000/v1"  # openai backend
    api_key: str | None = None  # openai backend (default $OPENAI_API_KEY)
    model_name: str | None = None  # openai backend: model name (default: the server's first model)
    batch_size: int = 16  # hf/vllm batch size; openai concurrent requests
    max_new_tokens: int = 48  # docs/method.md §3: 48
    all_emotions: bool = False  # emotion stage: write a continuation for each of the five emotions
    emotion_prompt: str = "continue"  # emotion stage: teacher prompt preset (prompts.EMOTION_TARGET_PROMPTS)
    splits: tuple[str, ...] | None = None  # only rows of these splits
    limit: int | None = None  # only the first N input rows
    shard: tuple[int, int] = (0, 1)  # (k, m): only input rows whose index is k modulo m (parallel runs)
    seed: int = 0  # greedy: recorded only; best-of-N: seeds the sampling
    samples: int = 1  # 1 = greedy (docs/method.md §3); N > 1 = best-of-N candidates, the scorer keeps one
    temperature: float = 0.7  # best-of-N sampling temperature
    top_p: float = 0.95  # best-of-N nucleus
    scorer_embedder: str | None = "all-MiniLM-L6-v2"  # best-of-N: sentence similarity term (None: off)
    min_seconds: float = 1.0  # docs/method.md §3: keep 1 s <= duration <= 30 s
    max_seconds: float = 30.0
    max_text_tokens: int = 256  # docs/method.md §3: <= 256 text tokens (when the tokenizer is known)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        self.stage = Stage.parse(self.stage, allowed=TEACHER_STAGES)

    @property
    def sampled(self) -> bool:
        """Best-of-N (``samples`` > 1) rather than greedy targets."""
        return self.samples > 1

    def decoding(self) -> DecodingOptions:
        """The teacher's decoding: greedy with the token cap (the seed recorded), or best-of-N sampling at
        ``temperature`` / ``top_p`` seeded by ``seed`` (``samples`` candidates per prompt)."""
        if not self.sampled:
            return DecodingOptions(max_new_tokens=self.max_new_tokens, seed=self.seed)
        return DecodingOptions(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p, seed=self.seed
        )


def decoding_spec(options: TargetOptions) -> dict[str, Any]:
    """What decides the decoding, as recorded in the provenance and hashed into every target."""
    if not options.sampled:
        return {"strategy": "greedy", "max_new_tokens": options.max_new_tokens}
    return {
        "strategy": "best-of-n",
        "n": options.samples,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "seed": options.seed,
        "scorer": SCORER_VERSION,
        "scorer_embedder": options.scorer_embedder,
        "max_new_tokens": options.max_new_tokens,
    }


@dataclass
class TargetSummary:
    """Counts of one ``data targets`` run."""

    output: Path
    input_rows: int = 0
    already_done: int = 0
    generated: int = 0
    reused: int = 0  # rows answered by a finished identical prompt (same transcript and emotion)
    superseded: int = 0  # stale lines removed: their row's transcript, emotion or prompt changed
    written: int = 0
    truncated: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # best-of-N: reason -> candidates rejected
    diversity: dict[str, Any] = field(default_factory=dict)  # diversity_report of the whole output
    refused: Counter[str] = field(default_factory=Counter)  # emotion -> refusals dropped
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> input rows not sent to the teacher
    seconds: float = 0.0

    def describe(self) -> str:
        """A readable summary."""
        lines = [
            f"targets -> {self.output}",
            f"  input rows {self.input_rows}, already done {self.already_done}, generated {self.generated} "
            f"in {self.seconds:.1f} s ({self.generated / max(self.seconds, 1e-9):.2f} rows/s), "
            f"copied from an identical prompt {self.reused}, stale targets replaced {self.superseded}",
            f"  written {self.written}, truncated (hit the token cap) {self.truncated}",
        ]
        if self.refused:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items()))
            lines.append(f"  refusals dropped {sum(self.refused.values())} ({detail})")
        else:
            lines.append("  refusals dropped 0")
        for reason, count in self.dropped.most_common():
            lines.append(f"  skipped {count}: {reason}")
        if self.rejected:
            detail = ", ".join(f"{k} {v}" for k, v in self.rejected.most_common())
            lines.append(f"  best-of-N candidates rejected: {detail}")
        if self.diversity:
            lines.append("  diversity of the whole file:")
            lines += ["    " + line for line in describe_diversity(self.diversity).splitlines()]
        return "\n".join(lines)


def code_version() -> str:
    """Package version plus the git commit of the source tree when available."""
    version = __version__
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version


def manifest_languages(manifest: Path) -> list[str]:
    """The languages of a manifest's rows, sorted; an unknown code is a :class:`UserError` naming its row."""
    found: set[str] = set()
    for index, row in enumerate(read_manifest(manifest)):
        if row.language not in found:
            try:
                found.add(check_language(row.language))
            except UserError as exc:
                raise UserError(f"{manifest}: row {index + 1} ({row.id or row.audio}): {exc}") from None
    return sorted(found)


def _language_prompts(options: TargetOptions, language: str) -> dict[str, str]:
    """The teacher prompts of one language as recorded in the provenance ({emotion} left as a slot)."""
    prompts = prompt_set(language)
    if options.stage is Stage.SEMANTIC:
        return {
            "system": prompts.system["default"],
            "user": prompts.instructions["continue"] + "{transcript}",
        }
    words = prompts.emotion_words
    return {
        "system": prompts.system["empathetic"],
        "user": prompts.emotion_targets[options.emotion_prompt] + "{transcript}",
        "emotion_words": ", ".join(f"{e}={words[e]}" for e in EMOTIONS),
    }


def provenance(
    options: TargetOptions, backend: TeacherBackend, manifest: Path, languages: list[str] | None = None
) -> dict[str, Any]:
    """What produced the targets: teacher, prompts, decoding, seed, code version, input.

    ``prompts`` are the English ones (docs/method.md §3); ``language_prompts`` those of every other language
    of the manifest's rows (``languages``), where a language without a prompt set of its own shows the
    English prompts it falls back to.
    """
    if options.stage is Stage.SEMANTIC:
        prompts = {"system": SYSTEM_PROMPTS["default"], "user": INSTRUCTIONS["continue"] + "{transcript}"}
    else:
        prompts = {
            "system": SYSTEM_PROMPTS["empathetic"],
            "user": emotion_target_prompt(options.emotion_prompt) + "{transcript}",
        }
        if options.emotion_prompt != "continue":  # target files written before presets existed still resume
            prompts["preset"] = options.emotion_prompt
    others = [language for language in languages or [] if language != "en"]
    extra = {"language_prompts": {x: _language_prompts(options, x) for x in others}} if others else {}
    return {
        "stage": options.stage.value,
        "teacher": backend.name,
        "backend": options.backend,
        "chat_template": "the teacher's own (tokenizer.apply_chat_template; server-side for openai)",
        "prompts": prompts,
        **extra,
        "decoding": decoding_spec(options),
        "refusal_filter": options.stage is Stage.EMOTION,
        "all_emotions": options.all_emotions,
        "seed": options.seed,
        "filters": {
            "min_seconds": options.min_seconds,
            "max_seconds": options.max_seconds,
            "max_text_tokens": options.max_text_tokens,
            "shard": f"{options.shard[0]}/{options.shard[1]}",
        },
        "code_version": code_version(),
        "input": {"path": str(manifest.resolve()), "sha256": sha256_file(manifest)},
    }


def _write_provenance(path: Path, record: dict[str, Any]) -> None:
    """Refuse to mix teachers/prompts/inputs in one output; otherwise (re)write the sidecar atomically.

    The input is the same when its path or its content (sha256) is: a manifest edited in place resumes
    (its changed rows are generated again), as does a renamed copy; another manifest is refused.
    """
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
        keys = ("stage", "teacher", "prompts", "decoding", "all_emotions")
        changed = [k for k in keys if k in old and old[k] != record[k]]
        # Other languages' prompts: those of the languages both runs saw must agree (a manifest that gains
        # a language resumes).
        before_lp, now_lp = old.get("language_prompts") or {}, record.get("language_prompts") or {}
        if any(before_lp[x] != now_lp[x] for x in set(before_lp) & set(now_lp)):
            changed.append("language_prompts")
        before = old.get("input") if isinstance(old.get("input"), dict) else None
        if before and not (
            before.get("path") == record["input"]["path"] or before.get("sha256") == record["input"]["sha256"]
        ):
            changed.append(f"input ({before.get('path')})")
        if changed:
            raise UserError(
                f"{path}: the existing targets were written with a different {', '.join(changed)}; "
                "write to a new output file"
            )
        record = {**record, "runs": old.get("runs", 0) + 1}
    else:
        record = {**record, "runs": 1}
    record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_json(path, record)


@dataclass
class _Request:
    key: str  # the row: id|emotion
    row: ManifestRow
    emotion: str | None
    messages: Conversation
    hash: str = ""  # everything that determines the target (see target_hash)


def _prompt_key(messages: Conversation) -> str:
    return json.dumps(messages, ensure_ascii=False, sort_keys=True)


def target_hash(
    messages: Conversation, teacher: str, max_new_tokens: int, decoding: dict[str, Any] | None = None
) -> str:
    """A short hash of what determines a target: the teacher conversation (system prompt, instruction,
    transcript, emotion), the teacher and the decoding (greedy with the token cap unless ``decoding``)."""
    payload = {
        "messages": messages,
        "teacher": teacher,
        "decoding": decoding or {"strategy": "greedy", "max_new_tokens": max_new_tokens},
    }
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def _row_key(row: ManifestRow, emotion: str | None) -> str:
    return f"{row.id or row.audio}|{emotion or ''}"


def _plan_requests(
    manifest: Path, options: TargetOptions, backend: TeacherBackend, summary: TargetSummary
) -> list[_Request]:
    requests: list[_Request] = []
    for index, row in enumerate(read_manifest(manifest)):
        if options.limit is not None and index >= options.limit:
            break
        if index % options.shard[1] != options.shard[0]:
            continue
        summary.input_rows += 1
        if options.splits and row.split not in options.splits:
            summary.dropped[f"split not in {','.join(options.splits)}"] += 1
            continue
        if not row.text.strip():
            summary.dropped["no transcript"] += 1
            continue
        if row.duration is not None and not (options.min_seconds <= row.duration <= options.max_seconds):
            summary.dropped[f"duration outside {options.min_seconds:g}-{options.max_seconds:g} s"] += 1
            continue
        tokens = backend.count_tokens(row.text)
        if tokens is not None and tokens > options.max_text_tokens:
            summary.dropped[f"transcript over {options.max_text_tokens} tokens"] += 1
            continue
        if options.stage is Stage.SEMANTIC:
            emotions: list[str | None] = [None]
        elif options.all_emotions:
            emotions = list(EMOTIONS)
        elif row.emotion in EMOTIONS:
            emotions = [row.emotion]
        else:
            summary.dropped["no emotion label (stage 2 without --all-emotions)"] += 1
            continue
        for emotion in emotions:
            messages = options.stage.teacher_conversation(
                row.text.strip(), emotion, options.emotion_prompt, row.language
            )
            digest = target_hash(messages, backend.name, options.max_new_tokens, decoding_spec(options))
            requests.append(_Request(_row_key(row, emotion), row, emotion, messages, digest))
    return requests


def _line_messages(line: dict[str, Any], options: TargetOptions) -> Conversation | None:
    """The teacher conversation of a written line of this run's stage; None when the line is of another
    stage or this version cannot rebuild it (an unknown emotion or language: generated again)."""
    if line.get("stage") != options.stage or not isinstance(line.get("text"), str):
        return None
    try:
        return options.stage.teacher_conversation(
            line["text"].strip(),
            line.get("target_emotion"),
            options.emotion_prompt,
            str(line.get("language") or "en"),
        )
    except (ValueError, UserError):
        return None


def _line_hash(line: dict[str, Any], options: TargetOptions, teacher: str) -> str | None:
    """The target hash of a written line: stored, or (lines of earlier versions) computed from its text."""
    stored = line.get("target_hash")
    if isinstance(stored, str):
        return stored
    messages = _line_messages(line, options)
    if messages is None:  # never matches, so generated again
        return None
    return target_hash(messages, teacher, options.max_new_tokens, decoding_spec(options))


def _drop_superseded(path: Path, planned: dict[str, str | None], options: TargetOptions, teacher: str) -> int:
    """Rewrite ``path`` (atomically) without the lines of planned rows whose target hash is no longer the
    planned one (a changed transcript, emotion or prompt); returns how many were dropped. Lines of rows
    not in this run's plan are kept as they are."""
    kept, dropped = [], 0
    for _, line in read_jsonl_dicts(path):
        key = str(line.get("target_key"))
        if key in planned and _line_hash(line, options, teacher) != planned[key]:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        write_manifest(path, kept)
    return dropped


def make_backend(options: TargetOptions) -> TeacherBackend:
    """Build the backend named in ``options``."""
    from blsp_emo.data.target_backends import HFBackend, OpenAIBackend, VLLMBackend

    if options.backend == "hf":
        return HFBackend.load(options.teacher, batch_size=options.batch_size)
    if options.backend == "openai":
        return OpenAIBackend(
            options.base_url, options.model_name, options.api_key, concurrency=options.batch_size
        )
    if options.backend == "vllm":
        return VLLMBackend(options.teacher, batch_size=max(options.batch_size, 64))
    raise UserError(f"unknown backend {options.backend!r} (expected hf, openai or vllm)")


def refused_path(output: Path) -> Path:
    """Where the stage-2 refusals of the target file ``output`` go (``OUT.jsonl.refused.jsonl``)."""
    return output.with_name(output.name + ".refused.jsonl")


def generate_targets(
    manifest: str | Path,
    output: str | Path,
    options: TargetOptions | None = None,
    backend: TeacherBackend | None = None,
) -> TargetSummary:
    """Write teacher continuations for the rows of ``manifest`` into ``output`` (resumable)."""
    options = options or TargetOptions()
    emotion_target_prompt(options.emotion_prompt)  # an unknown preset fails before the teacher loads
    if options.samples < 1 or (options.samples > 1 and not 0.0 < options.temperature <= 2.0):
        raise UserError("best-of-N needs samples >= 1 and a temperature in (0, 2]")
    manifest, output = Path(manifest), Path(output)
    if not manifest.is_file():
        raise UserError(f"{manifest}: no such manifest file")
    if output.resolve() == manifest.resolve():
        raise UserError(f"{output}: the output must not be the input manifest")
    languages = manifest_languages(manifest)  # an unknown language fails before the teacher loads
    backend = backend or make_backend(options)
    summary = TargetSummary(output=output)
    output.parent.mkdir(parents=True, exist_ok=True)
    provenance_file = output.with_name(output.name + ".provenance.json")
    _write_provenance(provenance_file, provenance(options, backend, manifest, languages))
    chooser = _make_chooser(options)
    refused_file = refused_path(output)
    done: set[tuple[str, str | None]] = set()  # (row key, target hash) of every line written before
    # Greedy decoding makes the continuation a function of the prompt: a transcript spoken by several
    # voices (or already answered in an earlier run) is generated once and copied to every row.
    known: dict[str, Reply] = {}
    for path in (output, refused_file):
        for _, d in read_jsonl_dicts(path):
            done.add((str(d.get("target_key")), _line_hash(d, options, backend.name)))
            if chooser is not None and path == output and isinstance(d.get("target"), str):
                chooser.remember(d["target"])  # openings already in the file count against new ones
            if "target" in d:
                messages = _line_messages(d, options)
                if messages is None:  # a line this version cannot rebuild: generated again
                    continue
                key = _prompt_key(messages)
                known[key] = teacher_reply(
                    d["target"], bool(d.get("truncated")), int(d.get("completion_tokens") or 0)
                )
    requests = _plan_requests(manifest, options, backend, summary)
    todo = [r for r in requests if (r.key, r.hash) not in done]
    summary.already_done = len(requests) - len(todo)
    if len(todo) > 0:  # a row planned under a new hash: its old line is stale, remove it before appending
        planned: dict[str, str | None] = {r.key: r.hash for r in requests}
        stale = {r.key for r in todo} & {key for key, _ in done}
        if stale:
            for path in (output, refused_file):
                summary.superseded += _drop_superseded(path, planned, options, backend.name)
    groups: dict[str, list[_Request]] = {}
    for request in todo:
        groups.setdefault(_prompt_key(request.messages), []).append(request)
    fresh = [group[0] for key, group in groups.items() if key not in known]
    # Longest prompts first: similar lengths share a batch (little padding) and memory peaks early.
    fresh.sort(key=lambda r: -len(r.messages[-1]["content"]))
    started = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"targets ({options.stage})", unit="row", disable=not options.progress)
    with JsonlAppender(output) as out, JsonlAppender(refused_file) as refused:

        def write(group: list[_Request], completion: Reply, extra: dict[str, Any] | None = None) -> None:
            for request in group:
                record = {**_target_row(request, completion, options, output), **(extra or {})}
                bar.update(1)
                if options.stage is Stage.EMOTION and is_refusal(completion.text):
                    summary.refused[request.emotion or ""] += 1
                    refused.write(record)
                    continue
                out.write(record)
                summary.written += 1
                summary.truncated += int(truncated(completion))

        for key, group in groups.items():  # rows whose prompt was answered before: no teacher call
            if key in known:
                summary.reused += len(group)
                write(group, known[key])
        conversations = [r.messages for r in fresh]

        def answered(position: int, count: int) -> Iterator[tuple[_Request, list[_Request]]]:
            """The requests of one batch of answers, with the rows each one's answer goes to."""
            for request in fresh[position : position + count]:
                group = groups[_prompt_key(request.messages)]
                summary.generated += 1
                summary.reused += len(group) - 1
                yield request, group

        position = 0
        if chooser is None:
            for replies in backend.generate(conversations, options.decoding()):
                for (_, group), reply in zip(answered(position, len(replies)), replies):
                    write(group, reply)
                position += len(replies)
        else:
            for candidates in backend.sample(conversations, options.decoding(), options.samples):
                for (request, group), replies in zip(answered(position, len(candidates)), candidates):
                    texts = [c.text for c in replies]
                    choice = chooser.choose(
                        texts, [truncated(c) for c in replies], request.row.text.strip(), request.emotion
                    )
                    summary.rejected.update(choice.rejected)
                    extra = {
                        "target_candidates": len(replies),
                        "target_score": choice.score,
                        "target_rejected": dict(choice.rejected),
                    }
                    write(group, replies[choice.index], extra)
                position += len(candidates)
    bar.close()
    summary.seconds = time.perf_counter() - started
    summary.diversity = file_diversity(output)
    _record_diversity(provenance_file, summary.diversity)
    return summary


def _make_chooser(options: TargetOptions) -> BestOfN | None:
    """The best-of-N scorer (``None`` for greedy targets), with its MiniLM similarity when configured."""
    if not options.sampled:
        return None
    if not options.scorer_embedder:
        return BestOfN()
    from blsp_emo.evaluation.embeddings import get_embedder

    embedder = get_embedder(options.scorer_embedder)
    return BestOfN(similarity=lambda a, b: embedder.similarity(list(a), list(b)).tolist())


def file_diversity(output: Path) -> dict[str, Any]:
    """The diversity report of a target file, its refused lines (:func:`refused_path`) counted."""
    rows = [d for _, d in read_jsonl_dicts(output)]
    return diversity_report(rows, [d for _, d in read_jsonl_dicts(refused_path(output))])


def _record_diversity(path: Path, report: dict[str, Any]) -> None:
    """Add the file's diversity report to its provenance sidecar (atomically)."""
    record = json.loads(path.read_text())
    record["diversity"] = report
    atomic_write_json(path, record)


def _target_row(request: _Request, completion: Reply, options: TargetOptions, output: Path) -> dict[str, Any]:
    row = request.row
    data = row.to_dict()
    data["audio"] = relative_audio(row.audio_path, output)
    clean = data.get("clean_audio")  # an augmented corpus's recording before augmentation
    if isinstance(clean, str) and row.base_dir is not None and not Path(clean).is_absolute():
        data["clean_audio"] = relative_audio(row.base_dir / clean, output)
    data.update(
        target=completion.text,
        truncated=truncated(completion),
        stage=options.stage.value,
        target_key=request.key,
        target_hash=request.hash,
        completion_tokens=completion.completion_tokens,
    )
    if options.stage is Stage.EMOTION:
        data["target_emotion"] = request.emotion
    return data


def summary_dict(summary: TargetSummary) -> dict[str, Any]:
    """The summary as plain JSON-able data."""
    data = asdict(summary)
    data["output"] = str(summary.output)
    return data
