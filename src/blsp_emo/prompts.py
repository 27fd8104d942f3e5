"""Emotion labels and the exact prompt strings of the BLSP-Emo method (SPEC.md sections 2, 3 and 5).

These are defaults: configs and command-line options may override them, but every part of the project
reads them from here so that training, target generation, evaluation and serving agree.
"""

from __future__ import annotations

from blsp_emo.errors import UserError

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
    # Emotion recognition (SPEC.md section 5).
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

# Refusal filter for stage-2 targets (SPEC.md section 3).
REFUSAL_PREFIXES: tuple[str, ...] = ("I'm sorry, but I cannot", "I'm sorry, but I'm not sure")
REFUSAL_SUBSTRINGS_CASEFOLD: tuple[str, ...] = ("as an ai language model", "i'm sorry, but i")
REFUSAL_SUBSTRINGS_EXACT: tuple[str, ...] = ("I'm not sure what you",)


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
    return any(s in stripped for s in REFUSAL_SUBSTRINGS_EXACT)
