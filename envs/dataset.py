"""PyTorch datasets over a folder written by :func:`envs.collect.collect`.

Split rule: episodes are ordered by index, and the last
``max(1, round(n * val_fraction))`` of the ``n`` episodes form the validation
split. The validation split is empty when ``val_fraction`` is 0 or there is a
single episode. The rest form the training split, so no episode is cut.

Both datasets hold every selected episode in memory (a 64 px frame is
12 KiB, so 10,000 frames take about 120 MiB).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from envs.base import discrete_to_relaxed
from envs.shards import Episode, read_manifest, read_shard, require_episodes
from flowjepa.errors import InvalidInputError

SPLITS = ("train", "val", "all")


def select_episodes(manifest: dict[str, Any], split: str, val_fraction: float) -> list[dict[str, Any]]:
    """Return the manifest entries of ``split`` under the rule in the module docstring."""
    if split not in SPLITS:
        raise InvalidInputError(f"split={split!r} is invalid; pass one of {', '.join(SPLITS)}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
        raise InvalidInputError(f"val_fraction={val_fraction!r} is invalid; pass a number in [0, 1)")

    entries = sorted(manifest["episodes"], key=lambda entry: entry["index"])
    count = len(entries)
    val_count = 0 if val_fraction == 0 or count < 2 else min(count - 1, max(1, round(count * val_fraction)))
    if split == "all":
        return entries
    if split == "train":
        return entries[: count - val_count]
    if val_count == 0:
        raise InvalidInputError(
            f"the validation split is empty ({count} episode(s), val_fraction={val_fraction}); "
            "collect at least 2 episodes and pass val_fraction > 0"
        )
    return entries[count - val_count :]


def load_episodes(
    root: str | Path, split: str = "all", val_fraction: float = 0.1
) -> tuple[dict[str, Any], list[Episode]]:
    """Read the manifest and the verified episodes of ``split`` from a collection folder."""
    root = Path(root)
    manifest = read_manifest(root)
    require_episodes(root, manifest)
    entries = select_episodes(manifest, split, val_fraction)
    return manifest, [read_shard(root, entry, manifest) for entry in entries]


def relaxed_actions(episode: Episode, manifest: dict[str, Any]) -> np.ndarray:
    """Return an episode's actions as float32 ``(T, A)``; discrete 0/1 become -1.0/+1.0 (see ``to_env_action``)."""
    if manifest["action_space"]["type"] == "discrete":
        return discrete_to_relaxed(episode.actions)
    return episode.actions.reshape(episode.length, -1).astype(np.float32, copy=False)


class FrameDataset(Dataset):
    """Every frame of a collection folder, with its physical state.

    Items are ``(frame, state)``: ``frame`` uint8 ``(3, H, W)`` passed through
    ``transform`` when given, ``state`` float32 ``(S,)`` laid out as
    ``state_names``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        transform: Callable[[torch.Tensor], Any] | None = None,
        split: str = "all",
        val_fraction: float = 0.1,
    ) -> None:
        manifest, episodes = load_episodes(root, split, val_fraction)
        self.root = Path(root)
        self.manifest = manifest
        self.env: str = manifest["env"]
        self.size: int = manifest["size"]
        self.state_names: tuple[str, ...] = tuple(manifest["state_names"])
        self.transform = transform
        self.frames = np.concatenate([episode.frames for episode in episodes])
        self.states = np.concatenate([episode.states for episode in episodes]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        frame = torch.from_numpy(self.frames[index]).permute(2, 0, 1).contiguous()
        if self.transform is not None:
            frame = self.transform(frame)
        return frame, torch.from_numpy(self.states[index])


class SequenceDataset(Dataset):
    """Windows of ``k`` context frames followed by ``horizon`` future steps, with the actions between them.

    Every window lies inside one episode; episodes shorter than
    ``k + horizon`` frames contribute none. An item is a dict with
    ``frames`` uint8 ``(k+horizon, 3, H, W)``, ``actions`` float32
    ``(k+horizon-1, A)`` where action ``t`` leads from frame ``t`` to frame
    ``t+1`` (discrete actions as -1.0/+1.0, the inverse of
    ``env.to_env_action``), ``states`` float32 ``(k+horizon, S)`` and
    ``rewards`` float32 ``(k+horizon-1,)``.
    """

    def __init__(
        self,
        root: str | Path,
        k: int,
        horizon: int,
        *,
        split: str = "all",
        val_fraction: float = 0.1,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k={k!r} is invalid; pass the number of context frames, an integer >= 1")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
            raise InvalidInputError(f"horizon={horizon!r} is invalid; pass an integer >= 0")
        manifest, episodes = load_episodes(root, split, val_fraction)
        self.root = Path(root)
        self.manifest = manifest
        self.env: str = manifest["env"]
        self.size: int = manifest["size"]
        self.dt: float = manifest["dt"]
        self.state_names: tuple[str, ...] = tuple(manifest["state_names"])
        self.k = k
        self.horizon = horizon
        self.window = k + horizon

        self._frames = [episode.frames for episode in episodes]
        self._actions = [relaxed_actions(episode, manifest) for episode in episodes]
        self._states = [episode.states.astype(np.float32) for episode in episodes]
        self._rewards = [episode.rewards for episode in episodes]
        self._windows = [
            (episode_index, start)
            for episode_index, episode in enumerate(episodes)
            for start in range(episode.length + 2 - self.window)
        ]
        if not self._windows:
            longest = max(episode.length + 1 for episode in episodes)
            raise InvalidInputError(
                f"no episode in split {split!r} of {root} has {self.window} frames (k={k} + horizon={horizon}); "
                f"the longest has {longest}: lower k or horizon, or collect with more --steps"
            )

    def __len__(self) -> int:
        return len(self._windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        episode_index, start = self._windows[index]
        stop = start + self.window
        frames = torch.from_numpy(self._frames[episode_index][start:stop]).permute(0, 3, 1, 2).contiguous()
        return {
            "frames": frames,
            "actions": torch.from_numpy(np.ascontiguousarray(self._actions[episode_index][start : stop - 1])),
            "states": torch.from_numpy(np.ascontiguousarray(self._states[episode_index][start:stop])),
            "rewards": torch.from_numpy(np.ascontiguousarray(self._rewards[episode_index][start : stop - 1])),
        }
