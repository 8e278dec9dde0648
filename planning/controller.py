"""Receding-horizon control in the latent: the state one closed-loop agent keeps between actions.

:class:`LatentMPC` contains the latent window, the goal latent, the current plan
and the model-error estimate. :func:`planning.episode.plan` drives it for one
episode towards one goal; :class:`planning.policy.PlannerPolicy` drives it
while collecting data, with goals that change during the episode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from planning.correction import ModelErrorEstimate
from planning.cost import CostWeights
from planning.problem import PlanningProblem, shift_plan
from planning.registry import Planner
from planning.world_model import LatentWorldModel


def frames_to_tensor(frames: np.ndarray, device: torch.device) -> Tensor:
    """Convert uint8 frames ``(B, S, S, 3)`` to the encoder's uint8 layout ``(B, 3, S, S)``."""
    return torch.from_numpy(np.array(frames, dtype=np.uint8)).permute(0, 3, 1, 2).to(device)


@dataclass
class Decision:
    """One action chosen by :meth:`LatentMPC.decide`."""

    action: Tensor
    """The action ``(A,)``, within the world model's action bounds."""
    predicted: Tensor
    """The latent the plan predicts after this action, ``(D,)``."""
    cost: float
    """Planner cost of the plan the action came from."""


class LatentMPC:
    """Plan ``horizon`` actions in the latent, execute the first ``replan_every``, observe, repeat.

    Call :meth:`start` with the first frame, :meth:`set_goal` with a goal
    frame, then alternate :meth:`decide` and :meth:`observe`. Each replanning
    is warm-started with the previous plan shifted by the actions executed
    since. ``correction`` in [0, 1] is the gain of the online estimate of the
    model's one-step error (:mod:`planning.correction`); 0 turns it off. The
    state window starts as ``history`` copies of the first frame's code, which
    matches a start at rest.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        world_model: LatentWorldModel,
        planner: Planner,
        *,
        horizon: int,
        replan_every: int = 1,
        cost: CostWeights | None = None,
        correction: float = 0.0,
    ) -> None:
        self.encoder = encoder
        self.world_model = world_model
        self.planner = planner
        self.horizon = horizon
        self.replan_every = replan_every
        self.cost = cost or CostWeights()
        self.correction = correction
        self.planning_seconds = 0.0
        self.rollouts = 0
        self.latent: Tensor | None = None
        self.goal_latent: Tensor | None = None
        self._window: Tensor | None = None
        self._model_error: ModelErrorEstimate | None = None
        self._plan: Tensor | None = None
        self._prediction: Tensor | None = None
        self._plan_cost = 0.0
        self._offset = 0
        self._executed = 0

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> Tensor:
        """Return the world model's latents ``(B, D)`` of uint8 frames ``(B, S, S, 3)``."""
        return self.world_model.embed(self.encoder, frames_to_tensor(frames, self.encoder.device))

    @torch.no_grad()
    def start(self, frame: np.ndarray) -> Tensor:
        """Begin an episode at uint8 ``frame`` ``(S, S, 3)``: fill the window, clear the plan; return its latent."""
        self.latent = self.embed(frame[None])[0]
        self._window = self.latent.expand(self.world_model.config.history, -1).clone()
        self._model_error = ModelErrorEstimate(self.world_model, self.correction, self.latent)
        self._plan, self._prediction, self._offset, self._executed = None, None, 0, 0
        return self.latent

    @torch.no_grad()
    def set_goal(self, goal_frame: np.ndarray) -> Tensor:
        """Aim at uint8 ``goal_frame`` ``(S, S, 3)`` from the next replanning on; return its latent."""
        self.goal_latent = self.embed(goal_frame[None])[0]
        return self.goal_latent

    def decide(self) -> Decision:
        """Return the next action, replanning first when ``replan_every`` actions have run since the last plan."""
        if self._window is None or self._model_error is None or self.goal_latent is None:
            raise RuntimeError("call start(frame) and set_goal(goal_frame) before decide()")
        if self._plan is None or self._executed % self.replan_every == 0:
            bounds = self.world_model.bounds
            warm_start = shift_plan(self._plan, self._offset, self.horizon, bounds)
            problem = PlanningProblem(
                self._model_error.dynamics(), self._window, self.goal_latent, bounds, self.horizon, self.cost
            )
            started = time.perf_counter()
            with torch.enable_grad():
                output = self.planner.plan(problem, warm_start)
            self.planning_seconds += time.perf_counter() - started
            self.rollouts += output.rollouts
            self._plan, self._prediction, self._plan_cost, self._offset = (
                output.actions,
                output.predicted,
                float(output.cost),
                0,
            )
        assert self._plan is not None and self._prediction is not None
        return Decision(self._plan[self._offset], self._prediction[self._offset], self._plan_cost)

    @torch.no_grad()
    def observe(self, frame: np.ndarray, action: Tensor | np.ndarray) -> Tensor:
        """Record that ``action`` ``(A,)`` was executed and led to uint8 ``frame``; return the new latent.

        ``action`` may differ from the decided one (exploration noise); the
        model-error estimate uses the action that was executed.
        """
        if self._window is None or self._model_error is None:
            raise RuntimeError("call start(frame) before observe()")
        executed = torch.as_tensor(action).to(self._window)
        self.latent = self.embed(frame[None])[0]
        self._model_error.update(self._window, executed.reshape(-1), self.latent)
        self._window = torch.cat([self._window[1:], self.latent[None]], dim=0)
        self._offset += 1
        self._executed += 1
        return self.latent
