"""Goal images: render a target physical state or take a collected frame, and store it as a PNG with metadata.

The PNG carries a ``flowjepa`` text chunk holding JSON: ``env``, ``size``
(pixels, the frame is square), ``state`` (list of floats, or null when
unknown), ``state_names`` and ``source`` ("render" or the shard and step it
came from).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from envs.registry import get_spec, make, validate_size
from envs.shards import read_manifest, read_shard, require_episodes
from flowjepa.checkpoint import atomic_write_bytes
from flowjepa.errors import InvalidInputError

METADATA_KEY = "flowjepa"


def goal_state(env_name: str, state: Any = None, **values: float) -> np.ndarray:
    """Build a full physical state of ``env_name`` from a vector or from named values.

    Named values follow the env's ``state_names`` (e.g. ``cart_position=0.5,
    pole_angle=0.0``); every value not given is 0, so velocities default to
    rest. Returns float64 ``(S,)``.
    """
    spec = get_spec(env_name)
    names = spec.state_names
    if state is not None and values:
        raise InvalidInputError("pass either a full state vector or named state values, not both")

    if state is not None:
        try:
            vector = np.asarray(state, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"goal state {state!r} is not a vector of numbers") from error
        if vector.size != len(names):
            raise InvalidInputError(
                f"{env_name}: goal state has {vector.size} values, "
                f"expected {len(names)} laid out as ({', '.join(names)})"
            )
    else:
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise InvalidInputError(
                f"{env_name} has no state value(s) {', '.join(unknown)}; its state is ({', '.join(names)})"
            )
        vector = np.array([float(values.get(name, 0.0)) for name in names], dtype=np.float64)

    if not np.all(np.isfinite(vector)):
        raise InvalidInputError(
            f"{env_name}: goal state {vector.tolist()} contains NaN or infinity; pass finite numbers"
        )
    if spec.cartpole is not None:
        position = float(vector[names.index("cart_position")])
        limit = spec.cartpole.view_range
        if abs(position) > limit:
            raise InvalidInputError(
                f"{env_name}: goal cart_position={position:g} m is outside the camera's view, so the goal image "
                f"would show the cart cut off or not at all; pass a position within +-{limit:g} m"
            )
    return vector


def render_goal(env_name: str, state: Any = None, *, size: int = 64, **values: float) -> np.ndarray:
    """Render the frame, uint8 ``(size, size, 3)``, of the state that :func:`goal_state` builds from the arguments."""
    vector = goal_state(env_name, state, **values)
    with make(env_name, size=validate_size(size), seed=0) as env:
        env.reset()
        return env.set_physical_state(vector)


def frame_from_episode(
    path: str | Path, step: int, episode_index: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return frame ``step`` of a collected episode and its metadata (env, size, state, state_names, source).

    ``path`` is a collection folder (with ``episode_index``, default 0) or
    one of its ``episode_NNNNNN.npz`` shards.
    """
    path = Path(path)
    if path.is_file():
        root, file_name = path.parent, path.name
        if episode_index is not None:
            raise InvalidInputError("pass --episode-index only with a collection folder, not with a shard file")
    else:
        root, file_name = path, None

    manifest = read_manifest(root)
    require_episodes(root, manifest)
    entries = manifest["episodes"]
    if file_name is not None:
        matches = [entry for entry in entries if entry["file"] == file_name]
        if not matches:
            raise InvalidInputError(f"{path} is not listed in {root}/manifest.json; pass a shard that collect finished")
    else:
        requested_index = 0 if episode_index is None else episode_index
        matches = [entry for entry in entries if entry["index"] == requested_index]
        if not matches:
            available = ", ".join(str(entry["index"]) for entry in entries[:10])
            raise InvalidInputError(f"{root} has no finished episode {requested_index}; finished episodes: {available}")
    entry = matches[0]

    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= entry["length"]:
        raise InvalidInputError(
            f"step {step!r} is outside episode {entry['index']} of {root}; pass 0 to {entry['length']} (frame index)"
        )
    episode = read_shard(root, entry, manifest)
    metadata = {
        "env": manifest["env"],
        "size": manifest["size"],
        "state": episode.states[step].copy(),
        "state_names": tuple(manifest["state_names"]),
        "source": f"{root / entry['file']} step {step}",
    }
    return episode.frames[step].copy(), metadata


def save_goal_png(
    path: str | Path,
    frame: np.ndarray,
    env_name: str,
    state: np.ndarray | None,
    state_names: tuple[str, ...] | list[str],
    source: str = "render",
) -> Path:
    """Write ``frame`` (uint8 ``(H, H, 3)``) as a PNG with the goal metadata, atomically; return the path."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] != frame.shape[1]:
        raise InvalidInputError(f"goal frame is {frame.dtype} {frame.shape}; expected uint8 (H, H, 3)")
    state_list = None
    if state is not None:
        state_list = [float(value) for value in np.asarray(state, dtype=np.float64).reshape(-1)]
        if len(state_list) != len(state_names):
            raise InvalidInputError(f"goal state has {len(state_list)} values but {len(state_names)} state names")

    metadata = {
        "env": env_name,
        "size": int(frame.shape[0]),
        "state": state_list,
        "state_names": list(state_names),
        "source": source,
    }
    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, json.dumps(metadata))
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", pnginfo=info)

    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_goal_png(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a goal image and its metadata, without converting its colour mode.

    Returns ``(pixels, metadata)``: ``pixels`` is the array PIL decodes for
    the file's mode (``(H, W, 3)`` uint8 for the PNGs :func:`save_goal_png`
    writes, ``(H, W, 4)`` for RGBA, ``(H, W)`` for greyscale). ``metadata``
    contains ``mode`` (PIL mode), ``width``, ``height``, and ``env``, ``size``,
    ``state`` (float64 array), ``state_names`` and ``source``, each ``None``
    when the file carries no flowjepa metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"goal image not found: {path}; create one with `flowjepa goal --out {path}`")
    try:
        with Image.open(path) as image:
            image.load()
            pixels = np.asarray(image).copy()
            mode = image.mode
            width, height = image.size
            text = dict(getattr(image, "text", {}) or {})
    except (UnidentifiedImageError, OSError) as error:
        raise InvalidInputError(f"goal image {path} cannot be read as an image ({error})") from error

    metadata: dict[str, Any] = {
        "mode": mode,
        "width": width,
        "height": height,
        "env": None,
        "size": None,
        "state": None,
        "state_names": None,
        "source": None,
    }
    raw = text.get(METADATA_KEY)
    if raw is None:
        return pixels, metadata

    try:
        stored = json.loads(raw)
        state = stored.get("state")
        metadata.update(
            env=stored.get("env"),
            size=stored.get("size"),
            state=None if state is None else np.asarray(state, dtype=np.float64),
            state_names=None if stored.get("state_names") is None else tuple(stored["state_names"]),
            source=stored.get("source"),
        )
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as error:
        raise InvalidInputError(
            f"goal image {path} has a malformed '{METADATA_KEY}' metadata chunk ({error}); "
            "re-create it with `flowjepa goal`"
        ) from error
    if metadata["state"] is not None and not all(math.isfinite(value) for value in metadata["state"]):
        raise InvalidInputError(f"goal image {path} stores a non-finite state; re-create it with `flowjepa goal`")
    return pixels, metadata
