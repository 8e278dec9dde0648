"""Conditional VAE prior over the flow latent, with a strictly linear encoder.

- Encoder ``q(h | z, c) = N(W z + b(c), diag sigma^2)``: the mean is affine in
  ``z`` and the condition only adds a learned offset ``b(c)``. Nothing
  non-linear touches ``z``, so whatever structure the code needs must already
  be linearly readable from ``z``: the flow has to straighten the data manifold.
- Decoder ``p(z | h, c)``: a non-linear Gaussian network, from ``h`` to a mean
  and a log-scale for every dimension of ``z``.
- ``p(h) = N(0, I)``.

``log p(z)`` is bounded by the ELBO and estimated more tightly by importance
weighting with K samples (IWAE, Burda et al., arXiv:1509.00519).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowjepa.config import FlowJEPAConfig

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Log-density of a diagonal Gaussian, summed over all but the first dimension: ``(B, ...) -> (B,)``."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z**2 - log_std - 0.5 * _LOG_2PI).flatten(1).sum(1)


class LinearVAEPrior(nn.Module):
    """The density ``p(z | c)`` of the flow latent ``z`` ``(B, C, H, W)``."""

    def __init__(self, config: FlowJEPAConfig) -> None:
        super().__init__()
        self.latent_shape = config.latent_shape
        self.code_dim = config.code_dim
        self.num_conditions = config.num_conditions
        latent_dim = math.prod(self.latent_shape)

        # Encoder: the mean is W z + b(c); "mlp" exists only for the ablation that breaks linearity.
        if config.vae_encoder == "linear":
            self.encoder = nn.Linear(latent_dim, config.code_dim)
        else:
            self.encoder = nn.Sequential(
                nn.Linear(latent_dim, config.decoder_hidden),
                nn.SiLU(),
                nn.Linear(config.decoder_hidden, config.code_dim),
            )
        nn.init.normal_(self._encoder_linear_layers()[0].weight, std=1.0 / math.sqrt(latent_dim))
        self.encoder_log_std = nn.Parameter(torch.full((config.code_dim,), -1.0))
        if config.num_conditions > 0:
            self.condition_offset = nn.Embedding(config.num_conditions, config.code_dim)
            nn.init.zeros_(self.condition_offset.weight)
            self.condition_embedding = nn.Embedding(config.num_conditions, config.code_dim)

        # Decoder: h -> spatial map at the latent's resolution -> (mean, log_std) of z.
        channels, height, width = self.latent_shape
        self.decoder_channels = config.decoder_channels
        self.decoder_mlp = nn.Sequential(
            nn.Linear(config.code_dim, config.decoder_hidden),
            nn.SiLU(),
            nn.Linear(config.decoder_hidden, config.decoder_channels * height * width),
            nn.SiLU(),
        )
        self.decoder_conv = nn.Sequential(
            nn.Conv2d(config.decoder_channels, config.decoder_channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(config.decoder_channels, 2 * channels, 3, padding=1),
        )

    def _encoder_linear_layers(self) -> list[nn.Linear]:
        return [module for module in self.encoder.modules() if isinstance(module, nn.Linear)]

    def _check_condition(self, condition: Tensor | None, batch: int) -> Tensor | None:
        if self.num_conditions == 0 or condition is None:
            return None
        if condition.shape != (batch,):
            raise ValueError(f"condition must have shape ({batch},), got {tuple(condition.shape)}")
        return condition

    def encode(self, z: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(mean (B, code_dim), log_std (code_dim,))`` of ``q(h | z, c)``."""
        mean = self.encoder(z.flatten(1))
        condition = self._check_condition(condition, z.shape[0])
        if condition is not None:
            mean = mean + self.condition_offset(condition)
        return mean, self.encoder_log_std

    def decode(self, h: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(mean, log_std)`` of ``p(z | h, c)``, each ``(B, C, H, W)``."""
        condition = self._check_condition(condition, h.shape[0])
        if condition is not None:
            h = h + self.condition_embedding(condition)
        channels, height, width = self.latent_shape
        features = self.decoder_mlp(h).view(-1, self.decoder_channels, height, width)
        mean, log_std = self.decoder_conv(features).chunk(2, dim=1)
        return mean, 3.0 * torch.tanh(log_std / 3.0) - 1.0

    def _log_weights(
        self, z: Tensor, condition: Tensor | None, num_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        """Return ``log p(z, h_k) - log q(h_k | z)`` for ``num_samples`` draws, shape ``(num_samples, B)``."""
        mean, log_std = self.encode(z, condition)
        batch = z.shape[0]
        eps = torch.randn((num_samples, batch, self.code_dim), generator=generator, device=z.device, dtype=z.dtype)
        h = mean + torch.exp(log_std) * eps  # (K, B, code_dim)
        h_flat = h.reshape(num_samples * batch, self.code_dim)
        repeated_condition = None if condition is None else condition.repeat(num_samples)

        z_mean, z_log_std = self.decode(h_flat, repeated_condition)
        z_repeated = z.unsqueeze(0).expand(num_samples, *z.shape).reshape(num_samples * batch, *z.shape[1:])
        log_p_z_given_h = gaussian_log_prob(z_repeated, z_mean, z_log_std).view(num_samples, batch)
        log_p_h = (-0.5 * h**2 - 0.5 * _LOG_2PI).sum(-1)
        log_q_h = (-0.5 * eps**2 - log_std - 0.5 * _LOG_2PI).sum(-1)

        return log_p_z_given_h + log_p_h - log_q_h

    def elbo(self, z: Tensor, condition: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """One-sample ELBO of ``log p(z | c)``, shape ``(B,)`` in nats."""
        return self._log_weights(z, condition, 1, generator)[0]

    def log_prob(
        self,
        z: Tensor,
        condition: Tensor | None = None,
        num_samples: int = 16,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Importance-weighted estimate of ``log p(z | c)`` with ``num_samples`` draws, shape ``(B,)``."""
        log_weights = self._log_weights(z, condition, num_samples, generator)
        return torch.logsumexp(log_weights, dim=0) - math.log(num_samples)

    def sample(
        self,
        num: int,
        condition: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``z`` ``(num, C, H, W)``: ``h ~ N(0, T^2 I)``, then ``z ~ p(z | h, c)`` with its scale times ``T``."""
        device = self.encoder_log_std.device
        dtype = self.encoder_log_std.dtype
        h = temperature * torch.randn((num, self.code_dim), generator=generator, device=device, dtype=dtype)
        mean, log_std = self.decode(h, condition)
        noise = torch.randn(mean.shape, generator=generator, device=device, dtype=dtype)
        return mean + temperature * torch.exp(log_std) * noise
