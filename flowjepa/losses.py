"""The Flow-JEPA training objective: bits/dim + invariance + SIGReg (+ online probes)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowjepa.model import FlowJEPA
from flowjepa.preprocess import bits_per_dim
from flowjepa.projector import invariance_loss
from flowjepa.sigreg import sigreg


@dataclass
class LossWeights:
    """Weights of the three terms; the defaults follow LeJEPA's 0.95 / 0.05 split of the JEPA part."""

    bpd: float = 1.0
    """Weight of bits/dim of the unaugmented view (the density term that keeps the flow a density model)."""
    invariance: float = 0.95
    """Weight of the multi-view invariance loss on the projector output."""
    sigreg: float = 0.05
    """Weight of SIGReg on the projector output."""
    sigreg_directions: int = 256
    """Random 1-D directions per SIGReg call."""


def pretraining_losses(
    model: FlowJEPA,
    clean: Tensor,
    views: Tensor,
    weights: LossWeights,
    label: Tensor | None = None,
    state: Tensor | None = None,
    generator: torch.Generator | None = None,
    sigreg_generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Compute the weighted loss of one batch and its parts.

    Args:
        clean: unaugmented images ``(B, C, S, S)`` uint8, for the density term and the probes.
        views: augmented images ``(V, B, C, S, S)`` uint8, for invariance and SIGReg.
        label: class indices ``(B,)`` for the classification probe, if any.
        state: physical states ``(B, S_dim)`` for the regression probe, if any.
        generator: randomness of dequantisation, augmentation noise and masks.
        sigreg_generator: randomness of the SIGReg directions (must agree across data-parallel ranks).

    Returns:
        ``(loss, metrics)`` where ``loss`` includes the probe losses (which only reach the probe weights).
    """
    num_views, batch = views.shape[:2]

    # One flow pass over the clean images and every view, each with its own masks.
    images = torch.cat([clean, views.flatten(0, 1)])
    log_density, z = model.log_density(images, generator=generator)
    bpd = bits_per_dim(log_density[:batch], model.config.num_dims).mean()

    # Invariance and SIGReg on the projector output of the views (or on the linear code, as an ablation).
    z_views = z[batch:]
    embeddings = model.project(z_views) if model.config.use_projector else model.code(z_views)
    embeddings = embeddings.view(num_views, batch, -1)  # (V, B, d)
    invariance = invariance_loss(embeddings)
    sig = sigreg(embeddings, weights.sigreg_directions, generator=sigreg_generator)

    loss = weights.bpd * bpd + weights.invariance * invariance + weights.sigreg * sig
    metrics = {"train/bpd": bpd.detach(), "train/invariance": invariance.detach(), "train/sigreg": sig.detach()}

    # Online probes on detached features of the clean view.
    z_clean = z[:batch].detach()
    features = {"code": model.code(z_clean).detach(), "proj": model.project(z_clean).detach()}
    for name, probe in model.probes.items():
        feature, kind = name.split("_")
        target = label if kind == "class" else state
        if target is None:
            continue
        probe_loss, metric = probe.loss_and_metric(features[feature], target.to(z.device))
        loss = loss + probe_loss
        metrics[f"probe/{feature}_{'top1' if kind == 'class' else 'r2'}"] = metric

    metrics["train/loss"] = loss.detach()
    return loss, metrics
