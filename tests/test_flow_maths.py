"""Exactness of every invertible piece: round trips and log-determinants against the autograd Jacobian."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from flowjepa import FlowJEPA, FlowJEPAConfig
from flowjepa.coupling import ActNorm, MaskedAffineCoupling, squeeze, unsqueeze
from flowjepa.flow import MaskedCouplingFlow
from flowjepa.masks import draw_masks
from flowjepa.preprocess import LogitTransform


@pytest.fixture(autouse=True)
def float64_default():
    """Run every check of this module in float64, and restore the default afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def randomize(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Give every parameter non-trivial values (the zero initialisation would make couplings the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def brute_force_log_det(function, x: torch.Tensor) -> torch.Tensor:
    """``log|det J|`` of ``function`` at one input ``x`` ``(1, ...)``, from the dense Jacobian."""
    dim = x.numel()
    matrix = jacobian(lambda flat: function(flat.view_as(x)).reshape(-1), x.reshape(-1)).reshape(dim, dim)
    sign, log_abs_det = torch.linalg.slogdet(matrix)
    assert sign != 0
    return log_abs_det


def test_coupling_round_trip_and_log_det():
    coupling = randomize(MaskedAffineCoupling(channels=3, hidden=8, clamp=2.0))
    x = torch.randn(1, 3, 4, 4)
    mask = draw_masks("complementary", 2, (3, 4, 4), generator=torch.Generator().manual_seed(1))[0]

    y, log_det = coupling(x, mask)

    assert torch.allclose(coupling.inverse(y, mask), x, atol=1e-12)
    assert torch.allclose(log_det[0], brute_force_log_det(lambda v: coupling(v, mask)[0], x), atol=1e-9)


def test_coupling_keeps_masked_entries():
    coupling = randomize(MaskedAffineCoupling(channels=2, hidden=8))
    x = torch.randn(3, 2, 4, 4)
    mask = draw_masks("independent", 1, (2, 4, 4), batch=3, generator=torch.Generator().manual_seed(2))[0]

    y, _ = coupling(x, mask)

    kept = mask.bool()
    assert torch.equal(y[kept], x[kept])
    assert not torch.allclose(y[~kept], x[~kept])


def test_coupling_finite_for_extreme_inputs():
    coupling = randomize(MaskedAffineCoupling(channels=3, hidden=8, clamp=2.0), scale=3.0)
    x = torch.randn(2, 3, 4, 4) * 1e6
    mask = draw_masks("complementary", 2, (3, 4, 4), batch=2)[0]

    y, log_det = coupling(x, mask)

    assert torch.isfinite(y).all()
    assert torch.isfinite(log_det).all()
    assert log_det.abs().max() <= 2.0 * 3 * 16


def test_coupling_gradcheck():
    coupling = randomize(MaskedAffineCoupling(channels=2, hidden=4))
    mask = draw_masks("complementary", 2, (2, 2, 2), generator=torch.Generator().manual_seed(3))[0]
    x = torch.randn(1, 2, 2, 2, requires_grad=True)

    assert torch.autograd.gradcheck(lambda v: coupling(v, mask), (x,))
    assert torch.autograd.gradcheck(lambda v: coupling.inverse(v, mask), (x,))


def test_actnorm_initialises_and_log_det():
    norm = ActNorm(3)
    batch = torch.randn(64, 3, 4, 4) * 5 + 2
    y, _ = norm(batch)

    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-9)
    assert torch.allclose(y.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-6)
    assert int(norm.initialized) == 1

    x = torch.randn(1, 3, 4, 4)
    y, log_det = norm(x)
    assert torch.allclose(norm.inverse(y), x, atol=1e-12)
    assert torch.allclose(log_det[0], brute_force_log_det(lambda v: norm(v)[0], x), atol=1e-9)


def test_actnorm_state_survives_save_load(tmp_path):
    model = FlowJEPA(FlowJEPAConfig.tiny(image_size=8, levels=1)).train()
    model.log_density(torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8))
    model.eval().save_pretrained(tmp_path)

    loaded = FlowJEPA.from_pretrained(tmp_path).double()
    loaded.train()
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    # A re-initialised ActNorm would change the output of its first training call.
    generator_a, generator_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.allclose(
        model.train().log_density(x, generator=generator_a)[0], loaded.log_density(x, generator=generator_b)[0]
    )
    for name, buffer in loaded.state_dict().items():
        if name.endswith("initialized"):
            assert int(buffer) == 1, name


def test_logit_transform_round_trip_and_log_det():
    logit = LogitTransform(alpha=0.05)
    x = torch.rand(1, 3, 2, 2)
    y, log_det = logit(x)

    assert torch.allclose(logit.inverse(y), x, atol=1e-12)
    assert torch.allclose(log_det[0], brute_force_log_det(lambda v: logit(v)[0], x), atol=1e-9)


def test_squeeze_is_volume_preserving_permutation():
    x = torch.randn(1, 2, 4, 4)
    assert torch.equal(unsqueeze(squeeze(x)), x)
    assert abs(float(brute_force_log_det(squeeze, x))) < 1e-12


@pytest.mark.parametrize("mode", ["complementary", "independent", "checkerboard"])
def test_flow_stack_log_det_matches_jacobian(mode):
    config = FlowJEPAConfig.tiny(image_size=4, levels=1, pairs_per_level=2, aug_channels=0, mask_mode=mode)
    flow = randomize(MaskedCouplingFlow(config)).train()
    x = torch.randn(1, 3, 4, 4)
    masks = flow.draw_masks(1, torch.Generator().manual_seed(4))

    z, log_det, _ = flow(x, masks=masks)

    assert torch.allclose(flow.inverse(z, masks=masks), x, atol=1e-10)
    assert torch.allclose(log_det[0], brute_force_log_det(lambda v: flow(v, masks=masks)[0], x), atol=1e-8)


def test_model_density_path_log_det_matches_jacobian():
    """The map (x, u) -> z (logit on x, then the flow on [y, u]) against the dense Jacobian."""
    config = FlowJEPAConfig.tiny(image_size=4, levels=1, aug_channels=1)
    model = randomize(FlowJEPA(config)).eval()
    x = torch.rand(1, 3, 4, 4) * 0.9 + 0.05
    u = torch.randn(1, 1, 4, 4)

    def full_map(v):
        y, _ = model.logit(v[:, :3])
        return model.flow(torch.cat([y, v[:, 3:]], 1), frozen=True)[0]

    y, log_det_logit = model.logit(x)
    z, log_det_flow, _ = model.flow(torch.cat([y, u], 1), frozen=True)

    assert z.shape == (1, *config.latent_shape)
    assert torch.allclose(log_det_logit + log_det_flow, brute_force_log_det(full_map, torch.cat([x, u], 1)), atol=1e-8)


def test_model_round_trip_is_bit_exact_on_uint8():
    model = randomize(FlowJEPA(FlowJEPAConfig.tiny(image_size=16)), scale=0.1).float().eval()
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    x[0] = 0
    x[1] = 255

    z = model.encode(x)
    x_back = model.decode(z, quantize_output=True)

    assert z.dtype == torch.float32
    assert torch.equal(x_back, x)
    assert (model.decode(z) - (x.double() + 0.5).float() / 256).abs().max() < 1e-5


def test_model_round_trip_float64_precision():
    model = randomize(FlowJEPA(FlowJEPAConfig.tiny(image_size=16)), scale=0.1).eval()
    x = torch.rand(4, 3, 16, 16) * 0.98 + 0.01
    assert (model.decode(model.encode(x)) - x).abs().max() < 1e-10


def test_complementary_pairs_update_every_dimension_once():
    shape = (4, 3, 3)
    masks = draw_masks("complementary", 6, shape, batch=5, generator=torch.Generator().manual_seed(5))
    for first, second in zip(masks[0::2], masks[1::2]):
        updated_first, updated_second = 1 - first, 1 - second
        assert torch.equal(updated_first + updated_second, torch.ones_like(first))
    # Fresh pairs are not copies of each other.
    assert not torch.equal(masks[0], masks[2])
    # Bernoulli(0.5): roughly half of the entries.
    assert 0.3 < float(masks[0].mean()) < 0.7


def test_independent_masks_can_leave_dimensions_untouched():
    masks = draw_masks("independent", 2, (8, 8, 8), generator=torch.Generator().manual_seed(6))
    untouched = (masks[0] * masks[1]).sum()
    assert untouched > 0


def test_train_masks_differ_and_frozen_masks_repeat(tmp_path):
    model = randomize(FlowJEPA(FlowJEPAConfig.tiny(image_size=8, levels=1)), scale=0.2)
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    v, _, _ = model.lift(model.to_unit_cube(x), sample=False)

    model.train()
    z1, _, masks1 = model.flow(v)
    z2, _, masks2 = model.flow(v)
    assert not torch.equal(masks1[0], masks2[0])
    assert not torch.allclose(z1, z2)

    model.eval()
    assert torch.equal(model.encode(x), model.encode(x))
    model.save_pretrained(tmp_path)
    loaded = FlowJEPA.from_pretrained(tmp_path).double()
    assert torch.equal(loaded.encode(x), model.encode(x))
    for first, second in zip(model.flow.frozen_masks(), loaded.flow.frozen_masks()):
        assert torch.equal(first, second)


def test_generator_reproduces_training_masks():
    model = FlowJEPA(FlowJEPAConfig.tiny(image_size=8, levels=1)).train()
    first = model.flow.draw_masks(3, torch.Generator().manual_seed(7))
    second = model.flow.draw_masks(3, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_bits_per_dim_uniform_is_exactly_8():
    from flowjepa.preprocess import bits_per_dim

    assert float(bits_per_dim(torch.zeros(3), 3 * 32 * 32)[0]) == 8.0


def test_bits_per_dim_through_logit_and_logistic_density_is_8():
    """Uniform data, logit transform and a standard logistic base density make a uniform model: 8 bits/dim."""
    from flowjepa.preprocess import bits_per_dim

    logit = LogitTransform(alpha=0.0)
    x = torch.rand(16, 3, 8, 8).clamp(1e-6, 1 - 1e-6)
    y, log_det = logit(x)
    log_logistic = (-y - 2 * torch.nn.functional.softplus(-y)).flatten(1).sum(1)

    bpd = bits_per_dim(log_logistic + log_det, 3 * 8 * 8)

    assert torch.allclose(bpd, torch.full_like(bpd, 8.0), atol=1e-9)


def test_bits_per_dim_of_gaussian_data_matches_entropy():
    """Bits/dim of a known density: a model that is exact for N(0, I) in logit space scores its entropy."""
    from flowjepa.preprocess import bits_per_dim

    dims = 3 * 4 * 4
    y = torch.randn(20000, dims)
    log_gauss = (-0.5 * y**2 - 0.5 * math.log(2 * math.pi)).sum(1)
    # Differential entropy of N(0, 1) is 0.5 log(2 pi e) nats per dimension.
    expected = 8.0 - (-0.5 * math.log(2 * math.pi * math.e)) / math.log(2)
    assert abs(float(bits_per_dim(log_gauss, dims).mean()) - expected) < 0.02
