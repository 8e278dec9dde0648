"""``flowjepa collect``: render episodes of a pixel environment into a folder of shards."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import console, user_errors
from flowjepa.errors import InvalidInputError


@user_errors
def collect_command(
    env: str = typer.Option("cartpole", help="Environment name, e.g. cartpole, cartpole-swingup, cartpole-gym."),
    episodes: int = typer.Option(20, help="Number of episodes in the folder when the command ends."),
    steps: int = typer.Option(250, help="Env steps per episode (cartpole-gym episodes can end earlier)."),
    policy: str | None = typer.Option(
        None,
        help="random (uniform), ou (correlated random forces), balance (scripted, cart-pole envs only) or plan "
        "(latent MPC with trained models towards random goals, cart-pole envs only). "
        r"\[default: balance for cart-poles, ou otherwise]",
    ),
    noise: float | None = typer.Option(
        None,
        help="Standard deviation of the policy's correlated action noise, in unit-action units (ou: the action "
        "itself; balance: added to the controller so the pole tilts and recovers, above about 0.5 it also falls). "
        r"\[default: ou 0.6, balance 0.25, plan 0.2]",
    ),
    seed: int = typer.Option(0, help="Seed of the collection; each episode's seed derives from it and its index."),
    size: int = typer.Option(64, help="Frame side in pixels."),
    action_repeat: int | None = typer.Option(
        None, help=r"Simulator steps per env step. \[default: the env's, 0.04 s per env step]"
    ),
    out: Path = typer.Option(..., help="Output folder; re-running into it resumes an interrupted collection."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    model: Path | None = typer.Option(
        None, help=r"--policy plan: encoder folder. \[default: the shipped models/cartpole/encoder]"
    ),
    world_model: Path | None = typer.Option(
        None, help=r"--policy plan: world model folder. \[default: the shipped models/cartpole/world_model]"
    ),
    planner: str | None = typer.Option(None, help=r"--policy plan: mppi, cem or gd. \[default: mppi]"),
    candidates: int | None = typer.Option(
        None, help=r"--policy plan: samples per planner iteration (gd: candidates). \[default: 500]"
    ),
    iterations: int | None = typer.Option(None, help=r"--policy plan: planner iterations per step. \[default: 5]"),
    horizon: int | None = typer.Option(None, help=r"--policy plan: planned actions. \[default: 15]"),
    goal_range: float | None = typer.Option(
        None, help=r"--policy plan: goal cart positions are drawn in +-GOAL_RANGE m. \[default: the env's, 1.2]"
    ),
    correction: float | None = typer.Option(
        None, help=r"--policy plan: gain of the model-error estimate (see `flowjepa plan`). \[default: 0.1]"
    ),
) -> None:
    """Collect episodes (frames, actions, physical states, rewards) as compressed shards with a manifest.

    Writes OUT/episode_NNNNNN.npz and OUT/manifest.json. Running the same
    command again keeps finished episodes and collects the missing ones.
    With --policy plan the episodes are driven by the planner of `flowjepa plan`
    (plus --noise), so that a world model retrained on them learns the states
    the planner visits.
    """
    from envs.collect import collect
    from envs.registry import get_spec
    from envs.shards import read_manifest

    if policy is None:
        policy = "balance" if get_spec(env).cartpole is not None else "ou"
    planner_options = {
        name: (str(value) if isinstance(value, Path) else value)
        for name, value in (
            ("model", model),
            ("world_model", world_model),
            ("planner", planner),
            ("population", candidates),
            ("iterations", iterations),
            ("horizon", horizon),
            ("correction", correction),
            ("goal_range", goal_range),
        )
        if value is not None
    }
    if planner_options and policy != "plan":
        flags = ", ".join(
            "--" + {"population": "candidates"}.get(name, name).replace("_", "-") for name in planner_options
        )
        raise InvalidInputError(f"{flags} apply to --policy plan only; add --policy plan or drop them")

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
        planner=planner_options if policy == "plan" else None,
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
