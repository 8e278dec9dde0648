"""When a closed-loop episode counts as having reached its goal, judged on the true simulator state.

Cartpole rule: the cart is within 0.1 m of the goal's cart position and the
pole within 0.2 rad of the goal's pole angle, with the angle difference wrapped
to [-pi, pi). Both must hold at each of the last 10 steps of the episode, or at
every step when the episode is shorter. An episode that ends early (the pole of ``cartpole-gym``
fell) is not a success.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SuccessRule:
    """Tolerances on named state components that must hold over the last ``window`` steps."""

    components: tuple[str, ...]
    """Names from the environment's ``state_names`` that the rule compares."""
    tolerances: tuple[float, ...]
    """Largest allowed absolute difference to the goal, per component, in the state's units."""
    angular: tuple[bool, ...]
    """Whether the component is an angle whose difference is wrapped to [-pi, pi)."""
    window: int = 10

    def describe(self, steps: int | None = None) -> str:
        """Return the rule as one sentence for logs and reports; ``steps`` is the episode length when known."""
        parts = [f"|{name} - goal| < {tolerance:g}" for name, tolerance in zip(self.components, self.tolerances)]
        if steps is not None and steps <= self.window:
            return f"{' and '.join(parts)} at each of the {steps} step{'s' if steps != 1 else ''}"
        return f"{' and '.join(parts)} at each of the last {self.window} steps"

    def errors(self, states: np.ndarray, goal_state: np.ndarray, state_names: tuple[str, ...]) -> np.ndarray:
        """Return the absolute difference to the goal of each compared component, ``(T, len(components))``.

        ``states`` is ``(T, S)`` and ``goal_state`` ``(S,)``, both laid out as ``state_names``.
        """
        columns = [state_names.index(name) for name in self.components]
        difference = (
            np.asarray(states, dtype=np.float64)[:, columns] - np.asarray(goal_state, dtype=np.float64)[columns]
        )
        for position, is_angle in enumerate(self.angular):
            if is_angle:
                difference[:, position] = (difference[:, position] + math.pi) % (2 * math.pi) - math.pi
        return np.abs(difference)

    def succeeded(self, errors: np.ndarray, completed: bool) -> bool:
        """Apply the rule to per-step errors ``(T, C)`` of the steps after each action."""
        if not completed or errors.shape[0] == 0:
            return False
        last = errors[-self.window :]
        return bool(np.all(last < np.asarray(self.tolerances)))


CARTPOLE_RULE = SuccessRule(
    components=("cart_position", "pole_angle"),
    tolerances=(0.1, 0.2),
    angular=(False, True),
)

SUCCESS_RULES: dict[str, SuccessRule] = {
    "cartpole": CARTPOLE_RULE,
    "cartpole-swingup": CARTPOLE_RULE,
    "cartpole-gym": CARTPOLE_RULE,
}


def success_rule_for(env_name: str) -> SuccessRule | None:
    """Return the rule of an environment, or None when it has none (success is then unknown)."""
    return SUCCESS_RULES.get(env_name)
