"""Teacher targets: prompts, hf batching, an OpenAI-compatible server on 127.0.0.1, resume, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from blsp_emo.data.manifest import ManifestRow, write_manifest
from blsp_emo.data.target_backends import HFBackend, OpenAIBackend, teacher_reply, truncated
from blsp_emo.data.target_scoring import BestOfN, diversity_report, is_echo, off_emotion
from blsp_emo.data.targets import TargetOptions, generate_targets, refused_path
from blsp_emo.errors import UserError
from blsp_emo.io import read_jsonl_dicts
from blsp_emo.model.types import DecodingOptions
from blsp_emo.prompts import EMOTIONS, Stage

TEXTS = ["I'm graduating soon.", "My sister called this morning.", "The long train was late again.", "Hello."]


def _manifest(tmp_path: Path, n: int = 4) -> Path:
    rows = [
        ManifestRow(audio=f"a{i}.wav", text=TEXTS[i % 4], emotion=EMOTIONS[i % 5], duration=2.0, id=f"u{i}")
        for i in range(n)
    ]
    rows.append(ManifestRow(audio="short.wav", text="Too short.", emotion="sad", duration=0.4, id="short"))
    rows.append(ManifestRow(audio="none.wav", text="No label here.", duration=2.0, id="nolabel"))
    path = tmp_path / "in.jsonl"
    write_manifest(path, rows)
    return path


def test_prompts_are_the_spec_strings() -> None:
    semantic = Stage.SEMANTIC.teacher_conversation("I'm graduating soon.")
    assert semantic[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert (
        semantic[1]["content"] == "Continue the following sentence in a coherent style: I'm graduating soon."
    )
    emotion = Stage.EMOTION.teacher_conversation("I'm graduating soon.", "sad")
    assert emotion[0]["content"].endswith("with empathy toward user's emotion tone.")
    assert emotion[1]["content"] == (
        "Continue the following sentence that reflects a 'sad' emotion tone in a coherent style: I'm graduating soon."
    )


def test_target_hashes_are_those_of_earlier_versions() -> None:
    """The teacher conversations hash as before they were built by Stage (pinned from that code): a target
    file written then resumes without regenerating anything."""
    from blsp_emo.data.targets import decoding_spec, target_hash

    semantic = Stage.SEMANTIC.teacher_conversation("I'm graduating soon.")
    assert target_hash(semantic, "tiny", 48) == "4d4036e983e85ecf"
    emotion = Stage.EMOTION.teacher_conversation("We won.", "happy")
    assert target_hash(emotion, "tiny", 48) == "9e42dfb0f0255e72"
    reply = Stage.EMOTION.teacher_conversation("我下个星期就要毕业了。", "sad", "reply", "zh")
    assert (
        target_hash(reply, "test-teacher", 48, decoding_spec(TargetOptions(samples=4))) == "9594854580514e19"
    )


def test_target_options_take_a_teacher_stage() -> None:
    assert TargetOptions(stage="emotion").stage is Stage.EMOTION  # the stage's name is accepted
    assert TargetOptions().stage is Stage.SEMANTIC
    with pytest.raises(UserError, match="unknown stage 'align' \\(expected one of semantic, emotion\\)"):
        TargetOptions(stage="align")
    with pytest.raises(UserError, match="unknown stage 'emotions'"):
        TargetOptions(stage="emotions")
    greedy = TargetOptions(max_new_tokens=20, seed=3).decoding()
    assert greedy.greedy and greedy.max_new_tokens == 20 and greedy.seed == 3
    sampled = TargetOptions(samples=4, temperature=0.9, top_p=0.8).decoding()
    assert (sampled.temperature, sampled.top_p, sampled.greedy) == (0.9, 0.8, False)


def test_teacher_backends_refuse_decodings_they_do_not_carry_out(teacher_url: str) -> None:
    backend = OpenAIBackend(teacher_url, model="m", max_retries=0)
    conversation = [Stage.SEMANTIC.teacher_conversation("x")]
    with pytest.raises(ValueError, match="generate needs greedy options"):
        next(backend.generate(conversation, DecodingOptions(temperature=0.7)))
    with pytest.raises(ValueError, match="sample needs a temperature above 0"):
        next(backend.sample(conversation, DecodingOptions(), 2))
    with pytest.raises(ValueError, match="no repetition"):
        next(backend.generate(conversation, DecodingOptions(repetition_penalty=1.1)))
    with pytest.raises(ValueError, match="no stop strings"):
        next(backend.generate(conversation, DecodingOptions(stop=("\n",))))
    assert _Teacher.requests == 0
    reply = backend.complete(conversation[0], DecodingOptions(max_new_tokens=8))
    assert reply.text.startswith("x And then") and not truncated(reply) and reply.completion_tokens == 9


class _EchoTeacher:
    """A backend that answers every conversation with its user text (for prompt bookkeeping tests)."""

    name = "echo-teacher"

    def count_tokens(self, text: str) -> int | None:
        return None

    def generate(self, conversations, options):
        yield [teacher_reply(m[-1]["content"], False, 3) for m in conversations]


def test_reply_preset_asks_for_a_direct_reply_and_is_recorded(tmp_path: Path) -> None:
    reply = Stage.EMOTION.teacher_conversation("I'm graduating soon.", "sad", "reply")
    assert reply[0] == Stage.EMOTION.teacher_conversation("x", "sad")[0]  # the empathetic system prompt
    assert reply[1]["content"] == "I feel sad. I'm graduating soon."
    manifest, out = _manifest(tmp_path), tmp_path / "reply.jsonl"
    options = TargetOptions(stage=Stage.EMOTION, emotion_prompt="reply", progress=False)
    summary = generate_targets(manifest, out, options, backend=_EchoTeacher())
    rows = [d for _, d in read_jsonl_dicts(out)]
    assert summary.written == len(rows) == 4
    assert all(r["target"] == f"I feel {r['emotion']}. {r['text']}" for r in rows)
    provenance = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert provenance["prompts"]["preset"] == "reply" and provenance["prompts"]["user"].startswith("I feel {")
    # The paper's prompt is recorded as before presets existed, so older target files resume unchanged.
    paper = tmp_path / "paper.jsonl"
    generate_targets(
        manifest, paper, TargetOptions(stage=Stage.EMOTION, progress=False), backend=_EchoTeacher()
    )
    recorded = json.loads(paper.with_name(paper.name + ".provenance.json").read_text())["prompts"]
    assert set(recorded) == {"system", "user"} and recorded["user"].startswith("Continue the following")
    # A rerun with the same preset resumes (nothing new); an unknown preset is named.
    assert generate_targets(manifest, out, options, backend=_EchoTeacher()).already_done == 4
    with pytest.raises(UserError, match="teacher prompt 'chat'"):
        generate_targets(
            manifest, out, TargetOptions(stage=Stage.EMOTION, emotion_prompt="chat"), _EchoTeacher()
        )


class _Teacher(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible server: deterministic answers derived from the prompt."""

    in_flight = 0
    max_in_flight = 0
    requests = 0
    lock = threading.Lock()
    delay = 0.05

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "test-teacher", "object": "model"}]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": "not found"})
            return
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.requests += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        time.sleep(cls.delay)
        user = request["messages"][-1]["content"]
        transcript = user.split(": ", 1)[1] if ": " in user else user.split(". ", 1)[1]
        if request["temperature"] > 0:  # sampled: four kinds of candidate by seed (best-of-N tests)
            content = [
                f"{transcript} And so on.",  # an echo
                "I'm sorry, but I cannot continue this sentence.",  # a refusal
                "Congratulations, that's great news!",  # off-emotion for sad and angry
                f"Tell me more about the {max(transcript.strip('.').split(), key=len).lower()}.",  # takes it up
            ][request["seed"] % 4]
        elif "'sad'" in user and "sister" in transcript:
            content = "I'm sorry, but I cannot continue this sentence."
        else:
            content = f"{transcript} And then {request['messages'][0]['content'][:10]} went on."
        length = "long" in transcript
        with cls.lock:
            cls.in_flight -= 1
        self._send(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "model": request["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "length" if length else "stop"}
                ],
                "usage": {"completion_tokens": 48 if length else 9},
            },
        )  # fmt: skip


@pytest.fixture()
def teacher_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Teacher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Teacher.max_in_flight = _Teacher.requests = 0
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_backend_stage2_all_emotions_refusals_and_resume(tmp_path: Path, teacher_url: str) -> None:
    manifest = _manifest(tmp_path, n=6)
    out = tmp_path / "targets" / "emo.jsonl"
    options = TargetOptions(stage=Stage.EMOTION, backend="openai", base_url=teacher_url, batch_size=4,
                            all_emotions=True, progress=False)  # fmt: skip
    summary = generate_targets(manifest, out, options)
    rows = [d for _, d in read_jsonl_dicts(out)]
    # 6 usable rows + the unlabelled one (all five emotions need no label) = 7 rows x 5 emotions, of which
    # 5 distinct transcripts x 5 emotions go to the teacher (u4 and u5 repeat the words of u0 and u1).
    assert summary.generated == 25 and summary.reused == 10
    assert summary.dropped == {"duration outside 1-30 s": 1}
    assert _Teacher.requests == 25
    assert summary.refused == {"sad": 2}  # "My sister called..." appears twice; its sad target is refused
    refused = [d for _, d in read_jsonl_dicts(refused_path(out))]  # where the empathy task reads them
    assert [(r["target_emotion"], r["text"][:10]) for r in refused] == [("sad", "My sister ")] * 2
    assert len(rows) == 33 and summary.written == 33
    assert {r["target_emotion"] for r in rows if r["id"] == "u0"} == set(EMOTIONS)
    assert all(r["truncated"] == ("long" in r["text"]) for r in rows)
    assert Path(rows[0]["audio"]).parent == tmp_path.resolve() and rows[0]["stage"] == "emotion"
    assert _Teacher.max_in_flight > 1  # requests really ran concurrently
    provenance = json.loads((tmp_path / "targets" / "emo.jsonl.provenance.json").read_text())
    assert provenance["teacher"] == "test-teacher" and provenance["decoding"]["max_new_tokens"] == 48
    assert "{emotion}" in provenance["prompts"]["user"]
    # Resume: lose the last line (plus a torn partial line) and rerun -> only that row is generated again.
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:30])
    again = generate_targets(manifest, out, options)
    assert again.generated + again.reused == 1 and again.already_done == 34
    assert len(list(read_jsonl_dicts(out))) == 33
    with pytest.raises(UserError, match="different stage"):
        generate_targets(
            manifest, out, TargetOptions(stage=Stage.SEMANTIC, backend="openai", base_url=teacher_url)
        )


def test_stage2_one_emotion_per_row_and_unlabelled_rows_dropped(tmp_path: Path, teacher_url: str) -> None:
    manifest = _manifest(tmp_path, n=4)
    out = tmp_path / "emo1.jsonl"
    summary = generate_targets(manifest, out, TargetOptions(stage=Stage.EMOTION, backend="openai", base_url=teacher_url,
                                                            progress=False))  # fmt: skip
    rows = [d for _, d in read_jsonl_dicts(out)]
    assert all(r["target_emotion"] == r["emotion"] for r in rows) and len(rows) == 4
    assert summary.dropped["no emotion label (stage 2 without --all-emotions)"] == 1


def test_openai_backend_errors_are_one_line(teacher_url: str) -> None:
    with pytest.raises(UserError, match="HTTP 404"):
        OpenAIBackend(teacher_url.replace("/v1", "/nope"), model="m", max_retries=0).complete(
            Stage.SEMANTIC.teacher_conversation("x"), DecodingOptions(max_new_tokens=8)
        )
    with pytest.raises(UserError, match="127.0.0.1:9"):
        OpenAIBackend("http://127.0.0.1:9/v1", model="m", max_retries=0).complete(
            Stage.SEMANTIC.teacher_conversation("x"), DecodingOptions(max_new_tokens=8)
        )


_DATA_CLI = """
import argparse, signal, sys
# Ctrl-C raises KeyboardInterrupt even when this test runs in a background job (which starts with SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
from blsp_emo.data import commands
parser = argparse.ArgumentParser()
commands.register(parser.add_subparsers(dest="command"))
args = parser.parse_args(["data", *sys.argv[1:]])
try:
    sys.exit(args.func(args))
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_loses_nothing_written(tmp_path: Path, teacher_url: str) -> None:
    manifest = tmp_path / "many.jsonl"
    write_manifest(manifest, [ManifestRow(audio="a.wav", text=f"Sentence number {i}.", duration=2.0, id=f"r{i}")
                              for i in range(40)])  # fmt: skip
    out = tmp_path / "sem.jsonl"
    _Teacher.delay = 0.2  # slow enough that the interrupt lands mid-file
    # Only the data command group (the full CLI imports every area, slow on a busy machine); KeyboardInterrupt
    # is handled as blsp_emo.cli.main does.
    cmd = [sys.executable, "-c", _DATA_CLI, "targets", "--stage", "semantic", str(manifest), "-o", str(out),
           "--backend", "openai", "--base-url", teacher_url, "--batch-size", "1"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.time() + 60
        while time.time() < deadline and len(list(read_jsonl_dicts(out))) < 3:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err.decode()[-500:]
        written = out.read_text()
        assert written.endswith("\n")
        first = len(list(read_jsonl_dicts(out)))
        assert 3 <= first < 40
        _Teacher.delay = 0.0
        assert subprocess.run(cmd, capture_output=True, env=env, timeout=120).returncode == 0
        rows = [d for _, d in read_jsonl_dicts(out)]
        assert sorted(r["id"] for r in rows) == sorted(f"r{i}" for i in range(40))
    finally:
        _Teacher.delay = 0.05


def test_hf_backend_batched_equals_one_at_a_time() -> None:
    import torch
    from tiny_models import tiny_llm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    model = tiny_llm(len(tokenizer)).eval()
    conversations = [Stage.SEMANTIC.teacher_conversation(t) for t in TEXTS]
    batched = HFBackend(model, tokenizer, batch_size=4)
    single = HFBackend(model, tokenizer, batch_size=1)
    greedy = DecodingOptions(max_new_tokens=6, seed=0)
    a = [c for batch in batched.generate(conversations, greedy) for c in batch]
    b = [c for batch in single.generate(conversations, greedy) for c in batch]
    assert [c.text for c in a] == [c.text for c in b]
    assert all(truncated(c) == (c.completion_tokens == 6) for c in a)
    rendered = tokenizer.decode(batched.render(conversations[0]))
    assert (
        rendered.endswith("<|im_start|>assistant\n") and "<|im_start|>system\nYou are a helpful" in rendered
    )


@pytest.mark.integration
def test_real_teacher_writes_semantic_targets(tmp_path: Path) -> None:
    manifest = tmp_path / "in.jsonl"
    write_manifest(manifest, [ManifestRow(audio="a.wav", text=t, duration=2.0, id=f"r{i}") for i, t in
                              enumerate(["The capital of France is", "I'm graduating soon."])])  # fmt: skip
    out = tmp_path / "sem.jsonl"
    options = TargetOptions(
        stage=Stage.SEMANTIC, teacher="tiny", batch_size=2, max_new_tokens=16, progress=False
    )
    summary = generate_targets(manifest, out, options)
    rows = {d["id"]: d for _, d in read_jsonl_dicts(out)}
    assert summary.written == 2 and all(rows[k]["target"] for k in rows)
    assert json.loads((tmp_path / "sem.jsonl.provenance.json").read_text())["teacher"] == "tiny"


class _CountingEcho(_EchoTeacher):
    """The echo teacher, counting the conversations it was asked to answer."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def generate(self, conversations, options):
        self.asked += [m[-1]["content"] for m in conversations]
        yield from super().generate(conversations, options)


def test_a_changed_transcript_is_regenerated_and_unchanged_rows_kept(tmp_path: Path) -> None:
    manifest, out = _manifest(tmp_path), tmp_path / "sem.jsonl"
    options = TargetOptions(stage=Stage.SEMANTIC, progress=False)
    generate_targets(manifest, out, options, backend=_CountingEcho())
    rows = [ManifestRow.from_dict(d) for _, d in read_jsonl_dicts(manifest)]
    rows[1].text = "My brother called this evening."  # same id u1, new words
    write_manifest(manifest, rows)
    teacher = _CountingEcho()
    again = generate_targets(manifest, out, options, backend=teacher)
    assert teacher.asked == [
        "Continue the following sentence in a coherent style: My brother called this evening."
    ]
    assert again.generated == 1 and again.already_done == 4 and again.superseded == 1
    targets = {d["id"]: d for _, d in read_jsonl_dicts(out)}
    assert len(list(read_jsonl_dicts(out))) == 5  # one line per row: the stale u1 line is gone
    assert targets["u1"]["target"].endswith("My brother called this evening.")
    assert targets["u0"]["target"].endswith(TEXTS[0])


def test_target_files_written_before_the_hash_still_resume(tmp_path: Path) -> None:
    manifest, out = _manifest(tmp_path), tmp_path / "emo.jsonl"
    options = TargetOptions(stage=Stage.EMOTION, progress=False)
    generate_targets(manifest, out, options, backend=_EchoTeacher())
    old = []  # the line format of earlier versions: target_key "id|emotion", no hash
    for _, d in read_jsonl_dicts(out):
        d.pop("target_hash", None)
        d["target_key"] = f"{d['id']}|{d['target_emotion']}"
        old.append(json.dumps(d))
    out.write_text("\n".join(old) + "\n")
    teacher = _CountingEcho()
    again = generate_targets(manifest, out, options, backend=teacher)
    assert teacher.asked == [] and again.already_done == 4 and again.superseded == 0
    assert len(list(read_jsonl_dicts(out))) == 4


def test_provenance_is_compared_with_the_input(tmp_path: Path) -> None:
    manifest, out = _manifest(tmp_path), tmp_path / "sem.jsonl"
    options = TargetOptions(stage=Stage.SEMANTIC, progress=False)
    first = generate_targets(manifest, out, options, backend=_EchoTeacher())
    other = tmp_path / "other.jsonl"
    write_manifest(other, [ManifestRow(audio="b.wav", text="Something else.", duration=2.0, id="b0")])
    with pytest.raises(UserError, match="different input"):
        generate_targets(other, out, options, backend=_EchoTeacher())
    # The same manifest under another name is the same input; an edited manifest at the same path too.
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(manifest.read_bytes())
    assert generate_targets(copy, out, options, backend=_EchoTeacher()).already_done == first.written == 5
    provenance = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert provenance["input"]["sha256"]


def test_best_of_n_rejects_echoes_refusals_off_emotion_and_reports_diversity(
    tmp_path: Path, teacher_url: str
) -> None:
    manifest, out = _manifest(tmp_path, n=4), tmp_path / "bon.jsonl"
    options = TargetOptions(stage=Stage.EMOTION, emotion_prompt="reply", backend="openai", base_url=teacher_url,
                            batch_size=8, samples=4, scorer_embedder=None, progress=False)  # fmt: skip
    summary = generate_targets(manifest, out, options)
    rows = [d for _, d in read_jsonl_dicts(out)]
    assert _Teacher.requests == 16 and summary.generated == 4 and len(rows) == 4  # 4 prompts x 4 samples
    assert all(r["target"].startswith("Tell me more") and r["target_candidates"] == 4 for r in rows)
    rejected = Counter(summary.rejected)
    # Each prompt: one echo, one refusal; the congratulation is off-emotion except for happy and surprise.
    assert rejected["echo"] == 4 and rejected["refusal"] == 4
    assert rejected["off-emotion"] == sum(r["emotion"] in ("sad", "angry", "neutral") for r in rows) == 3
    provenance = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert provenance["decoding"]["strategy"] == "best-of-n" and provenance["decoding"]["n"] == 4
    diversity = provenance["diversity"]
    assert diversity["all"]["rows"] == 4 and diversity["all"]["echo_rate"] == 0.0
    assert (
        diversity["all"]["refusal_rate"] == 0.0
        and diversity["all"]["top_opening"] == "tell me more about the"
    )
    assert diversity["all"]["top_opening_share"] == 1.0  # the only good candidate opens alike every time
    assert "diversity of the whole file" in summary.describe()
    # Resumable as greedy targets are; another decoding into the same file is refused.
    assert generate_targets(manifest, out, options).already_done == 4 and _Teacher.requests == 16
    with pytest.raises(UserError, match="different decoding"):
        generate_targets(manifest, out, dataclasses.replace(options, samples=1))


def test_best_of_n_prefers_take_up_and_penalises_common_openings() -> None:
    chooser = BestOfN()
    said = "The results of my driving test came today."
    pick = chooser.choose(["That is nice.", "Your driving test results came? Tell me!"], [False, False],
                          said, "happy")  # fmt: skip
    assert pick.index == 1 and pick.rejected == {}
    for _ in range(30):  # a file where one opening is already everywhere
        chooser.remember("I'm so sorry to hear that things are hard.")
    common = "I'm so sorry to hear that your driving test results came today."
    fresh = "That sounds heavy; the driving test matters to you."
    assert chooser.choose([common, fresh], [False, False], said, "sad").index == 1
    # Everything rejected: the least bad is still returned, the reasons counted.
    pick = chooser.choose([said, "I'm sorry, but I cannot help."], [False, False], said, "sad")
    assert pick.rejected == {"echo": 1, "refusal": 1}
    assert is_echo("The results of my driving test came today, I said.", said)
    assert not is_echo("What did the results say?", said) and off_emotion("Congratulations!", "sad")


def test_diversity_report_and_cli(tmp_path: Path) -> None:
    rows = [{"text": "We won.", "target_emotion": "happy", "target": "Well done, that is great!"},
            {"text": "We won.", "target_emotion": "happy", "target": "Well done, that is great news."},
            {"text": "I lost my keys.", "target_emotion": "sad", "target": "I lost my keys again today."},
            {"text": "It rained.", "target_emotion": "sad", "target": "Rain can feel gloomy."}]  # fmt: skip
    report = diversity_report(rows, refused=[{"target_emotion": "sad", "target": "I'm sorry, but I cannot"}])
    assert (
        report["all"]["top_opening"] == "well done that is great"
        and report["all"]["top_opening_share"] == 0.5
    )
    assert report["sad"]["echo_rate"] == 0.5 and report["sad"]["refusal_rate"] == round(1 / 3, 4)
    assert report["happy"]["distinct_2"] == round(5 / 9, 4)  # 4 + 5 bigrams, of which 4 shared: 5 distinct
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run([sys.executable, "-m", "blsp_emo.cli", "data", "diversity", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[str(path)]["all"]["rows"] == 4


def test_hf_backend_samples_n_per_prompt_deterministically() -> None:
    import torch
    from tiny_models import tiny_llm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    backend = HFBackend(tiny_llm(len(tokenizer)).eval(), tokenizer, batch_size=6)
    conversations = [Stage.SEMANTIC.teacher_conversation(t) for t in TEXTS]
    sampling = DecodingOptions(max_new_tokens=8, temperature=1.0, top_p=1.0, seed=5)
    first = list(backend.sample(conversations, sampling, 3))
    assert [len(b) for b in first] == [2, 2] and all(len(c) == 3 for b in first for c in b)
    again = list(backend.sample(conversations, sampling, 3))
    assert [[c.text for c in g] for b in first for g in b] == [[c.text for c in g] for b in again for g in b]
    other = list(backend.sample(conversations, sampling.replace(seed=6), 3))
    assert [[c.text for c in g] for b in first for g in b] != [[c.text for c in g] for b in other for g in b]
