"""The OpenAI chat-completions request as pydantic models, and pydantic's errors in OpenAI's terms.

:class:`ChatCompletionRequest` (its :class:`ChatMessage` s and content parts) declares what a request may
hold and :class:`DecodingFields` its decoding settings (shared with ``blsp-emo chat``'s flags). Models
are strict (no coercion: ``"0.5"`` is not a number, ``true`` is not an integer) and ignore unknown fields,
as OpenAI's server does; OpenAI fields this server does not implement are refused unless null or their
neutral value. :func:`describe_error` turns the first validation error into the request field's name as
the client spells it (``messages[1].content[0].input_audio.data``), the OpenAI error code, and a phrase
that follows the name (``must be between 0 and 2, got 3``). Decoding audio, the served model's name and
the request's size in text are :mod:`blsp_emo.serving.protocol`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from blsp_emo.model.types import CONVERSATION, DecodingOptions
from blsp_emo.serving.limits import ServingLimits
from blsp_emo.serving.speech import REPLY_FORMATS

# Formats a client may name in input_audio.format; the decoder sniffs the container anyway.
AUDIO_FORMATS: frozenset[str] = frozenset(
    {"wav", "mp3", "flac", "ogg", "oga", "opus", "webm", "m4a", "mp4", "aac", "weba"}
)
MAX_NO_REPEAT_NGRAM = 32  # the largest no_repeat_ngram_size a request may ask for
MAX_STOPS, MAX_STOP_CHARS = 4, 256  # OpenAI's: up to 4 stop strings


# --- field checks (each message follows the field's name: "'top_p' must be ...") ----------------------


def _between(low: float, high: float, *, above: bool = False) -> AfterValidator:
    """``low`` <= value <= ``high`` (``above``: ``low`` < value)."""

    def check(value: float) -> float:
        if not ((low < value if above else low <= value) and value <= high):  # NaN is outside too
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
    """A string from ``allowed``, in any case (the lower-case form is kept)."""

    def check(value: str) -> str:
        value = value.lower()
        if value not in allowed:
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
    OpenAI error code, and what follows the field's name in the message (``must be a number, got string``).
    """
    param = _param(error["loc"])
    if error["type"] == "unsupported_content_type":  # a content part of a type this server does not read
        value = error.get("input")
        if not isinstance(value, dict):
            return param, "invalid_type", "must be a content part object"
        kind = str(value.get("type"))[:40]
        return (
            f"{param}.type",
            "unsupported_content_type",
            f"{kind!r} is not one of 'text', 'input_audio', 'audio_url'",
        )
    return param, *_phrase(error)


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
