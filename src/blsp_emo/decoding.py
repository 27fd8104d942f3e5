"""Decoding settings: how the next token of a reply is chosen (no torch here: the CLI imports it early).

Two sets matter. :data:`PLAIN` (greedy, no penalties) is the paper's evaluation decoding and the library
default of :class:`blsp_emo.model.SpeechChat`. :data:`CONVERSATION` is the default of ``blsp-emo chat``,
``blsp-emo serve`` (API and web page): sampling at temperature 0.5 (as the paper's demo) within nucleus
0.9, a mild repetition penalty (1.1) and a block on repeated 4-grams. Greedy decoding of a small LLM falls
into loops ("I'm here to help you find your way again" five times in one 128-token reply); the penalty
makes a loop less likely and the block makes it impossible. ``blsp-emo demo`` decodes greedily with the
same penalty and block (:data:`DEMO`), so that its table is the same on every run.

The penalties and the block act on the reply's own tokens only (:mod:`blsp_emo.model.repetition`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Decoding:
    """How the next token is chosen; ``temperature`` 0 is greedy (``top_p`` then does not matter)."""

    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # > 1: tokens already in the reply are made less likely (1 = off)
    no_repeat_ngram_size: int = 0  # n > 0: no n tokens in a row appear twice in the reply (0 = off)
    frequency_penalty: float = 0.0  # OpenAI's: the logit minus this times the token's count so far
    presence_penalty: float = 0.0  # OpenAI's: the logit minus this once the token has appeared

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic (temperature 0)."""
        return self.temperature <= 0.0

    def kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments of :meth:`SpeechChat.respond` / ``stream``."""
        return asdict(self)

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


PLAIN = Decoding()
CONVERSATION = Decoding(temperature=0.5, top_p=0.9, repetition_penalty=1.1, no_repeat_ngram_size=4)
DEMO = replace(CONVERSATION, temperature=0.0, top_p=1.0)
