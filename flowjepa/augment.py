"""Variational augmentation (Augmented Normalizing Flows, Huang, Dinh and Courville, arXiv:2002.07101).

The flow transforms ``[y, u]`` where ``y`` is the logit-space image and
``u ~ q(u | y) = N(mu(y), diag sigma(y)^2)`` has ``aug_channels`` channels at
full resolution. The bound on the image density is
``log p(y) >= E_q[log p(y, u) - log q(u | y)]``; decoding drops ``u``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class VariationalAugmentation(nn.Module):
    """The posterior ``q(u | y)``: a diagonal Gaussian from a small convolutional net.

    Args:
        channels: channels of ``y``.
        aug_channels: channels of ``u``; 0 turns the layer into a no-op.
        hidden: width of the net.
    """

    def __init__(self, channels: int, aug_channels: int, hidden: int) -> None:
        super().__init__()
        self.aug_channels = aug_channels
        if aug_channels == 0:
            self.net = None
            return
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, 2 * aug_channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def distribution(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(mean, log_std)`` of ``q(u | y)``, each ``(B, aug_channels, H, W)``."""
        assert self.net is not None
        mean, log_std = self.net(y).chunk(2, dim=1)
        return mean, log_std.clamp(-7.0, 2.0)

    def forward(self, y: Tensor, sample: bool, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Lift ``y`` ``(B, C, H, W)`` to ``([y, u], log_q (B,))``.

        With ``sample=False`` ``u`` is the posterior mean and ``log_q`` is zero:
        that deterministic lift is what ``encode`` uses, so ``x -> z`` is one bijection onto its image.
        """
        if self.net is None:
            return y, y.new_zeros(y.shape[0])

        mean, log_std = self.distribution(y)
        if not sample:
            return torch.cat([y, mean], dim=1), y.new_zeros(y.shape[0])

        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + torch.exp(log_std) * eps
        log_q = (-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

        return torch.cat([y, u], dim=1), log_q
