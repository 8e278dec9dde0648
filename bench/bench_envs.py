"""Measure env steps per second (each step renders a frame) and shard size on disk, per env and frame size.

Usage: python -m bench.bench_envs [--steps 300] [--sizes 64 128] [--envs cartpole ...]

Prints Markdown tables. The first gives frames per second at each size, side
by side with the ratio to the first size. Each cell is the best of
``--repeats`` runs, because other processes may share the CPU. The second
gives frames per second of the dm_control cartpole at each rendering quality,
and the third the disk size of 10,000 frames. The disk size is
extrapolated linearly from one collected folder (``--episodes`` episodes of
``--episode-steps`` steps) per env and size. A last table compares one
cartpole episode's frames compressed in C order and in the Fortran order the
shards use.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import envs
from envs.collect import collect, episode_seeds, run_episode
from envs.policies import make_policy
from envs.shards import read_manifest


def exploration_policy(name: str) -> str:
    """Return the policy benchmarks use: ``balance`` for cart-poles (long episodes), ``ou`` otherwise."""
    return "balance" if envs.get_spec(name).cartpole is not None else "ou"


def measure_fps(name: str, size: int, steps: int, **options) -> float:
    """Return env steps per second (physics, action repeat and one rendered frame each) after 20 warm-up steps.

    A reset after a terminated episode (cartpole-gym only) is inside the timed loop.
    """
    with envs.make(name, size=size, time_limit=None, **options) as env:
        policy = make_policy(exploration_policy(name), env, seed=0)
        env.reset(seed=0)
        state = env.physical_state()
        start = 0.0
        for step in range(20 + steps):
            if step == 20:
                start = time.perf_counter()
            _, _, terminated, _, info = env.step(env.to_env_action(policy.act(state)))
            state = info["state"]
            if terminated:
                env.reset()
                state = env.physical_state()
        return steps / (time.perf_counter() - start)


def measure_disk(name: str, size: int, episodes: int, episode_steps: int) -> tuple[float, int]:
    """Collect a small folder and return (MiB per 10,000 frames, extrapolated; frames measured)."""
    policy = exploration_policy(name)
    with tempfile.TemporaryDirectory() as folder:
        root = collect(
            name,
            Path(folder) / "data",
            episodes=episodes,
            steps=episode_steps,
            policy=policy,
            size=size,
            progress=False,
        )
        manifest = read_manifest(root)
        total_bytes = sum(entry["bytes"] for entry in manifest["episodes"])
        frames = manifest["frames"]
    return total_bytes / frames * 10_000 / 2**20, frames


def measure_frame_order(name: str, size: int, episode_steps: int) -> tuple[int, int]:
    """Return the compressed bytes of one episode's frames stored in C order and in Fortran (time-fastest) order."""
    with envs.make(name, size=size, time_limit=None) as env:
        policy = make_policy(exploration_policy(name), env)
        episode, _ = run_episode(env, policy, episode_steps, *episode_seeds(0, 0))
    sizes = []
    for frames in (np.ascontiguousarray(episode.frames), np.asfortranarray(episode.frames)):
        buffer = io.BytesIO()
        np.savez_compressed(buffer, frames=frames)
        sizes.append(len(buffer.getvalue()))
    return sizes[0], sizes[1]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="Timed env steps per run.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs per env and size; the fastest is reported.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="Frame sizes in pixels.")
    parser.add_argument("--envs", nargs="+", default=list(envs.ENV_NAMES), help="Env names.")
    parser.add_argument("--episodes", type=int, default=2, help="Episodes collected per env and size for disk size.")
    parser.add_argument("--episode-steps", type=int, default=250, help="Steps per collected episode.")
    arguments = parser.parse_args()

    backend = envs.configure_rendering()
    print(f"machine: {platform.machine()}, {_cpu_name()}, {os.cpu_count()} logical CPUs, MUJOCO_GL={backend}")
    print(f"numpy {np.__version__}; best of {arguments.repeats} runs of {arguments.steps} timed steps per cell\n")

    def best_fps(name: str, size: int, **options) -> float:
        return max(measure_fps(name, size, arguments.steps, **options) for _ in range(arguments.repeats))

    sizes = arguments.sizes
    header = " | ".join(f"{size} px fps" for size in sizes)
    ratios = " | ".join(f"{size}/{sizes[0]} px" for size in sizes[1:])
    print(f"| env | dt (s) | {header} | {ratios} |")
    print("|---" * (2 + len(sizes) + len(sizes) - 1) + "|")
    for name in arguments.envs:
        rates = [best_fps(name, size) for size in sizes]
        with envs.make(name, size=sizes[0]) as env:
            dt = env.dt
        cells = " | ".join(f"{rate:.0f}" for rate in rates)
        ratio_cells = " | ".join(f"{rate / rates[0]:.2f}" for rate in rates[1:])
        print(f"| {name} | {dt:g} | {cells} | {ratio_cells} |", flush=True)

    print("\n| dm_control cartpole quality | 64 px fps | ratio to medium |")
    print("|---|---|---|")
    quality_rates = {quality: best_fps("cartpole", 64, quality=quality) for quality in ("high", "medium", "low")}
    for quality, rate in quality_rates.items():
        print(f"| {quality} | {rate:.0f} | {rate / quality_rates['medium']:.2f} |", flush=True)

    print("\n| env | " + " | ".join(f"MiB per 10,000 frames at {size} px" for size in sizes) + " | frames measured |")
    print("|---" * (2 + len(sizes)) + "|")
    for name in arguments.envs:
        results = [measure_disk(name, size, arguments.episodes, arguments.episode_steps) for size in sizes]
        cells = " | ".join(f"{megabytes:.1f}" for megabytes, _ in results)
        print(f"| {name} | {cells} | {results[0][1]} per size |", flush=True)
    raw = " | ".join(f"{size * size * 3 * 10_000 / 2**20:.0f}" for size in sizes)
    print(f"| (uncompressed uint8) | {raw} | |")

    episode = f"cartpole frames of one {arguments.episode_steps}-step episode"
    print(f"\n| {episode} | C order (KiB) | Fortran order (KiB) | ratio |")
    print("|---|---|---|---|")
    for size in sizes:
        c_order, fortran_order = measure_frame_order("cartpole", size, arguments.episode_steps)
        print(f"| {size} px | {c_order / 1024:.0f} | {fortran_order / 1024:.0f} | {c_order / fortran_order:.1f} |")


if __name__ == "__main__":
    main()
