"""The bijective backbone: squeeze levels of ActNorm + masked affine couplings."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowjepa.config import FlowJEPAConfig
from flowjepa.coupling import ActNorm, MaskedAffineCoupling, squeeze, unsqueeze
from flowjepa.masks import draw_masks


class MaskedCouplingFlow(nn.Module):
    """An exact bijection ``v -> z`` from ``(B, C_v, S, S)`` to ``(B, C_v * 4**L, S / 2**L, S / 2**L)``.

    Level ``l`` squeezes, then runs ``2 * pairs_per_level`` couplings. Masks are
    passed explicitly or chosen by mode:

    - in training mode, a fresh draw on every call (per image when
      ``per_sample_masks``), returned so the caller can invert with the same draw;
    - in eval mode, or when ``frozen=True``, the frozen sequence stored in the
      ``frozen_mask_*`` buffers, so the flow is one deterministic bijection that
      survives save/load.
    """

    def __init__(self, config: FlowJEPAConfig) -> None:
        super().__init__()
        self.config = config
        self.layers_per_level = 2 * config.pairs_per_level

        channels, size = config.flow_channels, config.image_size
        self.level_shapes: list[tuple[int, int, int]] = []
        self.actnorms = nn.ModuleList()
        self.couplings = nn.ModuleList()
        for _ in range(config.levels):
            channels, size = channels * 4, size // 2
            self.level_shapes.append((channels, size, size))
            for _ in range(self.layers_per_level):
                self.actnorms.append(ActNorm(channels) if config.actnorm else nn.Identity())
                self.couplings.append(MaskedAffineCoupling(channels, config.hidden_channels, config.log_scale_clamp))

        generator = torch.Generator().manual_seed(config.mask_seed)
        for level, shape in enumerate(self.level_shapes):
            for index, mask in enumerate(draw_masks(config.mask_mode, self.layers_per_level, shape, 1, generator)):
                # Checkerboard layers share one tensor; safetensors rejects shared storage, so copy.
                self.register_buffer(f"frozen_mask_{level}_{index}", mask.clone())

    @property
    def num_layers(self) -> int:
        """Number of couplings in the stack."""
        return len(self.couplings)

    def frozen_masks(self) -> list[Tensor]:
        """Return the stored mask sequence, one ``(1, C, H, W)`` tensor per coupling."""
        return [
            getattr(self, f"frozen_mask_{level}_{index}")
            for level in range(self.config.levels)
            for index in range(self.layers_per_level)
        ]

    def draw_masks(self, batch: int, generator: torch.Generator | None = None) -> list[Tensor]:
        """Draw a fresh training mask sequence for a batch of ``batch`` images."""
        device = self.frozen_mask_0_0.device
        rows = batch if self.config.per_sample_masks else 1
        masks: list[Tensor] = []
        for shape in self.level_shapes:
            drawn = draw_masks(self.config.mask_mode, self.layers_per_level, shape, rows, generator, device)
            masks.extend(mask.to(self.frozen_mask_0_0.dtype) for mask in drawn)
        return masks

    def resolve_masks(
        self, batch: int, masks: list[Tensor] | None, generator: torch.Generator | None, frozen: bool | None
    ) -> list[Tensor]:
        """Return the masks a call will use (see the class docstring for the rule)."""
        if masks is not None:
            if len(masks) != self.num_layers:
                raise ValueError(f"expected {self.num_layers} masks, got {len(masks)}")
            return masks
        use_frozen = (not self.training) if frozen is None else frozen
        return self.frozen_masks() if use_frozen else self.draw_masks(batch, generator)

    def forward(
        self,
        v: Tensor,
        masks: list[Tensor] | None = None,
        generator: torch.Generator | None = None,
        frozen: bool | None = None,
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Map ``v`` to ``(z, log_det (B,), masks used)``."""
        masks = self.resolve_masks(v.shape[0], masks, generator, frozen)
        log_det = v.new_zeros(v.shape[0])

        layer = 0
        for _ in range(self.config.levels):
            v = squeeze(v)
            for _ in range(self.layers_per_level):
                v, ld_norm = self.actnorms[layer](v) if self.config.actnorm else (v, 0.0)
                v, ld_coupling = self.couplings[layer](v, masks[layer])
                log_det = log_det + ld_norm + ld_coupling
                layer += 1

        return v, log_det, masks

    def inverse(
        self,
        z: Tensor,
        masks: list[Tensor] | None = None,
        generator: torch.Generator | None = None,
        frozen: bool | None = None,
    ) -> Tensor:
        """Map ``z`` back to ``v``; pass the ``masks`` returned by :meth:`forward` to invert a training draw."""
        masks = self.resolve_masks(z.shape[0], masks, generator, frozen)

        layer = self.num_layers
        for _ in range(self.config.levels):
            for _ in range(self.layers_per_level):
                layer -= 1
                z = self.couplings[layer].inverse(z, masks[layer])
                if self.config.actnorm:
                    z = self.actnorms[layer].inverse(z)
            z = unsqueeze(z)

        return z
