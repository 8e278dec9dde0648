"""Measurements several sections share: features for the probes, bits/dim, and probe scores."""

from __future__ import annotations

import torch
from torch import Tensor

from bench.baselines import ConvJEPA
from bench.datasets import ImageSet
from bench.probes import STATE_TARGET_NAMES, logistic_probe_top1, ridge_probe_r2, state_targets
from flowjepa.config import FlowJEPAConfig
from flowjepa.model import FlowJEPA

BATCH = 50
"""Images per forward pass in evaluation."""


@torch.no_grad()
def flowjepa_features(model: FlowJEPA, images: Tensor) -> dict[str, Tensor]:
    """Return the flattened latent ``z`` ``(N, D)``, the linear code ``W z`` and the projector output."""
    latents, codes, projections = [], [], []
    for chunk in images.split(BATCH):
        z = model.encode(chunk)
        latents.append(z.flatten(1))
        codes.append(model.code(z))
        projections.append(model.project(z))
    return {"z": torch.cat(latents), "code": torch.cat(codes), "projector": torch.cat(projections)}


@torch.no_grad()
def conv_features(model: ConvJEPA, images: Tensor) -> dict[str, Tensor]:
    """Return the flattened conv feature map ``(N, D)`` and the projector output."""
    maps, projections = [], []
    for chunk in images.split(BATCH):
        feature_map = model.encoder(chunk)
        maps.append(feature_map.flatten(1))
        projections.append(model.projector(feature_map))
    return {"feature map": torch.cat(maps), "projector": torch.cat(projections)}


def pixel_features(images: Tensor) -> dict[str, Tensor]:
    """Return the raw pixels scaled to [0, 1], flattened, ``(N, 3 S S)``."""
    return {"pixels": images.flatten(1).float() / 255.0}


def features_of(model: FlowJEPA | ConvJEPA, images: Tensor) -> dict[str, Tensor]:
    """Return the probe features of either kind of model."""
    if isinstance(model, ConvJEPA):
        return conv_features(model, images)
    return flowjepa_features(model, images)


@torch.no_grad()
def random_flowjepa(config: FlowJEPAConfig, images: Tensor, seed: int = 0) -> FlowJEPA:
    """Return an untrained Flow-JEPA with ActNorm initialised from ``images``, as pretraining does at step 0.

    The last convolution of every coupling starts at zero, so this flow is the logit transform followed by
    per-channel normalisation and squeezes, and the code ``W z`` is a random linear map of it.
    """
    torch.manual_seed(seed)
    model = FlowJEPA(config).train()
    model.log_density(images, generator=torch.Generator().manual_seed(seed))
    return model.eval()


@torch.no_grad()
def mean_bits_per_dim(
    model: FlowJEPA, images: Tensor, importance_samples: int, masks: str = "frozen", num_masks: int = 1, seed: int = 0
) -> float:
    """Return the mean bits/dim of uint8 ``images`` under ``model`` (see :meth:`FlowJEPA.log_prob` for ``masks``)."""
    generator = torch.Generator().manual_seed(seed)
    values = [
        model.bits_per_dim(chunk, masks=masks, num_masks=num_masks, num_samples=importance_samples, generator=generator)
        for chunk in images.split(BATCH)
    ]
    return float(torch.cat(values).mean())


def classification_scores(
    train_features: dict[str, Tensor], train: ImageSet, test_features: dict[str, Tensor], test: ImageSet, epochs: int
) -> dict[str, float]:
    """Return the probe top-1 of every feature, fitted on ``train`` and scored on ``test``."""
    assert train.labels is not None and test.labels is not None
    classes = int(max(train.labels.max(), test.labels.max())) + 1
    return {
        name: logistic_probe_top1(
            train_features[name], train.labels, test_features[name], test.labels, classes, epochs=epochs
        )
        for name in train_features
    }


def state_scores(
    train_features: dict[str, Tensor], train: ImageSet, test_features: dict[str, Tensor], test: ImageSet
) -> dict[str, dict[str, float]]:
    """Return, per feature, the ridge probe's R^2 of every state target and their mean."""
    assert train.states is not None
    assert test.states is not None
    assert train.groups is not None
    train_targets, test_targets = state_targets(train.states), state_targets(test.states)
    scores = {}
    for name in train_features:
        per_target, penalty = ridge_probe_r2(
            train_features[name], train_targets, train.groups, test_features[name], test_targets
        )
        values = {target: float(value) for target, value in zip(STATE_TARGET_NAMES, per_target)}
        values["mean"] = float(per_target.mean())
        values["penalty_per_row"] = penalty
        scores[name] = values
    return scores
