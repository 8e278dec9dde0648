"""optimize_input: goal-directed gradient descent on pixels and on the flow latent of a real tiny Flow-JEPA."""

from __future__ import annotations

import pytest
import torch

from flowjepa import FlowJEPA, FlowJEPAConfig
from flowjepa.errors import InvalidInputError, TrainingDivergedError
from flowjepa.optimize import optimize_input


@pytest.fixture(scope="module")
def bijective_model() -> FlowJEPA:
    # Without augmentation channels x -> z is a bijection, so f^-1 followed by f returns z.
    torch.manual_seed(0)
    return FlowJEPA(FlowJEPAConfig.tiny(image_size=16, aug_channels=0)).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    start = torch.randint(40, 216, (2, 3, 16, 16), generator=generator, dtype=torch.uint8)
    goal = torch.randint(40, 216, (2, 3, 16, 16), generator=generator, dtype=torch.uint8)
    return start, goal


@pytest.mark.parametrize(("space", "lr"), [("input", 1e-3), ("latent", 0.2)])
def test_goal_loss_decreases_towards_latent_goal(bijective_model, images, space, lr):
    start, goal = images
    z_goal = bijective_model.encode(goal)

    result = optimize_input(bijective_model, start, z_goal, steps=15, lr=lr, space=space)

    assert len(result.losses) == 16
    assert result.losses[-1] < 0.7 * result.losses[0]
    assert result.image.shape == (2, 3, 16, 16)
    assert float(result.image.min()) >= 0.0
    assert float(result.image.max()) <= 1.0


@pytest.mark.parametrize(("space", "lr"), [("input", 1e-2), ("latent", 0.2)])
def test_goal_loss_decreases_towards_code_goal(bijective_model, images, space, lr):
    start, goal = images

    result = optimize_input(bijective_model, start, bijective_model.embed(goal), steps=15, lr=lr, space=space)

    assert result.losses[-1] < 0.7 * result.losses[0]


def test_latent_route_image_reencodes_to_optimised_latent(bijective_model, images):
    start, goal = images

    result = optimize_input(bijective_model, start, bijective_model.encode(goal), steps=10, lr=0.1, space="latent")
    reencoded = bijective_model.encode(result.image)

    assert result.reencode_error < 1e-3
    assert torch.allclose(reencoded, result.latent, atol=1e-3, rtol=0)
    assert not torch.allclose(result.latent, bijective_model.encode(start), atol=1e-2), "the latent did not move"


def test_latent_steps_follow_closed_form(bijective_model, images):
    # With L = 0.5 |z - g|^2, each step is z <- z - lr (z - g), so after n steps z - g shrinks by (1 - lr)^n.
    start, goal = images
    z_start, z_goal = bijective_model.encode(start).double(), bijective_model.encode(goal).double()

    result = optimize_input(bijective_model, start, bijective_model.encode(goal), steps=4, lr=0.25, space="latent")

    expected = z_goal + (1 - 0.25) ** 4 * (z_start - z_goal)
    assert torch.allclose(result.latent.double(), expected, atol=1e-4, rtol=0)


def test_encoder_weights_get_no_gradient(images):
    model = FlowJEPA(FlowJEPAConfig.tiny(image_size=16)).eval()
    start, goal = images

    optimize_input(model, start, model.encode(goal), steps=2, lr=1e-3, space="input")

    assert all(parameter.grad is None for parameter in model.parameters())


def test_invalid_arguments_are_rejected(bijective_model, images):
    start, goal = images
    z_goal = bijective_model.encode(goal)
    with pytest.raises(InvalidInputError, match="valid spaces: input, latent"):
        optimize_input(bijective_model, start, z_goal, steps=1, lr=0.1, space="pixels")
    with pytest.raises(InvalidInputError, match="lr must be"):
        optimize_input(bijective_model, start, z_goal, steps=1, lr=0.0)
    with pytest.raises(InvalidInputError, match="flow latent"):
        optimize_input(bijective_model, start, torch.zeros(2, 7), steps=1, lr=0.1)


def test_diverging_step_size_raises(bijective_model, images):
    start, goal = images
    with pytest.raises(TrainingDivergedError, match="lower lr"):
        optimize_input(bijective_model, start, bijective_model.encode(goal), steps=200, lr=1e30, space="latent")
