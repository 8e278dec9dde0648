"""Latent world model on the frozen Flow-JEPA semantic code, and its checkpoint folder.

The state is the window of the last ``history`` (k) codes, because one frame
shows positions but not velocities. Codes are normalised with the per-dimension
mean and std of the training data (stored with the weights), so one unit of a
latent is one training standard deviation. A folder written by
:meth:`LatentWorldModel.save_pretrained` contains ``world_model.safetensors`` and
``config.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowjepa.checkpoint import atomic_write_json, load_module_weights, load_weights, read_json, save_weights
from flowjepa.errors import InvalidInputError
from planning.problem import ActionBounds
from planning.readout import ReadoutHead, readout_names
from planning.transitions import SOLVERS, TRANSITIONS, ODETransition, ResidualTransition

WEIGHTS_FILE = "world_model.safetensors"
LATENTS = ("code", "readout")
CONFIG_FILE = "config.json"


@dataclass
class WorldModelConfig:
    """Architecture of the world model and the encoder and environment it belongs to."""

    code_dim: int
    """Dimension D of the latent the model predicts: the encoder's semantic code, or the read-out."""
    action_dim: int
    """Dimension A of the (relaxed) action."""
    history: int = 3
    """Number k of past codes in the state."""
    transition: str = "ode"
    """Transition network: ``ode`` (neural ODE) or ``residual`` (discrete step)."""
    hidden_dim: int = 256
    """Width of the transition MLP."""
    layers: int = 2
    """Hidden layers of the transition MLP."""
    dt: float = 1.0
    """Integration interval of one environment step, in model time units (the ODE learns its own time scale)."""
    solver: str = "rk4"
    """torchdiffeq method of the ODE: rk4, midpoint, euler (fixed step) or dopri5, bosh3, adaptive_heun."""
    substeps: int = 1
    """Fixed-step solvers take this many steps of ``dt / substeps`` per environment step."""
    max_substeps: int = 64
    """Adaptive solvers never step below ``dt / max_substeps``."""
    rtol: float = 1e-3
    """Relative tolerance of adaptive solvers."""
    atol: float = 1e-4
    """Absolute tolerance of adaptive solvers."""
    action_low: list[float] = field(default_factory=list)
    """Lower action bounds, one per dimension; empty means -1 everywhere."""
    action_high: list[float] = field(default_factory=list)
    """Upper action bounds, one per dimension; empty means 1 everywhere."""
    discrete_actions: bool = False
    """The environment takes integers, so actions are relaxed values in [-1, 1]."""
    env: str = ""
    """Environment the training data came from."""
    env_dt: float = 0.0
    """Seconds of simulated time per environment step (information only)."""
    image_size: int = 0
    """Image side of the encoder, in pixels."""
    encoder_fingerprint: str = ""
    """SHA-256 prefix of the encoder's config and weights, see :func:`encoder_fingerprint`."""
    latent: str = "code"
    """Planning latent: ``code`` (the encoder's linear code) or ``readout`` (a state read-out head on z)."""
    latent_shape: list[int] = field(default_factory=list)
    """Shape ``(C, H, W)`` of the flow latent z that a read-out head takes."""
    readout_components: list[str] = field(default_factory=list)
    """State components the read-out head estimates; angular ones give a sine and a cosine."""
    readout_angular: list[bool] = field(default_factory=list)
    """Whether each read-out component is an angle."""
    readout_channels: int = 64
    """Channels of the read-out head's convolutions."""
    readout_hidden: int = 128
    """Width of the read-out head's MLP."""
    ensemble: int = 1
    """Transition networks trained from different initial weights; planning uses their mean prediction."""

    def __post_init__(self) -> None:
        positive = ("code_dim", "action_dim", "history", "hidden_dim", "layers", "substeps", "max_substeps", "ensemble")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"world model {name} must be a positive integer, got {value!r}")
        if self.transition not in TRANSITIONS:
            raise InvalidInputError(
                f"unknown transition {self.transition!r}; valid transitions: {', '.join(TRANSITIONS)}"
            )
        if self.solver not in SOLVERS:
            raise InvalidInputError(f"unknown ODE solver {self.solver!r}; valid solvers: {', '.join(SOLVERS)}")
        for name in ("dt", "rtol", "atol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise InvalidInputError(f"world model {name} must be a number > 0, got {value!r}")
        if not self.action_low:
            self.action_low = [-1.0] * self.action_dim
        if not self.action_high:
            self.action_high = [1.0] * self.action_dim
        if len(self.action_low) != self.action_dim or len(self.action_high) != self.action_dim:
            raise InvalidInputError(
                f"action bounds must have action_dim={self.action_dim} entries, got low {self.action_low} "
                f"and high {self.action_high}"
            )
        ActionBounds(torch.tensor(self.action_low), torch.tensor(self.action_high))
        if self.latent not in LATENTS:
            raise InvalidInputError(f"unknown world model latent {self.latent!r}; valid latents: {', '.join(LATENTS)}")
        if self.latent == "readout":
            self._check_readout()

    def _check_readout(self) -> None:
        if len(self.latent_shape) != 3 or not all(isinstance(v, int) and v > 0 for v in self.latent_shape):
            raise InvalidInputError(f"a read-out world model needs latent_shape (C, H, W), got {self.latent_shape!r}")
        if not self.readout_components or len(self.readout_angular) != len(self.readout_components):
            raise InvalidInputError(
                f"a read-out world model needs readout_components and one readout_angular flag each, got "
                f"{self.readout_components!r} and {self.readout_angular!r}"
            )
        expected = len(readout_names(self.readout_components, self.readout_angular))
        if self.code_dim != expected:
            raise InvalidInputError(
                f"code_dim={self.code_dim} does not match the {expected} read-out dimensions of "
                f"{self.readout_components}"
            )

    @property
    def readout_names(self) -> list[str]:
        """Names of the latent dimensions of a read-out model, e.g. ``sin(pole_angle)``; empty for codes."""
        if self.latent != "readout":
            return []
        return readout_names(self.readout_components, self.readout_angular)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> WorldModelConfig:
        """Build a config from a dict, rejecting unknown fields by name."""
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"{source} has unknown world model fields {unknown}; valid fields: {', '.join(sorted(known))}"
            )
        try:
            return cls(**values)
        except TypeError as error:
            raise InvalidInputError(f"{source} is not a complete world model config ({error})") from error


def encoder_fingerprint(encoder: nn.Module) -> str:
    """Return a 16-hex-digit SHA-256 prefix of the encoder's config and every tensor of its state dict.

    A world model is only valid for the exact encoder whose codes it was trained
    on, so a different checkpoint of the same architecture gets another fingerprint.
    """
    digest = hashlib.sha256()
    config = getattr(encoder, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class LatentWorldModel(nn.Module):
    """Predict the next normalised code from the last k codes and an action.

    Inputs and outputs of :meth:`step` and :meth:`rollout` are normalised codes;
    :meth:`normalize` and :meth:`denormalize` convert from and to the encoder's codes.
    """

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.code_dim
        self.register_buffer("code_mean", torch.zeros(dim))
        self.register_buffer("code_std", torch.ones(dim))
        members = [self._make_transition(config) for _ in range(config.ensemble)]
        # One member keeps the attribute a single module, so older world model files still load.
        self.transition: nn.Module = members[0] if config.ensemble == 1 else nn.ModuleList(members)
        self.bounds = ActionBounds(torch.tensor(config.action_low), torch.tensor(config.action_high))
        self.readout: ReadoutHead | None = None
        if config.latent == "readout":
            self.readout = ReadoutHead(config.latent_shape, dim, config.readout_channels, config.readout_hidden)

    @staticmethod
    def _make_transition(config: WorldModelConfig) -> nn.Module:
        dim = config.code_dim
        if config.transition == "ode":
            return ODETransition(
                dim,
                config.action_dim,
                config.history,
                config.hidden_dim,
                config.layers,
                config.dt,
                config.solver,
                config.substeps,
                config.max_substeps,
                config.rtol,
                config.atol,
            )
        return ResidualTransition(dim, config.action_dim, config.history, config.hidden_dim, config.layers)

    @property
    def members(self) -> list[nn.Module]:
        """The transition networks of the ensemble (one unless ``config.ensemble > 1``)."""
        return list(self.transition) if isinstance(self.transition, nn.ModuleList) else [self.transition]

    @property
    def decodes_to_pixels(self) -> bool:
        """Whether predicted latents can be rendered: codes decode through the encoder, read-outs do not."""
        return self.readout is None

    def features(self, encoder: nn.Module, images: Tensor) -> Tensor:
        """Return the raw latents ``(B, D)`` of images ``(B, 3, S, S)`` (uint8 or float in [0, 1]).

        That is the encoder's code ``W z``, or the read-out head applied to ``z``.
        The result is on this model's device.
        """
        if self.readout is None:
            return encoder.embed(images).to(self.code_mean.device)
        return self.readout(encoder.encode(images).to(self.code_mean.device))

    def embed(self, encoder: nn.Module, images: Tensor) -> Tensor:
        """Return the normalised latents ``(B, D)`` of images, the inputs of :meth:`step` and :meth:`rollout`."""
        return self.normalize(self.features(encoder, images))

    def set_normalization(self, mean: Tensor, std: Tensor) -> None:
        """Store the per-dimension mean and std ``(D,)`` of the training codes; std is floored at 1e-6."""
        self.code_mean.copy_(mean.to(self.code_mean))
        self.code_std.copy_(std.to(self.code_std).clamp(min=1e-6))

    def normalize(self, codes: Tensor) -> Tensor:
        """Map encoder codes ``(..., D)`` to normalised latents."""
        return (codes - self.code_mean) / self.code_std

    def denormalize(self, latents: Tensor) -> Tensor:
        """Map normalised latents ``(..., D)`` back to encoder codes."""
        return latents * self.code_std + self.code_mean

    def step(self, window: Tensor, actions: Tensor, member: int | None = None) -> Tensor:
        """Return the next latent ``(N, D)`` for a window ``(N, k, D)`` and actions ``(N, A)`` in action units.

        An ensemble predicts the mean of its members' next latents, unless ``member`` picks one.
        """
        unit = self.bounds.to_unit(actions)
        if member is not None:
            return self.members[member](window, unit)
        members = self.members
        if len(members) == 1:
            return members[0](window, unit)
        return torch.stack([transition(window, unit) for transition in members]).mean(dim=0)

    def rollout(
        self, start: Tensor, actions: Tensor, member: int | None = None, offset: Tensor | None = None
    ) -> Tensor:
        """Predict the latent after each action, open loop.

        ``start`` is ``(k, D)`` (shared by every sequence) or ``(N, k, D)``;
        ``actions`` is ``(N, H, A)``. Returns ``(N, H, D)``. An ensemble feeds
        the mean prediction back into the window at every step, so its errors
        average out; ``member`` rolls out one member on its own instead.
        ``offset`` ``(D,)`` is added to every predicted latent before it enters
        the window (the online error correction of :mod:`planning.correction`).
        """
        count, horizon = actions.shape[:2]
        window = start.expand(count, *start.shape[-2:]) if start.ndim == 2 else start
        predictions = []
        for t in range(horizon):
            latent = self.step(window, actions[:, t], member)
            if offset is not None:
                latent = latent + offset
            predictions.append(latent)
            window = torch.cat([window[:, 1:], latent[:, None]], dim=1)
        return torch.stack(predictions, dim=1)

    def check_encoder(self, encoder: nn.Module) -> None:
        """Raise :class:`InvalidInputError` unless ``encoder`` is the one this model was trained on."""
        config = self.config
        code_dim = getattr(encoder, "code_dim", None) or encoder.config.code_dim
        if config.latent == "readout":
            latent_shape = list(encoder.config.latent_shape)
            if latent_shape != list(config.latent_shape):
                raise InvalidInputError(
                    f"the world model's read-out head takes latents of shape {tuple(config.latent_shape)} but the "
                    f"encoder produces {tuple(latent_shape)}; pass the encoder it was trained with"
                )
        elif code_dim != config.code_dim:
            raise InvalidInputError(
                f"the world model expects codes of dimension {config.code_dim} but the encoder produces {code_dim}; "
                "pass the encoder it was trained with, or train a world model for this encoder with "
                "`flowjepa train-world-model`"
            )
        size = encoder.config.image_size
        if config.image_size and size != config.image_size:
            raise InvalidInputError(
                f"the world model was trained on {config.image_size} px frames but the encoder takes {size} px; "
                "pass the encoder it was trained with"
            )
        if config.encoder_fingerprint:
            actual = encoder_fingerprint(encoder)
            if actual != config.encoder_fingerprint:
                raise InvalidInputError(
                    f"the world model was trained on the codes of encoder {config.encoder_fingerprint} but the given "
                    f"encoder is {actual}; pass the same encoder, or retrain with "
                    "`flowjepa train-world-model --encoder <this encoder>`"
                )

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``world_model.safetensors`` and ``config.json`` into ``directory``, atomically each."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(directory / WEIGHTS_FILE, self.state_dict())
        atomic_write_json(directory / CONFIG_FILE, self.config.to_dict())

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> LatentWorldModel:
        """Load a folder written by :meth:`save_pretrained`; missing or mismatched files raise ``InvalidInputError``."""
        directory = Path(directory)
        if not directory.is_dir():
            raise InvalidInputError(
                f"world model folder not found: {directory}; train one with "
                "`flowjepa train-world-model --encoder RUN --data DIR --out DIR`"
            )
        values = read_json(directory / CONFIG_FILE, what="world model config")
        config = WorldModelConfig.from_dict(values, source=str(directory / CONFIG_FILE))
        model = cls(config)
        load_module_weights(model, load_weights(directory / WEIGHTS_FILE), source=str(directory))
        return model.to(device).eval()
