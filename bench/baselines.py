"""Alternatives users would pick instead of Flow-JEPA: lossless codecs, a fixed-mask flow, a LeJEPA-style encoder.

- PNG and lossless WebP (Pillow) of the same uint8 images give the bits/dim of standard lossless codecs.
- The fixed-mask flow is this project's flow with checkerboard masks, no variational augmentation and
  the coupling width chosen so its density model (flow, augmentation and prior) has the parameter count
  of the Flow-JEPA it is compared with. Trained on bits/dim alone, it is the RealNVP-style
  maximum-likelihood baseline.
- :class:`ConvJEPA` is a non-invertible residual conv encoder with Flow-JEPA's projector, trained with
  LeJEPA's loss (invariance + SIGReg) only. Its width is chosen so the encoder has about the parameter
  count of the Flow-JEPA flow, and its feature map has the shape of the flow latent ``z``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowjepa.config import FlowJEPAConfig
from flowjepa.flow import MaskedCouplingFlow
from flowjepa.model import FlowJEPA
from flowjepa.prior import LinearVAEPrior
from flowjepa.projector import Projector

DENSITY_PARTS = ("flow", "augmentation", "prior")
"""Sub-modules of :class:`FlowJEPA` that define its density (the projector and probes do not)."""


# ------------------------------------------------------------------------------------------ lossless codecs


def codec_bits_per_dim(images: Tensor, codec: str) -> float:
    """Return the mean bits per sub-pixel of uint8 images ``(N, 3, S, S)`` saved losslessly by Pillow.

    ``codec`` is ``PNG`` (with ``optimize=True``) or ``WebP`` (``lossless=True``, ``quality=100``, ``method=6``,
    the slowest and smallest setting). Each image is its own file, headers included.
    """
    from PIL import Image

    total_bytes = 0
    for image in images:
        buffer = io.BytesIO()
        array = image.permute(1, 2, 0).numpy()
        if codec == "PNG":
            Image.fromarray(array).save(buffer, format="PNG", optimize=True)
        elif codec == "WebP":
            Image.fromarray(array).save(buffer, format="WEBP", lossless=True, quality=100, method=6)
        else:
            raise ValueError(f"unknown codec {codec!r}; valid: PNG, WebP")
        total_bytes += buffer.tell()
    return 8.0 * total_bytes / images.numel()


# -------------------------------------------------------------------------------------- parameter counts


def count_parameters(module: nn.Module) -> int:
    """Return the number of parameters of ``module``."""
    return sum(parameter.numel() for parameter in module.parameters())


def density_parameters(model: FlowJEPA) -> int:
    """Return the parameters of the parts of ``model`` that define its density (see :data:`DENSITY_PARTS`)."""
    return sum(count_parameters(getattr(model, part)) for part in DENSITY_PARTS)


def closest_width(count: Callable[[int], int], target: int, low: int, high: int) -> int:
    """Return the width in ``[low, high]`` whose ``count(width)`` is closest to ``target``.

    ``count`` must grow with the width (parameter counts do), so a binary search finds the crossing.
    """
    while low < high:
        middle = (low + high) // 2
        if count(middle) < target:
            low = middle + 1
        else:
            high = middle
    candidates = [width for width in (low - 1, low) if width >= 1]
    return min(candidates, key=lambda width: abs(count(width) - target))


def fixed_mask_config(reference: FlowJEPAConfig) -> FlowJEPAConfig:
    """Return the checkerboard, augmentation-free config whose density parameters best match ``reference``'s.

    Only ``hidden_channels`` (the coupling width) changes, searched over 1 to 8 times the reference width.
    """
    target = density_parameters(FlowJEPA(reference))
    base = reference.to_dict()
    base.update(mask_mode="checkerboard", aug_channels=0)

    def config_of(width: int) -> FlowJEPAConfig:
        return FlowJEPAConfig.from_dict({**base, "hidden_channels": width})

    # The prior's size does not depend on the coupling width, so it is counted once.
    prior = count_parameters(LinearVAEPrior(config_of(1)))

    def count(width: int) -> int:
        return count_parameters(MaskedCouplingFlow(config_of(width))) + prior

    return config_of(closest_width(count, target, 1, 8 * reference.hidden_channels))


# ------------------------------------------------------------------------------------ LeJEPA-style encoder


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(math.gcd(8, channels), channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(math.gcd(8, channels), channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ConvEncoder(nn.Module):
    """Residual conv net from images ``(B, 3, S, S)`` to a feature map of the flow latent's shape.

    Each of the config's ``levels`` halves the resolution with a stride-2 conv (width doubling from
    ``width``) followed by a residual block. A final 1x1 conv sets the channels to those of ``z``.
    """

    def __init__(self, config: FlowJEPAConfig, width: int) -> None:
        super().__init__()
        channels, _, _ = config.latent_shape
        layers: list[nn.Module] = [nn.Conv2d(config.channels, width, 3, padding=1)]
        current = width
        for level in range(config.levels):
            following = width * 2 ** (level + 1)
            layers += [nn.Conv2d(current, following, 3, stride=2, padding=1), _ResidualBlock(following)]
            current = following
        layers += [nn.GroupNorm(math.gcd(8, current), current), nn.SiLU(), nn.Conv2d(current, channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """Map uint8 images (or floats in [0, 1]) to features ``(B, *latent_shape)``."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return self.net(2.0 * x - 1.0)


class ConvJEPA(nn.Module):
    """A :class:`ConvEncoder` with Flow-JEPA's projection head.

    Args:
        config: the Flow-JEPA config whose latent shape and projector this model copies.
        width: channels of the encoder's first level.
    """

    def __init__(self, config: FlowJEPAConfig, width: int) -> None:
        super().__init__()
        self.config = config
        self.width = width
        self.encoder = ConvEncoder(config, width)
        self.projector = Projector(config)

    def features(self, images: Tensor) -> Tensor:
        """Return the flattened feature map ``(B, C*H*W)``, the representation the probes read."""
        return self.encoder(images).flatten(1)

    def project(self, images: Tensor) -> Tensor:
        """Return the projector output ``(B, projector_dim)``."""
        return self.projector(self.encoder(images))

    def describe(self) -> dict[str, Any]:
        """Return the constructor arguments, for storing beside the weights."""
        return {"config": self.config.to_dict(), "width": self.width}


def matched_conv_width(config: FlowJEPAConfig) -> int:
    """Return the first-level width (1 to 128) whose :class:`ConvEncoder` parameter count is closest to the flow's."""
    target = count_parameters(MaskedCouplingFlow(config))
    return closest_width(lambda width: count_parameters(ConvEncoder(config, width)), target, 1, 128)
