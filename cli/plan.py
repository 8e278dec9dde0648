"""``flowjepa plan``: act in an environment until it looks like a goal image, planning in the latent."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer
from rich.markup import escape

from cli.common import console, user_errors
from flowjepa.errors import InvalidInputError
from planning.goal_image import CONVERSION_RULE, check_goal_image
from planning.loading import SHIPPED_ENCODER, SHIPPED_WORLD_MODEL
from planning.registry import PLANNERS, budget_options

# Budgets (samples per iteration, iterations) of the sampling planners when --candidates and --iterations
# are not given. With the shipped models and the rest term, CEM with 300 samples reached 114 of 120 benchmark
# goals at about a sixth of the time per action of MPPI with 2,000 (docs/benchmarks.md).
DEFAULT_BUDGETS = {"cem": (300, 5), "mppi": (2000, 5)}

# Weight of the cost's rest term: with the shipped models and CEM it raised the benchmark's successes from
# 91 to 114 of the same 120 tasks (docs/benchmarks.md).
DEFAULT_REST_WEIGHT = 5.0


def _check_positive(name: str, value: float | int | None) -> None:
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{name} must be > 0, got {value!r}")


def _check_model_folders(model: Path, world_model: Path) -> None:
    if not model.exists():
        raise InvalidInputError(
            f"no encoder at {model}; train one with `flowjepa pretrain --out RUN` and pass --model RUN/model"
        )
    if not world_model.exists():
        raise InvalidInputError(
            f"no world model at {world_model}; train one with "
            "`flowjepa train-world-model --encoder ENCODER --data DIR --out DIR` and pass --world-model DIR"
        )


def _planner_options(planner: str, iterations: int | None, candidates: int | None, lr: float | None) -> dict[str, Any]:
    default_samples, default_iterations = DEFAULT_BUDGETS.get(planner, (None, None))
    samples = default_samples if candidates is None else candidates
    options = budget_options(planner, samples, default_iterations if iterations is None else iterations)
    if lr is not None:
        if planner != "gd":
            raise InvalidInputError(
                f"--lr applies to the gd planner only, not to {planner!r}; add --planner gd or drop --lr"
            )
        options["lr"] = lr
    return options


def _describe_state(state: np.ndarray, names: tuple[str, ...]) -> str:
    parts = []
    for name, unit in (("cart_position", "m"), ("pole_angle", "rad")):
        if name in names:
            parts.append(f"{name.split('_')[0]} {state[names.index(name)]:+.3f} {unit}")
    return "  ".join(parts)


@user_errors
def plan_command(
    goal: Path = typer.Option(..., help=f"Goal image. {CONVERSION_RULE}"),
    env: str = typer.Option("cartpole", help="Environment to act in (see `flowjepa collect --help`)."),
    model: Path = typer.Option(SHIPPED_ENCODER, help="Encoder folder (or a pretrain run folder containing model/)."),
    world_model: Path = typer.Option(SHIPPED_WORLD_MODEL, help="World model folder from `train-world-model`."),
    planner: str = typer.Option("cem", help="Planner: cem, mppi or gd (gradient MPC)."),
    horizon: int = typer.Option(15, help="Planned actions per replanning (environment steps)."),
    steps: int = typer.Option(50, help="Actions executed in the episode."),
    replan_every: int = typer.Option(1, help="Executed actions between replannings (receding horizon)."),
    iterations: int | None = typer.Option(
        None, help=r"Planner iterations per replanning. \[default: 5 for cem and mppi, 10 for gd]"
    ),
    candidates: int | None = typer.Option(
        None,
        help="Action sequences per iteration (gd candidates, cem/mppi population). "
        r"\[default: 300 for cem, 2000 for mppi, 8 for gd]",
    ),
    lr: float | None = typer.Option(None, help=r"Adam learning rate of the gd planner. \[default: 0.3]"),
    every_step_weight: float = typer.Option(1.0, help="Weight of the goal distance at every planned step."),
    smoothness_weight: float = typer.Option(0.1, help="Weight of the squared change between consecutive actions."),
    rest_weight: float = typer.Option(
        DEFAULT_REST_WEIGHT, help="Weight of the latent change over the last planned step, so plans end at rest."
    ),
    correction: float = typer.Option(
        0.1,
        help="Gain in [0, 1] of the online estimate of the world model's one-step error, added to its "
        "predictions (offset-free MPC); 0 plans with the model as it is.",
    ),
    seed: int = typer.Option(0, help="Seed of the start state and of the planner's sampling."),
    out: Path = typer.Option(Path("runs/plan"), help="Folder for the video, the cost plot and result.json."),
    video_format: str = typer.Option("gif", help="Video format: gif, or mp4 (needs imageio-ffmpeg)."),
    fps: float = typer.Option(10.0, help="Frames per second of the video."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    threads: int | None = typer.Option(
        None,
        help=r"Torch CPU threads. Pass 1 when other jobs share the cores: the planner's small batches slow "
        r"down several times on contended threads. \[default: torch's choice, one per core]",
    ),
) -> None:
    """Run one closed-loop episode from a seeded start towards a goal image and report whether it got there.

    Writes OUT/episode.gif (real | imagined | goal frames side by side; the
    imagined panel stays black for a read-out world model, whose latents do not decode),
    OUT/costs.png and OUT/result.json. Success for cartpole: the cart within
    0.1 m and the pole within 0.2 rad of the goal state over the last 10 steps.
    It is judged only when the goal image carries its state (`flowjepa goal`).
    """
    for name, value in (("--horizon", horizon), ("--steps", steps), ("--replan-every", replan_every)):
        _check_positive(name, value)
    for name, value in (("--iterations", iterations), ("--candidates", candidates), ("--lr", lr), ("--fps", fps)):
        _check_positive(name, value)
    _check_positive("--threads", threads)
    weights = (
        ("--every-step-weight", every_step_weight),
        ("--smoothness-weight", smoothness_weight),
        ("--rest-weight", rest_weight),
    )
    for name, value in weights:
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"{name} must be a number >= 0, got {value!r}")
    if not 0 <= correction <= 1:
        raise InvalidInputError(
            f"--correction must be a number in [0, 1], the gain of the model-error estimate (0 turns it off); "
            f"got {correction!r}"
        )
    if video_format not in ("gif", "mp4"):
        raise InvalidInputError(f"unknown --video-format {video_format!r}; valid formats: gif, mp4")
    if planner not in PLANNERS:
        raise InvalidInputError(f"unknown planner {planner!r}; valid planners: {', '.join(PLANNERS)}")
    from envs.registry import get_spec

    get_spec(env)
    _check_model_folders(model, world_model)
    check_goal_image(goal)
    planner_options = _planner_options(planner, iterations, candidates, lr)
    # Create the output folder first, so a path that cannot hold it fails before the episode runs.
    out.mkdir(parents=True, exist_ok=True)
    options = dict(
        goal=goal,
        env=env,
        model=model,
        world_model=world_model,
        planner=planner,
        horizon=horizon,
        steps=steps,
        replan_every=replan_every,
        planner_options=planner_options,
        every_step_weight=every_step_weight,
        smoothness_weight=smoothness_weight,
        rest_weight=rest_weight,
        correction=correction,
        seed=seed,
        out=out,
        video_format=video_format,
        fps=fps,
        device=device,
    )
    if threads is not None:
        torch.set_num_threads(threads)
    _run(options)


def _run(options: dict[str, Any]) -> None:
    """Load everything, run the episode with a line per step, and write the outputs."""
    from envs.registry import make
    from flowjepa.device import resolve_device
    from planning.cost import CostWeights
    from planning.episode import plan
    from planning.goal_image import load_goal_image
    from planning.loading import load_frozen_encoder
    from planning.problem import PlanningDivergedError
    from planning.render import plot_episode_costs, write_episode_video
    from planning.world_model import LatentWorldModel

    device = resolve_device(options["device"])
    encoder = load_frozen_encoder(options["model"], device)
    world_model = LatentWorldModel.from_pretrained(options["world_model"], device=device).requires_grad_(False)
    world_model.check_encoder(encoder)
    size = encoder.config.image_size
    goal = load_goal_image(options["goal"], size)
    env_name = options["env"]
    cost = CostWeights(
        final=1.0,
        every_step=options["every_step_weight"],
        smoothness=options["smoothness_weight"],
        rest=options["rest_weight"],
    )
    planner_options = {**options["planner_options"], "seed": options["seed"]}

    with make(env_name, size=size, time_limit=None) as environment:
        if goal.state_names is not None and tuple(goal.state_names) != tuple(environment.state_names):
            raise InvalidInputError(
                f"goal image {options['goal']} was made for {goal.env} with state ({', '.join(goal.state_names)}), "
                f"which does not match {env_name}; pass --env {goal.env} or make a goal for {env_name}"
            )
        if goal.env is not None and goal.env != env_name:
            console.print(f"[yellow]note:[/] the goal image was made for {goal.env}, planning in {env_name}")
        if world_model.config.env and world_model.config.env != env_name:
            console.print(f"[yellow]note:[/] the world model was trained on {world_model.config.env} data")
        steps = options["steps"]
        console.print(
            f"[bold]plan[/] {env_name} with {options['planner']}: horizon {options['horizon']}, {steps} steps, "
            f"seed {options['seed']}"
        )

        def on_step(step: int, info: dict[str, Any]) -> None:
            state = _describe_state(info["state"], tuple(environment.state_names))
            console.print(
                f"step {step:4d}/{steps}  cost {info['cost']:.4f}  "
                f"latent distance {info['latent_distance']:.3f}  {state}",
                highlight=False,
            )

        try:
            result = plan(
                environment,
                encoder,
                world_model,
                goal.frame,
                planner=options["planner"],
                planner_options=planner_options,
                horizon=options["horizon"],
                steps=steps,
                replan_every=options["replan_every"],
                cost=cost,
                seed=options["seed"],
                goal_state=goal.state,
                correction=options["correction"],
                progress=on_step,
            )
        except PlanningDivergedError as error:
            console.print(f"[bold red]planning failed:[/] {escape(str(error))}", highlight=False)
            raise typer.Exit(1) from None

    out = Path(options["out"])
    video = write_episode_video(result, out / f"episode.{options['video_format']}", fps=options["fps"])
    plot = plot_episode_costs(result, out / "costs.png", title=f"{env_name}, {options['planner']}")
    _write_result(result, out / "result.json", options)
    _print_summary(result, video, plot)


def _write_result(result: Any, path: Path, options: dict[str, Any]) -> None:
    from flowjepa.checkpoint import atomic_write_json

    summary = {
        "env": options["env"],
        "planner": options["planner"],
        "horizon": options["horizon"],
        "steps": options["steps"],
        "seed": options["seed"],
        "every_step_weight": options["every_step_weight"],
        "smoothness_weight": options["smoothness_weight"],
        "rest_weight": options["rest_weight"],
        "correction": options["correction"],
        "success": result.success,
        "success_rule": result.success_rule,
        "completed": result.completed,
        "final_latent_distance": result.final_latent_distance,
        "final_state_errors": None
        if result.state_errors is None
        else dict(zip(result.state_error_names, result.state_errors[-1].tolist())),
        "seconds_per_action": result.seconds_per_action,
        "actions": result.actions.tolist(),
        "costs": result.costs.tolist(),
        "latent_distances": result.latent_distances.tolist(),
        "states": result.states.tolist(),
        "state_names": list(result.state_names),
        "goal_state": None if result.goal_state is None else result.goal_state.tolist(),
    }
    atomic_write_json(path, json.loads(json.dumps(summary, default=float)))


def _print_summary(result: Any, video: Path, plot: Path) -> None:
    if result.success is None:
        verdict = f"[yellow]unknown[/] ({result.success_rule})"
    elif result.success:
        verdict = f"[green]yes[/] ({result.success_rule})"
    else:
        verdict = f"[red]no[/] ({result.success_rule})"
    # soft_wrap: each result stays on one line, so no expression or path is split.
    console.print(f"success: {verdict}", highlight=False, soft_wrap=True)
    console.print(f"final latent distance: {result.final_latent_distance:.4f} (RMS, in training stds)", soft_wrap=True)
    if result.state_errors is not None:
        errors = ", ".join(
            f"|{name} - goal| = {value:.4f}" for name, value in zip(result.state_error_names, result.state_errors[-1])
        )
        console.print(f"final true state distance: {errors}", soft_wrap=True)
    console.print(f"planner time per action: {result.seconds_per_action * 1000:.1f} ms", soft_wrap=True)
    console.print(f"wrote {video}, {plot} and {video.parent / 'result.json'}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``plan`` to the app."""
    app.command("plan")(plan_command)
