"""Optional LLM judge: quality and empathy scores (1-10) from any OpenAI-compatible chat endpoint.

The judge prompt is the file ``prompts/judge.md`` in this package (placeholders ``{transcript}``,
``{emotion}``, ``{response}``; literal braces doubled). The judge is asked for one JSON line
``{"quality": q, "empathy": e}``; :func:`parse_scores` also accepts "quality: 7 ... empathy: 5" text.
Requests use temperature 0 and the run's seed; answers are cached in a JSONL file so that a rerun (or
a crash) does not pay for them again. An API key, when the endpoint needs one, is read from the
environment variable named by ``api_key_env`` (default ``OPENAI_API_KEY``) and never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from tqdm.auto import tqdm

from blsp_emo.errors import UserError
from blsp_emo.io import JsonlAppender, read_jsonl_dicts
from blsp_emo.model.types import DecodingOptions, text_turn
from blsp_emo.openai_client import ChatClient

SCALES: tuple[str, ...] = ("quality", "empathy")


def judge_prompt_template() -> str:
    """The judge prompt kept in the repository (``blsp_emo/evaluation/prompts/judge.md``)."""
    return resources.files("blsp_emo.evaluation").joinpath("prompts/judge.md").read_text(encoding="utf-8")


def build_judge_prompt(transcript: str, emotion: str, response: str, template: str | None = None) -> str:
    """Fill the judge prompt for one reply."""
    return (template or judge_prompt_template()).format(
        transcript=transcript, emotion=emotion, response=response
    )


def parse_scores(text: str) -> dict[str, float] | None:
    """Read ``{"quality": q, "empathy": e}`` (or "quality: q, empathy: e") from a judge's answer.

    Scores outside 1..10 are rejected; ``None`` when either scale is missing.
    """
    scores: dict[str, float] = {}
    match = re.search(r"\{[^{}]*\}", text or "")
    if match:
        try:
            data = json.loads(match.group(0))
            for scale in SCALES:
                if isinstance(data.get(scale), (int, float)) and not isinstance(data.get(scale), bool):
                    scores[scale] = float(data[scale])
        except json.JSONDecodeError:
            pass
    for scale in SCALES:
        if scale not in scores:
            found = re.search(rf"{scale}\W{{0,3}}\s*(\d+(?:\.\d+)?)", text or "", re.IGNORECASE)
            if found:
                scores[scale] = float(found.group(1))
    if set(scores) != set(SCALES) or not all(1.0 <= v <= 10.0 for v in scores.values()):
        return None
    return scores


@dataclass
class Judge:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint (``url``: the API's base
    URL such as ``http://localhost:8000/v1``, or the full endpoint), asked through
    :class:`~blsp_emo.openai_client.ChatClient` (connection errors, 429 and 5xx retried)."""

    url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    seed: int = 0
    max_tokens: int = 64
    max_retries: int = 3

    @cached_property
    def client(self) -> ChatClient:
        """The endpoint's client (made on first use)."""
        return ChatClient(
            self.url, api_key_env=self.api_key_env, timeout=self.timeout, max_retries=self.max_retries
        )

    def complete(self, prompt: str) -> str:
        """One deterministic chat completion (temperature 0, the run's seed); raises :class:`UserError`
        naming the endpoint on HTTP or protocol errors."""
        options = DecodingOptions(max_new_tokens=self.max_tokens, temperature=0.0, seed=self.seed)
        try:
            return self.client.complete([text_turn("user", prompt)], self.model, options).text
        except UserError as exc:
            raise UserError(f"judge {exc}") from None

    def score(
        self, items: list[tuple[str, str, str]], cache_path: Path | None = None
    ) -> list[dict[str, float] | None]:
        """Scores for (transcript, emotion, response) triples; ``None`` where the judge's answer is unusable."""
        template = judge_prompt_template()
        cache: dict[str, str] = {}
        if cache_path is not None:
            cache = {
                str(r["key"]): str(r["answer"])
                for _, r in read_jsonl_dicts(cache_path)
                if "key" in r and "answer" in r
            }
        appender = JsonlAppender(cache_path) if cache_path is not None else None
        results: list[dict[str, float] | None] = []
        try:
            for transcript, emotion, response in tqdm(items, desc=f"judge {self.model}", unit="reply"):
                prompt = build_judge_prompt(transcript, emotion, response, template)
                key = hashlib.sha256(f"{self.model}\0{self.seed}\0{prompt}".encode()).hexdigest()
                if key not in cache:
                    cache[key] = self.complete(prompt)
                    if appender is not None:
                        appender.write({"key": key, "answer": cache[key]})
                results.append(parse_scores(cache[key]))
        finally:
            if appender is not None:
                appender.close()
        return results
