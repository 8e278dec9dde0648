"""Transition networks of the world model: a neural ODE (default) and a discrete residual step.

Both map the window of the last k normalised codes ``(N, k, D)`` and an action
scaled to ``[-1, 1]`` ``(N, A)`` to the next code ``(N, D)``.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from flowjepa.errors import InvalidInputError

logger = logging.getLogger(__name__)

FIXED_STEP_SOLVERS = ("rk4", "midpoint", "euler")
ADAPTIVE_SOLVERS = ("dopri5", "bosh3", "adaptive_heun")
SOLVERS = FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS


def make_mlp(in_dim: int, hidden_dim: int, layers: int, out_dim: int) -> nn.Sequential:
    """Build an MLP with SiLU activations whose output layer starts at zero.

    A zero output layer makes an untrained transition the identity (the code
    does not move), which is a stable starting point for long rollouts.
    """
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden_dim), nn.SiLU()]
        width = hidden_dim
    output = nn.Linear(width, out_dim)
    nn.init.zeros_(output.weight)
    nn.init.zeros_(output.bias)
    modules.append(output)
    return nn.Sequential(*modules)


class ODETransition(nn.Module):
    """Integrate ``dh/dt = f(h, window, a)`` from the last code over ``dt`` model-time units.

    The action and the window are held constant over the step (zero-order
    hold), so the earlier frames act as a velocity context for the vector field.
    Fixed-step solvers take ``substeps`` steps of ``dt / substeps``. Adaptive
    solvers never step below ``dt / max_substeps``, so a stiff model costs at
    most about ``max_substeps`` accepted steps instead of stalling. An adaptive
    solve that fails (non-finite state, too many steps) returns NaN, which the
    trainer and the planners treat as divergence.
    """

    def __init__(
        self,
        code_dim: int,
        action_dim: int,
        history: int,
        hidden_dim: int,
        layers: int,
        dt: float,
        solver: str,
        substeps: int,
        max_substeps: int,
        rtol: float,
        atol: float,
    ) -> None:
        super().__init__()
        if solver not in SOLVERS:
            raise InvalidInputError(f"unknown ODE solver {solver!r}; valid solvers: {', '.join(SOLVERS)}")
        self.field = make_mlp(code_dim + history * code_dim + action_dim, hidden_dim, layers, code_dim)
        self.dt = float(dt)
        self.solver = solver
        self.substeps = substeps
        self.max_substeps = max_substeps
        self.rtol = rtol
        self.atol = atol
        self.failures = 0

    def _options(self) -> dict[str, float | int]:
        if self.solver in FIXED_STEP_SOLVERS:
            return {"step_size": self.dt / self.substeps}
        # Rejected steps shrink towards min_step, so a few retries per accepted step are allowed.
        return {"min_step": self.dt / self.max_substeps, "max_num_steps": 8 * self.max_substeps}

    def forward(self, window: Tensor, action: Tensor) -> Tensor:
        """Return the next code ``(N, D)`` for a window ``(N, k, D)`` and an action ``(N, A)`` in [-1, 1]."""
        context = torch.cat([window.flatten(1), action], dim=1)

        def vector_field(_time: Tensor, code: Tensor) -> Tensor:
            return self.field(torch.cat([code, context], dim=1))

        times = torch.tensor([0.0, self.dt], dtype=window.dtype, device=window.device)
        try:
            path = odeint(
                vector_field,
                window[:, -1],
                times,
                method=self.solver,
                options=self._options(),
                rtol=self.rtol,
                atol=self.atol,
            )
        except AssertionError as error:
            # torchdiffeq signals a non-finite state or too many steps with an assertion.
            self.failures += 1
            level = logging.WARNING if self.failures == 1 else logging.DEBUG
            logger.log(level, "ODE solver %s failed (%d so far): %s; returning NaN", self.solver, self.failures, error)
            return torch.full_like(window[:, -1], float("nan"))
        return path[-1]


class ResidualTransition(nn.Module):
    """Discrete step ``h' = h + g(window, a)``."""

    def __init__(self, code_dim: int, action_dim: int, history: int, hidden_dim: int, layers: int) -> None:
        super().__init__()
        self.net = make_mlp(history * code_dim + action_dim, hidden_dim, layers, code_dim)

    def forward(self, window: Tensor, action: Tensor) -> Tensor:
        """Return the next code ``(N, D)`` for a window ``(N, k, D)`` and an action ``(N, A)`` in [-1, 1]."""
        return window[:, -1] + self.net(torch.cat([window.flatten(1), action], dim=1))


TRANSITIONS: dict[str, type[nn.Module]] = {
    "ode": ODETransition,
    "residual": ResidualTransition,
}
