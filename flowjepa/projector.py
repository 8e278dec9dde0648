"""Projection head and the multi-view invariance loss.

Only the projector output ``z_inv`` is asked to be invariant to augmentations;
the flow latent ``z`` stays a lossless code of the image.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from flowjepa.config import FlowJEPAConfig


class Projector(nn.Module):
    """MLP head ``z (B, C, H, W) -> z_inv (B, projector_dim)``.

    A 1x1 convolution first reduces the channels of ``z`` (a per-position linear
    map, so the head stays an MLP over ``z``) to keep the first dense layer small.
    """

    def __init__(self, config: FlowJEPAConfig) -> None:
        super().__init__()
        channels, height, width = config.latent_shape
        self.reduce = nn.Conv2d(channels, config.projector_channels, 1)
        self.mlp = nn.Sequential(
            nn.Linear(config.projector_channels * height * width, config.projector_hidden),
            nn.LayerNorm(config.projector_hidden),
            nn.GELU(),
            nn.Linear(config.projector_hidden, config.projector_hidden),
            nn.LayerNorm(config.projector_hidden),
            nn.GELU(),
            nn.Linear(config.projector_hidden, config.projector_dim),
        )
        nn.init.normal_(self.reduce.weight, std=1.0 / math.sqrt(channels))

    def forward(self, z: Tensor) -> Tensor:
        """Return ``z_inv`` ``(B, projector_dim)``."""
        return self.mlp(self.reduce(z).flatten(1))


def invariance_loss(views: Tensor) -> Tensor:
    """Mean squared distance of each view's embedding to the mean over views.

    Args:
        views: ``(V, B, d)`` embeddings of V views of B images.

    Returns:
        A scalar: the squared distance averaged over views, images and dimensions.
    """
    if views.ndim != 3:
        raise ValueError(f"views must be (V, B, d), got shape {tuple(views.shape)}")
    anchor = views.mean(dim=0, keepdim=True)
    return ((views - anchor) ** 2).mean()
