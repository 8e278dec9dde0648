"""Resumable collection of rendered episodes into a folder of shards (layout in :mod:`envs.shards`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from envs.base import PixelEnv, validate_seed
from envs.policies import Policy, check_policy, make_policy, validate_noise
from envs.registry import get_spec, make, validate_action_repeat, validate_size
from envs.shards import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SHARD_PATTERN,
    TEMPORARY_PATTERN,
    Episode,
    read_manifest,
    shard_is_intact,
    write_manifest,
    write_shard,
)
from flowjepa.errors import InvalidInputError

logger = logging.getLogger(__name__)

# Options that must match when a collection is resumed, because they change the data.
_RESUME_KEYS = ("env", "size", "action_repeat", "policy", "noise", "seed", "steps", "planner")


def episode_seeds(seed: int, index: int) -> tuple[int, int]:
    """Return the (env, policy) seeds of episode ``index``; they depend only on ``seed`` and ``index``."""
    env_seed, policy_seed = np.random.SeedSequence([seed, index]).generate_state(2)
    return int(env_seed), int(policy_seed)


def collect(
    env_name: str,
    out_dir: str | Path,
    *,
    episodes: int,
    steps: int,
    policy: str = "balance",
    seed: int = 0,
    size: int = 64,
    action_repeat: int | None = None,
    noise: float | None = None,
    planner: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Collect ``episodes`` episodes of ``steps`` env steps into ``out_dir`` and return the folder.

    Each episode is seeded from ``(seed, episode index)``, so the same
    arguments give identical data. Re-running into the same folder resumes:
    intact shards listed in the manifest are kept, missing or corrupt ones are
    collected again, and asking for more episodes extends the folder. An
    episode ends early only when the env terminates it (``cartpole-gym``
    when the pole falls); there is no time limit. ``noise`` overrides the
    policy's action noise and ``planner`` configures policy ``plan`` (see
    :func:`envs.policies.make_policy`).

    Raises:
        InvalidInputError: an argument is invalid, or the folder contains another
            collection (different options) or unrelated files.
    """
    spec = get_spec(env_name)
    episodes = _positive_int(episodes, "episodes")
    steps = _positive_int(steps, "steps")
    check_policy(policy, env_name)
    if noise is not None:
        noise = validate_noise(noise, policy)
    seed = validate_seed(seed)
    size = validate_size(size)
    action_repeat = validate_action_repeat(spec.default_action_repeat if action_repeat is None else action_repeat)
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"--out {root} is a file; pass a folder (it is created if missing)")

    options = {
        "env": env_name,
        "size": size,
        "action_repeat": action_repeat,
        "policy": policy,
        "noise": noise,
        "seed": seed,
        "steps": steps,
        "planner": None,
    }
    env = make(env_name, size=size, action_repeat=action_repeat, time_limit=None)
    agent: Policy | None = None
    try:
        agent = make_policy(policy, env, noise=noise, planner=planner)
        options["planner"] = agent.settings()
        root.mkdir(parents=True, exist_ok=True)
        manifest = _open_manifest(root, options, env)
        manifest["episodes_requested"] = max(episodes, int(manifest.get("episodes_requested", 0)))
        write_manifest(root, manifest)

        done = {entry["index"] for entry in manifest["episodes"]}
        todo = [index for index in range(episodes) if index not in done]
        if done:
            logger.info(
                "resuming %s: %d episode(s) kept, %d to collect", root, len(done & set(range(episodes))), len(todo)
            )
        _run(env, agent, root, manifest, todo, seed, steps, episodes, progress)
    finally:
        if agent is not None:
            agent.close()
        env.close()
    return root


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name}={value!r} is invalid; pass an integer >= 1")
    return int(value)


def _open_manifest(root: Path, options: dict[str, Any], env: PixelEnv) -> dict[str, Any]:
    """Load the manifest of a folder being resumed (dropping damaged shards) or create a new one."""
    _remove_temporary_files(root)
    if not (root / MANIFEST_NAME).exists():
        foreign = sorted(path.name for path in root.iterdir() if not SHARD_PATTERN.match(path.name))
        if foreign:
            raise InvalidInputError(
                f"--out {root} is not empty and has no {MANIFEST_NAME} (found {', '.join(foreign[:3])}); "
                "pass a new or empty folder, or the folder of an earlier collection to resume it"
            )
        return _new_manifest(options, env)

    manifest = read_manifest(root)
    for key in _RESUME_KEYS:
        if manifest.get(key) != options[key]:
            stored, requested = (_option_text(key, value) for value in (manifest.get(key), options[key]))
            raise InvalidInputError(
                f"{root} contains a collection with {key}={stored}, but {key}={requested} was requested; "
                "resume with the same options or pass a new --out folder"
            )

    intact_entries = []
    for entry in manifest["episodes"]:
        if shard_is_intact(root, entry):
            intact_entries.append(entry)
        else:
            logger.warning("shard %s is missing or corrupt; collecting episode %d again", entry["file"], entry["index"])
    manifest["episodes"] = intact_entries
    return manifest


def _remove_temporary_files(root: Path) -> None:
    # A killed write leaves ".<name>.<random>.tmp"; it was never renamed, so it is never read.
    for path in root.iterdir():
        if TEMPORARY_PATTERN.match(path.name):
            logger.info("removing %s left by an interrupted write", path.name)
            path.unlink(missing_ok=True)


def _option_text(key: str, value: Any) -> str:
    """Return a collection option for a message; an unset noise reads as the policy's default."""
    if key == "noise" and value is None:
        return "the policy's default (not given)"
    return repr(value)


def _new_manifest(options: dict[str, Any], env: PixelEnv) -> dict[str, Any]:
    if isinstance(env.action_space, spaces.Discrete):
        action_space: dict[str, Any] = {"type": "discrete", "n": int(env.action_space.n)}
    else:
        action_space = {
            "type": "box",
            "shape": list(env.action_space.shape),
            "low": env.action_space.low.tolist(),
            "high": env.action_space.high.tolist(),
        }
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        **options,
        "dt": env.dt,
        "state_names": list(env.state_names),
        "action_space": action_space,
        "episodes_requested": 0,
        "episodes": [],
    }


def run_episode(env: PixelEnv, policy: Policy, steps: int, env_seed: int, policy_seed: int) -> tuple[Episode, bool]:
    """Run one episode of at most ``steps`` env steps; return its arrays and whether the env terminated it."""
    policy.reset(policy_seed)
    frames = [env.reset(seed=env_seed)]
    states = [env.physical_state()]
    actions = []
    rewards = []
    terminated = False

    for _ in range(steps):
        action = env.to_env_action(policy.act(states[-1], frames[-1]))
        frame, reward, terminated, _, info = env.step(action)
        frames.append(frame)
        states.append(info["state"])
        actions.append(action)
        rewards.append(reward)
        if terminated:
            break

    if env.is_discrete:
        action_array = np.asarray(actions, dtype=np.int64)
    else:
        action_array = np.asarray(actions, dtype=np.float32).reshape(len(actions), *env.action_space.shape)
    episode = Episode(
        frames=np.stack(frames).astype(np.uint8, copy=False),
        actions=action_array,
        states=np.stack(states).astype(np.float64, copy=False),
        rewards=np.asarray(rewards, dtype=np.float32),
    )
    return episode, terminated


def _run(
    env: PixelEnv,
    policy: Policy,
    root: Path,
    manifest: dict[str, Any],
    todo: list[int],
    seed: int,
    steps: int,
    episodes: int,
    progress: bool,
) -> None:
    columns = (
        TextColumn("[bold]collect[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("episodes"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task(env.name, total=episodes, completed=episodes - len(todo), rate="")
        frames_done = 0
        start = time.perf_counter()
        for index in todo:
            episode, terminated = run_episode(env, policy, steps, *episode_seeds(seed, index))
            manifest["episodes"].append(write_shard(root, index, episode, terminated))
            write_manifest(root, manifest)

            frames_done += episode.length + 1
            rate = frames_done / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:.0f} frames/s")
