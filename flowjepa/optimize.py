"""Steer an image towards a goal latent, by gradient descent on the pixels or on the latent.

Input space, with the flow ``f``: ``x <- clip(x - lr * grad_x L(f(x), z_goal), 0, 1)``,
projected gradient descent on the pixels. Latent space: ``z <- z - lr * grad_z L(z, z_goal)``,
then the image is recovered exactly with ``x = f^-1(z)``. The loss of an image is half
the squared Euclidean distance to its goal. Each image takes its own step, and the
reported loss is the mean over the batch. The goal is either a flow
latent ``(B, *latent_shape)`` or a semantic code ``(B, code_dim)``. For a code,
``L`` compares the code ``W z + b`` of the latent with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from flowjepa.errors import InvalidInputError, TrainingDivergedError

SPACES = ("input", "latent")


@dataclass
class OptimizeResult:
    """Outcome of :func:`optimize_input`."""

    image: Tensor
    """Optimised images in [0, 1], ``(B, C, S, S)``."""
    latent: Tensor
    """Optimised flow latent ``(B, *latent_shape)``: ``f(image)`` in input space, the optimised z in latent space."""
    losses: list[float]
    """Goal loss before the first step and after each step, ``steps + 1`` values."""
    reencode_error: float
    """Largest absolute difference between ``f(image)`` and ``latent``.

    It is at float rounding level when ``x = f^-1(z)`` is exact. It is larger
    when the model has augmentation channels, because ``f^-1`` drops them and
    re-encoding infers new ones, or when ``f^-1(z)`` leaves [0, 1] and is clipped.
    """


def _goal_loss(model: torch.nn.Module, z: Tensor, goal: Tensor, on_code: bool) -> Tensor:
    """Return the loss of each image, ``(B,)``; the images are independent, so their sum is differentiated."""
    target = model.code(z) if on_code else z
    return 0.5 * (target - goal).pow(2).flatten(1).sum(dim=1)


def _check_goal(model: torch.nn.Module, x: Tensor, z_goal: Tensor) -> bool:
    """Validate the goal and return whether it is a semantic code (True) or a flow latent (False)."""
    latent_shape = tuple(model.config.latent_shape)
    if not isinstance(z_goal, Tensor):
        raise InvalidInputError(f"z_goal must be a torch.Tensor, got {type(z_goal).__name__}")
    if not torch.isfinite(z_goal).all():
        raise InvalidInputError("z_goal contains NaN or infinite values; pass a finite goal latent or code")
    if z_goal.shape[0] not in (1, x.shape[0]):
        raise InvalidInputError(f"z_goal has batch size {z_goal.shape[0]} but x has {x.shape[0]}; pass 1 or the same")
    if tuple(z_goal.shape[1:]) == latent_shape:
        return False
    if z_goal.ndim == 2 and z_goal.shape[1] == model.code_dim:
        return True
    raise InvalidInputError(
        f"z_goal must be a flow latent (B, {', '.join(map(str, latent_shape))}) or a semantic code "
        f"(B, {model.code_dim}), got {tuple(z_goal.shape)}; compute it with model.encode(goal) or model.embed(goal)"
    )


def optimize_input(
    model: torch.nn.Module,
    x: Tensor,
    z_goal: Tensor,
    steps: int,
    lr: float,
    space: Literal["input", "latent"] = "input",
) -> OptimizeResult:
    """Move images ``x`` ``(B, C, S, S)`` (uint8 or float in [0, 1]) towards ``z_goal`` with plain gradient descent.

    ``model`` is a :class:`~flowjepa.FlowJEPA`; its weights get no gradient and
    its mode is left as it is. Returns the optimised image, the optimised latent
    and the loss trajectory. Raises :class:`TrainingDivergedError` when the loss
    becomes non-finite (lower ``lr``).
    """
    if space not in SPACES:
        raise InvalidInputError(f"unknown optimisation space {space!r}; valid spaces: {', '.join(SPACES)}")
    if not isinstance(steps, int) or steps < 0:
        raise InvalidInputError(f"steps must be an integer >= 0, got {steps!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise InvalidInputError(f"lr must be a number > 0, got {lr!r}")
    x = model.check_images(x)
    on_code = _check_goal(model, x, z_goal)
    goal = z_goal.to(device=model.device, dtype=model.dtype)
    losses: list[float] = []

    def record(loss: Tensor) -> None:
        value = float(loss.detach().mean())
        if value != value or value in (float("inf"), float("-inf")):
            raise TrainingDivergedError(
                f"the goal loss became {value} after {len(losses)} {space}-space steps at lr={lr}; lower lr"
            )
        losses.append(value)

    with torch.enable_grad():
        if space == "input":
            image = model.to_unit_cube(x).detach().clone()
            for _ in range(steps):
                image.requires_grad_(True)
                loss = _goal_loss(model, model.encode(image), goal, on_code)
                record(loss)
                (gradient,) = torch.autograd.grad(loss.sum(), image)
                image = (image.detach() - lr * gradient).clamp(0.0, 1.0)
            latent = model.encode(image).detach()
            record(_goal_loss(model, latent, goal, on_code))
        else:
            latent = model.encode(x).detach()
            for _ in range(steps):
                latent.requires_grad_(True)
                loss = _goal_loss(model, latent, goal, on_code)
                record(loss)
                (gradient,) = torch.autograd.grad(loss.sum(), latent)
                latent = latent.detach() - lr * gradient
            record(_goal_loss(model, latent, goal, on_code))
            image = model.decode(latent)

    with torch.no_grad():
        reencode_error = float((model.encode(image) - latent).abs().max())
    return OptimizeResult(image.detach(), latent.detach(), losses, reencode_error)
