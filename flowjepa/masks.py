"""Binary coupling masks: stochastic complementary pairs, independent draws, or checkerboards.

A mask ``m`` has one entry per dimension of the tensor a coupling transforms,
``(C, H, W)``; entries equal to 1 pass through unchanged and condition the
update of the entries equal to 0.

- ``complementary``: layer ``2k`` gets ``m ~ Bernoulli(0.5)`` over every
  dimension and layer ``2k + 1`` gets ``1 - m``, so each dimension is updated
  exactly once per pair and no location is tied to a depth.
- ``independent``: every layer draws its own ``Bernoulli(0.5)`` mask (ablation:
  a dimension may stay untouched for several layers).
- ``checkerboard``: the fixed RealNVP-style pattern over ``c + h + w`` parity,
  alternated with its complement (ablation: no randomness).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowjepa.config import MASK_MODES
from flowjepa.errors import InvalidInputError


def checkerboard(shape: tuple[int, int, int], device: torch.device | None = None) -> Tensor:
    """Return the ``(1, C, H, W)`` mask that is 1 where ``c + h + w`` is even."""
    channels, height, width = shape
    c = torch.arange(channels, device=device).view(channels, 1, 1)
    h = torch.arange(height, device=device).view(1, height, 1)
    w = torch.arange(width, device=device).view(1, 1, width)
    return ((c + h + w) % 2 == 0).to(torch.get_default_dtype()).unsqueeze(0)


def draw_masks(
    mode: str,
    num_layers: int,
    shape: tuple[int, int, int],
    batch: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> list[Tensor]:
    """Draw the masks of ``num_layers`` consecutive couplings.

    Args:
        mode: one of ``complementary``, ``independent``, ``checkerboard``.
        num_layers: number of couplings; ``complementary`` needs an even number.
        shape: ``(C, H, W)`` of the tensor the couplings see.
        batch: leading dimension of each mask (1 shares the mask over a batch).
        generator: source of randomness, so a forward and an inverse pass can share a draw.

    Returns:
        ``num_layers`` float tensors of shape ``(batch, C, H, W)`` with values in {0, 1}.
    """
    if mode not in MASK_MODES:
        raise InvalidInputError(f"unknown mask mode {mode!r}; valid modes: {', '.join(MASK_MODES)}")
    if mode == "complementary" and num_layers % 2 != 0:
        raise InvalidInputError(f"complementary masks need an even number of layers, got {num_layers}")

    if mode == "checkerboard":
        base = checkerboard(shape, device).expand(batch, *shape)
        return [base if layer % 2 == 0 else 1.0 - base for layer in range(num_layers)]

    def bernoulli() -> Tensor:
        return (torch.rand((batch, *shape), generator=generator, device=device) < 0.5).to(torch.get_default_dtype())

    if mode == "independent":
        return [bernoulli() for _ in range(num_layers)]

    masks = []
    for _ in range(num_layers // 2):
        mask = bernoulli()
        masks.extend([mask, 1.0 - mask])
    return masks
