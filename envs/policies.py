"""Seeded exploration policies for data collection: ``random``, ``ou``, ``balance`` and ``plan``.

A policy maps the physical state to an action within the env's bounds, as a
float64 vector ``(A,)``. For a discrete env the vector is one relaxed value
in [-1, 1], which :meth:`envs.base.PixelEnv.to_env_action` turns into 0 or 1.
``plan`` (latent MPC with trained models, :mod:`planning.policy`) also reads
the current frame.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import PixelEnv
from envs.cartpole_control import CartPoleController
from envs.registry import SPECS, get_spec
from flowjepa.errors import InvalidInputError

POLICY_NAMES = ("random", "ou", "balance", "plan")
CARTPOLE_POLICIES = ("balance", "plan")


class Policy(abc.ABC):
    """An exploration policy; :meth:`reset` seeds it at the start of each episode."""

    def __init__(self, env: PixelEnv) -> None:
        self.env_name = env.name
        self.dt = env.dt
        self.action_dim = env.action_dim
        if isinstance(env.action_space, spaces.Box):
            self._low = env.action_space.low.astype(np.float64).reshape(-1)
            self._high = env.action_space.high.astype(np.float64).reshape(-1)
        else:
            self._low = np.full(1, -1.0)
            self._high = np.full(1, 1.0)
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        """Start an episode with a fresh random stream drawn from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def act(self, state: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
        """Return the action for ``state`` (and uint8 ``frame``), float64 ``(A,)`` within the env's bounds."""
        unit = np.clip(self._unit_action(np.asarray(state, dtype=np.float64)), -1.0, 1.0)
        return self._low + (unit + 1.0) * 0.5 * (self._high - self._low)

    def settings(self) -> dict[str, Any] | None:
        """Return the options a resumed collection must repeat, beyond name and noise; None for most policies."""
        return None

    def close(self) -> None:
        """Release the envs and models the policy uses; the base policy uses none."""
        return None

    @abc.abstractmethod
    def _unit_action(self, state: np.ndarray) -> np.ndarray:
        """Return the action scaled to [-1, 1] per component, shape ``(A,)``."""


class RandomPolicy(Policy):
    """Independent uniform actions at every step."""

    def _unit_action(self, state: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, self.action_dim)


def ou_step(value: np.ndarray | float, rho: float, innovation: np.ndarray | float) -> np.ndarray | float:
    """Return the next value of an Ornstein-Uhlenbeck process: ``rho * value + sqrt(1 - rho^2) * innovation``."""
    return rho * value + math.sqrt(1.0 - rho**2) * innovation


def draw_cart_target(rng: np.random.Generator, limit: float, dt: float) -> tuple[float, int]:
    """Return a cart target drawn uniformly in ``[-limit, limit]`` m and the env steps to hold it (1.5 to 4 s)."""
    target = float(rng.uniform(-limit, limit))
    steps = max(1, round(float(rng.uniform(1.5, 4.0)) / dt))
    return target, steps


class OrnsteinUhlenbeckPolicy(Policy):
    """Temporally correlated random actions: an Ornstein-Uhlenbeck process sampled at the env step.

    Exact discretization: ``u' = rho u + sqrt(1 - rho^2) sigma eps`` with
    ``rho = exp(-dt / correlation_time)``, so the stationary standard
    deviation is ``sigma`` whatever ``dt`` is. Values are clipped to [-1, 1].
    """

    def __init__(self, env: PixelEnv, *, sigma: float = 0.6, correlation_time: float = 0.3) -> None:
        super().__init__(env)
        self.sigma = sigma
        self.rho = math.exp(-self.dt / correlation_time)
        self._value = np.zeros(self.action_dim)

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._value = self.rng.normal(0.0, self.sigma, self.action_dim)

    def _unit_action(self, state: np.ndarray) -> np.ndarray:
        action = self._value.copy()
        innovation = self.rng.normal(0.0, self.sigma, self.action_dim)
        self._value = ou_step(self._value, self.rho, innovation)
        return action


def check_policy(name: str, env_name: str) -> None:
    """Raise ``InvalidInputError`` unless policy ``name`` exists and can drive env ``env_name``."""
    if name not in POLICY_NAMES:
        raise InvalidInputError(f"unknown policy {name!r}; valid policies: {', '.join(POLICY_NAMES)}")
    if name in CARTPOLE_POLICIES and get_spec(env_name).cartpole is None:
        cartpoles = ", ".join(spec_name for spec_name, spec in SPECS.items() if spec.cartpole is not None)
        raise InvalidInputError(
            f"policy {name!r} drives cart-pole envs only ({cartpoles}), not {env_name!r}; "
            "use --policy random or --policy ou for it"
        )


class BalancePolicy(Policy):
    """Keep the pole upright while the cart visits random target positions across the visible track.

    A scripted controller (energy swing-up, then LQR) steers the cart to a
    target drawn uniformly in ``[-target_range, target_range]`` m and held
    for a random 1.5 to 4 s. Ornstein-Uhlenbeck noise (``noise_sigma``,
    0.1 s correlation time) is added to the action so that the data also
    contains tilted poles and recoveries.
    """

    def __init__(self, env: PixelEnv, *, noise_sigma: float = 0.25) -> None:
        super().__init__(env)
        check_policy("balance", env.name)
        params = get_spec(env.name).cartpole
        assert params is not None
        self.params = params
        self.controller = CartPoleController(params, self.dt)
        self.noise_sigma = noise_sigma
        self.noise_rho = math.exp(-self.dt / 0.1)
        self._noise = 0.0
        self._target = 0.0
        self._steps_left = 0

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._noise = 0.0
        self._steps_left = 0

    def _unit_action(self, state: np.ndarray) -> np.ndarray:
        if self._steps_left <= 0:
            self._target, self._steps_left = draw_cart_target(self.rng, self.params.target_range, self.dt)
        self._steps_left -= 1

        innovation = float(self.rng.normal(0.0, self.noise_sigma))
        self._noise = ou_step(self._noise, self.noise_rho, innovation)
        action = self.controller.action(state, self._target) + self._noise
        return np.array([action])


_POLICY_CLASSES: dict[str, type[Policy]] = {
    "random": RandomPolicy,
    "ou": OrnsteinUhlenbeckPolicy,
    "balance": BalancePolicy,
}


NOISY_POLICIES = {"ou": "sigma", "balance": "noise_sigma", "plan": "noise_sigma"}
"""Policies whose action noise ``make_policy(noise=...)`` sets, and the constructor argument it goes to."""


def make_policy(
    name: str, env: PixelEnv, seed: int = 0, noise: float | None = None, planner: dict[str, Any] | None = None
) -> Policy:
    """Build the policy called ``name`` (one of :data:`POLICY_NAMES`) for ``env``, seeded with ``seed``.

    ``noise`` is the standard deviation of the policy's Ornstein-Uhlenbeck noise in unit-action units
    (``ou``: the action itself, default 0.6; ``balance`` and ``plan``: the noise added to the controller's
    or planner's action, defaults 0.25 and 0.2). ``None`` keeps the policy's default. ``planner`` holds the
    fields of :class:`planning.policy.PlannerPolicyConfig` for ``plan`` (models, planner and budget).
    """
    check_policy(name, env.name)
    options: dict[str, Any] = {}
    if noise is not None:
        options[NOISY_POLICIES[name]] = validate_noise(noise, name)
    if name == "plan":
        # Imported here: the planning package builds on envs, not the other way round.
        from planning.policy import PlannerPolicy, PlannerPolicyConfig

        policy: Policy = PlannerPolicy(env, PlannerPolicyConfig.from_options(planner), **options)
    else:
        if planner is not None:
            raise InvalidInputError(f"planner options apply to policy 'plan' only, not to {name!r}")
        policy = _POLICY_CLASSES[name](env, **options)
    policy.reset(seed)
    return policy


def validate_noise(noise: Any, policy: str) -> float:
    """Return ``noise`` as a float when ``policy`` takes one, raising ``InvalidInputError`` otherwise."""
    if policy not in NOISY_POLICIES:
        raise InvalidInputError(
            f"--noise does not apply to policy {policy!r}; use it with {' or '.join(NOISY_POLICIES)}, or drop it"
        )
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (0.0 <= noise <= 10.0):
        raise InvalidInputError(
            f"--noise={noise!r} is invalid; pass a number from 0 to 10 (standard deviation in unit-action units)"
        )
    return float(noise)
