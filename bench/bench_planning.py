"""Compare planners on seeded cartpole goal tasks: success rate and planner wall time per action, side by side.

Usage:
    python -m bench.bench_planning --quick
    python -m bench.bench_planning --encoder models/cartpole/encoder --world-model models/cartpole/world_model

Task i resets the dm_control ``cartpole`` env with seed i. Its goal is a state
with the cart position drawn uniformly from [-0.5, 0.5] m (``--goal-range``) and the pole upright
at rest, and the latent planners see the goal as its rendered frame. Success follows the cartpole rule of
:mod:`planning.success`. Gradient MPC and CEM plan in the Flow-JEPA latent with
the same world model, cost and action bounds. The oracle runs CEM on the true
simulator state (:mod:`planning.oracle`) and is the ceiling. All planners run
in one process, one after the other on the same tasks, so their times are
comparable. The table prints each planner's time relative to CEM.

``--timing-only`` skips the episodes and times one planning call per planner
on a world model of the default architecture with random weights.

``--quick`` (under a minute on 2 CPU cores) builds a tiny untrained 16 px
encoder and a world model trained for a few steps, so its success rates mean
nothing; it checks the pipeline and the time ratio at small budgets. The full
run needs trained models.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# NOTE: the first torch.optim step imports triton. Triton crashes (SIGSEGV) in a process that has already
# rendered with MuJoCo's EGL backend, and --quick trains after collecting, so it is imported first.
import torch._dynamo  # noqa: F401

from envs.registry import get_spec, make
from planning.cost import CostWeights
from planning.episode import PlanResult, plan
from planning.loading import load_frozen_encoder
from planning.oracle import run_oracle_episode
from planning.registry import make_planner
from planning.world_model import LatentWorldModel

ENV_NAME = "cartpole"
GOAL_RANGE_M = 0.5

FULL_BUDGETS = {
    "gd": {},
    "cem": {},
    "oracle": {"population": 300, "iterations": 5},
}
QUICK_BUDGETS = {
    "gd": {"iterations": 5},
    "cem": {"population": 100, "iterations": 3},
    "oracle": {"population": 100, "iterations": 3},
}


@dataclass
class GoalTask:
    """One benchmark task: the start seed and the goal."""

    seed: int
    goal_state: np.ndarray
    goal_frame: np.ndarray


def make_tasks(count: int, size: int, seed: int, goal_range: float = GOAL_RANGE_M) -> list[GoalTask]:
    """Return ``count`` tasks with goal cart positions in ``+-goal_range`` m from a generator seeded with ``seed``."""
    generator = np.random.default_rng(seed)
    tasks = []
    with make(ENV_NAME, size=size, time_limit=None) as env:
        env.reset(seed=0)
        for index in range(count):
            state = np.array([generator.uniform(-goal_range, goal_range), 0.0, 0.0, 0.0])
            tasks.append(GoalTask(seed=seed + index, goal_state=state, goal_frame=env.set_physical_state(state)))
    return tasks


def build_quick_models(folder: Path):
    """Build a tiny random 16 px encoder and a world model trained for 40 steps on 4 short episodes."""
    from envs.collect import collect
    from flowjepa import FlowJEPA, FlowJEPAConfig
    from planning.train import WorldModelTrainConfig, train_world_model

    torch.manual_seed(0)
    encoder_dir = FlowJEPA(FlowJEPAConfig.tiny(image_size=16)).eval().save_pretrained(folder / "encoder")
    data = collect(ENV_NAME, folder / "data", episodes=4, steps=30, policy="ou", size=16, progress=False)
    config = WorldModelTrainConfig(
        encoder=str(encoder_dir),
        data=str(data),
        out=str(folder / "world_model"),
        history=2,
        hidden_dim=64,
        rollout=4,
        steps=40,
        batch_size=16,
        val_fraction=0.25,
        val_every=20,
        device="cpu",
    )
    return encoder_dir, train_world_model(config)


def summarize(name: str, results: list[PlanResult]) -> dict[str, float]:
    """Return success rate, mean final state errors and planner seconds per action over the tasks."""
    errors = np.stack([result.state_errors[-1] for result in results])
    return {
        "planner": name,
        "tasks": len(results),
        "successes": int(sum(bool(result.success) for result in results)),
        "success_rate": float(np.mean([bool(result.success) for result in results])),
        "final_cart_error_m": float(errors[:, 0].mean()),
        "final_pole_error_rad": float(errors[:, 1].mean()),
        "seconds_per_action": float(np.mean([result.seconds_per_action for result in results])),
        "rollouts_per_action": float(np.mean([result.rollouts / max(1, len(result.actions)) for result in results])),
    }


def print_table(rows: list[dict[str, float]]) -> None:
    """Print a Markdown table with each planner's time relative to CEM."""
    reference = next((row["seconds_per_action"] for row in rows if row["planner"] == "cem"), None)
    columns = ("planner", "success", "final cart error (m)", "final pole error (rad)", "ms per action", "time / cem")
    print("| " + " | ".join((*columns, "rollouts per action")) + " |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = f"{row['seconds_per_action'] / reference:.3f}" if reference else "-"
        print(
            f"| {row['planner']} | {row['successes']}/{row['tasks']} ({100 * row['success_rate']:.0f}%) "
            f"| {row['final_cart_error_m']:.3f} | {row['final_pole_error_rad']:.3f} "
            f"| {1000 * row['seconds_per_action']:.1f} | {ratio} | {row['rollouts_per_action']:.0f} |"
        )


def time_planners(planners: list[str], budgets: dict, horizon: int, repeats: int, seed: int) -> list[dict]:
    """Time one planning call per planner on a default-size world model with random weights (no env, no encoder).

    The model has the default architecture (code_dim 64, history 3, ODE with RK4,
    hidden width 256). A rollout costs the same with random weights as with trained ones.
    """
    from planning.problem import PlanningProblem
    from planning.world_model import WorldModelConfig

    torch.manual_seed(seed)
    model = LatentWorldModel(WorldModelConfig(code_dim=64, action_dim=1)).requires_grad_(False)
    with torch.no_grad():
        for parameter in model.transition.parameters():
            parameter.normal_(0.0, 0.05)
    problem = PlanningProblem(model, torch.randn(3, 64), torch.randn(64), model.bounds, horizon, CostWeights())
    rows = []
    for name in planners:
        planner = make_planner(name, **budgets.get(name, {}), seed=seed)
        planner.plan(problem)
        started = time.perf_counter()
        for _ in range(repeats):
            output = planner.plan(problem)
        rows.append(
            {
                "planner": name,
                "seconds_per_plan": (time.perf_counter() - started) / repeats,
                "rollouts": output.rollouts,
            }
        )
    reference = next((row["seconds_per_plan"] for row in rows if row["planner"] == "cem"), None)
    print("| planner | ms per plan | time / cem | rollouts per plan |")
    print("|---|---|---|---|")
    for row in rows:
        ratio = f"{row['seconds_per_plan'] / reference:.3f}" if reference else "-"
        print(f"| {row['planner']} | {1000 * row['seconds_per_plan']:.1f} | {ratio} | {row['rollouts']} |")
    return rows


def parse_latent_weights(text: str) -> tuple[float, ...]:
    """Return the comma-separated weights of ``--latent-weights``; each must be a finite number >= 0."""
    try:
        weights = tuple(float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 4,1,1") from None
    if not all(math.isfinite(value) and value >= 0 for value in weights):
        raise argparse.ArgumentTypeError(f"{text!r} contains a weight that is negative or not finite")
    return weights


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run every planner on every task and print and store the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models and small budgets, under a minute")
    parser.add_argument("--encoder", type=Path, default=Path("models/cartpole/encoder"), help="encoder folder")
    parser.add_argument("--world-model", type=Path, default=Path("models/cartpole/world_model"), help="world model")
    parser.add_argument("--tasks", type=int, default=20, help="number of seeded goal tasks")
    parser.add_argument("--steps", type=int, default=None, help="actions per episode [default: 100, quick: 12]")
    parser.add_argument("--horizon", type=int, default=None, help="planning horizon [default: 15, quick: 8]")
    parser.add_argument("--planners", default="gd,cem,oracle", help="comma-separated: gd, cem, mppi, oracle")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (small batches run best on 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first task")
    parser.add_argument(
        "--goal-range", type=float, default=GOAL_RANGE_M, help="R: goal cart positions are drawn in [-R, R] m"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_planning.json"), help="JSON file of the results")
    parser.add_argument(
        "--timing-only", action="store_true", help="only time one plan per planner on a default-size world model"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed plans per planner with --timing-only")
    parser.add_argument(
        "--every-step-weight", type=float, default=0.0, help="weight of the goal distance at every planned step"
    )
    parser.add_argument(
        "--smoothness-weight", type=float, default=0.01, help="weight of the squared change between actions"
    )
    parser.add_argument(
        "--rest-weight", type=float, default=0.0, help="weight of the latent change over the last planned step"
    )
    parser.add_argument(
        "--latent-weights",
        type=parse_latent_weights,
        default=(),
        help="comma-separated weight of each latent dimension in the goal cost, e.g. 4,1,1 (default: all 1)",
    )
    parser.add_argument(
        "--correction",
        type=float,
        default=0.0,
        help="gain in [0, 1] of the online model-error correction (offset-free MPC); 0 turns it off",
    )
    parser.add_argument(
        "--budgets", type=json.loads, default=None, help='JSON overrides, e.g. \'{"cem": {"population": 300}}\''
    )
    args = parser.parse_args(argv)
    view_range = get_spec(ENV_NAME).cartpole.view_range
    if not 0 < args.goal_range <= view_range:
        parser.error(
            f"--goal-range {args.goal_range:g} is invalid; pass a distance in (0, {view_range:g}] m, "
            "the cart positions the camera sees"
        )
    steps = args.steps or (12 if args.quick else 100)
    horizon = args.horizon or (8 if args.quick else 15)
    budgets = {name: dict(options) for name, options in (QUICK_BUDGETS if args.quick else FULL_BUDGETS).items()}
    for name, options in (args.budgets or {}).items():
        budgets.setdefault(name, {}).update(options)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.timing_only:
        names = [name for name in args.planners.split(",") if name != "oracle"]
        print(f"horizon {horizon}, {args.threads} torch thread(s), {platform.machine()}, torch {torch.__version__}\n")
        time_planners(names, budgets, horizon, args.repeats, args.seed)
        return

    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            encoder_dir, world_model_dir = build_quick_models(Path(scratch))
        else:
            encoder_dir, world_model_dir = args.encoder, args.world_model
        encoder = load_frozen_encoder(encoder_dir, torch.device("cpu"))
        world_model = LatentWorldModel.from_pretrained(world_model_dir).requires_grad_(False)
        if args.latent_weights and len(args.latent_weights) != world_model.config.code_dim:
            parser.error(
                f"--latent-weights has {len(args.latent_weights)} weights but the world model's latent has "
                f"{world_model.config.code_dim} dimensions; give one weight per dimension"
            )
        size = encoder.config.image_size
        tasks = make_tasks(args.tasks, size, args.seed, args.goal_range)
        cost = CostWeights(
            every_step=args.every_step_weight,
            smoothness=args.smoothness_weight,
            rest=args.rest_weight,
            latent_weights=args.latent_weights,
        )

        rows, per_task, final_errors = [], {}, {}
        with make(ENV_NAME, size=size, time_limit=None) as env:
            for name in args.planners.split(","):
                options = {**budgets.get(name, {}), "seed": args.seed}
                results = []
                for task in tasks:
                    if name == "oracle":
                        planner = make_planner("cem", **options)
                        result = run_oracle_episode(
                            env, task.goal_state, task.goal_frame, planner, horizon=horizon, steps=steps, seed=task.seed
                        )
                    else:
                        result = plan(
                            env, encoder, world_model, task.goal_frame, planner=make_planner(name, **options),
                            horizon=horizon, steps=steps, cost=cost, seed=task.seed, goal_state=task.goal_state,
                            imagine=False, correction=args.correction,
                        )  # fmt: skip
                    results.append(result)
                rows.append(summarize(name, results))
                per_task[name] = [bool(result.success) for result in results]
                final_errors[name] = [np.round(result.state_errors[-1], 4).tolist() for result in results]
                print(f"{name}: done in {time.perf_counter() - started:.0f} s", flush=True)

    print(f"\n{ENV_NAME}, {args.tasks} tasks, {steps} steps, horizon {horizon}, {args.threads} torch thread(s), "
          f"{'quick (tiny untrained models)' if args.quick else f'encoder {args.encoder}'}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}\n")  # fmt: skip
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"quick": args.quick, "steps": steps, "horizon": horizon, "goal_range": args.goal_range}
    record.update(budgets=budgets, rows=rows)
    record.update(cost=dataclasses.asdict(cost), correction=args.correction)
    record.update(successes_per_task=per_task, final_errors_per_task=final_errors)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nresults in {args.out}; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
