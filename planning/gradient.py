"""Gradient MPC: optimise a batch of action sequences with Adam through the differentiable world model."""

from __future__ import annotations

import torch
from torch import Tensor

from flowjepa.errors import InvalidInputError
from planning.cost import goal_cost
from planning.problem import PlanningDivergedError, PlanningProblem, PlanOutput

# Warm starts are pulled this far inside the open interval (-1, 1) so atanh stays finite.
_UNIT_MARGIN = 1e-3


def actions_from_raw(raw: Tensor, problem: PlanningProblem) -> tuple[Tensor, Tensor]:
    """Map unconstrained parameters ``(N, H, A)`` to actions in the box, and the same actions in [-1, 1].

    ``tanh`` keeps every action inside the bounds for any finite parameter,
    whatever the learning rate, and the final clamp removes rounding overshoot.
    """
    unit = torch.tanh(raw)
    return problem.bounds.from_unit(unit), unit


def evaluate_raw(problem: PlanningProblem, raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Roll out the parameters ``raw`` ``(N, H, A)`` and return costs ``(N,)``, actions and predicted latents."""
    actions, unit = actions_from_raw(raw, problem)
    predicted = problem.dynamics.rollout(problem.start, actions)
    costs = goal_cost(predicted, problem.goal, unit, problem.cost)
    return costs, actions, predicted


class _Adam:
    """The Adam update on one tensor, in place.

    NOTE: written out instead of torch.optim.Adam because the first
    torch.optim step imports torch._dynamo and with it triton. Triton crashes
    (SIGSEGV) in a process that has already loaded MuJoCo's EGL renderer
    (torch 2.14.1, mujoco 4.0.1), and the planner always runs after rendering.
    """

    def __init__(self, parameter: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.parameter = parameter
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.first_moment = torch.zeros_like(parameter)
        self.second_moment = torch.zeros_like(parameter)
        self.steps = 0

    @torch.no_grad()
    def step(self, gradient: Tensor) -> None:
        """Apply one update with ``gradient`` (same shape as the parameter)."""
        beta1, beta2 = self.betas
        self.steps += 1
        self.first_moment.mul_(beta1).add_(gradient, alpha=1 - beta1)
        self.second_moment.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        corrected_first = self.first_moment / (1 - beta1**self.steps)
        corrected_second = self.second_moment / (1 - beta2**self.steps)
        self.parameter.sub_(self.lr * corrected_first / (corrected_second.sqrt() + self.eps))


class GradientMPC:
    """Gradient-based model-predictive control over ``candidates`` action sequences of shape ``(N, H, A)``.

    Each iteration rolls every candidate through the dynamics, backpropagates the
    goal cost to the unconstrained parameters ``u`` with ``a = mid + half * tanh(u)``,
    and takes one Adam step. Candidate 0 starts from the warm start (the previous
    plan shifted by the executed actions), the others from Gaussian perturbations
    of it. The run stops after ``iterations`` steps, or earlier once the best cost
    is at most ``stop_cost``. Candidates whose cost is not finite get no update
    and can never be returned.
    """

    name = "gd"

    def __init__(
        self,
        candidates: int = 8,
        iterations: int = 10,
        lr: float = 0.3,
        init_std: float = 0.3,
        stop_cost: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not isinstance(candidates, int) or candidates <= 0:
            raise InvalidInputError(f"gd candidates must be a positive integer, got {candidates!r}")
        if not isinstance(iterations, int) or iterations <= 0:
            raise InvalidInputError(
                f"gd iterations must be a positive integer, got {iterations!r}; the planner never runs unbounded"
            )
        if not lr > 0:
            raise InvalidInputError(f"gd learning rate must be > 0, got {lr!r}")
        if not init_std >= 0:
            raise InvalidInputError(f"gd init_std must be >= 0, got {init_std!r}")
        self.candidates = candidates
        self.iterations = iterations
        self.lr = float(lr)
        self.init_std = float(init_std)
        self.stop_cost = float(stop_cost)
        self.generator = torch.Generator().manual_seed(seed)

    def initial_raw(self, problem: PlanningProblem, warm_start: Tensor | None) -> Tensor:
        """Return the starting parameters ``(N, H, A)``: the warm start and perturbations of it."""
        shape = (self.candidates, problem.horizon, problem.bounds.dim)
        if warm_start is None:
            centre = torch.zeros(shape[1:])
        else:
            centre = problem.bounds.to_unit(warm_start.detach().cpu().float())
        noise = torch.randn(shape, generator=self.generator) * self.init_std
        noise[0] = 0.0
        unit = (centre + noise).clamp(-1 + _UNIT_MARGIN, 1 - _UNIT_MARGIN)
        return torch.atanh(unit).to(problem.start)

    def plan(self, problem: PlanningProblem, warm_start: Tensor | None = None) -> PlanOutput:
        """Optimise the candidates and return the best plan seen at any iteration."""
        raw = self.initial_raw(problem, warm_start).requires_grad_(True)
        adam = _Adam(raw, self.lr)
        best_cost, best_actions, best_predicted = float("inf"), None, None
        history: list[float] = []
        rollouts = 0

        for iteration in range(self.iterations + 1):
            # Rollout and cost of every candidate; the last pass only evaluates the final update.
            final_pass = iteration == self.iterations
            with torch.set_grad_enabled(not final_pass):
                costs, actions, predicted = evaluate_raw(problem, raw)
            rollouts += self.candidates

            # Keep the best finite candidate seen so far.
            finite = torch.isfinite(costs)
            if bool(finite.any()):
                masked = torch.where(finite, costs.detach(), torch.full_like(costs, float("inf")))
                index = int(masked.argmin())
                history.append(float(masked[index]))
                if history[-1] < best_cost:
                    best_cost = history[-1]
                    best_actions = actions[index].detach().clone()
                    best_predicted = predicted[index].detach().clone()
            else:
                history.append(float("inf"))
            if final_pass or best_cost <= self.stop_cost:
                break

            # Adam step on the finite candidates only, so a diverging rollout cannot poison the others.
            if bool(finite.any()):
                # autograd.grad leaves the world model's parameters without .grad, frozen or not.
                (gradient,) = torch.autograd.grad(costs[finite].sum(), raw)
                gradient = torch.nan_to_num(gradient, nan=0.0, posinf=0.0, neginf=0.0)
                gradient[~finite] = 0.0
                adam.step(gradient)

        if best_actions is None or best_predicted is None:
            raise PlanningDivergedError(
                "the world model predicted non-finite latents for every gd candidate; "
                "it has probably diverged: retrain it (train-world-model) or check its weights"
            )
        return PlanOutput(best_actions, best_cost, best_predicted, history, rollouts)
