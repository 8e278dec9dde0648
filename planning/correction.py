"""Offset-free MPC: estimate the world model's persistent one-step error online and add it to its predictions.

A learned model is rarely exact. Where it is biased, say it predicts that the
pole tilts a little further each step than it does, a receding-horizon planner
settles where the biased model is content, short of the goal. Offset-free MPC
models the difference as a disturbance ``d`` that changes slowly:

    z_{t+1} = f(z_{t-k+1..t}, a_t) + d

After every executed action, the observed latent is compared with the model's
one-step prediction, and ``d`` is updated as an exponential moving average of
that residual with gain ``beta``: ``d <- (1 - beta) d + beta (z_obs - f(...))``.
Planning then rolls out the corrected model. ``beta = 0`` disables the
correction. Small gains average out the frame-to-frame noise of the latent.
"""

from __future__ import annotations

from torch import Tensor

from planning.world_model import LatentWorldModel


class CorrectedDynamics:
    """The world model's rollout with a constant correction ``(D,)`` added after every step."""

    def __init__(self, model: LatentWorldModel, correction: Tensor) -> None:
        self.model = model
        self.correction = correction

    def rollout(self, start: Tensor, actions: Tensor) -> Tensor:
        """Predict ``(N, H, D)`` from ``start`` ``(k, D)`` or ``(N, k, D)`` and actions ``(N, H, A)``."""
        return self.model.rollout(start, actions, offset=self.correction)


class ModelErrorEstimate:
    """Running estimate ``d`` ``(D,)`` of the world model's one-step error, in normalised latent units."""

    def __init__(self, model: LatentWorldModel, gain: float, template: Tensor) -> None:
        self.model = model
        self.gain = float(gain)
        self.value = template.new_zeros(template.shape[-1])

    def dynamics(self) -> LatentWorldModel | CorrectedDynamics:
        """Return what the planner should roll out: the model itself while the correction is off."""
        return self.model if self.gain == 0 else CorrectedDynamics(self.model, self.value)

    def update(self, window: Tensor, action: Tensor, observed: Tensor) -> None:
        """Fold in one step: window ``(k, D)`` before the action, ``action`` ``(A,)``, the observed latent ``(D,)``."""
        if self.gain == 0:
            return
        predicted = self.model.step(window[None], action[None].to(window))[0]
        self.value = (1 - self.gain) * self.value + self.gain * (observed - predicted)
