"""Emotion labels and the exact prompt strings of the BLSP-Emo method (docs/method.md §2, §3 and §5).

These are defaults: configs and command-line options may override them, but every part of the project
reads them from here so that training, target generation, evaluation and serving agree.
"""

from __future__ import annotations

import warnings
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

from blsp_emo.errors import UserError

if TYPE_CHECKING:
    from blsp_emo.model.types import Conversation

# Label ids as in the paper: neutral 0, happy 1, angry 2, sad 3, surprise 4.
EMOTIONS: tuple[str, ...] = ("neutral", "happy", "angry", "sad", "surprise")
EMOTION_TO_ID: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

SYSTEM_PROMPTS: dict[str, str] = {
    "default": "You are a helpful assistant.",
    "empathetic": (
        "You are a helpful assistant. Your response should fulfill requests with empathy toward "
        "user's emotion tone."
    ),
}

# Text placed before the speech in the user turn.
INSTRUCTIONS: dict[str, str] = {
    # Stage 1 (student input; the teacher gets the transcript in place of the speech).
    "continue": "Continue the following sentence in a coherent style: ",
    # Stage 2 training input: the emotion is NOT named, the model must hear it.
    "continue_emotion": (
        "Continue the following sentence based on the conveyed emotion tone in a coherent style: "
    ),
    # Emotion recognition (docs/method.md §5).
    "recognize_emotion": (
        "Please identify the emotion tone of the speech provided below. Select from the following "
        "options: neutral, sad, angry, happy, or surprise.\n\nSpeech: "
    ),
    # Empathetic reply to a spoken request: the speech is the whole user turn.
    "none": "",
}

# Stage 2 teacher prompt: {emotion} is the label word, in single quotes as in the paper.
EMOTION_TARGET_INSTRUCTION = (
    "Continue the following sentence that reflects a '{emotion}' emotion tone in a coherent style: "
)

# Stage-2 teacher prompt presets (``data targets --emotion-prompt``): the user text before the
# transcript, under the empathetic system prompt. "continue" is the paper's; "reply" asks for a direct
# empathetic reply to a speaker who names the feeling, for small teachers that answer the continuation
# prompt by repeating the sentence (SmolLM2-135M-Instruct echoed 528 of 929 training transcripts).
EMOTION_TARGET_PROMPTS: dict[str, str] = {
    "continue": EMOTION_TARGET_INSTRUCTION,
    "reply": "I feel {emotion}. ",
}

# Refusal filter for stage-2 targets (docs/method.md §3).
REFUSAL_PREFIXES: tuple[str, ...] = ("I'm sorry, but I cannot", "I'm sorry, but I'm not sure")
REFUSAL_SUBSTRINGS_CASEFOLD: tuple[str, ...] = ("as an ai language model", "i'm sorry, but i")
REFUSAL_SUBSTRINGS_EXACT: tuple[str, ...] = ("I'm not sure what you",)
# The same refusals in Chinese ("as an AI language model", "sorry, I cannot / am unable to").
REFUSAL_SUBSTRINGS_ZH: tuple[str, ...] = (
    "作为一个人工智能语言模型",
    "作为一个AI语言模型",
    "作为AI语言模型",
    "抱歉，我无法",
    "抱歉，我不能",
    "对不起，我无法",
    "对不起，我不能",
)


# Languages (ISO 639-1 codes) that a manifest row may carry: those Whisper can transcribe. Whisper writes
# Javanese as "jw"; the other codes are its own tokens (<|en|>, <|zh|>, ...).
LANGUAGES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani",
    "ba": "Bashkir", "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "bo": "Tibetan",
    "br": "Breton", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fo": "Faroese", "fr": "French", "gl": "Galician",
    "gu": "Gujarati", "ha": "Hausa", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian",
    "ht": "Haitian Creole", "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian",
    "is": "Icelandic", "it": "Italian", "ja": "Japanese", "jv": "Javanese", "ka": "Georgian",
    "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "la": "Latin",
    "lb": "Luxembourgish", "ln": "Lingala", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian",
    "mg": "Malagasy", "mi": "Maori", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian",
    "mr": "Marathi", "ms": "Malay", "mt": "Maltese", "my": "Burmese", "ne": "Nepali", "nl": "Dutch",
    "nn": "Norwegian Nynorsk", "no": "Norwegian", "oc": "Occitan", "pa": "Punjabi", "pl": "Polish",
    "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit",
    "sd": "Sindhi", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "sn": "Shona", "so": "Somali",
    "sq": "Albanian", "sr": "Serbian", "su": "Sundanese", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "te": "Telugu", "tg": "Tajik", "th": "Thai", "tk": "Turkmen", "tl": "Tagalog",
    "tr": "Turkish", "tt": "Tatar", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek",
    "vi": "Vietnamese", "yi": "Yiddish", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip
WHISPER_LANGUAGE_TOKENS: dict[str, str] = {"jv": "jw"}  # where Whisper's token differs from ISO 639-1


class PromptSet(NamedTuple):
    """The training and teacher prompts of one language (the recognition question stays English)."""

    system: dict[str, str]  # "default", "empathetic"
    instructions: dict[str, str]  # "continue" (stage 1), "continue_emotion" (stage 2 training input)
    emotion_targets: dict[str, str]  # stage-2 teacher presets ("continue", "reply"), {emotion} inside
    emotion_words: dict[str, str]  # the label word put into the teacher prompt for each emotion


# English: the paper's strings (docs/method.md §2-4). Chinese: our rendering of the same prompts (the
# paper trains on Chinese too but publishes only the English wording); the emotion word is quoted with
# Chinese single quotes as the English one is with ASCII ones.
PROMPT_SETS: dict[str, PromptSet] = {
    "en": PromptSet(
        system=dict(SYSTEM_PROMPTS),
        instructions={k: INSTRUCTIONS[k] for k in ("continue", "continue_emotion")},
        emotion_targets=dict(EMOTION_TARGET_PROMPTS),
        emotion_words={e: e for e in EMOTIONS},
    ),
    "zh": PromptSet(
        system={
            "default": "你是一个乐于助人的助手。",
            "empathetic": "你是一个乐于助人的助手。你的回复应在满足用户请求的同时，对用户的情绪语气表现出共情。",
        },
        instructions={
            "continue": "请以连贯的风格续写下面的句子：",
            "continue_emotion": "请根据所传达的情绪语气，以连贯的风格续写下面的句子：",
        },
        emotion_targets={
            "continue": "请以连贯的风格续写下面这个体现‘{emotion}’情绪语气的句子：",
            "reply": "我感到{emotion}。",
        },
        emotion_words={
            "neutral": "平静",
            "happy": "开心",
            "angry": "生气",
            "sad": "难过",
            "surprise": "惊讶",
        },
    ),
}

_warned_languages: set[str] = set()


def check_language(code: object) -> str:
    """``code`` when it is a known ISO 639-1 code (:data:`LANGUAGES`); else :class:`UserError` naming it."""
    if isinstance(code, str) and code in LANGUAGES:
        return code
    hint = " (lower case)" if isinstance(code, str) and code.lower() in LANGUAGES else ""
    raise UserError(
        f"unknown language code {code!r}{hint}: expected an ISO 639-1 code that Whisper knows, "
        "such as en, zh, el, fr, ru"
    )


def prompt_set(language: str | None) -> PromptSet:
    """The prompt set of ``language`` (None: English).

    A known language without a prompt set of its own (Greek, French, ...) gets the English prompts, with
    one warning per language and process; a code that is not a known ISO 639-1 code is an error.
    """
    if language is None:
        return PROMPT_SETS["en"]
    check_language(language)
    if language not in PROMPT_SETS:
        if language not in _warned_languages:
            _warned_languages.add(language)
            warnings.warn(
                f"no prompt set for language {language!r} ({LANGUAGES[language]}): using the English "
                f"prompts (prompt sets: {', '.join(PROMPT_SETS)})",
                stacklevel=2,
            )
        return PROMPT_SETS["en"]
    return PROMPT_SETS[language]


def emotion_target_text(preset: str, emotion: str, language: str | None = "en") -> str:
    """The stage-2 teacher prompt ``preset`` for ``emotion`` in ``language`` (before the transcript)."""
    emotion_target_prompt(preset)
    prompts = prompt_set(language)
    return prompts.emotion_targets[preset].format(emotion=prompts.emotion_words[emotion])


def emotion_target_prompt(name: str) -> str:
    """The stage-2 teacher prompt preset ``name`` (see ``EMOTION_TARGET_PROMPTS``); an unknown name is named."""
    if name not in EMOTION_TARGET_PROMPTS:
        raise UserError(
            f"unknown stage-2 teacher prompt {name!r} (expected {', '.join(EMOTION_TARGET_PROMPTS)})"
        )
    return EMOTION_TARGET_PROMPTS[name]


def system_prompt(name_or_text: str | None) -> str | None:
    """Return the system prompt for a preset name ("default", "empathetic"), or the text itself.

    ``None`` or ``"none"`` means no system turn.
    """
    if name_or_text is None or name_or_text == "none":
        return None
    return SYSTEM_PROMPTS.get(name_or_text, name_or_text)


def instruction(name_or_text: str | None) -> str:
    """Return the instruction text for a preset name (see ``INSTRUCTIONS``), or the text itself."""
    if not name_or_text:
        return ""
    return INSTRUCTIONS.get(name_or_text, name_or_text)


def is_refusal(text: str) -> bool:
    """True when a teacher continuation is a refusal that the stage-2 filter drops."""
    stripped = text.strip()
    if stripped.startswith(REFUSAL_PREFIXES):
        return True
    folded = stripped.casefold()
    if any(s in folded for s in REFUSAL_SUBSTRINGS_CASEFOLD):
        return True
    return any(s in stripped for s in (*REFUSAL_SUBSTRINGS_EXACT, *REFUSAL_SUBSTRINGS_ZH))


class Stage(str, Enum):
    """A training stage, with its prompts (docs/method.md §2-4).

    - ``ALIGN``: token-space pre-alignment (this project's addition; CTC, no prompt, no teacher);
    - ``SEMANTIC``: stage 1, the student hears "continue" + speech, the teacher reads the transcript;
    - ``EMOTION``: stage 2, the student hears "continue with the conveyed emotion" + speech under the
      empathetic system prompt; the teacher reads the transcript with the emotion named.

    A member equals its value (``Stage.SEMANTIC == "semantic"``), so configs and manifests keep plain words.
    """

    ALIGN = "align"
    SEMANTIC = "semantic"
    EMOTION = "emotion"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: object, allowed: tuple[Stage, ...] | None = None) -> Stage:
        """The stage named ``value``; :class:`UserError` naming the choices when it is not one."""
        choices = allowed or tuple(cls)
        for stage in choices:
            if value == stage.value:
                return stage
        names = ", ".join(s.value for s in choices)
        raise UserError(f"unknown stage {value!r} (expected one of {names})")

    @property
    def system_name(self) -> str:
        """The preset name of the student's (and teacher's) system prompt."""
        return "empathetic" if self is Stage.EMOTION else "default"

    @property
    def instruction_name(self) -> str:
        """The preset name of the student's instruction before the speech."""
        return "continue_emotion" if self is Stage.EMOTION else "continue"

    def teacher_conversation(
        self,
        transcript: str,
        emotion: str | None = None,
        emotion_prompt: str = "continue",
        language: str | None = "en",
    ) -> Conversation:
        """The teacher conversation for one transcript, in the prompt set of ``language``: stage 1's
        "continue" + transcript under the default system prompt; stage 2's preset ``emotion_prompt`` with
        ``emotion`` named, + transcript, under the empathetic one."""
        from blsp_emo.model.types import Conversation

        prompts = prompt_set(language)
        if self is Stage.SEMANTIC:
            return Conversation(system=prompts.system["default"]).user(
                prompts.instructions["continue"] + transcript
            )
        if self is Stage.EMOTION:
            if emotion not in EMOTIONS:
                raise ValueError(f"stage 2 needs one of {', '.join(EMOTIONS)}, got {emotion!r}")
            text = emotion_target_text(emotion_prompt, emotion, language)
            return Conversation(system=prompts.system["empathetic"]).user(text + transcript)
        raise UserError("the pre-alignment stage has no teacher")
