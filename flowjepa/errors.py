"""Errors that flowjepa raises for bad user input.

The CLI turns :class:`InvalidInputError` into a one-line message and exit
code 2; library callers can catch it as a plain ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


class InvalidInputError(ValueError):
    """A value given by the user is invalid; the message names it and how to fix it."""


class TrainingDivergedError(RuntimeError):
    """The loss became non-finite; the last good checkpoint is kept."""


def reject_unknown_fields(names: Iterable[str], config_class: type, where: str) -> None:
    """Raise :class:`InvalidInputError` when ``names`` contains a name that is not a field of ``config_class``.

    ``where`` names the source of ``names``, for example ``"config.json"``.
    The message lists the unknown names and every valid one.
    """
    known = [field.name for field in dataclasses.fields(config_class)]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise InvalidInputError(
            f"{where} has unknown {config_class.__name__} field(s) {', '.join(unknown)}; "
            f"valid fields: {', '.join(sorted(known))}"
        )
