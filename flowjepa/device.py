"""Device selection shared by every command."""

from __future__ import annotations

import torch

from flowjepa.errors import InvalidInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """Return the torch device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    ``auto`` picks CUDA when it is available and the CPU otherwise.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InvalidInputError(
                f"device {name!r} was requested but CUDA is not available on this machine; "
                "use --device cpu or --device auto"
            )
        return torch.device(name)
    raise InvalidInputError(f"unknown device {name!r}; expected one of {', '.join(DEVICE_CHOICES)} or cuda:N")
