"""Configuration of a Flow-JEPA model: one dataclass, validated once, stored as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from flowjepa.errors import InvalidInputError, reject_unknown_fields

MASK_MODES = ("complementary", "independent", "checkerboard")


@dataclass
class FlowJEPAConfig:
    """Architecture of the encoder, prior and projector.

    The flow works on ``channels + aug_channels`` channels. Each of ``levels``
    levels first squeezes 2x2 pixels into channels (so ``image_size`` must be
    divisible by ``2**levels``), then applies ``2 * pairs_per_level`` affine
    couplings, each preceded by ActNorm. The latent ``z`` has shape
    ``(latent_channels, latent_size, latent_size)``.
    """

    image_size: int = 64
    """Side of the square input images, in pixels."""
    channels: int = 3
    """Colour channels of the input images."""
    aug_channels: int = 1
    """Channels of the variational augmentation u ~ q(u|x); 0 turns augmentation off."""
    levels: int = 3
    """Number of squeeze levels; each halves the spatial size and quadruples the channels."""
    pairs_per_level: int = 2
    """Complementary mask pairs (two couplings each) per level."""
    hidden_channels: int = 64
    """Width of the convolutional conditioner of each coupling."""
    aug_hidden_channels: int = 16
    """Width of the small convolutional net of q(u|x)."""
    log_scale_clamp: float = 2.0
    """Soft bound c on the coupling log-scale: s = c * tanh(s_raw / c)."""
    logit_alpha: float = 1e-3
    """Margin a of the logit transform y = logit(a + (1 - 2a) x)."""
    mask_mode: str = "complementary"
    """Masks in training: complementary (fresh Bernoulli(0.5) pairs), independent, or checkerboard (fixed)."""
    per_sample_masks: bool = True
    """Draw a separate training mask for every image of a batch, instead of one per batch."""
    mask_seed: int = 0
    """Seed of the frozen mask sequence used by encode/decode and in eval mode."""
    actnorm: bool = True
    """Insert data-initialised ActNorm before every coupling."""
    code_dim: int = 64
    """Dimension of the VAE code h; the linear encoder maps z to h = W z + b(c)."""
    vae_encoder: str = "linear"
    """VAE encoder mean: linear (the Flow-JEPA design) or mlp (ablation only)."""
    decoder_hidden: int = 256
    """Width of the non-linear VAE decoder p(z | h, c)."""
    decoder_channels: int = 32
    """Channels of the decoder's first spatial map (at the latent's spatial size)."""
    num_conditions: int = 0
    """Number of discrete conditions c (class labels or environment ids); 0 means unconditional."""
    projector_channels: int = 16
    """Channels kept by the projector's first 1x1 convolution on z."""
    projector_hidden: int = 512
    """Hidden width of the projection head MLP."""
    projector_dim: int = 128
    """Output dimension of the projection head (z_inv)."""
    use_projector: bool = True
    """Apply invariance and SIGReg to the projector output; False applies them to the linear code (ablation)."""
    num_probe_classes: int = 0
    """Classes of the online linear probe (0: no classification probe)."""
    probe_state_dim: int = 0
    """Dimension of the physical state regressed by the online probe (0: none)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata stored with the model (data source, environment name, ...)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for values that cannot build a model."""
        positive = {
            "image_size": self.image_size,
            "channels": self.channels,
            "levels": self.levels,
            "pairs_per_level": self.pairs_per_level,
            "hidden_channels": self.hidden_channels,
            "aug_hidden_channels": self.aug_hidden_channels,
            "code_dim": self.code_dim,
            "decoder_hidden": self.decoder_hidden,
            "decoder_channels": self.decoder_channels,
            "projector_channels": self.projector_channels,
            "projector_hidden": self.projector_hidden,
            "projector_dim": self.projector_dim,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"config field {name} must be a positive integer, got {value!r}")
        for name in ("aug_channels", "num_conditions", "num_probe_classes", "probe_state_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InvalidInputError(f"config field {name} must be a non-negative integer, got {value!r}")
        if self.image_size % (2**self.levels) != 0:
            raise InvalidInputError(
                f"image_size {self.image_size} is not divisible by 2**levels = {2**self.levels}; "
                "choose an image size such as 32, 64 or 128, or fewer levels"
            )
        if self.mask_mode not in MASK_MODES:
            raise InvalidInputError(f"unknown mask_mode {self.mask_mode!r}; valid modes: {', '.join(MASK_MODES)}")
        if self.vae_encoder not in ("linear", "mlp"):
            raise InvalidInputError(f"unknown vae_encoder {self.vae_encoder!r}; valid: linear, mlp")
        if not self.log_scale_clamp > 0:
            raise InvalidInputError(f"log_scale_clamp must be positive, got {self.log_scale_clamp}")
        if not 0.0 <= self.logit_alpha < 0.5:
            raise InvalidInputError(f"logit_alpha must be in [0, 0.5), got {self.logit_alpha}")

    @property
    def flow_channels(self) -> int:
        """Channels entering the flow: image plus augmentation."""
        return self.channels + self.aug_channels

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of the latent z of one image."""
        side = self.image_size // 2**self.levels
        return (self.flow_channels * 4**self.levels, side, side)

    @property
    def num_dims(self) -> int:
        """Number of sub-pixels D = C*H*W of one image (bits/dim divides by this)."""
        return self.channels * self.image_size**2

    @classmethod
    def tiny(cls, image_size: int = 16, **overrides: Any) -> FlowJEPAConfig:
        """Return a small model config for tests and smoke runs (a few thousand parameters per layer)."""
        values: dict[str, Any] = dict(
            image_size=image_size,
            levels=2,
            pairs_per_level=1,
            hidden_channels=16,
            aug_hidden_channels=8,
            code_dim=16,
            decoder_hidden=32,
            decoder_channels=8,
            projector_channels=4,
            projector_hidden=32,
            projector_dim=16,
        )
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> FlowJEPAConfig:
        """Build a config from a dict, rejecting unknown fields by name."""
        reject_unknown_fields(values, cls, source)
        return cls(**values)

    def to_json(self) -> str:
        """Return the config as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
