"""From uint8 pixels to an unbounded continuous space, and the bits/dim accounting.

Pipeline for an image with D = C*H*W sub-pixels:

1. Uniform dequantisation: ``x = (k + e) / 256`` with ``k`` the uint8 value and
   ``e ~ U[0, 1)``, so ``x`` lies in the unit cube. Deterministic encoding uses
   the bin centre ``e = 0.5``.
2. Logit transform: ``y = logit(a + (1 - 2a) x)`` with a small ``a`` that keeps
   ``y`` finite; its log-determinant is added to the likelihood.

A density ``p`` over the unit cube gives ``log P(k) >= E_e[log p(x)] - D log 256``,
so ``bits/dim = 8 - E[log p(x)] / (D ln 2)``: a uniform density scores exactly 8.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowjepa.errors import InvalidInputError

NUM_BINS = 256


def validate_images(x: Tensor, channels: int, size: int, name: str = "x") -> Tensor:
    """Check an image batch and return it unchanged.

    Accepts uint8 ``(B, C, H, W)`` or a floating tensor in [0, 1] of that shape.
    Raises :class:`InvalidInputError` naming the expected and the actual value.
    """
    if not isinstance(x, Tensor):
        raise InvalidInputError(
            f"{name} must be a torch.Tensor of shape (B, {channels}, {size}, {size}), got {type(x)}"
        )
    if x.ndim != 4:
        raise InvalidInputError(
            f"{name} must have shape (B, {channels}, {size}, {size}), got {tuple(x.shape)}; "
            "add a batch dimension with x[None] for a single image, or permute (B, H, W, C) to (B, C, H, W)"
        )
    if x.shape[1] != channels:
        raise InvalidInputError(
            f"{name} must have {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
            "convert greyscale or RGBA images to RGB first"
        )
    if x.shape[2] != size or x.shape[3] != size:
        raise InvalidInputError(
            f"{name} must be {size}x{size} pixels for this model, got {x.shape[2]}x{x.shape[3]}; "
            f"resize the images to {size} px"
        )
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise InvalidInputError(f"{name} must be uint8 in [0, 255] or floating point in [0, 1], got dtype {x.dtype}")
    if not torch.isfinite(x.detach()).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values; pass finite pixel values in [0, 1]")
    low, high = float(x.detach().min()), float(x.detach().max())
    if low < 0.0 or high > 1.0:
        raise InvalidInputError(
            f"{name} is floating point with values in [{low:.4g}, {high:.4g}], expected [0, 1]; "
            "divide uint8 pixels by 255, or pass the uint8 tensor itself"
        )
    return x


def dequantize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Map uint8 pixels to the unit cube with uniform noise inside each bin (training)."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.get_default_dtype())
    return (x.to(noise.dtype) + noise) / NUM_BINS


def bin_centres(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Map uint8 pixels to the centre of their bin in the unit cube (deterministic encoding)."""
    return (x.to(dtype or torch.get_default_dtype()) + 0.5) / NUM_BINS


def quantize(x: Tensor) -> Tensor:
    """Map points of the unit cube back to uint8 bins; the exact inverse of both maps above."""
    return torch.floor(x * NUM_BINS).clamp(0, NUM_BINS - 1).to(torch.uint8)


class LogitTransform(torch.nn.Module):
    """``y = logit(a + (1 - 2a) x)``, a bijection from (0, 1)^D to R^D.

    Args:
        alpha: the margin ``a`` that keeps pixels at 0 or 1 finite (0 gives the plain logit).
    """

    def __init__(self, alpha: float = 1e-3) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise InvalidInputError(f"logit alpha must be in [0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(y, log_det)``: ``x`` and ``y`` are ``(B, *)``, ``log_det`` is ``(B,)`` in nats."""
        p = self.alpha + (1.0 - 2.0 * self.alpha) * x
        y = torch.log(p) - torch.log1p(-p)
        log_det = math.log(1.0 - 2.0 * self.alpha) - torch.log(p) - torch.log1p(-p)

        return y, log_det.flatten(1).sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        """Map ``y`` back to the unit cube."""
        return (torch.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha)


def bits_per_dim(log_density: Tensor, num_dims: int) -> Tensor:
    """Convert a log-density on the unit cube (nats, per image) to bits per sub-pixel of the uint8 image.

    ``log_density`` may be a variational lower bound; the result is then an upper bound on the true bits/dim.
    """
    return (num_dims * math.log(NUM_BINS) - log_density) / (num_dims * math.log(2.0))
