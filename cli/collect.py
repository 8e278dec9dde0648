"""``flowjepa collect``: render episodes of a pixel environment into a folder of shards."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import console, user_errors


@user_errors
def collect_command(
    env: str = typer.Option("cartpole", help="Environment name, e.g. cartpole, cartpole-swingup, cartpole-gym."),
    episodes: int = typer.Option(20, help="Number of episodes in the folder when the command ends."),
    steps: int = typer.Option(250, help="Env steps per episode (cartpole-gym episodes can end earlier)."),
    policy: str | None = typer.Option(
        None,
        help="random (uniform), ou (correlated random forces) or balance (scripted, cart-pole envs only). "
        r"\[default: balance for cart-poles, ou otherwise]",
    ),
    noise: float | None = typer.Option(
        None,
        help="Standard deviation of the policy's correlated action noise, in unit-action units (ou: the action "
        "itself; balance: added to the controller so the pole tilts and recovers, above about 0.5 it also falls). "
        r"\[default: ou 0.6, balance 0.25]",
    ),
    seed: int = typer.Option(0, help="Seed of the collection; each episode's seed derives from it and its index."),
    size: int = typer.Option(64, help="Frame side in pixels."),
    action_repeat: int | None = typer.Option(
        None, help=r"Simulator steps per env step. \[default: the env's, 0.04 s per env step]"
    ),
    out: Path = typer.Option(..., help="Output folder; re-running into it resumes an interrupted collection."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Collect episodes (frames, actions, physical states, rewards) as compressed shards with a manifest.

    Writes OUT/episode_NNNNNN.npz and OUT/manifest.json. Running the same
    command again keeps finished episodes and collects the missing ones.
    """
    from envs.collect import collect
    from envs.registry import get_spec
    from envs.shards import read_manifest

    if policy is None:
        policy = "balance" if get_spec(env).cartpole is not None else "ou"

    root = collect(
        env,
        out,
        episodes=episodes,
        steps=steps,
        policy=policy,
        noise=noise,
        seed=seed,
        size=size,
        action_repeat=action_repeat,
        progress=progress,
    )
    manifest = read_manifest(root)
    total_bytes = sum(entry["bytes"] for entry in manifest["episodes"])
    console.print(
        f"{len(manifest['episodes'])} episode{'s' if len(manifest['episodes']) != 1 else ''}, "
        f"{manifest['frames']} frames of {manifest['env']} "
        f"at {manifest['size']} px ({total_bytes / 2**20:.1f} MiB) in {root}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``flowjepa collect`` to the app."""
    app.command("collect")(collect_command)
