"""The OpenAI chat-completions wire format: parse and validate a request into the internal conversation format.

The request's shape is declared as pydantic models (:class:`ChatCompletionRequest`, its messages and
content parts; :class:`DecodingFields` for the decoding settings, shared with ``blsp-emo chat``'s flags).
Everything a client can get wrong is checked before any model sees it and reported as an
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
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from blsp_emo.audio import SAMPLE_RATE, load_audio
from blsp_emo.errors import AudioError
from blsp_emo.model.types import CONVERSATION, Conversation, DecodingOptions, Message
from blsp_emo.prompts import system_prompt
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.speech import REPLY_FORMATS

# Formats a client may name in input_audio.format; the decoder sniffs the container anyway.
AUDIO_FORMATS: frozenset[str] = frozenset(
    {"wav", "mp3", "flac", "ogg", "oga", "opus", "webm", "m4a", "mp4", "aac", "weba"}
)
MAX_NO_REPEAT_NGRAM = 32  # the largest no_repeat_ngram_size a request may ask for
MAX_STOPS, MAX_STOP_CHARS = 4, 256  # OpenAI's: up to 4 stop strings
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


# --- field checks (each message follows the field's name: "'top_p' must be ...") ----------------------


def _between(low: float, high: float, *, above: bool = False) -> AfterValidator:
    """``low`` <= value <= ``high`` (``above``: ``low`` < value)."""

    def check(value: float) -> float:
        if (value <= low if above else value < low) or value > high:
            bounds = (
                f"greater than {low:g} and at most {high:g}" if above else f"between {low:g} and {high:g}"
            )
            raise PydanticCustomError(
                "invalid_value", "must be {bounds}, got {value}", {"bounds": bounds, "value": value}
            )
        return value

    return AfterValidator(check)


def _refused_unless(neutral: Callable[[Any], bool]) -> AfterValidator:
    """An OpenAI field this server does not implement: refused unless null or its neutral value."""

    def check(value: Any) -> Any:
        if value is not None and not neutral(value):
            raise PydanticCustomError(
                "unsupported_parameter",
                "is not supported by this server (it is not silently ignored: remove it)",
            )
        return value

    return AfterValidator(check)


def _one_of(allowed: Collection[str], code: str, what: str) -> AfterValidator:
    """A string from ``allowed`` (compared in lower case)."""

    def check(value: str) -> str:
        if value.lower() not in allowed:
            raise PydanticCustomError(
                code,
                "names an unsupported {what} {value}; supported: {supported}",
                {"what": what, "value": repr(value[:40]), "supported": ", ".join(sorted(allowed))},
            )
        return value

    return AfterValidator(check)


def _by_kind(kinds: dict[type, str], error: str, message: str) -> Discriminator:
    """A union discriminated by the Python type of the value (a tag of ``kinds``), else ``error``."""

    def tag(value: Any) -> str | None:
        return next((t for kind, t in kinds.items() if isinstance(value, kind)), None)

    return Discriminator(tag, custom_error_type=error, custom_error_message=message)


# Unknown fields are ignored; no type coercion (a JSON integer is a number, a boolean or a string is not).
Model = ConfigDict(extra="ignore", strict=True)


class DecodingFields(BaseModel):
    """The decoding fields of a request (null is "not set": the default); also ``blsp-emo chat``'s flags.

    A ``max_tokens`` above the server's limit is refused when the validation context names the limits
    (``context={"limits": ServingLimits}``).
    """

    model_config = Model

    temperature: Annotated[float, _between(0.0, 2.0)] | None = None
    top_p: Annotated[float, _between(0.0, 1.0, above=True)] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None  # OpenAI's newer name; wins over max_tokens
    seed: int | None = None
    stop: (
        Annotated[
            Annotated[str, Tag("#one"), Field(min_length=1, max_length=MAX_STOP_CHARS)]
            | Annotated[
                list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]],
                Tag("#list"),
                Field(max_length=MAX_STOPS),
            ],
            _by_kind({str: "#one", list: "#list"}, "invalid_type", "must be a string or a list of strings"),
        ]
        | None
    ) = None
    repetition_penalty: Annotated[float, _between(0.0, 2.0, above=True)] | None = None
    no_repeat_ngram_size: Annotated[int, _between(0, MAX_NO_REPEAT_NGRAM)] | None = None
    frequency_penalty: Annotated[float, _between(-2.0, 2.0)] | None = None
    presence_penalty: Annotated[float, _between(-2.0, 2.0)] | None = None

    @field_validator("max_tokens", "max_completion_tokens")
    @classmethod
    def _token_cap(cls, value: int | None, info: ValidationInfo) -> int | None:
        limits = info.context.get("limits") if isinstance(info.context, dict) else None
        high = limits.max_new_tokens if isinstance(limits, ServingLimits) else None
        if value is not None and (value < 1 or (high is not None and value > high)):
            bounds = f"between 1 and {high}" if high is not None else "at least 1"
            raise PydanticCustomError(
                "invalid_value", "must be {bounds}, got {value}", {"bounds": bounds, "value": value}
            )
        return value

    def options(self, default_new_tokens: int) -> DecodingOptions:
        """The :class:`DecodingOptions` asked for: :data:`CONVERSATION` where a field is not set."""
        wanted = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        shared = {"temperature", "top_p", "repetition_penalty", "no_repeat_ngram_size", "seed"}
        shared |= {"frequency_penalty", "presence_penalty"}
        set_fields = {
            name: value for name, value in self.model_dump(include=shared).items() if value is not None
        }
        return CONVERSATION.replace(
            max_new_tokens=default_new_tokens if wanted is None else wanted, stop=stops, **set_fields
        )


# --- messages and content parts -------------------------------------------------------------------


class TextPart(BaseModel):
    model_config = Model
    type: Literal["text"]
    text: str


class InputAudio(BaseModel):
    model_config = Model
    data: Annotated[str, Field(min_length=1)]  # base64, decoded with the audio
    format: Annotated[str, _one_of(AUDIO_FORMATS, "unsupported_audio_format", "audio format")] | None = None


class InputAudioPart(BaseModel):
    model_config = Model
    type: Literal["input_audio"]
    input_audio: InputAudio


class AudioUrl(BaseModel):
    model_config = Model
    url: Annotated[str, Field(min_length=1)]


def _url_object(value: Any) -> Any:
    """``audio_url`` may be the URL string itself."""
    return {"url": value} if isinstance(value, str) else value


class AudioUrlPart(BaseModel):
    model_config = Model
    type: Literal["audio_url"]
    audio_url: Annotated[AudioUrl, BeforeValidator(_url_object)]


_PART_TAGS = {"text": "#text", "input_audio": "#input_audio", "audio_url": "#audio_url"}


def _part_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else None
    return _PART_TAGS.get(kind) if isinstance(kind, str) else None


ContentPart = Annotated[
    Annotated[TextPart, Tag("#text")]
    | Annotated[InputAudioPart, Tag("#input_audio")]
    | Annotated[AudioUrlPart, Tag("#audio_url")],
    Discriminator(
        _part_tag, custom_error_type="unsupported_content_type", custom_error_message="unsupported"
    ),
]


class SpokenAudio(BaseModel):
    """An earlier spoken reply as OpenAI clients send it back: its audio id and maybe its transcript."""

    model_config = Model
    id: str | None = None
    transcript: str | None = None


class ChatMessage(BaseModel):
    model_config = Model
    role: Literal["system", "developer", "user", "assistant"]
    content: (
        Annotated[
            Annotated[str, Tag("#string")] | Annotated[list[ContentPart], Tag("#parts"), Field(min_length=1)],
            _by_kind(
                {str: "#string", list: "#parts"},
                "invalid_type",
                "must be a string or a list of content parts",
            ),
        ]
        | None
    ) = None
    audio: SpokenAudio | None = None  # a spoken assistant turn without content


class AudioOutput(BaseModel):
    model_config = Model
    voice: str | None = None
    format: Annotated[str, _one_of(REPLY_FORMATS, "unsupported_value", "audio output format")] | None = None


class StreamOptions(BaseModel):
    model_config = Model
    include_usage: bool = False


def _messages_list(value: Any, info: ValidationInfo) -> Any:
    """A non-empty list within the message limit, checked before any message is validated."""
    if value is None or value == []:
        raise PydanticCustomError("missing_required_parameter", "must be a non-empty list of messages")
    if not isinstance(value, list):
        raise PydanticCustomError("invalid_type", "must be a non-empty list of messages")
    limits = info.context.get("limits") if isinstance(info.context, dict) else None
    if isinstance(limits, ServingLimits) and len(value) > limits.max_messages:
        raise PydanticCustomError(
            "too_many_messages",
            "holds too many messages: the limit is {limit}",
            {"limit": limits.max_messages},
        )
    return value


def _modalities(value: list[str] | None) -> list[str] | None:
    if value is not None and not set(value) <= {"text", "audio"}:
        raise PydanticCustomError("unsupported_value", "must be a list drawn from 'text' and 'audio'")
    return value


def _n(value: int | None) -> int | None:
    if value not in (None, 1):
        raise PydanticCustomError("unsupported_value", "must be 1: only one choice per request is supported")
    return value


class ChatCompletionRequest(DecodingFields):
    """An OpenAI chat-completions request body as this server reads it."""

    model: str | None = None
    messages: Annotated[list[ChatMessage], BeforeValidator(_messages_list)]
    n: Annotated[int | None, AfterValidator(_n)] = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    modalities: Annotated[list[str] | None, AfterValidator(_modalities)] = None
    audio: AudioOutput | None = None
    logprobs: Annotated[Any, _refused_unless(lambda v: v is False)] = None
    top_logprobs: Annotated[Any, _refused_unless(lambda v: v == 0)] = None
    response_format: Annotated[
        Any, _refused_unless(lambda v: isinstance(v, dict) and v.get("type") == "text")
    ] = None
    tools: Annotated[Any, _refused_unless(lambda v: v == [])] = None
    functions: Annotated[Any, _refused_unless(lambda v: v == [])] = None
    tool_choice: Annotated[Any, _refused_unless(lambda v: v == "none")] = None
    function_call: Annotated[Any, _refused_unless(lambda v: v == "none")] = None
    logit_bias: Annotated[Any, _refused_unless(lambda v: v == {})] = None
    prediction: Annotated[Any, _refused_unless(lambda v: False)] = None
    web_search_options: Annotated[Any, _refused_unless(lambda v: False)] = None


# --- pydantic's errors as OpenAI's --------------------------------------------------------------------

_TYPE_NAMES = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "a boolean",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def _param(loc: Sequence[int | str]) -> str | None:
    """``messages[1].content[0].type`` from pydantic's location (union tags, which start with #, dropped)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.startswith("#"):
            text += f".{part}" if text else part
    return text or None


def describe_error(error: ErrorDetails) -> tuple[str | None, str, str]:
    """``(param, code, phrase)`` of one pydantic error: the field's name as the request spells it, the
    OpenAI error code, and what follows the field's name in the message (``must be a number, got string``)."""
    return _param(error["loc"]), *_phrase(error)


def _phrase(error: ErrorDetails) -> tuple[str, str]:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    got = _JSON_TYPES.get(type(value), "null" if value is None else type(value).__name__)
    if kind == "missing":
        return "missing_required_parameter", "is required"
    if kind in _TYPE_NAMES:
        return "invalid_type", f"must be {_TYPE_NAMES[kind]}, got {got}"
    if kind == "literal_error":
        return "invalid_value", f"must be {ctx.get('expected')}, got {str(value)[:40]!r}"
    if kind in {"too_short", "string_too_short"}:
        least = ctx.get("min_length", 1)
        return "invalid_value", "must not be empty" if least == 1 else f"must hold at least {least} items"
    if kind in {"too_long", "string_too_long"}:
        items = "characters" if isinstance(value, str) else "items"
        return "invalid_value", f"must hold at most {ctx.get('max_length')} {items}"
    if kind in _OUR_CODES:  # a check of this module: its error type is the OpenAI code
        return kind, error["msg"]
    return "invalid_value", error["msg"]


_OUR_CODES = frozenset(
    {
        "invalid_type",
        "invalid_value",
        "missing_required_parameter",
        "unsupported_parameter",
        "unsupported_value",
    }
    | {"unsupported_audio_format", "too_many_messages"}
)


def api_error(exc: ValidationError) -> APIError:
    """The first of pydantic's errors as the :class:`APIError` the client sees (field named in ``param``)."""
    error = exc.errors(include_url=False)[0]
    param = _param(error["loc"])
    if error["type"] == "unsupported_content_type":  # the part has a type this server does not read
        value = error.get("input")
        if not isinstance(value, dict):
            return _bad(f"'{param}' must be a content part object", param, "invalid_type")
        param = f"{param}.type"
        return _bad(
            f"'{param}' is unsupported: {str(value.get('type'))[:40]!r}; "
            "use 'text', 'input_audio' or 'audio_url'",
            param,
            "unsupported_content_type",
        )
    param, code, phrase = describe_error(error)
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
