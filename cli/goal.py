"""``flowjepa goal``: make a goal image from a target physical state or from a collected frame."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import console, user_errors
from flowjepa.errors import InvalidInputError

DEFAULT_SIZE = 64


@user_errors
def goal_command(
    out: Path = typer.Option(..., help="PNG file to write; its metadata records the env, size and state."),
    env: str = typer.Option("cartpole", help="Environment to render the goal state in."),
    cart_position: float | None = typer.Option(None, help=r"Cart position in metres (cart-pole envs). \[default: 0]"),
    pole_angle: float | None = typer.Option(
        None, help=r"Pole angle in radians, 0 = upright, positive = tip toward +x (cart-pole envs). \[default: 0]"
    ),
    value: list[str] = typer.Option(
        [], "--value", help="Any state value as NAME=NUMBER (repeatable), e.g. cart_velocity=0.5. Unset values are 0."
    ),
    size: int | None = typer.Option(None, help=rf"Image side in pixels. \[default: {DEFAULT_SIZE}]"),
    episode: Path | None = typer.Option(
        None, help="Take the frame from collected data: a collect folder or one of its episode_NNNNNN.npz shards."
    ),
    step: int | None = typer.Option(None, help="Frame index within the episode (0 = first frame); with --episode."),
    episode_index: int | None = typer.Option(
        None, help=r"Episode number within a collect folder given to --episode. \[default: 0]"
    ),
) -> None:
    """Write a goal image: render a target state, or extract a frame from collected episodes.

    Rendered goals: every state value not set is 0, so velocities are zero
    (the world at rest). The command prints the saved path and the state.
    """
    from envs.goal import frame_from_episode, render_goal, save_goal_png

    if episode is not None:
        if cart_position is not None or pole_angle is not None or value:
            raise InvalidInputError(
                "--episode takes the state from the data; drop --cart-position, --pole-angle and --value"
            )
        if step is None:
            raise InvalidInputError("--episode needs --step N, the frame index within the episode")
        frame, metadata = frame_from_episode(episode, step, episode_index)
        if size is not None and size != metadata["size"]:
            raise InvalidInputError(
                f"--size {size} differs from the collected frames ({metadata['size']} px); drop --size"
            )
        env_name, state, names, source = metadata["env"], metadata["state"], metadata["state_names"], metadata["source"]
    else:
        if step is not None or episode_index is not None:
            raise InvalidInputError("--step and --episode-index need --episode")
        from envs.registry import get_spec

        spec = get_spec(env)
        values = _parse_values(value)
        for name, option_value in (("cart_position", cart_position), ("pole_angle", pole_angle)):
            if option_value is None:
                continue
            if name not in spec.state_names:
                option = "--" + name.replace("_", "-")
                raise InvalidInputError(
                    f"{option} does not apply to {env}, whose state is ({', '.join(spec.state_names)}); use --value"
                )
            if name in values:
                raise InvalidInputError(f"{name} is given twice (--{name.replace('_', '-')} and --value)")
            values[name] = option_value

        from envs.goal import goal_state

        state = goal_state(env, **values)
        frame = render_goal(env, state, size=DEFAULT_SIZE if size is None else size)
        env_name, names, source = env, spec.state_names, "render"

    path = save_goal_png(out, frame, env_name, state, names, source=source)
    console.print(f"goal image written to {path} ({env_name}, {frame.shape[0]} px)", highlight=False)
    console.print(", ".join(f"{name}={float(number):.4g}" for name, number in zip(names, state)), highlight=False)


def _parse_values(pairs: list[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    for pair in pairs:
        name, separator, number = pair.partition("=")
        name = name.strip()
        try:
            parsed = float(number)
        except ValueError:
            parsed = None
        if not separator or not name or parsed is None:
            raise InvalidInputError(f"--value {pair!r} is invalid; pass NAME=NUMBER, e.g. --value cart_velocity=0.5")
        if name in values:
            raise InvalidInputError(f"--value sets {name} twice; pass each state value once")
        values[name] = parsed
    return values


def register(app: typer.Typer) -> None:
    """Add ``flowjepa goal`` to the app."""
    app.command("goal")(goal_command)
