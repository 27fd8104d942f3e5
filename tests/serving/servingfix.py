"""Helpers shared by the serving tests (imported as ``servingfix``; pytest puts this folder on sys.path)."""

from __future__ import annotations

import base64


def b64(data: bytes) -> str:
    """Base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def audio_message(wav: bytes, text: str | None = None) -> dict:
    """A user message in the OpenAI format with one input_audio part (and optional text before it)."""
    parts: list[dict] = [{"type": "text", "text": text}] if text else []
    parts.append({"type": "input_audio", "input_audio": {"data": b64(wav), "format": "wav"}})
    return {"role": "user", "content": parts}
