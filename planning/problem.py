"""Inputs and outputs of every planner: the latent dynamics, the start, the goal and the action bounds.

Planners see only normalised latents (codes divided by their per-dimension
training standard deviation, after subtracting the mean) and continuous
actions inside a box. A discrete environment is planned with a relaxed action
in [-1, 1] that the environment maps to a valid integer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from flowjepa.errors import InvalidInputError
from planning.cost import CostWeights


class PlanningDivergedError(RuntimeError):
    """The dynamics predicted non-finite latents for every candidate, so no plan can be trusted."""


class LatentDynamics(Protocol):
    """A differentiable model of how the latent state moves under a sequence of actions."""

    def rollout(self, start: Tensor, actions: Tensor) -> Tensor:
        """Predict the latents after each action.

        ``start`` is the state to roll out from, ``(k, D)`` or ``(N, k, D)`` (the
        last k latents); ``actions`` is ``(N, H, A)``. Returns ``(N, H, D)``, the
        latent after action 1, ..., H.
        """
        ...


@dataclass
class ActionBounds:
    """Box ``[low, high]`` of the continuous actions, each of shape ``(A,)``."""

    low: Tensor
    high: Tensor

    def __post_init__(self) -> None:
        self.low = torch.as_tensor(self.low, dtype=torch.float32).reshape(-1)
        self.high = torch.as_tensor(self.high, dtype=torch.float32).reshape(-1)
        if self.low.shape != self.high.shape:
            raise InvalidInputError(
                f"action bounds must have the same shape, got low {tuple(self.low.shape)} and high "
                f"{tuple(self.high.shape)}"
            )
        if not (torch.isfinite(self.low).all() and torch.isfinite(self.high).all()):
            raise InvalidInputError(
                f"action bounds must be finite, got low {self.low.tolist()} and high {self.high.tolist()}; "
                "planners need a bounded action box"
            )
        if not bool((self.high > self.low).all()):
            raise InvalidInputError(
                f"action bounds need high > low in every dimension, got low {self.low.tolist()} and high "
                f"{self.high.tolist()}"
            )

    @property
    def dim(self) -> int:
        """Number of action dimensions A."""
        return int(self.low.numel())

    @property
    def middle(self) -> Tensor:
        """Centre of the box, ``(A,)``."""
        return (self.low + self.high) / 2

    @property
    def half_range(self) -> Tensor:
        """Half the side length of the box, ``(A,)``."""
        return (self.high - self.low) / 2

    def to_unit(self, actions: Tensor) -> Tensor:
        """Map actions in the box to ``[-1, 1]`` (same shape)."""
        return (actions - self.middle.to(actions)) / self.half_range.to(actions)

    def from_unit(self, unit: Tensor) -> Tensor:
        """Map ``[-1, 1]`` to the box and clamp, so rounding can never leave it (same shape)."""
        actions = self.middle.to(unit) + self.half_range.to(unit) * unit
        return torch.maximum(torch.minimum(actions, self.high.to(unit)), self.low.to(unit))

    def clamp(self, actions: Tensor) -> Tensor:
        """Clamp actions of shape ``(..., A)`` into the box."""
        return torch.maximum(torch.minimum(actions, self.high.to(actions)), self.low.to(actions))


@dataclass
class PlanningProblem:
    """One planning call: reach ``goal`` from ``start`` in ``horizon`` actions inside ``bounds``."""

    dynamics: LatentDynamics
    start: Tensor
    """State to plan from, ``(k, D)``: the last k normalised latents (the oracle passes the physical state)."""
    goal: Tensor
    """Goal in the space the dynamics predicts, ``(D,)``."""
    bounds: ActionBounds
    horizon: int
    cost: CostWeights = field(default_factory=CostWeights)

    def __post_init__(self) -> None:
        if not isinstance(self.horizon, int) or self.horizon <= 0:
            raise InvalidInputError(f"planning horizon must be a positive integer, got {self.horizon!r}")
        if self.start.ndim != 2:
            raise InvalidInputError(
                f"start must be the last k latents with shape (k, D), got {tuple(self.start.shape)}"
            )
        if self.goal.ndim != 1:
            raise InvalidInputError(
                f"goal must be one latent of shape (D,), as the dynamics predicts it, got {tuple(self.goal.shape)}"
            )


@dataclass
class PlanOutput:
    """The best plan a planner found."""

    actions: Tensor
    """Best action sequence, ``(H, A)``, inside the bounds."""
    cost: float
    """Goal cost of ``actions``."""
    predicted: Tensor
    """Latents the dynamics predicts for ``actions``, ``(H, D)``."""
    cost_history: list[float]
    """Lowest cost among the candidates at each iteration."""
    rollouts: int
    """Number of candidate rollouts evaluated (forward passes of one sequence)."""


def shift_plan(previous: Tensor | None, executed: int, horizon: int, bounds: ActionBounds) -> Tensor | None:
    """Warm start: drop the ``executed`` first actions of ``previous`` ``(H', A)`` and pad to ``horizon``.

    The padding repeats the last action, so a plan that ends by holding still
    keeps holding still. Returns None when there is no previous plan.
    """
    if previous is None:
        return None
    remaining = previous[executed:]
    if remaining.shape[0] == 0:
        remaining = previous[-1:]
    if remaining.shape[0] >= horizon:
        return bounds.clamp(remaining[:horizon].clone())
    padding = remaining[-1:].expand(horizon - remaining.shape[0], -1)
    return bounds.clamp(torch.cat([remaining, padding], dim=0))
