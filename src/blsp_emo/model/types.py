"""The vocabulary every part of the project speaks: decoding options, a reply, and a conversation.

- :class:`DecodingOptions`: how a reply is generated (length, temperature, nucleus, penalties, n-gram
  block, seed, stop strings). The model, :class:`~blsp_emo.model.SpeechChat`, the serving engine, the
  evaluation systems and target generation all take this one type.
- :class:`Reply`: one generated assistant turn with the emotion heard and token counts; returned by
  ``SpeechChat``, handed out by the engine and the API, and scored by the evaluation harness.
- :class:`Conversation`: a list of chat messages (OpenAI's ``{"role", "content"}`` shape, where a user
  turn's content may hold audio parts) with builder methods; :func:`speech_turn` and :func:`text_turn`
  make single messages.

No torch here: the command line imports these before any model is loaded.

Two decoding presets matter. :data:`PLAIN` (greedy, no penalties) is the paper's evaluation decoding and
the library default. :data:`CONVERSATION` is the default of ``blsp-emo chat`` and ``blsp-emo serve`` (API
and web page): sampling at temperature 0.5 (as the paper's demo) within nucleus 0.9, a mild repetition
penalty (1.1) and a block on repeated 4-grams. Greedy decoding of a small LLM falls into loops ("I'm here
to help you find your way again" five times in one 128-token reply); the penalty makes a loop less likely
and the block makes it impossible. ``blsp-emo demo`` decodes greedily with the same penalty and block
(:data:`DEMO`), so that its table is the same on every run. The penalties and the block act on the
reply's own tokens only (:mod:`blsp_emo.model.repetition`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line imports this module before numpy or torch
    import numpy as np

Message = dict[str, Any]  # {"role": "system" | "user" | "assistant", "content": str | list of parts}


@dataclass(frozen=True)
class DecodingOptions:
    """How one reply is generated; ``temperature`` 0 is greedy (``top_p`` and ``seed`` then do not matter)."""

    max_new_tokens: int = 128  # docs/method.md §5: 128 new tokens
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # > 1: tokens already in the reply are made less likely (1 = off)
    no_repeat_ngram_size: int = 0  # n > 0: no n tokens in a row appear twice in the reply (0 = off)
    frequency_penalty: float = 0.0  # OpenAI's: the logit minus this times the token's count so far
    presence_penalty: float = 0.0  # OpenAI's: the logit minus this once the token has appeared
    seed: int | None = None  # sampling seed (None: the process's random state)
    stop: tuple[str, ...] = ()  # the reply ends before the first of these strings

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic (temperature 0)."""
        return self.temperature <= 0.0

    def replace(self, **changes: Any) -> DecodingOptions:
        """A copy with ``changes`` (field names as keywords)."""
        return dataclasses.replace(self, **changes)

    def batch_key(self) -> tuple:
        """Rows whose options have equal keys can be generated as one batch: the same length cap and
        token choice (stop strings are per row; a greedy row ignores temperature, top-p and seed)."""
        shared = (
            self.max_new_tokens,
            self.repetition_penalty,
            self.no_repeat_ngram_size,
            self.frequency_penalty,
            self.presence_penalty,
        )
        if self.greedy:
            return ("greedy", *shared)
        return ("sample", *shared, self.temperature, self.top_p, self.seed)

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``greedy, repetition penalty 1.1, no repeated 4-grams``."""
        parts = ["greedy" if self.greedy else f"temperature {self.temperature:g}, top-p {self.top_p:g}"]
        if self.repetition_penalty != 1.0:
            parts.append(f"repetition penalty {self.repetition_penalty:g}")
        if self.frequency_penalty:
            parts.append(f"frequency penalty {self.frequency_penalty:g}")
        if self.presence_penalty:
            parts.append(f"presence penalty {self.presence_penalty:g}")
        if self.no_repeat_ngram_size > 0:
            parts.append(f"no repeated {self.no_repeat_ngram_size}-grams")
        return ", ".join(parts)


PLAIN = DecodingOptions()
CONVERSATION = DecodingOptions(temperature=0.5, top_p=0.9, repetition_penalty=1.1, no_repeat_ngram_size=4)
DEMO = CONVERSATION.replace(temperature=0.0, top_p=1.0)


@dataclass
class Reply:
    """One generated assistant turn."""

    text: str
    emotion: str | None = None  # emotion-head label of the conversation's last speech segment
    emotion_scores: dict[str, float] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # "stop" (end of turn or a stop string), "length" (token cap) or "cancelled" (stopped by its caller)
    finish_reason: str = "stop"
    user_text: str | None = None  # what a text pipeline (a cascade) showed the LLM in place of the speech


def text_turn(role: str, text: str) -> Message:
    """A message whose content is plain text."""
    return {"role": role, "content": text}


def speech_turn(audio: np.ndarray | str, instruction: str = "", role: str = "user") -> Message:
    """A user turn with ``instruction`` (if any) and then the speech: a 16 kHz mono array or a file path."""
    part: dict[str, Any] = {"type": "audio", "path" if isinstance(audio, str) else "audio": audio}
    content: list[dict[str, Any]] = [{"type": "text", "text": instruction}] if instruction else []
    return {"role": role, "content": [*content, part]}


class Conversation(list[Message]):
    """A chat conversation: a plain list of messages (what the processor and the API take), with builder
    methods that each append one turn and return the conversation::

        Conversation(system="You are a helpful assistant.").speech(audio, "Continue: ")
    """

    def __init__(self, messages: Any = (), system: str | None = None) -> None:
        super().__init__()
        if system:
            self.append(text_turn("system", system))
        self.extend(messages)

    def user(self, content: str | list[dict[str, Any]]) -> Conversation:
        """Append a user turn (text, or a list of content parts)."""
        self.append({"role": "user", "content": content})
        return self

    def speech(self, audio: np.ndarray | str, instruction: str = "") -> Conversation:
        """Append a user turn with ``instruction`` and then the speech (see :func:`speech_turn`)."""
        self.append(speech_turn(audio, instruction))
        return self

    def assistant(self, text: str) -> Conversation:
        """Append an assistant turn."""
        self.append(text_turn("assistant", text))
        return self

    def turn(self, role: str, content: Any) -> Conversation:
        """Append a turn of any role and content."""
        self.append({"role": role, "content": content})
        return self
