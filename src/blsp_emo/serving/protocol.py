"""The OpenAI chat-completions wire format: parse and validate a request into the internal conversation format.

Everything a client can get wrong is checked here, before any model sees it, and reported as an
:class:`APIError` that the HTTP layer turns into OpenAI-style error JSON
(``{"error": {"message", "type", "param", "code"}}``). ``param`` names the offending field in the request,
e.g. ``messages[1].content[0].input_audio.data``. Unknown fields are ignored, as OpenAI's own server does,
but OpenAI fields this server does not implement (``logprobs``, ``response_format``, ``tools``,
``logit_bias``, ...) are refused when set, naming the field, rather than silently dropped; ``stop`` is
implemented. A ``model`` other than the served one (or one of its aliases) is a 404 ``model_not_found``,
as with OpenAI.

Decoding fields and their defaults (:data:`blsp_emo.model.types.CONVERSATION`; each is checked, a bad value is
a 400 naming the field):

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
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from blsp_emo.audio import SAMPLE_RATE, load_audio
from blsp_emo.errors import AudioError
from blsp_emo.model.types import CONVERSATION, DecodingOptions
from blsp_emo.prompts import system_prompt
from blsp_emo.serving.speech import REPLY_FORMATS

# Formats a client may name in input_audio.format; the decoder sniffs the container anyway.
AUDIO_FORMATS: frozenset[str] = frozenset(
    {"wav", "mp3", "flac", "ogg", "oga", "opus", "webm", "m4a", "mp4", "aac", "weba"}
)
ROLES: frozenset[str] = frozenset({"system", "developer", "user", "assistant"})
MAX_NO_REPEAT_NGRAM = 32  # the largest no_repeat_ngram_size a request may ask for
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


@dataclass(frozen=True)
class ServingLimits:
    """What one request may ask for; every limit is checked before the model runs."""

    max_request_bytes: int = 25 * 1024 * 1024  # whole HTTP body (base64 audio is 4/3 of the raw size)
    max_audio_seconds: float = 60.0  # per audio part
    max_total_audio_seconds: float = 300.0  # all audio parts of one request together
    max_audio_parts: int = 8  # audio parts over the whole conversation
    max_messages: int = 64
    max_new_tokens: int = 1024  # the largest max_tokens a client may ask for
    default_new_tokens: int = 128  # SPEC section 5: 128 new tokens by default
    # All text of one request (every message), checked before anything is tokenised: a 2 MB prompt must
    # be refused in microseconds, not tokenised for seconds and then refused.
    max_text_chars: int = 100_000
    # Per-request token budget: prompt tokens + max_tokens; None = the model's context length.
    max_request_tokens: int | None = None
    max_json_depth: int = 32  # nesting of the request JSON (a real request needs 6)
    max_json_items: int = 20_000  # objects, arrays and values in the request JSON together


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings of one request; requests with equal settings can share a batch.

    The defaults are :data:`blsp_emo.model.types.CONVERSATION` (sampling at 0.5 within top-p 0.9, repetition
    penalty 1.1, no repeated 4-grams); ``temperature=0`` is greedy.
    """

    max_new_tokens: int = 128
    temperature: float = CONVERSATION.temperature
    top_p: float = CONVERSATION.top_p
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the reply ends before the first of these strings
    repetition_penalty: float = CONVERSATION.repetition_penalty
    no_repeat_ngram_size: int = CONVERSATION.no_repeat_ngram_size
    frequency_penalty: float = CONVERSATION.frequency_penalty
    presence_penalty: float = CONVERSATION.presence_penalty

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic (temperature 0)."""
        return self.temperature <= 0.0

    @property
    def options(self) -> DecodingOptions:
        """The request's decoding options."""
        return DecodingOptions(
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
            stop=self.stop,
            temperature=self.temperature,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
        )


@dataclass
class ChatRequest:
    """A validated chat-completions request in the internal conversation format."""

    messages: list[dict[str, Any]]
    params: GenerationParams
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    want_audio: bool = False
    voice: str | None = None
    audio_format: str = "wav"  # the spoken reply's format (one of speech.REPLY_FORMATS)
    audio_seconds: list[float] = field(default_factory=list)
    max_tokens_given: bool = False  # the client set max_tokens (else the default may shrink to fit)


def _bad(message: str, param: str | None, code: str = "invalid_value", status: int = 400) -> APIError:
    return APIError(message, status=status, param=param, code=code)


def _number(body: dict, name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"'{name}' must be a number, got {type(value).__name__}", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low:g} and {high:g}, got {value}", name)
    return float(value)


def _integer(body: dict, name: str, low: int, high: int, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{name}' must be an integer, got {type(value).__name__}", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low} and {high}, got {value}", name)
    return value


def generation_params(body: dict, limits: ServingLimits) -> GenerationParams:
    """The decoding fields of a request body (or of ``blsp-emo chat``'s flags), checked; defaults filled in."""
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(name)
    if max_tokens is None:
        max_tokens = limits.default_new_tokens
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise _bad(f"'{name}' must be an integer", name, "invalid_type")
    elif not 1 <= max_tokens <= limits.max_new_tokens:
        raise _bad(f"'{name}' must be between 1 and {limits.max_new_tokens}, got {max_tokens}", name)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("'seed' must be an integer", "seed", "invalid_type")
    defaults = GenerationParams()
    top_p = _number(body, "top_p", 0.0, 1.0, defaults.top_p)
    if top_p <= 0.0:
        raise _bad("'top_p' must be greater than 0", "top_p")
    repetition_penalty = _number(body, "repetition_penalty", 0.0, 2.0, defaults.repetition_penalty)
    if repetition_penalty <= 0.0:
        raise _bad("'repetition_penalty' must be greater than 0 (1 turns it off)", "repetition_penalty")
    return GenerationParams(
        max_new_tokens=int(max_tokens),
        temperature=_number(body, "temperature", 0.0, 2.0, defaults.temperature),
        top_p=top_p,
        seed=seed,
        stop=_stop_strings(body.get("stop")),
        repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=_integer(
            body, "no_repeat_ngram_size", 0, MAX_NO_REPEAT_NGRAM, defaults.no_repeat_ngram_size
        ),
        frequency_penalty=_number(body, "frequency_penalty", -2.0, 2.0, defaults.frequency_penalty),
        presence_penalty=_number(body, "presence_penalty", -2.0, 2.0, defaults.presence_penalty),
    )


def _stop_strings(value: Any) -> tuple[str, ...]:
    """OpenAI's ``stop``: null, a string, or a list of up to 4 non-empty strings."""
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("'stop' must be a string or a list of strings", "stop", "invalid_type")
    if len(stops) > 4 or any(not s or len(s) > 256 for s in stops):
        raise _bad("'stop' takes up to 4 non-empty strings of at most 256 characters", "stop")
    return tuple(stops)


def _unsupported(body: dict) -> None:
    """Refuse OpenAI fields this server does not implement when they ask for something (their neutral
    values -- false, null, 0, empty, ``{"type": "text"}``, ``tool_choice: "none"`` -- are accepted)."""
    checks: dict[str, Callable[[Any], bool]] = {
        "logprobs": lambda v: v is not False,
        "top_logprobs": lambda v: v != 0,
        "response_format": lambda v: not (isinstance(v, dict) and v.get("type") == "text"),
        "tools": lambda v: v != [],
        "functions": lambda v: v != [],
        "tool_choice": lambda v: v != "none",
        "function_call": lambda v: v != "none",
        "logit_bias": lambda v: v != {},
        "prediction": lambda v: True,
        "web_search_options": lambda v: True,
    }
    for name, asks in checks.items():
        value = body.get(name)
        if value is not None and asks(value):
            raise _bad(
                f"'{name}' is not supported by this server (it is not silently ignored: remove it)",
                name,
                "unsupported_parameter",
            )


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

    def input_audio(self, part: dict, param: str) -> np.ndarray:
        self._budget(param)
        spec = part.get("input_audio")
        if not isinstance(spec, dict):
            raise _bad("'input_audio' must be an object with 'data' and 'format'", f"{param}.input_audio")
        fmt = spec.get("format")
        if fmt is not None and (not isinstance(fmt, str) or fmt.lower() not in AUDIO_FORMATS):
            raise _bad(
                f"unsupported audio format {fmt!r}; supported: {', '.join(sorted(AUDIO_FORMATS))}",
                f"{param}.input_audio.format",
                "unsupported_audio_format",
            )
        return self.decode(_b64(spec.get("data"), f"{param}.input_audio.data"), f"{param}.input_audio.data")

    def audio_url(self, part: dict, param: str) -> np.ndarray:
        self._budget(param)
        spec = part.get("audio_url")
        url = spec.get("url") if isinstance(spec, dict) else spec
        where = f"{param}.audio_url.url" if isinstance(spec, dict) else f"{param}.audio_url"
        if not isinstance(url, str) or not url:
            raise _bad("'audio_url' must hold a 'url' string", where)
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


def _b64(data: Any, param: str) -> bytes:
    if not isinstance(data, str) or not data:
        raise _bad("audio data must be a non-empty base64 string", param)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("audio data is not valid base64", param, "invalid_base64") from None


def _spoken_turn(
    message: dict, index: int, reply_transcript: Callable[[str], str | None] | None
) -> str | None:
    """The text of an assistant turn sent as ``audio: {"id", "transcript"?}`` with no ``content``: the
    transcript kept under the id, else the one the turn carries; None when the turn has no ``audio``."""
    audio = message.get("audio")
    if audio is None:
        return None
    param = f"messages[{index}].audio"
    if not isinstance(audio, dict):
        raise _bad("an assistant turn's 'audio' must be an object with an 'id'", param, "invalid_type")
    audio_id, transcript = audio.get("id"), audio.get("transcript")
    if audio_id is not None and not isinstance(audio_id, str):
        raise _bad("'audio.id' must be a string", f"{param}.id", "invalid_type")
    if transcript is not None and not isinstance(transcript, str):
        raise _bad("'audio.transcript' must be a string", f"{param}.transcript", "invalid_type")
    kept = reply_transcript(audio_id) if audio_id and reply_transcript is not None else None
    if kept is not None:
        return kept
    if transcript is not None:
        return transcript
    if audio_id is None:
        raise _bad(
            "an assistant turn without 'content' needs 'audio.id'",
            f"{param}.id",
            "missing_required_parameter",
        )
    raise _bad(
        f"no reply audio with id {audio_id[:100]!r} on this server: it is unknown or has expired (replies are "
        "kept for a limited time); send that assistant turn's text as 'content' or 'audio.transcript'",
        f"{param}.id",
        "audio_not_found",
    )


def _content(
    message: dict,
    index: int,
    decoder: _AudioDecoder,
    reply_transcript: Callable[[str], str | None] | None = None,
) -> str | list[dict[str, Any]]:
    param = f"messages[{index}].content"
    role = message["role"]
    content = message.get("content")
    if content is None and role == "assistant":
        # A spoken assistant turn: its audio id (or transcript) stands for its text.
        content = _spoken_turn(message, index, reply_transcript)
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("'content' must be a string or a list of content parts", param, "invalid_type")
    if not content:
        raise _bad("'content' must not be an empty list", param)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _bad("a content part must be an object", where, "invalid_type")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad("a text part needs a 'text' string", f"{where}.text", "invalid_type")
            parts.append({"type": "text", "text": text})
        elif kind in {"input_audio", "audio_url"}:
            if role != "user":
                raise _bad(f"audio is only accepted in user messages, not {role!r}", where)
            audio = (
                decoder.input_audio(part, where) if kind == "input_audio" else decoder.audio_url(part, where)
            )
            parts.append({"type": "audio", "audio": audio})
        else:
            raise _bad(
                f"unsupported content part type {kind!r}; use 'text', 'input_audio' or 'audio_url'",
                f"{where}.type",
                "unsupported_content_type",
            )
    if role != "user":  # only user turns may mix modalities: join text parts into a string
        return "".join(p["text"] for p in parts)
    return parts


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
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("'model' must be a string", "model", "invalid_type")
    if model is not None and served_models is not None and model not in served_models:
        raise APIError(
            f"the model {model[:100]!r} does not exist; this server serves {', '.join(sorted(served_models))}",
            status=404,
            param="model",
            code="model_not_found",
        )
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _bad(
            "'messages' must be a non-empty list",
            "messages",
            "invalid_type" if raw else "missing_required_parameter",
        )
    if len(raw) > limits.max_messages:
        raise _bad(f"too many messages: the limit is {limits.max_messages}", "messages", "too_many_messages")
    n = body.get("n")
    if n not in (None, 1):
        raise _bad("only n=1 is supported", "n", "unsupported_value")
    _unsupported(body)
    params = generation_params(body, limits)
    _check_text_size(raw, limits)

    modalities = body.get("modalities") or ["text"]
    if not isinstance(modalities, list) or not set(modalities) <= {"text", "audio"}:
        raise _bad(
            "'modalities' must be a list drawn from 'text' and 'audio'", "modalities", "unsupported_value"
        )
    audio_spec = body.get("audio")
    if audio_spec is not None and not isinstance(audio_spec, dict):
        raise _bad("'audio' must be an object with 'voice' and 'format'", "audio", "invalid_type")
    audio_spec = audio_spec or {}
    out_format = audio_spec.get("format")
    out_format = "wav" if out_format is None else out_format
    if not isinstance(out_format, str) or out_format not in REPLY_FORMATS:
        raise _bad(
            f"unsupported audio output format {str(out_format)[:40]!r}; supported: {', '.join(REPLY_FORMATS)}",
            "audio.format",
            "unsupported_value",
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", "stream", "invalid_type")
    stream_options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}

    decoder = _AudioDecoder(limits, fetch_url)
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _bad("each message must be an object", f"messages[{i}]", "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise _bad(
                f"unsupported role {role!r}; use 'system', 'user' or 'assistant'", f"messages[{i}].role"
            )
        role = "system" if role == "developer" else role
        messages.append({"role": role, "content": _content(message, i, decoder, reply_transcript)})
    if messages[-1]["role"] != "user":
        raise _bad("the last message must come from the user", f"messages[{len(messages) - 1}].role")
    if default_system is not None and messages[0]["role"] != "system":
        text = system_prompt(default_system)
        if text:
            messages.insert(0, {"role": "system", "content": text})
    return ChatRequest(
        messages=messages,
        params=params,
        model=model if isinstance(model, str) else None,
        stream=stream,
        include_usage=bool(stream_options.get("include_usage", False)),
        want_audio="audio" in modalities,
        voice=audio_spec.get("voice") if isinstance(audio_spec.get("voice"), str) else None,
        audio_format=out_format,
        audio_seconds=decoder.seconds,
        max_tokens_given=body.get("max_completion_tokens") is not None or body.get("max_tokens") is not None,
    )


def _check_text_size(messages: list, limits: ServingLimits) -> None:
    """Refuse a request whose text (all messages) is over ``max_text_chars``, before anything else reads it."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        audio = message.get("audio") if isinstance(message, dict) else None
        if content is None and isinstance(audio, dict):  # a spoken assistant turn carries its transcript
            content = audio.get("transcript")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(
                len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        if total > limits.max_text_chars:
            raise _bad(
                f"the request holds more than {limits.max_text_chars} characters of text",
                "messages",
                "text_too_long",
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
    wanted = request.params.max_new_tokens
    if prompt_tokens >= budget or (request.max_tokens_given and prompt_tokens + wanted > budget):
        raise APIError(
            f"this model's maximum {what} is {budget} tokens; the request asks for {prompt_tokens + wanted} "
            f"({prompt_tokens} in the messages, {wanted} in the completion); shorten the messages or "
            "max_tokens",
            param="messages",
            code="context_length_exceeded",
        )
    if prompt_tokens + wanted > budget:
        request.params = replace(request.params, max_new_tokens=budget - prompt_tokens)
