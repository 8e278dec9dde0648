"""The linear VAE prior, the projector losses and SIGReg."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from flowjepa import FlowJEPAConfig
from flowjepa.prior import LinearVAEPrior
from flowjepa.projector import invariance_loss
from flowjepa.sigreg import sigreg


@pytest.fixture
def prior() -> LinearVAEPrior:
    torch.manual_seed(0)
    config = FlowJEPAConfig.tiny(image_size=8, levels=1, num_conditions=3)
    module = LinearVAEPrior(config).double()
    with torch.no_grad():
        module.condition_offset.weight.normal_()
    return module


def test_vae_encoder_mean_is_affine_in_z(prior):
    shape = prior.latent_shape
    z1, z2 = torch.randn(4, *shape, dtype=torch.float64), torch.randn(4, *shape, dtype=torch.float64)
    condition = torch.tensor([0, 1, 2, 1])

    for weight in (-1.5, 0.3, 2.0):
        mixed = prior.encode(weight * z1 + (1 - weight) * z2, condition)[0]
        expected = weight * prior.encode(z1, condition)[0] + (1 - weight) * prior.encode(z2, condition)[0]
        assert torch.allclose(mixed, expected, atol=1e-10)

    # The Jacobian with respect to z is the same matrix W at any z.
    def mean_of(z):
        return prior.encode(z.view(1, *shape), condition[:1])[0]

    jacobian_a = jacobian(mean_of, z1[0].reshape(-1))
    jacobian_b = jacobian(mean_of, 10 * z2[0].reshape(-1))
    assert torch.allclose(jacobian_a, jacobian_b)


def test_condition_enters_encoder_additively(prior):
    z1, z2 = torch.randn(2, *prior.latent_shape, dtype=torch.float64).unbind()
    zero, two = torch.tensor([0]), torch.tensor([2])
    shift_1 = prior.encode(z1[None], two)[0] - prior.encode(z1[None], zero)[0]
    shift_2 = prior.encode(z2[None], two)[0] - prior.encode(z2[None], zero)[0]
    assert torch.allclose(shift_1, shift_2, atol=1e-12)
    assert shift_1.abs().max() > 0


def test_iwae_bound_is_tighter_than_elbo(prior):
    z = torch.randn(6, *prior.latent_shape, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    elbo = torch.stack([prior.elbo(z, generator=generator) for _ in range(64)]).mean(0)
    iwae = prior.log_prob(z, num_samples=256, generator=generator)
    assert (iwae >= elbo - 1e-6).all()


def test_prior_sample_shape(prior):
    assert prior.sample(5).shape == (5, *prior.latent_shape)


def test_sigreg_gaussian_about_one_at_any_batch_size():
    generator = torch.Generator().manual_seed(0)
    for batch in (128, 1024, 4096):
        values = [sigreg(torch.randn(batch, 32, generator=generator), 64, generator=generator) for _ in range(8)]
        mean = float(torch.stack(values).mean())
        assert 0.8 < mean < 1.25, (batch, mean)


def test_sigreg_collapsed_embeddings_grow_with_batch_size():
    generator = torch.Generator().manual_seed(1)
    small = sigreg(torch.full((128, 16), 0.5) + 1e-3 * torch.randn(128, 16, generator=generator), generator=generator)
    large = sigreg(torch.full((1024, 16), 0.5) + 1e-3 * torch.randn(1024, 16, generator=generator), generator=generator)
    assert small > 10
    assert large > 7 * small


def test_sigreg_directions_fresh_per_call_unless_seeded():
    x = torch.randn(64, 8) * 2
    assert sigreg(x, 4) != sigreg(x, 4)
    assert sigreg(x, 4, generator=torch.Generator().manual_seed(3)) == sigreg(
        x, 4, generator=torch.Generator().manual_seed(3)
    )


def test_sigreg_averages_over_views():
    generator = torch.Generator().manual_seed(2)
    gaussian = torch.randn(256, 8, generator=generator)
    collapsed = torch.zeros(256, 8)
    both = sigreg(torch.stack([gaussian, collapsed]), 16, generator=torch.Generator().manual_seed(5))
    parts = [sigreg(v, 16, generator=torch.Generator().manual_seed(5)) for v in (gaussian, collapsed)]
    assert torch.allclose(both, (parts[0] + parts[1]) / 2, rtol=1e-5)


def test_invariance_loss_is_mean_squared_distance_to_views_mean():
    views = torch.tensor([[[0.0, 0.0]], [[2.0, 4.0]]])  # V=2, B=1, d=2
    # The mean is (1, 2); each view is at squared distance 1 and 4 per dimension.
    assert float(invariance_loss(views)) == pytest.approx((1 + 4 + 1 + 4) / 4)
    assert float(invariance_loss(torch.ones(3, 5, 4))) == 0.0
