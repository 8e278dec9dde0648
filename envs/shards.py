"""On-disk layout of collected episodes: one compressed ``.npz`` shard per episode plus ``manifest.json``.

A shard contains ``frames`` uint8 ``(T+1, H, W, 3)``, ``actions`` ``(T, A)``
float32 (continuous) or ``(T,)`` int64 (discrete), ``states`` float64
``(T+1, S)`` and ``rewards`` float32 ``(T,)``: frame and state ``t`` are
observed before action ``t``.

Frames are stored in Fortran order (time index fastest); ``np.load`` returns
the same array and :func:`read_shard` makes it C-contiguous again. A pixel's
values over time then lie next to each other, so a static background
compresses even when one frame exceeds zlib's 32 KiB window. On one 250-step
dm_control cartpole episode the 128 px frames shrank 13.5-fold against C
order, and the 64 px frames grew 9% (``python -m bench.bench_envs``).

Shards and the manifest are written through a temporary file and an atomic
rename, and the manifest lists a shard only after the shard is complete. Readers check each shard's byte count and
SHA-256 against the manifest, so a partly written or altered shard is never
read as valid. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowjepa.checkpoint import atomic_write_bytes, atomic_write_json, read_json
from flowjepa.errors import InvalidInputError

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "flowjepa-episodes"
FORMAT_VERSION = 1
SHARD_PATTERN = re.compile(r"^episode_(\d{6})\.npz$")
# Temporary files of atomic_write_bytes: ".<target name>.<random>.tmp".
TEMPORARY_PATTERN = re.compile(r"^\.(episode_\d{6}\.npz|manifest\.json)\..*\.tmp$")

COLLECT_HINT = "create it with `flowjepa collect --env cartpole --episodes 20 --steps 250 --out DIR`"


@dataclass
class Episode:
    """One episode's arrays (shapes in the module docstring)."""

    frames: np.ndarray
    actions: np.ndarray
    states: np.ndarray
    rewards: np.ndarray

    @property
    def length(self) -> int:
        """Number of actions T; the episode has T + 1 frames."""
        return int(self.rewards.shape[0])


def shard_name(index: int) -> str:
    """Return the file name of episode ``index``."""
    return f"episode_{index:06d}.npz"


def encode_episode(episode: Episode) -> bytes:
    """Serialize an episode as a compressed ``.npz`` archive."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        frames=np.asfortranarray(episode.frames),
        actions=episode.actions,
        states=episode.states,
        rewards=episode.rewards,
    )
    return buffer.getvalue()


def write_shard(root: Path, index: int, episode: Episode, terminated: bool) -> dict[str, Any]:
    """Write episode ``index`` atomically and return its manifest entry (file, length, byte count, SHA-256)."""
    data = encode_episode(episode)
    name = shard_name(index)
    atomic_write_bytes(root / name, data)
    return {
        "index": index,
        "file": name,
        "length": episode.length,
        "terminated": bool(terminated),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically, with episodes sorted by index."""
    manifest["episodes"] = sorted(manifest["episodes"], key=lambda entry: entry["index"])
    manifest["episodes_done"] = len(manifest["episodes"])
    manifest["frames"] = sum(entry["length"] + 1 for entry in manifest["episodes"])
    atomic_write_json(root / MANIFEST_NAME, manifest)


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Read and check the manifest of a collection folder.

    Raises:
        InvalidInputError: the folder or manifest is missing, malformed, or lists no episode.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"episode folder {root} not found; {COLLECT_HINT}")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise InvalidInputError(
            f"{root} has no {MANIFEST_NAME}; an episode folder contains episode_NNNNNN.npz shards "
            f"and {MANIFEST_NAME}: {COLLECT_HINT}"
        )
    manifest = read_json(path, what="episode manifest")
    required = ("format", "format_version", "env", "size", "state_names", "action_space", "episodes")
    missing = [key for key in required if not isinstance(manifest, dict) or key not in manifest]
    if missing or manifest.get("format") != FORMAT_NAME:
        raise InvalidInputError(
            f"{path} is not a flowjepa episode manifest (missing {', '.join(missing) or 'format tag'}); {COLLECT_HINT}"
        )
    if manifest["format_version"] != FORMAT_VERSION:
        raise InvalidInputError(
            f"{path} has format version {manifest['format_version']}, this flowjepa reads version {FORMAT_VERSION}; "
            "collect the data again with this version"
        )
    return manifest


def require_episodes(root: Path, manifest: dict[str, Any]) -> None:
    """Raise ``InvalidInputError`` when the manifest lists no finished episode."""
    if not manifest["episodes"]:
        raise InvalidInputError(f"episode folder {root} has no finished episode yet; {COLLECT_HINT}")


def shard_is_intact(root: Path, entry: dict[str, Any]) -> bool:
    """Return whether the shard file of ``entry`` exists with the byte count and SHA-256 the manifest records."""
    path = root / entry["file"]
    if not path.is_file() or path.stat().st_size != entry["bytes"]:
        return False
    return hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]


def read_shard(root: str | Path, entry: dict[str, Any], manifest: dict[str, Any]) -> Episode:
    """Read and verify one shard listed in ``manifest``.

    Raises:
        InvalidInputError: the file is missing, differs from its checksum, or
            contains arrays of the wrong dtype or shape.
    """
    root = Path(root)
    path = root / entry["file"]
    repair = f"re-run the same `flowjepa collect` command with --out {root} to re-create it"
    if not path.is_file():
        raise InvalidInputError(f"shard {path} listed in {MANIFEST_NAME} is missing; {repair}")
    data = path.read_bytes()
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise InvalidInputError(
            f"shard {path} does not match its checksum in {MANIFEST_NAME} (truncated or altered); {repair}"
        )

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: np.ascontiguousarray(archive[key]) for key in ("frames", "actions", "states", "rewards")}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise InvalidInputError(f"shard {path} is not a valid episode archive ({error}); {repair}") from error

    episode = Episode(**arrays)
    problem = _shape_problem(episode, entry, manifest)
    if problem:
        raise InvalidInputError(f"shard {path} is inconsistent with {MANIFEST_NAME}: {problem}; {repair}")
    return episode


def _shape_problem(episode: Episode, entry: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    length = entry["length"]
    size = manifest["size"]
    state_dim = len(manifest["state_names"])
    discrete = manifest["action_space"]["type"] == "discrete"

    expected = {
        "frames": ((length + 1, size, size, 3), np.uint8),
        "states": ((length + 1, state_dim), np.float64),
        "rewards": ((length,), np.float32),
        "actions": ((length,), np.int64) if discrete else ((length, *manifest["action_space"]["shape"]), np.float32),
    }
    for key, (shape, dtype) in expected.items():
        array = getattr(episode, key)
        if array.shape != shape or array.dtype != dtype:
            return f"{key} is {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}"
    return None
