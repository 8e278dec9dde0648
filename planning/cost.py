"""The goal cost shared by every planner, and the latent distance reported to users."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor

from flowjepa.errors import InvalidInputError


@dataclass
class CostWeights:
    """Weights of the four terms of the planning cost.

    ``cost = final * d(z_H, g) + every_step * mean_t d(z_t, g) + smoothness * mean_t |a_t - a_{t-1}|^2
    + rest * d(z_H, z_{H-1})``
    where ``d`` is the mean squared difference over latent dimensions, each
    multiplied by its entry of ``latent_weights`` when given, and the action
    differences are measured in units of half the action range. The ``rest``
    term is the squared latent change over the last planned step. A goal image
    shows a still scene, and this term requires plans to end at rest there, which
    a horizon too short to show the stop would otherwise ignore. It is 0 for a
    horizon of 1.
    """

    final: float = 1.0
    every_step: float = 0.0
    smoothness: float = 0.01
    rest: float = 0.0
    latent_weights: tuple[float, ...] = field(default=())
    """Weight of each latent dimension in ``d``; empty means 1 for every dimension."""

    def __post_init__(self) -> None:
        for name in ("final", "every_step", "smoothness", "rest"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0 or value != value:
                raise InvalidInputError(f"cost weight {name} must be a number >= 0, got {value!r}")
        self.latent_weights = tuple(float(value) for value in self.latent_weights)
        if not all(math.isfinite(value) and value >= 0 for value in self.latent_weights):
            raise InvalidInputError(f"latent weights must be finite numbers >= 0, got {list(self.latent_weights)}")
        if self.final == 0 and self.every_step == 0:
            raise InvalidInputError("cost weights final and every_step are both 0, so the goal would be ignored")


def goal_cost(predicted: Tensor, goal: Tensor, unit_actions: Tensor, weights: CostWeights) -> Tensor:
    """Return the cost of each candidate, ``(N,)``.

    ``predicted`` is ``(N, H, D)``, ``goal`` ``(D,)`` and ``unit_actions``
    ``(N, H, A)`` the actions scaled to ``[-1, 1]``.
    """
    squared = _weighted_mean_square(predicted - goal, weights.latent_weights)
    cost = weights.final * squared[:, -1]
    if weights.every_step > 0:
        cost = cost + weights.every_step * squared.mean(dim=1)
    if weights.smoothness > 0 and unit_actions.shape[1] > 1:
        jerk = (unit_actions[:, 1:] - unit_actions[:, :-1]).pow(2).sum(dim=-1).mean(dim=1)
        cost = cost + weights.smoothness * jerk
    if weights.rest > 0 and predicted.shape[1] > 1:
        cost = cost + weights.rest * _weighted_mean_square(predicted[:, -1] - predicted[:, -2], weights.latent_weights)
    return cost


def _weighted_mean_square(difference: Tensor, latent_weights: tuple[float, ...]) -> Tensor:
    """Return the weighted mean of ``difference ** 2`` over the last dimension, which the result drops."""
    squared = difference.pow(2)
    if latent_weights:
        if len(latent_weights) != squared.shape[-1]:
            raise InvalidInputError(
                f"{len(latent_weights)} latent weights were given for a {squared.shape[-1]}-dimensional "
                "latent; give one per dimension"
            )
        squared = squared * squared.new_tensor(latent_weights)
    return squared.mean(dim=-1)


def latent_distance(latent: Tensor, goal: Tensor) -> Tensor:
    """Root mean square difference over the last dimension, in units of the code's training std.

    ``latent`` is ``(..., D)`` and ``goal`` ``(D,)``; returns ``(...)``.
    """
    return (latent - goal).pow(2).mean(dim=-1).sqrt()
