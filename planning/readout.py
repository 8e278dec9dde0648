"""A state read-out head on the frozen flow latent z, as an alternative planning latent to the linear code.

The encoder's linear code ``W z`` keeps the directions of z that matter most for
the density, and a thin part such as the cartpole's pole adds little to it. A
ridge probe reads the pole angle from the full z far better than from the code.
Because the flow is a bijection, z still contains every pixel, so a small
convolutional head on z can read the goal-defining state components precisely.

The head is trained by regression on the physical states that ``flowjepa
collect`` records beside every frame. The world model then predicts windows of
read-outs instead of codes. An angle component is read out as its sine and
cosine, so the wrap at pi is no discontinuity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from flowjepa.errors import InvalidInputError, TrainingDivergedError

EVAL_BATCH = 256
NORMALIZATION_FRAMES = 4096


def readout_names(components: Sequence[str], angular: Sequence[bool]) -> list[str]:
    """Return the names of the read-out dimensions: ``sin(name)`` and ``cos(name)`` for angles, else ``name``."""
    names = []
    for name, is_angle in zip(components, angular):
        names.extend([f"sin({name})", f"cos({name})"] if is_angle else [name])
    return names


def readout_targets(
    states: np.ndarray | Tensor,
    state_names: Sequence[str],
    components: Sequence[str],
    angular: Sequence[bool],
) -> Tensor:
    """Return the regression targets ``(N, R)`` of states ``(N, S)`` laid out as ``state_names``.

    Each component in ``components`` gives one column, or two (sine, cosine) when it is angular.
    """
    missing = [name for name in components if name not in state_names]
    if missing:
        raise InvalidInputError(
            f"read-out components {missing} are not state components of this environment ({', '.join(state_names)})"
        )
    states = torch.as_tensor(np.asarray(states), dtype=torch.float32)
    columns = []
    for name, is_angle in zip(components, angular):
        value = states[:, list(state_names).index(name)]
        columns.extend([torch.sin(value), torch.cos(value)] if is_angle else [value])
    return torch.stack(columns, dim=1)


def mirror_signs(components: Sequence[str], angular: Sequence[bool], mirrored: Sequence[str]) -> Tensor:
    """Return the factor ``(R,)`` (+1 or -1) of each read-out dimension under a left-right reflection.

    A component in ``mirrored`` changes sign, so its read-out is negated, or for
    an angle its sine is negated and its cosine kept. Other components keep
    their value. The layout follows :func:`readout_names`.
    """
    signs = []
    for name, is_angle in zip(components, angular):
        sign = -1.0 if name in mirrored else 1.0
        if is_angle:
            signs.extend([sign, 1.0])
        else:
            signs.append(sign)
    return torch.tensor(signs)


class ReadoutHead(nn.Module):
    """Convolutional regression head from the flow latent ``z`` ``(B, C, H, W)`` to ``(B, R)`` read-outs.

    ``z`` is standardised element-wise with the training mean and std (buffers),
    passed through a 1x1 convolution to ``channels``, a 3x3 convolution, and a
    two-layer MLP on the flattened map. Outputs are in the units of the
    targets (metres, sine and cosine).
    """

    def __init__(self, latent_shape: Sequence[int], out_dim: int, channels: int = 64, hidden: int = 128) -> None:
        super().__init__()
        latent_channels, height, width = (int(value) for value in latent_shape)
        self.register_buffer("z_mean", torch.zeros(latent_channels, height, width))
        self.register_buffer("z_std", torch.ones(latent_channels, height, width))
        self.register_buffer("target_mean", torch.zeros(out_dim))
        self.register_buffer("target_std", torch.ones(out_dim))
        self.net = nn.Sequential(
            nn.Conv2d(latent_channels, channels, 1),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GELU(),
            nn.Flatten(),
            nn.Linear(channels * height * width, hidden),
            nn.GELU(),
            nn.Linear(hidden, out_dim),
        )

    def set_normalization(self, z: Tensor, targets: Tensor) -> None:
        """Store the element-wise mean and std of latents ``(N, C, H, W)`` and of targets ``(N, R)``."""
        self.z_mean.copy_(z.float().mean(dim=0))
        self.z_std.copy_(z.float().std(dim=0).clamp(min=1e-3))
        self.target_mean.copy_(targets.mean(dim=0))
        self.target_std.copy_(targets.std(dim=0).clamp(min=1e-6))

    def standardized(self, z: Tensor) -> Tensor:
        """Return the read-out in units of the training targets' std, ``(B, R)``."""
        return self.net((z.to(self.z_mean.dtype) - self.z_mean) / self.z_std)

    def forward(self, z: Tensor) -> Tensor:
        """Return the read-out ``(B, R)`` in the targets' units."""
        return self.standardized(z) * self.target_std + self.target_mean


@torch.no_grad()
def apply_readout(head: ReadoutHead, z: Tensor) -> Tensor:
    """Return ``head(z)`` for latents ``(N, C, H, W)`` of any dtype, in batches, as float32 on the CPU."""
    device = head.z_mean.device
    return torch.cat([head(z[i : i + EVAL_BATCH].to(device)).float().cpu() for i in range(0, len(z), EVAL_BATCH)])


def train_readout(
    head: ReadoutHead,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    val_every: int = 500,
) -> dict[str, float]:
    """Fit ``head`` by mean squared error in standardised target units; return its final validation RMSE per target.

    ``train`` and ``val`` are ``(z (N, C, H, W), targets (N, R))``. Validation
    RMSE is reported in target units under the keys ``readout_rmse/<index>``.
    ``on_step(step, metrics)`` is called after every step.
    """
    z_train, y_train = train
    if len(z_train) == 0:
        raise InvalidInputError("the read-out head has no training frames; collect more episodes")
    device = head.z_mean.device
    generator = torch.Generator().manual_seed(seed)
    # Statistics from a random subset, so that no episode order biases them.
    subset = torch.randperm(len(z_train), generator=generator)[:NORMALIZATION_FRAMES]
    head.set_normalization(z_train[subset].to(device), y_train.to(device))
    optimizer = torch.optim.Adam(head.net.parameters(), lr=lr)
    metrics: dict[str, float] = {}

    for step in range(1, steps + 1):
        head.train()
        indices = torch.randint(len(z_train), (batch_size,), generator=generator)
        target = (y_train[indices].to(device) - head.target_mean) / head.target_std
        loss = (head.standardized(z_train[indices].to(device)) - target).pow(2).mean()
        if not torch.isfinite(loss.detach()):
            raise TrainingDivergedError(
                f"the read-out head's loss became {float(loss.detach())} at step {step}; check that the "
                "collection's recorded states are finite, or pass train_readout a lower lr"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        metrics = {"readout/train_mse": float(loss.detach())}
        if step % val_every == 0 or step == steps:
            head.eval()
            metrics.update(readout_errors(head, *val))
        if on_step is not None:
            on_step(step, metrics)

    head.eval()
    return {key: value for key, value in metrics.items() if key.startswith("readout_rmse")}


def readout_errors(head: ReadoutHead, z: Tensor, targets: Tensor) -> dict[str, float]:
    """Return the RMSE of each read-out dimension on ``(z, targets)``, in target units."""
    if len(z) == 0:
        return {}
    predicted = apply_readout(head, z)
    rmse = (predicted - targets).pow(2).mean(dim=0).sqrt()
    return {f"readout_rmse/{index}": float(value) for index, value in enumerate(rmse)}
