"""Benchmark building blocks: offline probes, parameter matching and lossless codecs."""

from __future__ import annotations

import math

import pytest
import torch

from bench.baselines import (
    ConvEncoder,
    codec_bits_per_dim,
    count_parameters,
    density_parameters,
    fixed_mask_config,
    matched_conv_width,
)
from bench.budget import PRESETS, TINY
from bench.probes import Standardizer, logistic_probe_top1, ridge_probe_r2, state_targets
from flowjepa import FlowJEPA, FlowJEPAConfig
from flowjepa.errors import InvalidInputError


def linear_data(rows: int, dims: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(rows, dims, generator=generator)
    weights = torch.randn(dims, 2, generator=generator)
    groups = torch.arange(rows) // 10
    return features, features @ weights, groups


@pytest.mark.parametrize("dims", [8, 200], ids=["more-rows-than-dims", "more-dims-than-rows"])
def test_ridge_recovers_linear_targets(dims):
    features, targets, groups = linear_data(120, dims, seed=0)
    test_features, _, _ = linear_data(60, dims, seed=1)
    # Targets of the test rows from the same weights as the training rows.
    weights = torch.linalg.lstsq(features, targets).solution
    test_targets = test_features @ weights

    r2, penalty = ridge_probe_r2(features, targets, groups, test_features, test_targets)

    assert r2.shape == (2,)
    if dims < 120:
        assert float(r2.min()) > 0.99
    else:
        assert float(r2.min()) > 0.3  # under-determined: only part of the weights can be learned
    assert penalty > 0


def ridge_r2_with_extra_column(extra: torch.Tensor, signal: float, test_value: float, seeds: tuple[int, int]):
    """Return the ridge R² on linear data plus one extra column, ``extra`` in training and ``test_value`` at test.

    The training targets gain ``signal * extra``; the test targets come from the first five columns only.
    """
    features, targets, groups = linear_data(100, 5, seed=seeds[0])
    features = torch.cat([features, extra], dim=1)
    targets = targets + signal * extra
    test_features, _, _ = linear_data(50, 5, seed=seeds[1])
    weights = torch.linalg.lstsq(features[:, :5], targets).solution
    test_targets = test_features @ weights
    test_features = torch.cat([test_features, torch.full((50, 1), test_value)], dim=1)

    r2, _ = ridge_probe_r2(features, targets, groups, test_features, test_targets)
    return r2


def test_ridge_ignores_train_constant_column():
    # The column never varied in training but is huge at test time (a pixel that lights up only there).
    r2 = ridge_r2_with_extra_column(torch.zeros(100, 1), signal=0.0, test_value=1e6, seeds=(2, 3))

    assert float(r2.min()) > 0.99


def test_ridge_clips_barely_varying_column():
    # A column whose tiny training variation carries a little signal, then jumps at test time: without
    # clipping to the training range its large weight swamps the prediction.
    quiet = 1e-3 * torch.randn(100, 1, generator=torch.Generator().manual_seed(5))
    r2 = ridge_r2_with_extra_column(quiet, signal=50.0, test_value=10.0, seeds=(4, 6))

    assert float(r2.min()) > 0.9


def test_standardizer_zeroes_constant_columns():
    features = torch.tensor([[1.0, 5.0], [3.0, 5.0]])

    standardized = Standardizer.fit(features)(torch.tensor([[2.0, 7.0]]))

    assert standardized.tolist() == [[0.0, 0.0]]


def test_logistic_probe_separates_classes():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    centres = torch.randn(3, 20, generator=generator) * 5
    features = centres[labels] + torch.randn(90, 20, generator=generator)

    top1 = logistic_probe_top1(features[:60], labels[:60], features[60:], labels[60:], classes=3, epochs=100)

    assert top1 == 1.0


def test_state_targets_use_angle_cos_sin():
    states = torch.tensor([[0.5, math.pi / 2, 1.0, -2.0]], dtype=torch.float64)

    targets = state_targets(states)

    assert torch.allclose(targets, torch.tensor([[0.5, 0.0, 1.0, 1.0, -2.0]], dtype=torch.float64), atol=1e-12)


def test_fixed_mask_baseline_matches_parameters():
    reference = FlowJEPAConfig(image_size=32)

    baseline = fixed_mask_config(reference)

    assert baseline.mask_mode == "checkerboard"
    assert baseline.aug_channels == 0
    target = density_parameters(FlowJEPA(reference))
    assert abs(density_parameters(FlowJEPA(baseline)) - target) / target < 0.01


def test_conv_encoder_matches_flow_size():
    config = FlowJEPAConfig(image_size=32)

    width = matched_conv_width(config)
    encoder = ConvEncoder(config, width)

    flow = count_parameters(FlowJEPA(config).flow)
    assert abs(count_parameters(encoder) - flow) / flow < 0.05
    assert encoder(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, *config.latent_shape)


def test_codecs_compress_flat_images_more():
    flat = torch.full((2, 3, 16, 16), 128, dtype=torch.uint8)
    noise = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    for codec in ("PNG", "WebP"):
        assert codec_bits_per_dim(flat, codec) < 2.0
        assert codec_bits_per_dim(noise, codec) > 7.0


def test_budget_presets_valid():
    for budget in PRESETS.values():
        budget.validate()
    assert TINY.with_overrides(minutes_per_variant=0.5).minutes_per_variant == 0.5
    with pytest.raises(InvalidInputError, match="minutes"):
        TINY.with_overrides(minutes_per_variant=0)
    with pytest.raises(InvalidInputError, match="unknown budget fields"):
        TINY.with_overrides(no_such_field=1)


def test_checkerboard_flow_saves(tmp_path):
    model = FlowJEPA(FlowJEPAConfig.tiny(mask_mode="checkerboard", pairs_per_level=2))

    model.save_pretrained(tmp_path / "model")
    loaded = FlowJEPA.from_pretrained(tmp_path / "model")

    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(loaded.decode(loaded.encode(x), quantize_output=True), x)
