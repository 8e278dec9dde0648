"""Flow-JEPA: a bijective image encoder with a linearly readable latent.

After "Flow JEPA: Experiments in Bijective Isometry" (A. Hibble). The pieces:

    x (uint8) --dequantise, logit--> y --augment with u ~ q(u|y)--> [y, u]
      --masked affine couplings--> z --linear VAE encoder--> h = W z + b(c)
                                   z --projection head--> z_inv

``encode``/``decode`` use the frozen mask sequence and the posterior mean of
``u``, so ``x -> z`` is one deterministic bijection onto its image and
``decode(encode(x))`` returns ``x`` exactly (bit-exact on uint8 images).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from flowjepa.augment import VariationalAugmentation
from flowjepa.checkpoint import atomic_write_json, load_module_weights, load_weights, read_json, save_weights
from flowjepa.config import FlowJEPAConfig
from flowjepa.errors import InvalidInputError
from flowjepa.flow import MaskedCouplingFlow
from flowjepa.preprocess import LogitTransform, bin_centres, bits_per_dim, dequantize, quantize, validate_images
from flowjepa.prior import LinearVAEPrior
from flowjepa.probe import LinearProbe
from flowjepa.projector import Projector

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

MaskChoice = Literal["frozen", "mean", "logmeanexp"]


class FlowJEPA(nn.Module):
    """The Flow-JEPA encoder, its density model and its projection head.

    Args:
        config: the architecture; see :class:`FlowJEPAConfig`.
    """

    def __init__(self, config: FlowJEPAConfig) -> None:
        super().__init__()
        self.config = config
        self.logit = LogitTransform(config.logit_alpha)
        self.augmentation = VariationalAugmentation(config.channels, config.aug_channels, config.aug_hidden_channels)
        self.flow = MaskedCouplingFlow(config)
        self.prior = LinearVAEPrior(config)
        self.projector = Projector(config)

        feature_dims = {"code": config.code_dim, "proj": config.projector_dim}
        self.probes = nn.ModuleDict()
        for feature, dim in feature_dims.items():
            if config.num_probe_classes > 0:
                self.probes[f"{feature}_class"] = LinearProbe(dim, num_classes=config.num_probe_classes)
            if config.probe_state_dim > 0:
                self.probes[f"{feature}_state"] = LinearProbe(dim, state_dim=config.probe_state_dim)

    # ------------------------------------------------------------------ helpers

    @property
    def code_dim(self) -> int:
        """Dimension of the semantic code ``h`` returned by :meth:`embed`."""
        return self.config.code_dim

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.flow.frozen_mask_0_0.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the weights."""
        return self.prior.encoder_log_std.dtype

    def check_images(self, x: Tensor, name: str = "x") -> Tensor:
        """Validate an image batch (see :func:`validate_images`) and move it to the model's device."""
        validate_images(x, self.config.channels, self.config.image_size, name)
        return x.to(self.device)

    def to_unit_cube(self, x: Tensor, generator: torch.Generator | None = None, noise: bool = False) -> Tensor:
        """Map validated images to the unit cube: uint8 by bin centre (or uniform noise), floats as they are."""
        if x.dtype == torch.uint8:
            if noise:
                return dequantize(x, generator).to(self.dtype)
            return bin_centres(x, self.dtype)
        return x.to(self.dtype)

    def lift(
        self, x_unit: Tensor, sample: bool, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Map unit-cube images to the flow input ``[y, u]``.

        Returns ``(v (B, C + C_aug, H, W), log_det_logit (B,), log_q_u (B,))``.
        """
        y, log_det = self.logit(x_unit)
        v, log_q = self.augmentation(y, sample=sample, generator=generator)
        return v, log_det, log_q

    # ------------------------------------------------------------ bijection

    def encode(self, x: Tensor) -> Tensor:
        """Map images ``(B, C, S, S)`` (uint8, or float in [0, 1]) to the latent ``z`` ``(B, *latent_shape)``.

        Uses the frozen masks and the posterior mean of the augmentation, so the
        map is deterministic; it is differentiable with respect to a float input.
        """
        x = self.check_images(x)
        v, _, _ = self.lift(self.to_unit_cube(x), sample=False)
        z, _, _ = self.flow(v, frozen=True)
        return z

    def decode(self, z: Tensor, quantize_output: bool = False) -> Tensor:
        """Invert :meth:`encode`: ``z`` ``(B, *latent_shape)`` to images in [0, 1] ``(B, C, S, S)``.

        The augmentation channels are dropped. With ``quantize_output=True`` the
        result is uint8, equal to the encoded uint8 image.
        """
        self._check_latent(z)
        v = self.flow.inverse(z.to(self.device), frozen=True)
        x = self.logit.inverse(v[:, : self.config.channels])
        return quantize(x) if quantize_output else x.clamp(0.0, 1.0)

    def _check_latent(self, z: Tensor) -> None:
        expected = self.config.latent_shape
        if not isinstance(z, Tensor) or z.ndim != 4 or tuple(z.shape[1:]) != expected:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z)
            raise InvalidInputError(f"latent z must have shape (B, {', '.join(map(str, expected))}), got {shape}")
        if not torch.isfinite(z).all():
            raise InvalidInputError("latent z contains NaN or infinite values")

    # ------------------------------------------------------------- semantics

    def code(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """Return the linear code ``W z + b(c)`` ``(B, code_dim)`` of latents ``z``."""
        mean, _ = self.prior.encode(z, condition)
        return mean

    def embed(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """Return the semantic code ``h = W f(x) + b(c)`` ``(B, code_dim)`` of images."""
        return self.code(self.encode(x), condition)

    def project(self, z: Tensor) -> Tensor:
        """Return the projector output ``z_inv`` ``(B, projector_dim)``."""
        return self.projector(z)

    def code_to_latent(self, h: Tensor, condition: Tensor | None = None) -> Tensor:
        """Map a code ``h`` ``(B, code_dim)`` to the VAE decoder's mean latent ``z``."""
        if h.ndim != 2 or h.shape[1] != self.code_dim:
            raise InvalidInputError(f"code h must have shape (B, {self.code_dim}), got {tuple(h.shape)}")
        mean, _ = self.prior.decode(h.to(self.device), condition)
        return mean

    def decode_code(self, h: Tensor, condition: Tensor | None = None) -> Tensor:
        """Render a code as images: ``h -> VAE decoder mean z -> f^-1(z)``, in [0, 1] ``(B, C, S, S)``."""
        return self.decode(self.code_to_latent(h, condition))

    # --------------------------------------------------------------- density

    def log_density(
        self,
        x: Tensor,
        condition: Tensor | None = None,
        masks: list[Tensor] | None = None,
        frozen: bool | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Lower bound on ``log p(x_cont)`` of dequantised images, in nats per image.

        Returns ``(log_density (B,), z (B, *latent_shape))``. ``num_samples = 1``
        gives the ELBO of the prior, more samples an importance-weighted estimate.
        """
        x = self.check_images(x)
        x_unit = self.to_unit_cube(x, generator, noise=x.dtype == torch.uint8)
        v, log_det_logit, log_q = self.lift(x_unit, sample=True, generator=generator)
        z, log_det_flow, _ = self.flow(v, masks=masks, generator=generator, frozen=frozen)
        if num_samples == 1:
            log_p_z = self.prior.elbo(z, condition, generator)
        else:
            log_p_z = self.prior.log_prob(z, condition, num_samples, generator)
        return log_p_z + log_det_flow + log_det_logit - log_q, z

    @torch.no_grad()
    def log_prob(
        self,
        x: Tensor,
        condition: Tensor | None = None,
        masks: MaskChoice = "frozen",
        num_masks: int = 8,
        num_samples: int = 16,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Estimate ``log P(x)`` of uint8 images in nats, ``(B,)``; a lower bound up to Monte Carlo noise.

        With random masks the model is a mixture over masks, so three values are offered:

        - ``"frozen"``: the density of the single frozen-mask flow (what encode/decode use);
        - ``"mean"``: the mean over ``num_masks`` random mask draws (a lower bound on the mixture by Jensen);
        - ``"logmeanexp"``: the log of the mean density over ``num_masks`` draws (a Monte Carlo estimate of
          the mixture's log-density).

        ``num_samples`` importance samples estimate the VAE prior's ``log p(z)``.
        """
        if masks not in ("frozen", "mean", "logmeanexp"):
            raise InvalidInputError(f"masks must be 'frozen', 'mean' or 'logmeanexp', got {masks!r}")
        if num_masks < 1 or num_samples < 1:
            raise InvalidInputError(f"num_masks and num_samples must be >= 1, got {num_masks} and {num_samples}")
        if masks == "frozen":
            log_density, _ = self.log_density(x, condition, frozen=True, num_samples=num_samples, generator=generator)
        else:
            draws = torch.stack(
                [
                    self.log_density(x, condition, frozen=False, num_samples=num_samples, generator=generator)[0]
                    for _ in range(num_masks)
                ]
            )
            log_density = draws.mean(0) if masks == "mean" else torch.logsumexp(draws, 0) - math.log(num_masks)
        return log_density - self.config.num_dims * math.log(256)

    @torch.no_grad()
    def bits_per_dim(self, x: Tensor, **kwargs) -> Tensor:
        """Bits per sub-pixel of uint8 images ``(B,)``; takes the options of :meth:`log_prob`."""
        log_p = self.log_prob(x, **kwargs)
        return bits_per_dim(log_p + self.config.num_dims * math.log(256), self.config.num_dims)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        condition: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``n`` uint8 images ``(n, C, S, S)``: ``h ~ N(0, I)``, ``z ~ p(z | h)``, ``x = f^-1(z)``."""
        if n < 1:
            raise InvalidInputError(f"number of samples must be >= 1, got {n}")
        z = self.prior.sample(n, condition, temperature, generator)
        return self.decode(z, quantize_output=True)

    # ----------------------------------------------------------------- files

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(directory / WEIGHTS_FILE, self.state_dict())
        atomic_write_json(directory / CONFIG_FILE, {"model": "FlowJEPA", "config": self.config.to_dict()})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> FlowJEPA:
        """Load a model written by :meth:`save_pretrained` (safetensors and JSON only; nothing is unpickled)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise InvalidInputError(
                f"model folder not found: {directory}; expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE} "
                "written by FlowJEPA.save_pretrained or `flowjepa pretrain`"
            )
        stored = read_json(directory / CONFIG_FILE, "model config")
        if not isinstance(stored, dict) or stored.get("model") != "FlowJEPA" or "config" not in stored:
            raise InvalidInputError(f"{directory / CONFIG_FILE} is not a FlowJEPA config (no 'model': 'FlowJEPA')")
        config = FlowJEPAConfig.from_dict(stored["config"], source=str(directory / CONFIG_FILE))
        model = cls(config)
        load_module_weights(model, load_weights(directory / WEIGHTS_FILE), str(directory / WEIGHTS_FILE))
        return model.to(device).eval()
