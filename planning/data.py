"""Training data of the world model: collected episodes encoded once by the frozen encoder.

Codes of every frame are computed once and cached in the run folder
(``codes.safetensors``), keyed by the encoder fingerprint and the manifests of
the collections, so resuming or re-running training never encodes again. Windows of
``history + rollout`` consecutive frames are then cut from the cached codes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowjepa.checkpoint import load_state, save_state
from flowjepa.errors import InvalidInputError

logger = logging.getLogger(__name__)

CODE_CACHE_FILE = "codes.safetensors"
ENCODE_BATCH = 64


@dataclass
class EncodedSplit:
    """Codes and actions of the episodes of one split."""

    codes: list[Tensor]
    """Per episode, the raw codes of its frames, ``(T_i + 1, D)`` float32."""
    actions: list[Tensor]
    """Per episode, the relaxed actions, ``(T_i, A)`` float32; action t leads from frame t to t + 1."""


@dataclass
class EncodedDataset:
    """A collection folder encoded by one encoder."""

    train: EncodedSplit
    val: EncodedSplit
    manifest: dict[str, Any]


def mirror_split(split: EncodedSplit, signs: Tensor) -> EncodedSplit:
    """Return the episodes of ``split`` followed by their mirror images.

    A mirrored episode multiplies every code by ``signs`` ``(D,)`` and negates
    every action: the same episode as seen in a left-right reflected world. Use
    it only where the environment declares that symmetry (``EnvSpec.mirrored``).
    """
    mirrored_codes = [codes * signs.to(codes.dtype) for codes in split.codes]
    mirrored_actions = [-actions for actions in split.actions]
    return EncodedSplit(split.codes + mirrored_codes, split.actions + mirrored_actions)


def manifest_signature(manifest: dict[str, Any]) -> str:
    """Return a SHA-256 prefix of the manifest, which lists every episode shard and its options."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:16]


FeatureFunction = Callable[[Tensor], Tensor]
"""Function from uint8 images ``(B, 3, S, S)`` on the encoder's device to features ``(B, ...)``."""


@torch.no_grad()
def encode_frames(encoder: Any, frames: np.ndarray, features: FeatureFunction | None = None) -> Tensor:
    """Return the features ``(T, ...)`` of uint8 frames ``(T, S, S, 3)``, on the CPU, in batches of 64.

    ``features`` defaults to the encoder's semantic code ``encoder.embed``, giving ``(T, D)`` float32.
    """
    features = features or encoder.embed
    outputs = []
    for start in range(0, len(frames), ENCODE_BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + ENCODE_BATCH])).permute(0, 3, 1, 2)
        outputs.append(features(batch.to(encoder.device)).cpu())
    return torch.cat(outputs)


# Manifest fields that must agree between the folders of one training set.
_SHARED_FIELDS = ("env", "size", "action_repeat", "dt", "action_space")


def data_folders(data: str | Path | list[str] | list[Path]) -> list[Path]:
    """Return the collection folders of a ``data`` option: one folder, or a list of folders."""
    folders = [Path(data)] if isinstance(data, (str, Path)) else [Path(folder) for folder in data]
    if not folders:
        raise InvalidInputError("no --data folder given; pass at least one folder written by `flowjepa collect`")
    seen: dict[Path, Path] = {}
    for folder in folders:
        resolved = folder.resolve()
        if resolved in seen:
            raise InvalidInputError(
                f"--data {folder} is given twice (also as {seen[resolved]}), which would count its episodes twice; "
                "pass each collection folder once"
            )
        seen[resolved] = folder
    return folders


def read_manifests(folders: list[Path]) -> list[dict[str, Any]]:
    """Read the manifest of each folder and check that the folders can be trained on together."""
    from envs.shards import read_manifest

    manifests = [read_manifest(folder) for folder in folders]
    first = manifests[0]
    for folder, manifest in zip(folders[1:], manifests[1:]):
        for field in _SHARED_FIELDS:
            if manifest.get(field) != first.get(field):
                raise InvalidInputError(
                    f"--data folders {folders[0]} and {folder} differ in {field} ({first.get(field)!r} vs "
                    f"{manifest.get(field)!r}); combine only collections of the same env, frame size and action repeat"
                )
    return manifests


def encode_dataset(
    encoder: Any,
    data: str | Path | list[str] | list[Path],
    run_dir: str | Path,
    fingerprint: str,
    val_fraction: float,
    on_episode: Callable[[int, int], None] | None = None,
    features: FeatureFunction | None = None,
) -> EncodedDataset:
    """Encode the train and validation episodes of one or more collection folders, reusing the cache in ``run_dir``.

    With several folders, each one is split by ``val_fraction`` on its own and the splits are
    concatenated, so every folder contributes validation episodes. ``on_episode(done, total)``
    reports encoding progress. ``features`` replaces the encoder's code (see :func:`encode_frames`);
    ``fingerprint`` must then identify it too, because it keys the cache.
    """
    from envs.dataset import relaxed_actions

    folders = data_folders(data)
    manifests = read_manifests(folders)
    manifest = manifests[0]
    signature = manifest_signature(manifest if len(manifests) == 1 else {"folders": manifests})
    cache_path = Path(run_dir) / CODE_CACHE_FILE
    if cache_path.is_file():
        cached = load_state(cache_path)
        if (
            cached.get("encoder") == fingerprint
            and cached.get("data") == signature
            and cached.get("val_fraction") == val_fraction
        ):
            logger.info("using the cached codes in %s", cache_path)
            return EncodedDataset(
                EncodedSplit(cached["train_codes"], cached["train_actions"]),
                EncodedSplit(cached["val_codes"], cached["val_actions"]),
                manifest,
            )
        logger.info("the code cache %s belongs to another encoder or data set; encoding again", cache_path)

    splits_by_name = load_split_episodes(encoder, folders, manifest, val_fraction)
    total = sum(len(episodes) for episodes in splits_by_name.values())
    splits = []
    done = 0
    for episodes in splits_by_name.values():
        codes, actions = [], []
        for episode in episodes:
            codes.append(encode_frames(encoder, episode.frames, features).float())
            actions.append(torch.from_numpy(np.array(relaxed_actions(episode, manifest), dtype=np.float32)))
            done += 1
            if on_episode is not None:
                on_episode(done, total)
        splits.append(EncodedSplit(codes, actions))

    save_state(
        cache_path,
        {
            "encoder": fingerprint,
            "data": signature,
            "val_fraction": val_fraction,
            "train_codes": splits[0].codes,
            "train_actions": splits[0].actions,
            "val_codes": splits[1].codes,
            "val_actions": splits[1].actions,
        },
    )
    return EncodedDataset(splits[0], splits[1], manifest)


def load_split_episodes(
    encoder: Any, folders: list[Path], manifest: dict[str, Any], val_fraction: float
) -> dict[str, list[Any]]:
    """Return the train and validation episodes of every folder, after checking the frame size against the encoder."""
    from envs.dataset import load_episodes

    if manifest.get("size") != encoder.config.image_size:
        raise InvalidInputError(
            f"{folders[0]} contains {manifest.get('size')} px frames but the encoder takes "
            f"{encoder.config.image_size} px; collect with --size {encoder.config.image_size}"
        )
    splits: dict[str, list[Any]] = {"train": [], "val": []}
    for folder in folders:
        for split in splits:
            splits[split].extend(load_episodes(folder, split, val_fraction)[1])
    return splits


class WindowSampler:
    """Cut windows of ``history`` context codes, ``rollout`` actions and ``rollout`` target codes from episodes.

    A window starting at frame s of an episode contains codes s .. s+k-1 as the
    context, actions s+k-1 .. s+k+H-2 and target codes s+k .. s+k+H-1 (k =
    ``history``, H = ``rollout``). Episodes too short for one window are skipped.
    """

    def __init__(self, split: EncodedSplit, history: int, rollout: int) -> None:
        self.history = history
        self.rollout = rollout
        length = history + rollout
        codes, actions, starts = [], [], []
        offset = 0
        for episode_codes, episode_actions in zip(split.codes, split.actions):
            frames = episode_codes.shape[0]
            # Pad actions to one row per frame so one global index addresses both arrays.
            padded = torch.cat([episode_actions, episode_actions.new_zeros(1, episode_actions.shape[1])])
            codes.append(episode_codes)
            actions.append(padded)
            starts.extend(range(offset, offset + frames - length + 1))
            offset += frames
        if not starts:
            longest = max((codes_.shape[0] for codes_ in split.codes), default=0)
            raise InvalidInputError(
                f"no episode has {length} frames (history {history} + rollout {rollout}); the longest has "
                f"{longest}: lower --history or --rollout, or collect longer episodes"
            )
        self.codes = torch.cat(codes)
        self.actions = torch.cat(actions)
        self.starts = torch.tensor(starts, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.starts.numel())

    def windows(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return context ``(B, k, D)``, actions ``(B, H, A)`` and targets ``(B, H, D)`` of windows ``indices``."""
        starts = self.starts[indices]
        context = self.codes[starts[:, None] + torch.arange(self.history)]
        steps = starts[:, None] + self.history - 1 + torch.arange(self.rollout)
        return context, self.actions[steps], self.codes[steps + 1]
