"""Errors that flowjepa raises for bad user input.

The CLI turns :class:`InvalidInputError` into a one-line message and exit
code 2; library callers can catch it as a plain ``ValueError``.
"""

from __future__ import annotations


class InvalidInputError(ValueError):
    """A value given by the user is invalid; the message names it and how to fix it."""


class TrainingDivergedError(RuntimeError):
    """The loss became non-finite; the last good checkpoint is kept."""
