"""``blsp-emo chat``: a multi-turn conversation in the terminal.

Each turn is an audio file path, text, or both (``clip.wav what do you think?``: a first word that names an
existing file is the audio, the rest is text; quote paths with spaces). The reply streams as it is
generated, then the emotion heard in the audio is shown. Commands: ``/reset`` (new conversation), ``/save FILE``
(the conversation as JSON, audio as file paths), ``/quit``. The conversation lives in this session only.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from blsp_emo.audio import SAMPLE_RATE, load_audio
from blsp_emo.errors import UserError
from blsp_emo.io import atomic_write_json
from blsp_emo.model.types import CONVERSATION, Conversation, DecodingOptions, Reply, speech_turn, text_turn
from blsp_emo.prompts import system_prompt
from blsp_emo.serving.engine import ServingEngine
from blsp_emo.serving.limits import CHAT_LIMITS, ServingLimits

HELP = (
    "Type text, an audio file path, or both ('clip.wav what do you hear?'). Commands: /reset /save FILE /quit"
)


# Endings of the audio files people type; a first word with one of them is meant as audio, never as text.
AUDIO_SUFFIXES = frozenset(
    ".wav .wave .flac .mp3 .ogg .oga .opus .m4a .aac .webm .aiff .aif .au .raw .pcm .wma .mp4".split()
)
COMMANDS = ("/reset", "/save", "/quit", "/exit", "/help")


def first_word(line: str) -> str:
    """The first word of a typed line (a quoted path may hold spaces)."""
    line = line.strip()
    if line[:1] in "'\"":
        try:
            return shlex.split(line)[0]
        except (ValueError, IndexError):
            return line
    return line.split(" ", 1)[0] if line else ""


def looks_like_audio_path(word: str) -> bool:
    """True for a word that can only mean an audio file: an audio ending, or a path form (``./``, ``../``,
    ``~/``, ``@``, or an absolute path with a folder in it)."""
    if not word:
        return False
    if Path(word.removeprefix("@")).suffix.lower() in AUDIO_SUFFIXES:
        return True
    return word.startswith(("@", "./", "../", "~/")) or (word.startswith("/") and word.count("/") > 1)


def missing_audio(line: str) -> str | None:
    """The complaint for a line whose first word is meant as an audio file that is not one (missing, a
    directory, not a regular file), else None: such a line is reported, never sent to the model as text."""
    word = first_word(line)
    if not looks_like_audio_path(word):
        return None
    path = Path(word.removeprefix("@")).expanduser()
    if path.is_file():
        return None
    if path.is_dir():
        return f"{path}: is a directory, not an audio file"
    if path.exists():
        return f"{path}: not a regular file"
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    return f"{path}: no such file{where}"


def parse_turn(line: str) -> tuple[Path | None, str]:
    """Split a typed line into (audio path or None, text); the first word is audio when it is a file."""
    line = line.strip()
    if not line:
        return None, ""
    if line[0] in "'\"":
        try:
            words = shlex.split(line)
        except ValueError:
            return None, line
        first, rest = words[0], line[line.index(line[0], 1) + 1 :].strip()
    else:
        first, _, rest = line.partition(" ")
        rest = rest.strip()
    path = Path(first.removeprefix("@")).expanduser()
    if path.is_file():
        return path, rest
    return None, line


class ChatSession:
    """One terminal conversation: its messages, and the engine that answers them."""

    def __init__(
        self,
        engine: ServingEngine,
        *,
        system: str | None = "empathetic",
        options: DecodingOptions = CONVERSATION,
        limits: ServingLimits = CHAT_LIMITS,
        out: TextIO = sys.stdout,
    ) -> None:
        """``options``: how replies are generated; ``limits``: the longest audio file a turn may name
        (``max_audio_seconds``)."""
        self.engine = engine
        self.system = system_prompt(system)
        self.options = options
        self.limits = limits
        self.out = out
        self.messages = Conversation()
        self._saved = Conversation()  # the same turns, with audio as paths (for /save)
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.messages = Conversation(system=self.system)
        self._saved = Conversation(system=self.system)

    def save(self, path: str | Path) -> Path:
        """Write the conversation as JSON (audio parts as paths) and return the path."""
        path = Path(path).expanduser()
        atomic_write_json(path, {"messages": self._saved})
        return path

    def turn(self, audio_path: Path | None, text: str) -> Reply | None:
        """Send one user turn, print the streamed reply, and return it (None when interrupted)."""
        if audio_path is None:
            asked = saved = text_turn("user", text)
        else:
            audio = load_audio(audio_path, max_seconds=self.limits.max_audio_seconds)
            asked, saved = speech_turn(audio, text), speech_turn(str(audio_path.resolve()), text)
            saved["content"][-1]["seconds"] = audio.size / SAMPLE_RATE
        conversation = Conversation(self.messages).turn(asked["role"], asked["content"])
        done: Reply | None = None
        started = False
        stream = self.engine.open_stream(conversation, self.options)
        try:
            for event in stream:
                if isinstance(event.value, str) and not started:  # the first piece of the reply
                    self.out.write("assistant> ")
                    started = True
                if isinstance(event.value, str):
                    self.out.write(event.value)
                    self.out.flush()
                elif isinstance(event.value, Reply):
                    done = event.value
        except KeyboardInterrupt:  # Ctrl-C stops this reply, not the conversation
            stream.cancel()
            self.out.write("\n(reply interrupted; the turn is dropped)\n")
            return None
        if not started:
            self.out.write("assistant> ")
        self.out.write("\n")
        assert done is not None
        if done.emotion:
            scores = done.emotion_scores or {}
            score = f" ({scores[done.emotion]:.2f})" if done.emotion in scores else ""
            self.out.write(f"[emotion heard: {done.emotion}{score}]\n")
        self.messages = conversation.assistant(done.text)
        self._saved.turn("user", saved["content"]).assistant(done.text)
        self._saved[-2]["emotion"] = done.emotion  # what the model heard in that turn
        return done

    def handle(self, line: str) -> bool:
        """Act on one typed line; False means quit."""
        stripped = line.strip()
        if not stripped:
            return True
        if stripped in {"/quit", "/exit", "/q"}:
            return False
        if stripped == "/reset":
            self.reset()
            self.out.write("(new conversation)\n")
            return True
        if stripped.startswith("/save"):
            _, _, target = stripped.partition(" ")
            if not target.strip():
                self.out.write("usage: /save FILE\n")
            else:
                self.out.write(f"(saved to {self.save(target.strip())})\n")
            return True
        if stripped in {"/help", "/?"}:
            self.out.write(HELP + "\n")
            return True
        problem = missing_audio(stripped)
        if problem is not None:  # meant as audio: say so instead of sending the path as text
            self.out.write(f"error: {problem}\n")
            return True
        if stripped.startswith("/") and not Path(stripped.split()[0]).exists():
            from blsp_emo.clitools import did_you_mean

            word = stripped.split()[0]
            self.out.write(f"unknown command {word}{did_you_mean(word, COMMANDS) or ''}; {HELP}\n")
            return True
        audio_path, text = parse_turn(stripped)
        try:
            self.turn(audio_path, text)
        except UserError as exc:  # a bad file must not end the conversation
            self.out.write(f"error: {exc}\n")
        return True


def chat_loop(session: ChatSession, read_line: Callable[[str], str] = input) -> None:
    """Read lines until /quit or end of input, answering each turn."""
    session.out.write(HELP + "\n")
    while True:
        try:
            line = read_line("you> ")
        except EOFError:
            session.out.write("\n")
            return
        if not session.handle(line):
            return
