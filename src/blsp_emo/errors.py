"""Exceptions for bad input: each names what is wrong (file, field, line) in one line."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input or environment; the CLI prints it without a traceback."""


class AudioError(UserError):
    """Audio that cannot be used: missing, empty, corrupt, unsupported or too long."""


class ModelNotAvailableError(UserError):
    """A model name that cannot be resolved or loaded here (e.g. a hub id with no network)."""
