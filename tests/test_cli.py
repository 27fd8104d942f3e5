"""The ``blsp-emo`` command line: light start-up, --version, defaults in help, per-task eval options,
"did you mean", file and port checks before any model loads, one log format, `assets list`, and the
terminal chat's handling of missing audio paths."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from blsp_emo import __version__
from blsp_emo.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "numpy")


def _fresh_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter (nothing imported yet), as the console script starts."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("BLSP_EMO_NUM_THREADS", None)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


# Runs main() on argv, then prints the exit code and which of torch/transformers got imported.
PROBE = """
import sys
from blsp_emo.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print("RC", rc)
print("IMPORTED", [m for m in ("torch", "transformers") if m in sys.modules])
"""


def _probe(*argv: str) -> tuple[int, list[str], str]:
    result = _fresh_python(PROBE, *argv)
    lines = result.stdout.splitlines()
    rc = int(next(line.split()[1] for line in lines if line.startswith("RC ")))
    imported = eval(next(line[9:] for line in lines if line.startswith("IMPORTED ")))
    return rc, imported, result.stdout + result.stderr


def test_help_of_every_command_imports_no_torch() -> None:
    code = """
import sys
from blsp_emo.cli import build_parser
parser = build_parser()
texts = [parser.format_help()]
def walk(p):
    for action in p._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for sub in action.choices.values():
                texts.append(sub.format_help())
                walk(sub)
walk(parser)
print(len(texts))
print([m for m in ("torch", "transformers", "numpy") if m in sys.modules])
"""
    result = _fresh_python(code)
    assert result.returncode == 0, result.stderr
    count, imported = result.stdout.splitlines()[-2:]
    assert int(count) > 25  # every command and sub-command formatted its help
    assert imported == "[]", f"--help imported {imported}"


def test_argument_errors_import_no_torch() -> None:
    rc, imported, out = _probe("generate", "--audio", "no-such-clip.wav")
    assert rc == 2 and imported == [] and "no-such-clip.wav (--audio): no such audio file" in out
    rc, imported, out = _probe("trian")
    assert rc == 2 and imported == [] and "did you mean 'train'?" in out


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"blsp-emo {__version__}"


def _help(*argv: str) -> str:
    parser = build_parser()
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            sub = action.choices[argv[0]]
            break
    for name in argv[1:]:
        sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    return " ".join(sub.format_help().split())  # one line: wrapping does not matter


def test_help_shows_defaults_once() -> None:
    text = _help("generate")
    assert "--max-new-tokens MAX_NEW_TOKENS default: 128" in text
    assert "0 = greedy (default: 0.0)" in text
    assert "(default: empathetic)" in text  # the word "default" as a prompt name did not hide it
    serve = _help("serve")
    assert "--port PORT default: 8000" in serve
    assert serve.count("(default: 25)") == 1 and "(default: 25) (default" not in serve  # said once
    assert "--speech {auto,piper,espeak} voice engine (default: auto)" in serve
    assert "--json print one JSON object (response, emotion, usage) (default" not in text  # flags: no default


def test_eval_task_help_lists_only_its_options() -> None:
    ser = _help("eval", "ser")
    for flag in ("--teacher-targets", "--teacher-max-new-tokens", "--embedder", "--judge-url", "--turns"):
        assert flag not in ser
    for flag in ("--model", "--data", "--limit", "--split", "--max-new-tokens", "--llm", "--asr"):
        assert flag in ser
    empathy = _help("eval", "empathy")
    for flag in ("--teacher-targets", "--teacher-max-new-tokens", "--embedder", "--judge-url"):
        assert flag in empathy
    semantic = _help("eval", "semantic")
    assert "--embedder" in semantic and "--teacher-targets" not in semantic and "--judge-url" not in semantic
    every = _help("eval", "all")
    assert "--teacher-targets" in every and "--embedder" in every and "--judge-url" in every
    # options a task does not read still have their defaults on the parsed arguments
    args = build_parser().parse_args(["eval", "ser", "--data", "x.jsonl"])
    assert args.teacher_targets is None and args.embedder == "all-MiniLM-L6-v2" and args.judge_url is None


def test_eval_task_refuses_the_options_of_other_tasks(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["eval", "ser", "--data", "x.jsonl", "--teacher-max-new-tokens", "6"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert (
        "--teacher-max-new-tokens is not an option of 'eval ser' (it is read by empathy, instructions" in err
    )
    args = build_parser().parse_args(
        ["eval", "empathy", "--data", "x.jsonl", "--teacher-max-new-tokens", "6"]
    )
    assert args.teacher_max_new_tokens == 6


def test_eval_task_table_matches_the_tasks() -> None:
    from blsp_emo.evaluation import commands
    from blsp_emo.evaluation.tasks import TASKS

    assert {name: task.description for name, task in TASKS.items()} == commands.TASK_HELP
    if "multiturn" in TASKS:
        from blsp_emo.evaluation.tasks import multiturn

        assert commands.MULTITURN_TURNS == (multiturn.MIN_TURNS, multiturn.MAX_TURNS, multiturn.DEFAULT_TURNS)
    assert set(commands.TASK_NAMES) == set(TASKS)


def test_did_you_mean_for_commands_and_choices(capsys) -> None:
    for argv, hint in (
        (["trian"], "invalid command 'trian'; did you mean 'train'?"),
        (["data", "chek", "x"], "invalid command 'chek'; did you mean 'check'?"),
        (["eval", "empaty"], "did you mean 'empathy'?"),
        (["serve", "--speech", "pipr"], "invalid choice 'pipr'; did you mean 'piper'?"),
    ):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 2 and hint in capsys.readouterr().err


def test_did_you_mean_for_models(capsys) -> None:
    clip = ROOT / "examples" / sorted(p.name for p in (ROOT / "examples").glob("*.wav"))[0]
    assert main(["generate", "--audio", str(clip), "--model", "blsp-emo-tnyi"]) == 2
    assert "did you mean 'blsp-emo-tiny'?" in capsys.readouterr().err
    assert main(["chat", "--model", "papr"]) == 2
    assert "did you mean 'paper'?" in capsys.readouterr().err


def test_directory_given_as_audio(capsys, tmp_path: Path) -> None:
    assert main(["generate", "--audio", str(tmp_path)]) == 2
    assert f"{tmp_path} (--audio): is a directory, not an audio file" in capsys.readouterr().err
    assert main(["transcribe", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a directory, not an audio file" in capsys.readouterr().err
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert main(["transcribe", str(empty)]) == 2
    assert "empty audio file" in capsys.readouterr().err


def test_serve_reports_a_taken_port_before_loading_a_model() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, imported, out = _probe("serve", "--model", "random-tiny", "--port", str(port))
    assert rc == 2 and f"port {port} on 127.0.0.1 is already in use" in out
    assert "torch" not in imported  # reported before any model (or torch) loaded


def test_assets_list_shows_the_shipped_model(capsys) -> None:
    from blsp_emo.model.loading import shipped_model_path

    assert main(["assets", "list"]) == 0
    out = capsys.readouterr().out
    assert "trained models:" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("blsp-emo-tiny"))
    shipped = shipped_model_path()
    if shipped is None:
        assert "not in this installation" in line
    else:
        assert str(shipped) in line and "MB" in line and "the default --model" in line
    assert "hub: openai/whisper-base" in out


def test_one_log_format_and_quiet_library_warnings() -> None:
    from blsp_emo.logs import LOG_FORMAT, setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, warnings.filters[:])
    stream = io.StringIO()
    logging.captureWarnings(False)  # an earlier main() in this process captured them already
    try:
        setup_logging(verbose=False, stream=stream)
        setup_logging(verbose=False, stream=stream)  # a second call does not double the lines
        logging.getLogger("blsp_emo.test").info("hello %s", "there")
        with warnings.catch_warnings():
            warnings.filters[:] = saved[2]
            setup_logging(verbose=False, stream=stream)
            message = "`past_key_values` is deprecated and will be removed in version 5.40.0 for `f`."
            warnings.warn(message, FutureWarning, stacklevel=1)
            warnings.warn("something the user should see", UserWarning, stacklevel=1)
        logging.getLogger("matplotlib.font_manager").info("font cache rebuilt")
        lines = stream.getvalue().splitlines()
        assert len([line for line in lines if "hello there" in line]) == 1
        assert any(line.endswith("INFO blsp_emo.test: hello there") and line[2] == ":" for line in lines)
        assert not any("past_key_values" in line or "font cache" in line for line in lines)
        assert any(
            "WARNING py.warnings:" in line and "something the user should see" in line for line in lines
        )
        assert "%(asctime)s %(levelname)s %(name)s: %(message)s" == LOG_FORMAT
        verbose = io.StringIO()
        with warnings.catch_warnings():
            warnings.filters[:] = saved[2]
            setup_logging(verbose=True, stream=verbose)
            warnings.warn("`past_key_values` is deprecated for `g`.", FutureWarning, stacklevel=1)
        assert "past_key_values" in verbose.getvalue()  # --verbose shows the library warnings
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name in (
            "matplotlib",
            "transformers",
            "huggingface_hub",
            "PIL",
            "accelerate",
            "urllib3",
            "filelock",
        ):
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_chat_reports_missing_audio_paths_plainly(tmp_path: Path, monkeypatch) -> None:
    """A mistyped audio path is reported, not sent to the model as text; a missing absolute path is "no
    such file", not "unknown command". The engine is a real one on random-tiny: no turn may reach it."""
    from blsp_emo.model.types import DecodingOptions
    from blsp_emo.serving.chat_cli import ChatSession, missing_audio
    from blsp_emo.serving.commands import build_engine
    from blsp_emo.serving.limits import CHAT_LIMITS

    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    engine = build_engine("random-tiny", limits=CHAT_LIMITS)
    try:
        out = io.StringIO()
        session = ChatSession(engine, options=DecodingOptions(max_new_tokens=3), out=out)
        before = list(session.messages)
        for line, expected in (
            ("exmples/neutral.wav how do I sound?", "exmples/neutral.wav: no such file (relative to"),
            ("neutral.wav", "neutral.wav: no such file"),
            ("/nowhere/at/all.wav what now", "/nowhere/at/all.wav: no such file"),
            ("/tmp/definitely-not-here/clip", "/tmp/definitely-not-here/clip: no such file"),
            ("./clips", "clips: is a directory, not an audio file"),
            ("'./my clip.flac' and text", "my clip.flac: no such file"),
        ):
            assert session.handle(line)
            text = out.getvalue()
            assert expected in text, (line, text)
            assert "unknown command" not in text and "assistant>" not in text
        assert session.messages == before  # nothing was sent
        assert missing_audio("I feel fine today") is None and missing_audio("hello.world") is None
        assert session.handle("/rest") and "unknown command /rest; did you mean '/reset'" in out.getvalue()
    finally:
        engine.close()


def test_check_output_dir_and_input_file(tmp_path: Path) -> None:
    from blsp_emo.clitools import check_input_file, check_output_dir
    from blsp_emo.errors import UserError

    afile = tmp_path / "a.txt"
    afile.write_text("x")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    with pytest.raises(UserError, match="exists and is not a directory"):
        check_output_dir(afile)
    with pytest.raises(UserError, match="is a file, so the folder cannot be made"):
        check_output_dir(afile / "sub")
    with pytest.raises(UserError, match="is a directory, not a manifest"):
        check_input_file(tmp_path, "manifest")
    with pytest.raises(UserError, match="no such manifest"):
        check_input_file(tmp_path / "m.jsonl", "manifest")
    assert check_input_file(afile) == afile


def test_uvicorn_logs_in_the_one_format() -> None:
    from fastapi import FastAPI

    from blsp_emo.logs import setup_logging
    from blsp_emo.serving.server import server_config

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        setup_logging(stream=stream)
        config = server_config(FastAPI(), "127.0.0.1", 8000, "info")
        assert config.log_config is None
        logging.getLogger("uvicorn.error").info("Uvicorn running on http://127.0.0.1:8000")
        line = stream.getvalue().strip().splitlines()[-1]
        assert (
            line.endswith(" INFO uvicorn.error: Uvicorn running on http://127.0.0.1:8000") and line[2] == ":"
        )
        assert not logging.getLogger("uvicorn.error").handlers
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_lazy_packages_export_the_same_names() -> None:
    """The lazily exported names of blsp_emo.assets and blsp_emo.model are the objects they were when the
    packages imported them eagerly, whatever was imported first (``transcribe`` is a submodule and a
    function: the package name stays the function)."""
    code = """
import blsp_emo.assets.transcribe
from blsp_emo.assets import transcribe, EMBEDDED, resolve
from blsp_emo.model import load_model, BlspEmoModel, SPEECH_TOKEN_ID
import blsp_emo.model.loading as loading
print(callable(transcribe) and transcribe.__module__ == "blsp_emo.assets.transcribe")
print(load_model is loading.load_model and BlspEmoModel.__name__ == "BlspEmoModel" and SPEECH_TOKEN_ID < 0)
print("whisper-base" in EMBEDDED and callable(resolve))
"""
    result = _fresh_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True"]


def test_manifests_and_output_folders_are_checked_before_models_load(tmp_path: Path) -> None:
    afile = tmp_path / "file.txt"
    afile.write_text("not a folder\n")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    for argv, expected in (
        (["data", "check", str(tmp_path)], f"{tmp_path}: is a directory, not a manifest"),
        (
            ["data", "targets", str(tmp_path), "--stage", "emotion", "-o", "t.jsonl"],
            "is a directory, not a manifest",
        ),
        (
            ["data", "targets", str(manifest), "--stage", "emotion", "-o", str(tmp_path)],
            "(-o): is a directory",
        ),
        (["data", "synth", "-o", str(afile)], f"{afile} (-o): exists and is not a directory"),
        (["eval", "ser", "--data", str(tmp_path)], f"{tmp_path} (--data): is a directory, not a manifest"),
        (
            ["eval", "ser", "--data", str(manifest), "-o", str(afile)],
            f"{afile} (-o): exists and is not a dir",
        ),
        (["eval", "all", "--data", str(manifest), "--model", "random-tiny", "blsp-emo-tyni"], "did you mean"),
        (["export", "blsp-emo-tiny", "-o", str(afile)], f"{afile} (-o): exists and is not a directory"),
    ):
        rc, imported, out = _probe(*argv)
        assert rc == 2 and expected in out, (argv, out)
        assert "torch" not in imported, argv  # failed before any model (or torch) loaded


def test_served_model_ids() -> None:
    from blsp_emo.serving.commands import model_id

    assert model_id("someone/blsp-emo-test") == "someone/blsp-emo-test"
    assert model_id("tiny") == "blsp-emo-tiny-untrained" and model_id("random-tiny") == "blsp-emo-random-tiny"
    assert model_id(str(ROOT / "examples")) == "examples"
