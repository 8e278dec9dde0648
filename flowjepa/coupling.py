"""Invertible layers: masked affine coupling, ActNorm and squeeze.

Every layer returns ``(output, log_det)`` from ``forward`` with ``log_det`` of
shape ``(B,)`` in nats, and has an exact ``inverse``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedAffineCoupling(nn.Module):
    """Affine coupling driven by an arbitrary binary mask.

    ``y = m * x + (1 - m) * (x * exp(s) + t)`` where ``(s, t)`` come from a
    convolutional conditioner that takes ``m * x`` and the mask ``m`` itself, so
    one set of weights serves any mask. The Jacobian is triangular up to a
    permutation, with ``log|det| = sum((1 - m) * s)``. The log-scale is
    soft-clamped, ``s = c * tanh(s_raw / c)``, so outputs and log-dets stay
    finite for extreme inputs.

    Args:
        channels: channels ``C`` of the input ``(B, C, H, W)``.
        hidden: width of the conditioner.
        clamp: the soft bound ``c`` on ``|s|``.
    """

    def __init__(self, channels: int, hidden: int, clamp: float = 2.0) -> None:
        super().__init__()
        self.clamp = clamp
        self.net = nn.Sequential(
            nn.Conv2d(2 * channels, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.SiLU(),
            nn.Conv2d(hidden, 2 * channels, 3, padding=1),
        )
        # Start as the identity map; training moves away from it.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x_kept: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        mask = mask.expand_as(x_kept)
        s_raw, t = self.net(torch.cat([x_kept, mask], dim=1)).chunk(2, dim=1)
        s = self.clamp * torch.tanh(s_raw / self.clamp)
        return s, t

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` ``(B, C, H, W)`` with mask ``(B or 1, C, H, W)`` to ``(y, log_det)``."""
        s, t = self._scale_shift(x * mask, mask)
        free = 1.0 - mask
        y = mask * x + free * (x * torch.exp(s) + t)

        return y, (free * s).flatten(1).sum(1)

    def inverse(self, y: Tensor, mask: Tensor) -> Tensor:
        """Invert :meth:`forward` for the same mask; ``m * y == m * x``, so the conditioner gets the same input."""
        s, t = self._scale_shift(y * mask, mask)
        free = 1.0 - mask
        return mask * y + free * ((y - t) * torch.exp(-s))


class ActNorm(nn.Module):
    """Per-channel affine map ``y = (x + bias) * exp(log_scale)``, initialised from the first training batch.

    The first forward pass in training mode sets ``bias`` and ``log_scale`` so
    the batch has zero mean and unit variance per channel. The ``initialized``
    buffer is saved with the weights, so a loaded model is not re-initialised.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std))
        self.initialized.fill_(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``x`` ``(B, C, H, W)`` to ``(y, log_det)``."""
        if self.training and not bool(self.initialized) and x.shape[0] > 1:
            self._initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        log_det = self.log_scale.sum() * x.shape[2] * x.shape[3]

        return y, log_det.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        """Invert :meth:`forward`."""
        return y * torch.exp(-self.log_scale) - self.bias


def squeeze(x: Tensor) -> Tensor:
    """Move each 2x2 block of pixels into channels: ``(B, C, H, W) -> (B, 4C, H/2, W/2)``; volume-preserving."""
    return F.pixel_unshuffle(x, 2)


def unsqueeze(x: Tensor) -> Tensor:
    """Invert :func:`squeeze`."""
    return F.pixel_shuffle(x, 2)
