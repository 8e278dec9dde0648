"""The ``plan`` collection policy: latent MPC towards random goals, for on-policy world-model data.

A world model trained on scripted episodes is least accurate where the
planner drives, because the planner's trajectories differ from the script's.
Collecting episodes with the planner itself and training on them as well
closes that gap. This is data aggregation, the usual loop of model-based
reinforcement learning: act with the model, add the data, retrain.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.base import PixelEnv
from envs.policies import Policy, draw_cart_target, ou_step
from envs.registry import get_spec, make
from flowjepa.errors import InvalidInputError, reject_unknown_fields
from planning.controller import LatentMPC
from planning.cost import CostWeights
from planning.loading import SHIPPED_ENCODER, SHIPPED_WORLD_MODEL, load_frozen_encoder
from planning.registry import PLANNERS, budget_options, make_planner

logger = logging.getLogger(__name__)


@dataclass
class PlannerPolicyConfig:
    """Settings of :class:`PlannerPolicy`; stored in the collection's manifest so that a resume can check them."""

    model: str = str(SHIPPED_ENCODER)
    """Encoder folder."""
    world_model: str = str(SHIPPED_WORLD_MODEL)
    """World model folder."""
    planner: str = "mppi"
    population: int = 500
    """Samples per planner iteration (cem, mppi) or parallel candidates (gd)."""
    iterations: int = 5
    horizon: int = 15
    every_step_weight: float = 1.0
    smoothness_weight: float = 0.1
    rest_weight: float = 0.0
    """Weight of the cost's rest term (:class:`planning.cost.CostWeights`). It is 0 in the shipped collections."""
    correction: float = 0.1
    goal_range: float | None = None
    """Goal cart positions are drawn in +-goal_range m; None uses the env's ``target_range``."""
    device: str = "cpu"

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> PlannerPolicyConfig:
        """Build and validate a config from a dict of its fields; unknown keys raise ``InvalidInputError``."""
        options = dict(options or {})
        reject_unknown_fields(options, cls, "the plan policy's options")
        return cls(**options).validate()

    def validate(self) -> PlannerPolicyConfig:
        """Return self, raising ``InvalidInputError`` naming the option when a value is invalid."""
        if self.planner not in PLANNERS:
            raise InvalidInputError(f"unknown --planner {self.planner!r}; valid planners: {', '.join(PLANNERS)}")
        for name in ("population", "iterations", "horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"--{name}={value!r} is invalid; pass an integer >= 1")
        if self.goal_range is not None and not self.goal_range > 0:
            raise InvalidInputError(f"--goal-range={self.goal_range!r} is invalid; pass a distance in m > 0")
        if not 0 <= self.correction <= 1:
            raise InvalidInputError(f"--correction={self.correction!r} is invalid; pass a gain in [0, 1]")
        for name in ("model", "world_model"):
            if not Path(getattr(self, name)).exists():
                raise InvalidInputError(
                    f"--{name.replace('_', '-')} {getattr(self, name)} does not exist; pass the folder of a "
                    "trained model (defaults: the shipped models in models/cartpole/)"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PlannerPolicy(Policy):
    """Steer a cart-pole with latent MPC to random cart positions with the pole upright.

    Each goal cart position is drawn uniformly in ``+-goal_range`` (default:
    the env's ``target_range``) and held for a random 1.5 to 4 s, as in the ``balance`` policy. Its goal
    image is rendered from the goal state in a second env. Ornstein-Uhlenbeck
    noise of std ``noise_sigma`` (unit-action units, 0.1 s correlation time) is
    added to each planned action, so that the data also covers the states next
    to the planner's path. The planner observes the noisy action it executed.
    """

    def __init__(self, env: PixelEnv, config: PlannerPolicyConfig | None = None, *, noise_sigma: float = 0.2) -> None:
        super().__init__(env)
        params = get_spec(env.name).cartpole
        if params is None:
            raise InvalidInputError(f"policy 'plan' drives cart-pole envs only, not {env.name!r}")
        from planning.world_model import LatentWorldModel

        self.config = (config or PlannerPolicyConfig()).validate()
        self.params = params
        if self.config.goal_range is not None and self.config.goal_range > params.view_range:
            raise InvalidInputError(
                f"--goal-range={self.config.goal_range!r} reaches outside the camera's view; "
                f"pass at most {params.view_range:g} m"
            )
        device = torch.device(self.config.device)
        encoder = load_frozen_encoder(self.config.model, device)
        world_model = LatentWorldModel.from_pretrained(self.config.world_model, device=device).requires_grad_(False)
        world_model.check_encoder(encoder)
        if encoder.config.image_size != env.size:
            raise InvalidInputError(
                f"the encoder takes {encoder.config.image_size} px frames but the env renders {env.size} px; "
                f"pass --size {encoder.config.image_size}"
            )
        self.noise_sigma = noise_sigma
        self.noise_rho = math.exp(-self.dt / 0.1)
        self.cost = CostWeights(
            final=1.0,
            every_step=self.config.every_step_weight,
            smoothness=self.config.smoothness_weight,
            rest=self.config.rest_weight,
        )
        self.encoder, self.world_model = encoder, world_model
        self.controller: LatentMPC | None = None
        self.goal_env = make(env.name, size=env.size, seed=0)
        self.goal_env.reset()
        self._noise = np.zeros(self.action_dim)
        self._steps_left = 0
        self._started = False
        self._last_action: np.ndarray | None = None

    def reset(self, seed: int) -> None:
        super().reset(seed)
        options = budget_options(self.config.planner, self.config.population, self.config.iterations)
        planner = make_planner(self.config.planner, seed=seed % 2**31, **options)
        self.controller = LatentMPC(
            self.encoder,
            self.world_model,
            planner,
            horizon=self.config.horizon,
            cost=self.cost,
            correction=self.config.correction,
        )
        self._noise = np.zeros(self.action_dim)
        self._steps_left = 0
        self._started = False
        self._last_action = None

    def act(self, state: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
        if frame is None:
            raise InvalidInputError("policy 'plan' acts on frames; call act(state, frame)")
        assert self.controller is not None, "reset(seed) starts the episode"
        if not self._started:
            self.controller.start(frame)
            self._started = True
        else:
            assert self._last_action is not None
            self.controller.observe(frame, self._last_action)

        if self._steps_left <= 0:
            limit = self.params.target_range if self.config.goal_range is None else self.config.goal_range
            target, self._steps_left = draw_cart_target(self.rng, limit, self.dt)
            goal = np.zeros(len(self.goal_env.state_names))
            goal[list(self.goal_env.state_names).index("cart_position")] = target
            self.controller.set_goal(self.goal_env.set_physical_state(goal))
        self._steps_left -= 1

        planned = self.controller.decide().action.cpu().numpy().astype(np.float64)
        innovation = self.rng.normal(0.0, self.noise_sigma, self.action_dim)
        self._noise = ou_step(self._noise, self.noise_rho, innovation)
        half_range = 0.5 * (self._high - self._low)
        action = np.clip(planned + self._noise * half_range, self._low, self._high)
        self._last_action = action
        return action

    def _unit_action(self, state: np.ndarray) -> np.ndarray:  # pragma: no cover - act() is overridden
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return self.config.to_dict()

    def close(self) -> None:
        self.goal_env.close()
