"""Collection with the planner (`collect --policy plan`) and the receding-horizon controller it shares with `plan`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from envs.collect import collect
from envs.dataset import load_episodes
from envs.registry import make
from envs.shards import read_manifest
from flowjepa.errors import InvalidInputError
from planning.controller import LatentMPC
from planning.loading import SHIPPED_ENCODER, SHIPPED_WORLD_MODEL, load_frozen_encoder
from planning.policy import PlannerPolicyConfig
from planning.registry import make_planner
from planning.world_model import LatentWorldModel

pytestmark = pytest.mark.usefixtures("single_thread")

# A small budget: the test checks the plumbing and the bookkeeping, not how well the planner steers.
BUDGET = {"population": 16, "iterations": 1, "horizon": 4, "goal_range": 0.3}


def _collect_plan(root: Path, episodes: int = 2, steps: int = 6, **planner) -> Path:
    return collect(
        "cartpole", root, episodes=episodes, steps=steps, policy="plan", planner={**BUDGET, **planner}, progress=False
    )


def test_plan_policy_collects_seeded_episodes(tmp_path):
    first = _collect_plan(tmp_path / "a")
    again = _collect_plan(tmp_path / "b")

    manifest, episodes = load_episodes(first)
    assert manifest["policy"] == "plan"
    assert manifest["planner"]["population"] == 16
    assert manifest["planner"]["world_model"] == str(SHIPPED_WORLD_MODEL)
    assert len(episodes) == 2
    for episode, repeat in zip(episodes, load_episodes(again)[1]):
        assert episode.frames.shape == (7, 64, 64, 3)
        assert np.all(np.abs(episode.actions) <= 1.0)
        np.testing.assert_array_equal(episode.actions, repeat.actions)

    # The planner noise, the goals and the start differ between episodes.
    assert not np.array_equal(episodes[0].actions, episodes[1].actions)


def test_resume_with_other_planner_rejected(tmp_path):
    root = _collect_plan(tmp_path / "a", episodes=1, steps=2)
    with pytest.raises(InvalidInputError, match="planner="):
        _collect_plan(root, episodes=2, steps=2, population=32)
    assert len(read_manifest(root)["episodes"]) == 1


def test_controller_observes_the_executed_action():
    # With correction gain 1 the model-error estimate equals the last one-step error exactly, so it shows
    # which action the controller used: the noisy executed one, not the planned one.
    device = torch.device("cpu")
    encoder = load_frozen_encoder(SHIPPED_ENCODER, device)
    world_model = LatentWorldModel.from_pretrained(SHIPPED_WORLD_MODEL).requires_grad_(False)
    planner = make_planner("mppi", population=8, iterations=1, seed=0)
    controller = LatentMPC(encoder, world_model, planner, horizon=3, correction=1.0)
    with make("cartpole", size=64, seed=0) as env:
        first = env.reset(seed=3)
        start = controller.start(first)
        controller.set_goal(first)
        planned = controller.decide().action
        executed = torch.clamp(planned + 0.5, -1.0, 1.0)
        frame, *_ = env.step(executed.numpy())
        observed = controller.observe(frame, executed.numpy())

    window = start.expand(world_model.config.history, -1)
    expected = observed - world_model.step(window[None], executed[None].to(window))[0]
    torch.testing.assert_close(controller._model_error.value, expected)
    assert not torch.allclose(executed, planned)


def test_decide_before_start_raises():
    controller = LatentMPC(None, None, None, horizon=3)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="start"):
        controller.decide()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--candidates", "8"], "--candidates apply to --policy plan only"),
        (["--policy", "plan", "--env", "pendulum"], "cart-pole envs only"),
        (["--policy", "plan", "--goal-range", "3"], "outside the camera's view"),
        (["--policy", "plan", "--goal-range", "-1"], "--goal-range=-1.0 is invalid"),
        (["--policy", "plan", "--planner", "sgd"], "unknown --planner 'sgd'"),
        (["--policy", "plan", "--world-model", "nowhere"], "--world-model nowhere does not exist"),
    ],
)
def test_bad_plan_options_exit_2(tmp_path, arguments, message):
    out = tmp_path / "data"
    result = CliRunner().invoke(app, ["collect", "--episodes", "1", "--steps", "2", "--out", str(out), *arguments])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()


def test_policy_options_reject_unknown_names():
    unknown = r"unknown PlannerPolicyConfig field\(s\) rest; valid fields: .*rest_weight"
    with pytest.raises(InvalidInputError, match=unknown):
        PlannerPolicyConfig.from_options({"rest": 5.0})
