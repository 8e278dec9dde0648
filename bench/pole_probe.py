"""How much of the cartpole state an encoder's code carries: linear (ridge) and small-MLP read-outs.

Usage:
    python -m bench.pole_probe --encoder models/cartpole/encoder --data data/cartpole-noisy

Planning toward an upright goal needs the pole angle in the code that the world model predicts. The
ridge probe measures whether the angle is linearly readable, which is what a goal distance in code
space responds to. The MLP probe measures whether it is there at all, which is what the nonlinear world
model could use. Both are fitted on
the first 80% of the episodes and scored (R²) on the rest. "near upright" keeps frames with
``|angle| < --max-angle`` rad, the regime of the balance-to-goal tasks.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.probes import STATE_TARGET_NAMES, r_squared_per_column, ridge_probe_r2, state_targets
from flowjepa.errors import InvalidInputError

TRAIN_FRACTION = 0.8


def wrapped_angle(angle: Tensor) -> Tensor:
    """Return angles in [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def mlp_probe_r2(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, steps: int, seed: int) -> Tensor:
    """Fit a two-hidden-layer MLP (256 units) with Adam on standardised data; return the test R² per target.

    ``train_x`` is ``(N, D)`` and ``train_y`` ``(N, S)``; the result is ``(S,)``.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_mean, x_std = train_x.mean(0), train_x.std(0) + 1e-6
    y_mean, y_std = train_y.mean(0), train_y.std(0) + 1e-6
    inputs, targets = (train_x - x_mean) / x_std, (train_y - y_mean) / y_std
    network = torch.nn.Sequential(
        torch.nn.Linear(train_x.shape[1], 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, train_y.shape[1]),
    ).double()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(steps):
        batch = torch.randint(0, len(inputs), (min(256, len(inputs)),), generator=generator)
        loss = (network(inputs[batch]) - targets[batch]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        prediction = network((test_x - x_mean) / x_std) * y_std + y_mean
    return r_squared_per_column(prediction, test_y)


def probe_features(
    features: Tensor, states: Tensor, episodes: Tensor, max_angle: float, mlp_steps: int, seed: int = 0
) -> dict[str, dict[str, float] | int]:
    """Score ridge and MLP read-outs of the state from features.

    ``features`` is ``(N, D)``, ``states`` ``(N, 4)`` laid out as (x, angle, x velocity, angular velocity)
    and ``episodes`` ``(N,)`` the episode index of each row, which decides the train/test split.
    """
    features, states = features.double(), states.double()
    cut = int(TRAIN_FRACTION * (int(episodes.max()) + 1))
    train = episodes < cut
    if train.all() or not train.any():
        raise InvalidInputError(
            f"need at least 2 episodes to split into train and test, got {int(episodes.max()) + 1}; pass more episodes"
        )
    targets = state_targets(states)
    all_r2, _ = ridge_probe_r2(features[train], targets[train], episodes[train], features[~train], targets[~train])

    angle = wrapped_angle(states[:, 1])
    near = angle.abs() < max_angle
    near_train, near_test = near & train, near & ~train
    near_r2, _ = ridge_probe_r2(
        features[near_train], targets[near_train], episodes[near_train], features[near_test], targets[near_test]
    )
    mlp_targets = torch.stack([states[:, 0], torch.sin(angle)], dim=1)
    mlp_r2 = mlp_probe_r2(
        features[near_train], mlp_targets[near_train], features[near_test], mlp_targets[near_test], mlp_steps, seed
    )
    return {
        "frames": len(features),
        "near_upright_frames": int(near.sum()),
        "ridge_all": dict(zip(STATE_TARGET_NAMES, all_r2.tolist())),
        "ridge_near_upright": dict(zip(STATE_TARGET_NAMES, near_r2.tolist())),
        "mlp_near_upright": {"cart_position": float(mlp_r2[0]), "sin_angle": float(mlp_r2[1])},
    }


@torch.no_grad()
def encode_collection(encoder, data: Path, episodes: int, stride: int) -> tuple[Tensor, Tensor, Tensor]:
    """Return codes ``(N, D)``, states ``(N, 4)`` and episode indices ``(N,)`` of every ``stride``-th frame."""
    from envs.dataset import load_episodes
    from planning.data import encode_frames

    _, loaded = load_episodes(data)
    codes, states, indices = [], [], []
    for index, episode in enumerate(loaded[:episodes]):
        codes.append(encode_frames(encoder, episode.frames[::stride]))
        states.append(torch.from_numpy(np.asarray(episode.states[::stride], dtype=np.float64)))
        indices.append(torch.full((len(codes[-1]),), index))
    return torch.cat(codes), torch.cat(states), torch.cat(indices)


def main(argv: list[str] | None = None) -> dict:
    """Parse the options, probe the encoder's code and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, default=Path("models/cartpole/encoder"), help="encoder folder")
    parser.add_argument("--data", type=Path, required=True, help="cartpole collection folder (flowjepa collect)")
    parser.add_argument("--episodes", type=int, default=30, help="episodes read from the folder")
    parser.add_argument("--stride", type=int, default=2, help="keep every stride-th frame")
    parser.add_argument("--max-angle", type=float, default=0.4, help="near-upright limit on |angle|, rad")
    parser.add_argument("--mlp-steps", type=int, default=3000, help="Adam steps of the MLP probe")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    for name in ("episodes", "stride", "mlp_steps", "threads"):
        if getattr(args, name) < (2 if name == "episodes" else 1):
            parser.error(f"--{name.replace('_', '-')} must be at least {2 if name == 'episodes' else 1}")
    if not args.max_angle > 0:
        parser.error(f"--max-angle must be a positive angle in rad, got {args.max_angle}")
    torch.set_num_threads(args.threads)

    from planning.loading import load_frozen_encoder

    try:
        encoder = load_frozen_encoder(args.encoder, torch.device("cpu"))
        codes, states, episodes = encode_collection(encoder, args.data, args.episodes, args.stride)
        if states.shape[1] != 4:
            raise InvalidInputError(f"{args.data} is not a cart-pole collection; collect cartpole frames first")
        result = probe_features(codes, states, episodes, args.max_angle, args.mlp_steps)
    except InvalidInputError as error:
        parser.exit(2, f"error: {error}\n")

    print(f"{args.encoder} on {args.data}: {result['frames']} frames, {result['near_upright_frames']} near upright")
    print("| read-out | frames | " + " | ".join(STATE_TARGET_NAMES) + " |")
    print("|---|---|" + "---|" * len(STATE_TARGET_NAMES))
    for name, scope in (("ridge_all", "all"), ("ridge_near_upright", f"upright within {args.max_angle:g} rad")):
        values = " | ".join(f"{result[name][target]:.3f}" for target in STATE_TARGET_NAMES)
        print(f"| ridge | {scope} | {values} |")
    mlp = result["mlp_near_upright"]
    print(f"MLP, |angle| < {args.max_angle:g}: cart_position R² {mlp['cart_position']:.3f}, "
          f"sin(angle) R² {mlp['sin_angle']:.3f}")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
