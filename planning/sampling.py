"""Sampling-based planners used as baselines: the cross-entropy method (CEM) and MPPI.

Both sample action sequences from a diagonal Gaussian in ``[-1, 1]`` units,
clip the samples to the action box, score them with the same goal cost as
gradient MPC and refit the Gaussian. No gradient flows through the model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowjepa.errors import InvalidInputError
from planning.cost import goal_cost
from planning.problem import PlanningDivergedError, PlanningProblem, PlanOutput


class _GaussianSearch:
    """Shared sampling loop; subclasses define how the scored samples refit the mean and std."""

    name = ""

    def __init__(self, population: int, iterations: int, init_std: float, min_std: float, seed: int) -> None:
        if not isinstance(population, int) or population <= 1:
            raise InvalidInputError(f"{self.name} population must be an integer > 1, got {population!r}")
        if not isinstance(iterations, int) or iterations <= 0:
            raise InvalidInputError(f"{self.name} iterations must be a positive integer, got {iterations!r}")
        if not init_std > 0:
            raise InvalidInputError(f"{self.name} init_std must be > 0, got {init_std!r}")
        if not 0 <= min_std <= init_std:
            raise InvalidInputError(f"{self.name} min_std must be in [0, init_std], got {min_std!r}")
        self.population = population
        self.iterations = iterations
        self.init_std = float(init_std)
        self.min_std = float(min_std)
        self.generator = torch.Generator().manual_seed(seed)

    def refit(self, samples: Tensor, costs: Tensor, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        """Return the new mean and std ``(H, A)`` from samples ``(N, H, A)`` with finite costs ``(N,)``."""
        raise NotImplementedError

    @torch.no_grad()
    def plan(self, problem: PlanningProblem, warm_start: Tensor | None = None) -> PlanOutput:
        """Search for ``iterations`` rounds and return the best sampled plan."""
        shape = (problem.horizon, problem.bounds.dim)
        mean = torch.zeros(shape) if warm_start is None else problem.bounds.to_unit(warm_start.detach().cpu().float())
        std = torch.full(shape, self.init_std)
        best_cost, best_actions, best_predicted = float("inf"), None, None
        history: list[float] = []

        for _ in range(self.iterations):
            # Sample around the current mean; sample 0 is the mean itself.
            noise = torch.randn((self.population, *shape), generator=self.generator)
            noise[0] = 0.0
            unit = (mean + std * noise).clamp(-1.0, 1.0).to(problem.start)

            # Rollout and cost.
            actions = problem.bounds.from_unit(unit)
            predicted = problem.dynamics.rollout(problem.start, actions)
            costs = goal_cost(predicted, problem.goal, unit, problem.cost)

            # Keep the best finite sample, then refit on the finite ones.
            finite = torch.isfinite(costs)
            if not bool(finite.any()):
                history.append(float("inf"))
                continue
            masked = torch.where(finite, costs, torch.full_like(costs, float("inf")))
            index = int(masked.argmin())
            history.append(float(masked[index]))
            if history[-1] < best_cost:
                best_cost = history[-1]
                best_actions = actions[index].clone()
                best_predicted = predicted[index].clone()
            mean, std = self.refit(unit[finite].cpu().float(), costs[finite].cpu().float(), mean, std)
            std = std.clamp(min=self.min_std)

        if best_actions is None or best_predicted is None:
            raise PlanningDivergedError(
                f"the world model predicted non-finite latents for every {self.name} sample; "
                "it has probably diverged: retrain it (train-world-model) or check its weights"
            )
        return PlanOutput(best_actions, best_cost, best_predicted, history, self.population * self.iterations)


class CEM(_GaussianSearch):
    """Cross-entropy method: refit the Gaussian to the ``elites`` lowest-cost samples.

    ``elites`` defaults to a tenth of the population. ``momentum`` mixes the
    previous mean and std into the refit (0 uses only the elites).
    """

    name = "cem"

    def __init__(
        self,
        population: int = 1000,
        elites: int | None = None,
        iterations: int = 10,
        init_std: float = 0.5,
        min_std: float = 0.05,
        momentum: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(population, iterations, init_std, min_std, seed)
        if elites is None:
            elites = max(1, population // 10)
        if not isinstance(elites, int) or not 0 < elites < population:
            raise InvalidInputError(f"cem elites must be an integer in [1, population), got {elites!r}")
        if not 0 <= momentum < 1:
            raise InvalidInputError(f"cem momentum must be in [0, 1), got {momentum!r}")
        self.elites = elites
        self.momentum = float(momentum)

    def refit(self, samples: Tensor, costs: Tensor, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        count = min(self.elites, samples.shape[0])
        elite = samples[costs.topk(count, largest=False).indices]
        new_mean = elite.mean(dim=0)
        new_std = elite.std(dim=0, unbiased=False)
        return (
            self.momentum * mean + (1 - self.momentum) * new_mean,
            self.momentum * std + (1 - self.momentum) * new_std,
        )


class MPPI(_GaussianSearch):
    """Model-predictive path integral: average the samples weighted by ``exp(-cost / temperature)``.

    The std stays at ``init_std``, as in the usual MPPI update that refits the mean only.
    """

    name = "mppi"

    def __init__(
        self,
        population: int = 1000,
        iterations: int = 5,
        temperature: float = 0.01,
        init_std: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__(population, iterations, init_std, 0.0, seed)
        if not temperature > 0:
            raise InvalidInputError(f"mppi temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def refit(self, samples: Tensor, costs: Tensor, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(-(costs - costs.min()) / self.temperature, dim=0)
        return (weights[:, None, None] * samples).sum(dim=0), std
