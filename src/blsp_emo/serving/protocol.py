"""The OpenAI chat-completions wire format: parse and validate a request into the internal conversation format.

The request's shape is declared as pydantic models in :mod:`blsp_emo.serving.schema`; this module adds
what depends on the server (the served model names, the limits, earlier spoken replies) and decodes the
audio. Everything a client can get wrong is checked before any model sees it and reported as an
:class:`APIError` that the HTTP layer turns into OpenAI-style error JSON
(``{"error": {"message", "type", "param", "code"}}``). ``param`` names the offending field in the request,
e.g. ``messages[1].content[0].input_audio.data``, and the message starts with it. Unknown fields are
ignored, as OpenAI's own server does, but OpenAI fields this server does not implement (``logprobs``,
``response_format``, ``tools``, ``logit_bias``, ...) are refused when set, naming the field, rather than
silently dropped; ``stop`` is implemented. A ``model`` other than the served one (or one of its aliases)
is a 404 ``model_not_found``, as with OpenAI.

Decoding fields and their defaults (:data:`blsp_emo.model.types.CONVERSATION`; each is checked, a bad value
is a 400 naming the field):

* ``temperature`` 0.5 (0 to 2; 0 is greedy) and ``top_p`` 0.9 (above 0, at most 1);
* ``max_tokens`` / ``max_completion_tokens`` 128 (1 to the server's ``--max-tokens-limit``), ``seed``, ``stop``;
* ``frequency_penalty`` and ``presence_penalty`` 0 (-2 to 2, OpenAI's meaning);
* project extensions: ``repetition_penalty`` 1.1 (above 0, at most 2; 1 turns it off; transformers'
  meaning) and ``no_repeat_ngram_size`` 4 (an integer 0 to 32; 0 turns it off): no run of that many tokens
  appears twice in a reply.

The penalties and the n-gram block look at the reply's own tokens, not at the prompt.

Audio comes in three shapes:

* ``{"type": "input_audio", "input_audio": {"data": BASE64, "format": "wav"}}`` (OpenAI's shape);
* ``{"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,..."}}`` (a ``data:`` URL);
* ``audio_url`` with an ``http(s)`` URL, only when the server allows it (``fetch_url`` given); ``file:`` and
  every other scheme are always refused so that a request can never read the server's disk.

Spoken replies (``modalities: ["text", "audio"]``) come in ``audio.format`` wav (the default), pcm16, mp3,
opus, flac or aac; any other format is a 400 naming it. An earlier spoken reply may come back in the
conversation as OpenAI clients send it, ``{"role": "assistant", "audio": {"id": "audio_..."}}``: its
transcript is looked up by id (``reply_transcript``); an id the server no longer knows falls back to
``audio.transcript`` or ``content`` when the turn carries one, and is a 400 ``audio_not_found`` naming
the id when it does not.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from blsp_emo.audio import SAMPLE_RATE, load_audio
from blsp_emo.errors import AudioError
from blsp_emo.model.types import Conversation, DecodingOptions, Message
from blsp_emo.prompts import system_prompt
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.schema import (
    AudioOutput,
    AudioUrlPart,
    ChatCompletionRequest,
    ChatMessage,
    InputAudioPart,
    SpokenAudio,
    TextPart,
    describe_error,
)

_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.S
)


class APIError(Exception):
    """A request the server refuses, with the HTTP status and the OpenAI error fields."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The body of the error response, in OpenAI's shape."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _bad(message: str, param: str | None, code: str = "invalid_value", status: int = 400) -> APIError:
    return APIError(message, status=status, param=param, code=code)


def api_error(exc: ValidationError) -> APIError:
    """The first of pydantic's errors as the :class:`APIError` the client sees (field named in ``param``)."""
    param, code, phrase = describe_error(exc.errors(include_url=False)[0])
    return _bad(f"'{param}' {phrase}" if param else phrase, param, code)


# --- the internal conversation ------------------------------------------------------------------------


@dataclass
class ChatRequest:
    """A validated chat-completions request in the internal conversation format."""

    messages: Conversation
    options: DecodingOptions
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    want_audio: bool = False
    voice: str | None = None
    audio_format: str = "wav"  # the spoken reply's format (one of speech.REPLY_FORMATS)
    audio_seconds: list[float] = field(default_factory=list)
    max_tokens_given: bool = False  # the client set max_tokens (else the default may shrink to fit)


class _AudioDecoder:
    """Decodes audio parts of one request, counting parts and seconds against the limits."""

    def __init__(self, limits: ServingLimits, fetch_url: Callable[[str], bytes] | None) -> None:
        self.limits = limits
        self.fetch_url = fetch_url
        self.seconds: list[float] = []

    def _budget(self, param: str) -> None:
        if len(self.seconds) >= self.limits.max_audio_parts:
            raise _bad(
                f"too many audio parts: the limit is {self.limits.max_audio_parts} per request",
                param,
                "too_many_audio_parts",
            )

    def decode(self, data: bytes, param: str) -> np.ndarray:
        try:
            audio = load_audio(data, max_seconds=self.limits.max_audio_seconds)
        except AudioError as exc:
            code = "audio_too_long" if "the limit is" in str(exc) else "invalid_audio"
            raise _bad(f"{param}: {exc}", param, code) from None
        seconds = audio.size / SAMPLE_RATE
        if sum(self.seconds) + seconds > self.limits.max_total_audio_seconds:
            raise _bad(
                f"the request holds more than {self.limits.max_total_audio_seconds:g} s of audio",
                param,
                "audio_too_long",
            )
        self.seconds.append(seconds)
        return audio

    def part(self, part: InputAudioPart | AudioUrlPart, param: str) -> np.ndarray:
        """The samples of one audio part."""
        self._budget(param)
        if isinstance(part, InputAudioPart):
            where = f"{param}.input_audio.data"
            return self.decode(_b64(part.input_audio.data, where), where)
        return self.url(part.audio_url.url, f"{param}.audio_url.url")

    def url(self, url: str, where: str) -> np.ndarray:
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme == "data":
            match = _DATA_URL.match(url)
            if not match:
                raise _bad("a data: URL must be base64 encoded (data:audio/wav;base64,...)", where)
            mime = (match.group("mime") or "").lower()
            if mime and not (
                mime.startswith("audio/") or mime in {"video/webm", "video/mp4", "application/octet-stream"}
            ):
                raise _bad(f"a data: URL of type {mime!r} is not audio", where, "unsupported_audio_format")
            return self.decode(_b64(match.group("data"), where), where)
        if scheme in {"http", "https"}:
            if self.fetch_url is None:
                raise _bad(
                    "http(s) audio URLs are disabled on this server; send the audio inline (input_audio or a data: URL)",
                    where,
                    "url_not_allowed",
                )
            try:
                data = self.fetch_url(url)
            except APIError as exc:  # name the part, whatever the downloader said
                exc.param = exc.param or where
                raise
            return self.decode(data, where)
        raise _bad(f"audio URL scheme {scheme or '(none)'!r} is not allowed", where, "url_not_allowed")


def _b64(data: str, param: str) -> bytes:
    if not data:
        raise _bad("audio data must be a non-empty base64 string", param)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("audio data is not valid base64", param, "invalid_base64") from None


def _spoken_turn(audio: SpokenAudio, index: int, reply_transcript: Callable[[str], str | None] | None) -> str:
    """The text of an assistant turn sent as ``audio: {"id", "transcript"?}`` with no ``content``: the
    transcript kept under the id, else the one the turn carries."""
    param = f"messages[{index}].audio"
    kept = reply_transcript(audio.id) if audio.id and reply_transcript is not None else None
    if kept is not None:
        return kept
    if audio.transcript is not None:
        return audio.transcript
    if audio.id is None:
        raise _bad(
            "an assistant turn without 'content' needs 'audio.id'",
            f"{param}.id",
            "missing_required_parameter",
        )
    raise _bad(
        f"no reply audio with id {audio.id[:100]!r} on this server: it is unknown or has expired (replies are "
        "kept for a limited time); send that assistant turn's text as 'content' or 'audio.transcript'",
        f"{param}.id",
        "audio_not_found",
    )


def _content(
    message: ChatMessage,
    index: int,
    decoder: _AudioDecoder,
    reply_transcript: Callable[[str], str | None] | None,
) -> str | list[dict[str, Any]]:
    """A message's content in the internal format: text, or (user turns) text and audio parts."""
    param = f"messages[{index}].content"
    content = message.content
    if content is None and message.role == "assistant" and message.audio is not None:
        return _spoken_turn(message.audio, index, reply_transcript)  # its audio id stands for its text
    if content is None:
        raise _bad(f"'{param}' must be a string or a list of content parts", param, "invalid_type")
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif message.role != "user":
            raise _bad(f"audio is only accepted in user messages, not {message.role!r}", f"{param}[{j}]")
        else:
            parts.append({"type": "audio", "audio": decoder.part(part, f"{param}[{j}]")})
    if message.role != "user":  # only user turns may mix modalities: join text parts into a string
        return "".join(p["text"] for p in parts)
    return parts


def _text_chars(messages: Sequence[ChatMessage]) -> int:
    """Characters of text in all messages (a spoken assistant turn's transcript included)."""
    total = 0
    for message in messages:
        if isinstance(message.content, str):
            total += len(message.content)
        elif message.content is not None:
            total += sum(len(p.text) for p in message.content if isinstance(p, TextPart))
        elif message.audio is not None and message.audio.transcript is not None:
            total += len(message.audio.transcript)
    return total


def parse_chat_request(
    body: Any,
    limits: ServingLimits | None = None,
    *,
    default_system: str | None = "empathetic",
    fetch_url: Callable[[str], bytes] | None = None,
    served_models: Collection[str] | None = None,
    reply_transcript: Callable[[str], str | None] | None = None,
) -> ChatRequest:
    """Validate an OpenAI chat-completions request body and decode its audio.

    ``default_system`` (a preset name of :mod:`blsp_emo.prompts` or a text) is put first when the
    conversation has no system message; ``None`` leaves it as sent. ``fetch_url`` downloads an http(s)
    audio URL; without it such URLs are refused. ``served_models``: the model names a request may name
    (absent ``model`` is accepted); None accepts any. ``reply_transcript`` finds the transcript of an
    earlier spoken reply by its audio id (None when unknown). Raises :class:`APIError` for anything invalid.
    """
    limits = limits or ServingLimits()
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", None, "invalid_type")
    try:
        request = ChatCompletionRequest.model_validate(body, context={"limits": limits})
    except ValidationError as exc:
        raise api_error(exc) from None
    if request.model is not None and served_models is not None and request.model not in served_models:
        raise APIError(
            f"the model {request.model[:100]!r} does not exist; "
            f"this server serves {', '.join(sorted(served_models))}",
            status=404,
            param="model",
            code="model_not_found",
        )
    if _text_chars(request.messages) > limits.max_text_chars:  # before any audio is decoded or text tokenised
        raise _bad(
            f"the request holds more than {limits.max_text_chars} characters of text",
            "messages",
            "text_too_long",
        )
    last = len(request.messages) - 1
    if request.messages[last].role != "user":
        raise _bad("the last message must come from the user", f"messages[{last}].role")

    decoder = _AudioDecoder(limits, fetch_url)
    turns: list[Message] = []
    for i, message in enumerate(request.messages):
        role = "system" if message.role == "developer" else message.role
        turns.append({"role": role, "content": _content(message, i, decoder, reply_transcript)})
    text = (
        system_prompt(default_system) if default_system is not None and turns[0]["role"] != "system" else None
    )
    audio = request.audio or AudioOutput()
    return ChatRequest(
        messages=Conversation(turns, system=text),
        options=request.options(limits.default_new_tokens),
        model=request.model,
        stream=request.stream,
        include_usage=request.stream_options is not None and request.stream_options.include_usage,
        want_audio="audio" in (request.modalities or ()),
        voice=audio.voice,
        audio_format=audio.format or "wav",
        audio_seconds=decoder.seconds,
        max_tokens_given=request.max_tokens is not None or request.max_completion_tokens is not None,
    )


def check_token_budget(
    request: ChatRequest, prompt_tokens: int | None, context: int | None, limits: ServingLimits
) -> None:
    """Check prompt tokens + max_tokens against the model's context and the per-request budget
    (``limits.max_request_tokens``), before the request is queued: 400 ``context_length_exceeded``.

    When the client did not set max_tokens, the default shrinks to what is left rather than failing.
    """
    budgets = [b for b in (context, limits.max_request_tokens) if b]
    if prompt_tokens is None or not budgets:
        return
    budget = min(budgets)
    what = "context length" if budget == context else "per-request token budget"
    wanted = request.options.max_new_tokens
    if prompt_tokens >= budget or (request.max_tokens_given and prompt_tokens + wanted > budget):
        raise APIError(
            f"this model's maximum {what} is {budget} tokens; the request asks for {prompt_tokens + wanted} "
            f"({prompt_tokens} in the messages, {wanted} in the completion); shorten the messages or "
            "max_tokens",
            param="messages",
            code="context_length_exceeded",
        )
    if prompt_tokens + wanted > budget:
        request.options = request.options.replace(max_new_tokens=budget - prompt_tokens)
