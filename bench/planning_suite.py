"""Section "planning": gradient MPC, CEM, MPPI and random shooting on the same cartpole goals and world model.

The tasks, the episode loop and the oracle come from :mod:`bench.bench_planning` and :mod:`planning`.
Random shooting is the CEM planner with one iteration and ``init_std`` 1: it scores one batch of Gaussian
action sequences around the warm start (clipped to the action box) and keeps the best. The oracle plans
with CEM on the true simulator state and is the ceiling.

The full budget needs a trained cartpole encoder and world model (``--cartpole-model`` and
``--world-model``, by default ``models/cartpole/encoder`` and ``models/cartpole/world_model``); without
them the section is skipped. The quick and tiny budgets build a small untrained encoder and a briefly
trained world model instead, which checks the pipeline and the time ratios but not success rates.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch

from bench.context import BenchContext
from bench.plots import grouped_bars
from bench.report import SectionResult, Table, ratio
from bench.training import VariantSpec

KEY = "planning"
TITLE = "Planning: success rate and time per action on seeded cartpole goals"
PLANNERS = ("gd", "cem", "mppi", "random", "oracle")
PLANNER_LABELS = {
    "gd": "gradient MPC",
    "cem": "CEM",
    "mppi": "MPPI",
    "random": "random shooting",
    "oracle": "oracle (CEM on the true state)",
}


def required_models(context: BenchContext) -> list[VariantSpec]:
    """Planning uses given models (or its own quick ones), none of the bench-trained variants."""
    return []


def make_planner_for(name: str, options: dict[str, Any], seed: int):
    """Build planner ``name`` of :data:`PLANNERS` with its budget ``options``."""
    from planning.registry import make_planner

    if name == "random":
        return make_planner("cem", **{"init_std": 1.0, **options, "iterations": 1}, seed=seed)
    if name == "oracle":
        return make_planner("cem", **options, seed=seed)
    return make_planner(name, **options, seed=seed)


def _models(context: BenchContext) -> tuple[Path, Path, str] | str:
    """Return ``(encoder, world model, origin)``, or the reason planning cannot run."""
    encoder, world_model = context.planning_paths()
    # Shorter budgets use the shipped default models only when they were named explicitly.
    given = context.options.world_model is not None or context.budget.name == "full"
    if given and (world_model / "config.json").is_file() and encoder.is_dir():
        return encoder, world_model, f"encoder {encoder}, world model {world_model}"
    if context.budget.name == "full":
        return (
            f"no trained cartpole world model at {world_model} (or no encoder at {encoder}). Train them with "
            "`flowjepa pretrain` and `flowjepa train-world-model`, then pass --cartpole-model and --world-model"
        )
    from bench.bench_planning import build_quick_models

    folder = context.options.work / "planning-quick"
    if (folder / "world_model" / "config.json").is_file() and (folder / "encoder").is_dir():
        return folder / "encoder", folder / "world_model", "small untrained encoder and briefly trained world model"
    if folder.exists():
        shutil.rmtree(folder)  # left incomplete by an interrupted run; the world-model trainer refuses to reuse it
    folder.mkdir(parents=True)
    encoder_dir, world_model_dir = build_quick_models(folder)
    return Path(encoder_dir), Path(world_model_dir), "small untrained encoder and briefly trained world model"


def run(context: BenchContext) -> SectionResult:
    """Run every planner on every task and tabulate success and time per action."""
    from bench.bench_planning import ENV_NAME, make_tasks, summarize
    from envs.registry import make
    from planning.cost import CostWeights
    from planning.episode import plan
    from planning.loading import load_frozen_encoder
    from planning.oracle import run_oracle_episode
    from planning.world_model import LatentWorldModel

    result = SectionResult(KEY, TITLE)
    found = _models(context)
    if isinstance(found, str):
        result.status, result.reason = "skipped", found
        return result
    encoder_dir, world_model_dir, origin = found

    budget, seed = context.budget, context.options.seed
    encoder = load_frozen_encoder(encoder_dir, torch.device("cpu"))
    world_model = LatentWorldModel.from_pretrained(world_model_dir).requires_grad_(False)
    size = encoder.config.image_size
    tasks = make_tasks(budget.planning_tasks, size, seed)
    horizon, steps = budget.planning_horizon, budget.planning_steps

    rows, per_task = [], {}
    with make(ENV_NAME, size=size, time_limit=None) as env:
        for name in PLANNERS:
            options = dict(budget.planning_options.get(name, {}))
            results = []
            started = time.perf_counter()
            for task in tasks:
                planner = make_planner_for(name, options, seed)
                if name == "oracle":
                    outcome = run_oracle_episode(
                        env, task.goal_state, task.goal_frame, planner, horizon=horizon, steps=steps, seed=task.seed
                    )
                else:
                    outcome = plan(
                        env, encoder, world_model, task.goal_frame, planner=planner, horizon=horizon, steps=steps,
                        cost=CostWeights(), seed=task.seed, goal_state=task.goal_state, imagine=False,
                    )  # fmt: skip
                results.append(outcome)
            summary = summarize(name, results)
            summary["options"] = options
            summary["wall_s"] = time.perf_counter() - started
            rows.append(summary)
            per_task[name] = [bool(outcome.success) for outcome in results]

    by_name = {row["planner"]: row for row in rows}
    table_rows = [
        [
            PLANNER_LABELS[row["planner"]],
            f"{row['successes']}/{row['tasks']}",
            row["success_rate"],
            ratio(row["success_rate"], by_name["oracle"]["success_rate"]),
            row["final_cart_error_m"],
            row["final_pole_error_rad"],
            1000 * row["seconds_per_action"],
            ratio(row["seconds_per_action"], by_name["cem"]["seconds_per_action"]),
            row["rollouts_per_action"],
        ]
        for row in rows
    ]
    result.tables.append(
        Table(
            caption=(
                f"{len(tasks)} seeded goal tasks on {ENV_NAME} at {size} px, {steps} actions per episode, horizon "
                f"{horizon}; models: {origin}."
            ),
            columns=[
                "planner",
                "successes",
                "success rate",
                "/ oracle",
                "final cart error (m)",
                "final pole error (rad)",
                "ms per action",
                "time / CEM",
                "rollouts per action",
            ],
            rows=table_rows,
        )
    )
    plot = "planning.png"
    grouped_bars(
        context.options.out / plot,
        [PLANNER_LABELS[row["planner"]] for row in rows],
        {"success rate": [row["success_rate"] for row in rows]},
        "success rate",
        "Planning success on seeded cartpole goals",
    )
    result.plots.append(plot)
    result.notes.append(
        "Planner options: "
        + "; ".join(f"{PLANNER_LABELS[name]} {budget.planning_options.get(name) or 'defaults'}" for name in PLANNERS)
        + ". Success: the cart within 0.1 m and the pole within 0.2 rad of the goal over the last 10 steps. "
        "Time per action is the planner's own wall time (encoding and simulation excluded)."
    )
    if "untrained" in origin:
        result.notes.append(
            "The models here are a small untrained encoder and a world model trained for a few steps, so these "
            "success rates say nothing about the planners; they check that every planner runs."
        )
    result.data = {"origin": origin, "rows": rows, "successes_per_task": per_task}
    return result
