"""Whether the world model or the planner is wrong: one plan per task, checked in the simulator.

Usage:
    python -m bench.plan_diagnosis --quick
    python -m bench.plan_diagnosis --encoder models/cartpole/encoder --world-model models/cartpole/world_model

For each seeded goal task of :mod:`bench.bench_planning`, gradient MPC plans ``--horizon`` actions from
the first frame. The same actions then run in the simulator. The table shows the cost the world model
predicts for the plan, the cost of the frames the simulator renders for it, and the true cart and pole
errors after the last action. As a reference the scripted LQR controller's actions toward the goal get the same
treatment. A plan whose predicted cost is far below its real cost means the planner found actions that
the world model gets wrong. A model that predicts the LQR actions well but the plan badly is accurate
only near its training data.

``--quick`` builds the tiny untrained models of ``bench_planning --quick``, so its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

# NOTE: the first torch.optim step imports triton. Triton crashes (SIGSEGV) in a process that has already
# rendered with MuJoCo's EGL backend, and --quick trains after collecting, so it is imported first.
import torch._dynamo  # noqa: F401

from bench.bench_planning import ENV_NAME, build_quick_models, make_tasks
from envs.cartpole_control import CartPoleController
from envs.registry import get_spec, make
from flowjepa.errors import InvalidInputError
from planning.controller import frames_to_tensor
from planning.cost import CostWeights, goal_cost
from planning.loading import load_frozen_encoder
from planning.problem import PlanningProblem
from planning.registry import make_planner
from planning.success import CARTPOLE_RULE
from planning.world_model import LatentWorldModel


def replay(env, start_state: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run ``actions`` ``(H, A)`` from ``start_state``; return the frames ``(H, S, S, 3)`` and states ``(H, 4)``."""
    env.set_physical_state(start_state)
    frames, states = [], []
    for action in actions:
        frame, *_, info = env.step(env.to_env_action(action))
        frames.append(frame)
        states.append(np.asarray(info["state"], dtype=np.float64))
    return np.stack(frames), np.stack(states)


def lqr_actions(env, start_state: np.ndarray, target: float, horizon: int) -> np.ndarray:
    """Return the scripted controller's unit actions ``(H, 1)`` toward cart position ``target``, run in ``env``."""
    controller = CartPoleController(get_spec(ENV_NAME).cartpole, env.dt)
    env.set_physical_state(start_state)
    state, actions = start_state, []
    for _ in range(horizon):
        action = np.array([controller.action(state, target)])
        *_, info = env.step(action)
        state = np.asarray(info["state"], dtype=np.float64)
        actions.append(action)
    return np.stack(actions)


def diagnose(encoder, world_model: LatentWorldModel, tasks: int, horizon: int, seed: int) -> list[dict[str, float]]:
    """Plan once per task and compare the world model's prediction of each plan with the simulator."""
    cost_weights = CostWeights()
    planner = make_planner("gd", seed=seed)

    @torch.no_grad()
    def embed(frames: np.ndarray) -> torch.Tensor:
        return world_model.embed(encoder, frames_to_tensor(frames, encoder.device))

    def costs(start: torch.Tensor, goal: torch.Tensor, actions: np.ndarray, frames: np.ndarray) -> tuple[float, float]:
        action_tensor = torch.as_tensor(actions, dtype=torch.float32)[None]
        unit = world_model.bounds.to_unit(action_tensor)
        predicted = world_model.rollout(start, action_tensor)
        return (
            float(goal_cost(predicted, goal, unit, cost_weights)[0]),
            float(goal_cost(embed(frames)[None], goal, unit, cost_weights)[0]),
        )

    rows = []
    with make(ENV_NAME, size=encoder.config.image_size, time_limit=None) as env:
        for task in make_tasks(tasks, encoder.config.image_size, seed):
            frame = env.reset(seed=task.seed)
            start_state = env.physical_state()
            goal = embed(task.goal_frame[None])[0]
            start = embed(frame[None])[0].expand(world_model.config.history, -1).clone()
            problem = PlanningProblem(world_model, start, goal, world_model.bounds, horizon, cost_weights)
            with torch.enable_grad():
                plan = planner.plan(problem, None).actions.numpy()

            row = {"goal_cart_position": float(task.goal_state[0])}
            for name, actions in (("plan", plan), ("lqr", lqr_actions(env, start_state, task.goal_state[0], horizon))):
                frames, states = replay(env, start_state, actions)
                predicted_cost, real_cost = costs(start, goal, actions, frames)
                errors = CARTPOLE_RULE.errors(states[-1:], task.goal_state, env.state_names)[0]
                row.update({
                    f"{name}_predicted_cost": predicted_cost,
                    f"{name}_real_cost": real_cost,
                    f"{name}_cart_error_m": float(errors[0]),
                    f"{name}_pole_error_rad": float(errors[1]),
                })  # fmt: skip
            rows.append(row)
    return rows


def print_rows(rows: list[dict[str, float]]) -> None:
    """Print the per-task comparison as a Markdown table."""
    print("| goal x (m) | plan: predicted cost | plan: real cost | plan: cart / pole error | "
          "LQR: predicted cost | LQR: real cost | LQR: cart / pole error |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        cells = [f"{row['goal_cart_position']:+.2f}"]
        for name in ("plan", "lqr"):
            cells += [
                f"{row[f'{name}_predicted_cost']:.3f}",
                f"{row[f'{name}_real_cost']:.3f}",
                f"{row[f'{name}_cart_error_m']:.2f} m / {row[f'{name}_pole_error_rad']:.2f} rad",
            ]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Parse the options, run the diagnosis and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny untrained models, under a minute")
    parser.add_argument("--encoder", type=Path, default=Path("models/cartpole/encoder"), help="encoder folder")
    parser.add_argument("--world-model", type=Path, default=Path("models/cartpole/world_model"), help="world model")
    parser.add_argument("--tasks", type=int, default=5, help="number of seeded goal tasks")
    parser.add_argument("--horizon", type=int, default=15, help="planned actions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first task and of the planner")
    args = parser.parse_args(argv)
    for name in ("tasks", "horizon"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            encoder_dir, world_model_dir = build_quick_models(Path(scratch))
        else:
            encoder_dir, world_model_dir = args.encoder, args.world_model
        try:
            encoder = load_frozen_encoder(encoder_dir, torch.device("cpu"))
            world_model = LatentWorldModel.from_pretrained(world_model_dir).requires_grad_(False)
            world_model.check_encoder(encoder)
        except InvalidInputError as error:
            parser.exit(2, f"error: {error}\n")
        rows = diagnose(encoder, world_model, args.tasks, args.horizon, args.seed)
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main()
