"""Offset-free MPC: the model-error estimate and the corrected rollout."""

from __future__ import annotations

import pytest
import torch

from planning.correction import CorrectedDynamics, ModelErrorEstimate
from tests.test_planning import random_world_model

pytestmark = pytest.mark.usefixtures("single_thread")


def test_corrected_rollout_adds_offset():
    model = random_world_model("residual", torch.float64)
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    actions = torch.rand(4, 6, 2, generator=generator, dtype=torch.float64) * 2 - 1
    offset = torch.randn(5, generator=generator, dtype=torch.float64)

    # Brute force: step the model by hand, adding the offset to every prediction.
    window = start.expand(4, -1, -1)
    expected = []
    for t in range(actions.shape[1]):
        latent = model.step(window, actions[:, t]) + offset
        expected.append(latent)
        window = torch.cat([window[:, 1:], latent[:, None]], dim=1)

    corrected = CorrectedDynamics(model, offset).rollout(start, actions)
    torch.testing.assert_close(corrected, torch.stack(expected, dim=1), rtol=0, atol=1e-12)
    torch.testing.assert_close(CorrectedDynamics(model, torch.zeros(5, dtype=torch.float64)).rollout(start, actions),
                               model.rollout(start, actions), rtol=0, atol=0)  # fmt: skip


def test_estimate_converges_to_constant_bias():
    """When the world is the model plus a constant bias b, the estimate after n steps is b (1 - (1 - gain)^n)."""
    model = random_world_model("residual", torch.float64)
    generator = torch.Generator().manual_seed(1)
    bias = torch.randn(5, generator=generator, dtype=torch.float64)
    gain = 0.3
    estimate = ModelErrorEstimate(model, gain, torch.zeros(5, dtype=torch.float64))
    window = torch.randn(3, 5, generator=generator, dtype=torch.float64)

    for n in range(1, 21):
        action = torch.rand(2, generator=generator, dtype=torch.float64) * 2 - 1
        observed = model.step(window[None], action[None])[0] + bias
        estimate.update(window, action, observed)
        torch.testing.assert_close(estimate.value, bias * (1 - (1 - gain) ** n), rtol=1e-12, atol=1e-12)
        window = torch.cat([window[1:], observed[None]])

    # The corrected model now predicts the biased world's next latent almost exactly.
    action = torch.tensor([0.2, -0.4], dtype=torch.float64)
    truth = model.step(window[None], action[None])[0] + bias
    predicted = estimate.dynamics().rollout(window, action[None, None])[0, 0]
    assert float((predicted - truth).abs().max()) < 1e-3 * float(bias.abs().max())


def test_zero_gain_uses_plain_model():
    model = random_world_model("residual", torch.float64)
    estimate = ModelErrorEstimate(model, 0.0, torch.zeros(5, dtype=torch.float64))
    estimate.update(torch.zeros(3, 5, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), torch.ones(5))

    assert estimate.dynamics() is model
    assert torch.equal(estimate.value, torch.zeros(5, dtype=torch.float64))
