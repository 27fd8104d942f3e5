"""``blsp-emo chat``: turns from audio paths and/or text, streamed replies, /reset, /save, /quit."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blsp_emo.model.types import CONVERSATION, DecodingOptions
from blsp_emo.serving.chat_cli import ChatSession, parse_turn


def test_parse_turn(tmp_path: Path, speech_files: list[Path]) -> None:
    clip = speech_files[0]
    assert parse_turn(f"{clip} what do you hear?") == (clip, "what do you hear?")
    assert parse_turn(str(clip)) == (clip, "")
    assert parse_turn("I'm fine, thanks") == (None, "I'm fine, thanks")
    assert parse_turn("missing.wav hello") == (None, "missing.wav hello")
    spaced = tmp_path / "my clip.wav"
    spaced.write_bytes(clip.read_bytes())
    assert parse_turn(f'"{spaced}" and text') == (spaced, "and text")
    assert parse_turn(f"@{clip}") == (clip, "")


def test_session_turns_reset_and_save(random_engine, speech_files: list[Path], tmp_path: Path) -> None:
    out = io.StringIO()
    session = ChatSession(random_engine, options=CONVERSATION.replace(max_new_tokens=6), out=out)
    assert session.handle(f"{speech_files[0]} how do I sound?")
    assert session.handle("tell me more")
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert session.messages[1]["content"][1]["type"] == "audio"
    text = out.getvalue()
    assert (
        text.count("assistant> ") == 2 and text.count("[emotion heard: ") == 1
    )  # the text turn has no audio
    assert session.handle(f"/save {tmp_path / 'chat.json'}")
    saved = json.loads((tmp_path / "chat.json").read_text())["messages"]
    assert saved[1]["content"][1]["path"] == str(speech_files[0].resolve()) and saved[1]["emotion"]

    def reply_to(line: str) -> str:  # what the session writes for one line
        start = len(out.getvalue())
        assert session.handle(line)
        return out.getvalue()[start:]

    assert "unknown command /nonsense" in reply_to("/nonsense")
    assert "/missing.wav: no such file" in reply_to("/missing.wav")  # meant as audio, not a command
    assert session.handle(f"{tmp_path / 'chat.json'}")  # not audio: an error line, the chat goes on
    assert "error:" in out.getvalue() and len(session.messages) == 5
    assert session.handle("/reset") and [m["role"] for m in session.messages] == ["system"]
    assert not session.handle("/quit")


def test_chat_command(speech_files: list[Path], tmp_path: Path) -> None:
    lines = f"{speech_files[1]}\nand now text\n/save {tmp_path / 's.json'}\n/quit\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "blsp_emo.cli", "chat", "--model", "random-tiny", "--max-new-tokens", "5"],
        input=lines, capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("assistant> ") == 2 and "[emotion heard: " in result.stdout
    assert len(json.loads((tmp_path / "s.json").read_text())["messages"]) == 5


def test_chat_decoding_flags() -> None:
    from blsp_emo.cli import build_parser
    from blsp_emo.errors import UserError
    from blsp_emo.serving.commands import ChatOptions

    def params(*flags: str) -> DecodingOptions:
        return ChatOptions.from_args(build_parser().parse_args(["chat", *flags])).decoding

    assert params() == CONVERSATION  # the conversation defaults
    custom = params("--temperature", "0", "--top-p", "0.8", "--repetition-penalty", "1.2",
                    "--no-repeat-ngram-size", "3", "--frequency-penalty", "0.5", "--presence-penalty", "-0.5",
                    "--seed", "4", "--max-new-tokens", "64")  # fmt: skip
    assert custom == DecodingOptions(max_new_tokens=64, temperature=0.0, top_p=0.8, seed=4, repetition_penalty=1.2,
                                      no_repeat_ngram_size=3, frequency_penalty=0.5, presence_penalty=-0.5)  # fmt: skip
    assert custom.greedy
    for flags, named in [(["--temperature", "3"], "--temperature"), (["--top-p", "0"], "--top-p"),
                         (["--repetition-penalty", "0"], "--repetition-penalty"),
                         (["--no-repeat-ngram-size", "-1"], "--no-repeat-ngram-size"),
                         (["--presence-penalty", "5"], "--presence-penalty"),
                         (["--max-new-tokens", "0"], "--max-new-tokens")]:  # fmt: skip
        with pytest.raises(UserError, match=f"^{named} must be"):
            params(*flags)
