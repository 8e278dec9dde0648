"""Online linear probes trained beside pretraining on detached features.

A probe measures how linearly readable a target is from a feature: top-1
accuracy for class labels, R^2 for a physical state vector. Features are
detached, so the probes never shape the representation.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LinearProbe(nn.Module):
    """A linear classifier (``num_classes > 0``) or regressor (``state_dim > 0``) on a feature ``(B, d)``."""

    def __init__(self, in_dim: int, num_classes: int = 0, state_dim: int = 0) -> None:
        super().__init__()
        if (num_classes > 0) == (state_dim > 0):
            raise ValueError("a probe needs exactly one of num_classes > 0 or state_dim > 0")
        self.num_classes = num_classes
        self.norm = nn.BatchNorm1d(in_dim, affine=False)
        self.head = nn.Linear(in_dim, num_classes or state_dim)

    def forward(self, features: Tensor) -> Tensor:
        """Return logits ``(B, num_classes)`` or state predictions ``(B, state_dim)``."""
        return self.head(self.norm(features.detach()))

    def loss_and_metric(self, features: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(loss, metric)``: cross-entropy and top-1, or MSE and R^2 averaged over state dimensions."""
        prediction = self(features)
        if self.num_classes > 0:
            loss = F.cross_entropy(prediction, target)
            metric = (prediction.argmax(1) == target).float().mean()
        else:
            target = target.to(prediction.dtype)
            loss = F.mse_loss(prediction, target)
            metric = r_squared(prediction.detach(), target)
        return loss, metric.detach()


def r_squared(prediction: Tensor, target: Tensor) -> Tensor:
    """Coefficient of determination averaged over the columns of ``(B, S)`` tensors."""
    residual = ((target - prediction) ** 2).sum(0)
    total = ((target - target.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return (1.0 - residual / total).mean()
