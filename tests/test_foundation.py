"""The shared vocabulary: decoding options, replies, conversations, stages, crash-safe files, and the one
OpenAI-compatible client (against a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from blsp_emo.errors import UserError
from blsp_emo.io import (
    JsonlAppender,
    atomic_path,
    atomic_write_json,
    atomic_write_jsonl,
    read_jsonl_dicts,
    sha256_file,
)
from blsp_emo.model.types import (
    CONVERSATION,
    DEMO,
    PLAIN,
    Conversation,
    DecodingOptions,
    Reply,
    speech_turn,
    text_turn,
)
from blsp_emo.openai_client import ChatClient, base_url_of
from blsp_emo.prompts import INSTRUCTIONS, SYSTEM_PROMPTS, Stage

# ---- decoding options ----------------------------------------------------------------------------------


def test_presets() -> None:
    assert PLAIN.greedy and PLAIN.describe() == "greedy"
    assert not CONVERSATION.greedy
    assert (
        CONVERSATION.describe() == "temperature 0.5, top-p 0.9, repetition penalty 1.1, no repeated 4-grams"
    )
    assert DEMO.greedy and DEMO.repetition_penalty == 1.1 and DEMO.no_repeat_ngram_size == 4
    assert DEMO.replace(max_new_tokens=7).max_new_tokens == 7 and DEMO.max_new_tokens == 128  # frozen copy
    with pytest.raises(AttributeError):
        PLAIN.temperature = 1.0  # type: ignore[misc]


def test_batch_key_groups_what_may_share_a_batch() -> None:
    # greedy rows share a batch whatever their seed, top-p or stop strings
    assert PLAIN.batch_key() == PLAIN.replace(seed=3, top_p=0.5, stop=("x",)).batch_key()
    assert PLAIN.batch_key() != PLAIN.replace(max_new_tokens=5).batch_key()
    assert PLAIN.batch_key() != PLAIN.replace(no_repeat_ngram_size=3).batch_key()
    # sampled rows need the same temperature, nucleus and seed
    assert CONVERSATION.batch_key() == CONVERSATION.replace(stop=("\n",)).batch_key()
    assert CONVERSATION.batch_key() != CONVERSATION.replace(temperature=0.7).batch_key()
    assert CONVERSATION.batch_key() != CONVERSATION.replace(seed=1).batch_key()
    assert CONVERSATION.batch_key() != PLAIN.batch_key()


def test_reply_defaults() -> None:
    reply = Reply("hi")
    assert (reply.emotion, reply.prompt_tokens, reply.finish_reason, reply.user_text) == (
        None,
        0,
        "stop",
        None,
    )


# ---- conversations -----------------------------------------------------------------------------------


def test_conversation_builder_is_the_message_list() -> None:
    audio = np.zeros(16000, dtype=np.float32)
    conv = Conversation(system="S").speech(audio, "Say: ").assistant("ok").user("and?")
    assert isinstance(conv, list) and len(conv) == 4
    assert conv[0] == {"role": "system", "content": "S"}
    assert conv[1]["role"] == "user"
    assert conv[1]["content"][0] == {"type": "text", "text": "Say: "}
    assert conv[1]["content"][1]["audio"] is audio
    assert conv[2] == text_turn("assistant", "ok") and conv[3] == {"role": "user", "content": "and?"}
    assert Conversation(system=None) == [] and Conversation([text_turn("user", "x")]) == [
        text_turn("user", "x")
    ]


def test_speech_turn_without_instruction_and_from_a_path() -> None:
    assert speech_turn("clip.wav") == {"role": "user", "content": [{"type": "audio", "path": "clip.wav"}]}


def test_a_conversation_is_what_the_processor_encodes(random_model) -> None:
    _, processor = random_model
    audio = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    by_hand = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "audio", "audio": audio}]},
    ]
    built = Conversation(system="S").speech(audio, "Hi ")
    assert processor.encode(built).input_ids == processor.encode(by_hand).input_ids


# ---- stages ----------------------------------------------------------------------------------------------


def test_stage_is_its_word() -> None:
    assert Stage.SEMANTIC == "semantic" and str(Stage.EMOTION) == "emotion" and f"{Stage.ALIGN}" == "align"
    assert Stage.parse("emotion") is Stage.EMOTION
    with pytest.raises(UserError, match="unknown stage 'align' \\(expected one of semantic, emotion\\)"):
        Stage.parse("align", allowed=(Stage.SEMANTIC, Stage.EMOTION))


def test_stage_prompts_are_the_papers() -> None:
    assert (Stage.SEMANTIC.system_name, Stage.SEMANTIC.instruction_name) == ("default", "continue")
    assert (Stage.EMOTION.system_name, Stage.EMOTION.instruction_name) == ("empathetic", "continue_emotion")
    semantic = Stage.SEMANTIC.teacher_conversation("I found my keys.")
    assert semantic == [
        {"role": "system", "content": SYSTEM_PROMPTS["default"]},
        {"role": "user", "content": INSTRUCTIONS["continue"] + "I found my keys."},
    ]
    emotion = Stage.EMOTION.teacher_conversation("I found my keys.", "happy")
    assert emotion[0]["content"] == SYSTEM_PROMPTS["empathetic"]
    assert emotion[1]["content"] == (
        "Continue the following sentence that reflects a 'happy' emotion tone in a coherent style: "
        "I found my keys."
    )
    with pytest.raises(ValueError, match="stage 2 needs one of"):
        Stage.EMOTION.teacher_conversation("x", None)
    with pytest.raises(UserError, match="no teacher"):
        Stage.ALIGN.teacher_conversation("x")


# ---- files -----------------------------------------------------------------------------------------------


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "results.json"
    atomic_write_json(target, {"a": 1, "é": "ü"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 1, "é": "ü"}
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 1, "é": "ü"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]  # no temp file left


def test_jsonl_write_append_and_read(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    assert atomic_write_jsonl(path, ({"i": i} for i in range(3))) == 3
    with path.open("a") as handle:
        handle.write('{"i": 3')  # a torn line left by a crash
    with JsonlAppender(path) as out:
        out.write({"i": 4})
    assert [row["i"] for _, row in read_jsonl_dicts(path)] == [0, 1, 2, 4]
    assert list(read_jsonl_dicts(tmp_path / "missing.jsonl")) == []


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(path, chunk=1) == sha256_file(path)


# ---- the OpenAI-compatible client ----------------------------------------------------------------------


class _Server:
    """A chat-completions endpoint on 127.0.0.1: fails the first ``failures`` requests with HTTP 503, then
    answers with the request's own settings echoed in the text; logs every request."""

    def __init__(self, failures: int = 0, status: int = 503) -> None:
        owner = self
        self.requests: list[dict] = []
        self.failures, self.status = failures, status

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code: int, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "m1", "object": "model", "created": 0,
                                                             "owned_by": "x"}]})  # fmt: skip

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({**body, "auth": self.headers.get("Authorization")})
                if len(owner.requests) <= owner.failures:
                    self._send(owner.status, {"error": {"message": "busy, try later", "type": "x"}})
                    return
                text = f" t={body['temperature']} max={body['max_tokens']} seed={body.get('seed')} "
                self._send(200, {
                    "id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "length",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
                })  # fmt: skip

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_client_sends_the_options_and_reads_the_reply() -> None:
    server = _Server()
    try:
        client = ChatClient(server.url + "/chat/completions", api_key="k1", max_retries=0)
        assert client.models() == ["m1"]
        options = DecodingOptions(
            max_new_tokens=9, temperature=0.3, seed=4, stop=("\n",), repetition_penalty=1.2
        )
        reply = client.complete(Conversation(system="S").user("hi"), "m1", options)
        assert reply == Reply(
            "t=0.3 max=9 seed=4", prompt_tokens=11, completion_tokens=5, finish_reason="length"
        )
        sent = server.requests[0]
        assert sent["auth"] == "Bearer k1" and sent["model"] == "m1" and sent["stop"] == ["\n"]
        assert sent["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
        assert sent["repetition_penalty"] == 1.2 and "frequency_penalty" not in sent
    finally:
        server.close()


def test_client_retries_busy_servers_and_names_failures() -> None:
    server = _Server(failures=2)
    try:
        reply = ChatClient(server.url, max_retries=2).complete([text_turn("user", "x")], "m", PLAIN)
        assert reply.text.startswith("t=0.0") and len(server.requests) == 3  # two 503s, then an answer
    finally:
        server.close()
    server = _Server(failures=10, status=400)
    try:
        with pytest.raises(UserError, match=r"/v1/chat/completions: HTTP 400: busy, try later"):
            ChatClient(server.url, max_retries=3).complete([text_turn("user", "x")], "m", PLAIN)
        assert len(server.requests) == 1  # a client error is not retried
    finally:
        server.close()


def test_client_names_an_unreachable_endpoint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=f"http://127.0.0.1:{port}/v1/chat/completions is unreachable"):
        ChatClient(f"http://127.0.0.1:{port}/v1/", max_retries=0, timeout=5).complete(
            [text_turn("user", "x")], "m", PLAIN
        )
    assert base_url_of("http://h/v1/chat/completions/") == "http://h/v1"
