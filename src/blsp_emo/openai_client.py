"""The one client for OpenAI-compatible chat endpoints (the evaluation judge and the ``openai`` teacher
backend of ``data targets``), built on the official ``openai`` package and its retries.

Any server that speaks ``/v1/chat/completions`` works: OpenAI, vLLM serve, llama.cpp's server, TGI, or
``blsp-emo serve`` itself. The client retries connection errors, timeouts, 429 and 5xx answers
(``max_retries`` times, with the package's exponential back-off); other failures become a
:class:`~blsp_emo.errors.UserError` that names the endpoint and what went wrong.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from blsp_emo.errors import UserError
from blsp_emo.model.types import DecodingOptions, Message, Reply


def base_url_of(url: str) -> str:
    """The API's base URL: a trailing ``/chat/completions`` (a full endpoint) and slashes are dropped."""
    url = url.rstrip("/")
    suffix = "/chat/completions"
    return url[: -len(suffix)] if url.endswith(suffix) else url


class ChatClient:
    """An OpenAI-compatible endpoint. ``api_key`` defaults to ``$api_key_env`` (a key is optional for
    local servers)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_retries: int = 3,
    ) -> None:
        from openai import OpenAI

        self.base_url = base_url_of(base_url)
        key = api_key or os.environ.get(api_key_env) or "none"
        self.client = OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=max_retries)

    def _failure(self, path: str, exc: Exception) -> UserError:
        import openai

        where = f"{self.base_url}{path}"
        if isinstance(exc, openai.APIStatusError):
            body = exc.body  # the answer's "error" object when it has one, else the parsed answer
            detail = body.get("message") if isinstance(body, dict) else None
            return UserError(f"{where}: HTTP {exc.status_code}: {str(detail or exc.response.text)[:200]}")
        if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
            return UserError(f"{where} is unreachable: {exc}")
        return UserError(f"{where}: {type(exc).__name__}: {exc}")

    def models(self) -> list[str]:
        """The ids of the models the server offers."""
        import openai

        try:
            return [m.id for m in self.client.models.list()]
        except openai.OpenAIError as exc:
            raise self._failure("/models", exc) from None

    def complete(self, messages: Sequence[Message], model: str, options: DecodingOptions) -> Reply:
        """One chat completion with ``options`` (length, temperature, top-p, seed, stop strings, OpenAI's
        penalties; the repetition penalty and n-gram block go as extra fields, which servers may ignore)."""
        import openai

        request: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "max_tokens": options.max_new_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
        }
        if options.seed is not None:
            request["seed"] = options.seed
        if options.stop:
            request["stop"] = list(options.stop)
        if options.frequency_penalty:
            request["frequency_penalty"] = options.frequency_penalty
        if options.presence_penalty:
            request["presence_penalty"] = options.presence_penalty
        extra = {}
        if options.repetition_penalty != 1.0:
            extra["repetition_penalty"] = options.repetition_penalty
        if options.no_repeat_ngram_size:
            extra["no_repeat_ngram_size"] = options.no_repeat_ngram_size
        try:
            answer = self.client.chat.completions.create(**request, extra_body=extra or None)
        except openai.OpenAIError as exc:
            raise self._failure("/chat/completions", exc) from None
        if not answer.choices:
            raise UserError(f"{self.base_url}/chat/completions: the answer has no choices")
        choice = answer.choices[0]
        usage = answer.usage
        return Reply(
            text=(choice.message.content or "").strip(),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "stop",
        )
