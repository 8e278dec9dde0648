"""Cross-cutting promises: the same seed gives the same plan, and broken goal files get clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import planning
from cli.main import app
from envs import make
from flowjepa import FlowJEPA, InvalidInputError, optimize_input
from tests.conftest import REPO_ROOT

SHIPPED = REPO_ROOT / "models" / "cartpole"
GOAL = REPO_ROOT / "examples" / "goals" / "cart-right.png"
runner = CliRunner()


def run_plan(seed: int) -> planning.PlanResult:
    encoder = FlowJEPA.from_pretrained(SHIPPED / "encoder").eval().requires_grad_(False)
    world_model = planning.LatentWorldModel.from_pretrained(SHIPPED / "world_model")
    goal = planning.load_goal_image(GOAL, encoder.config.image_size)
    with make("cartpole", size=encoder.config.image_size, time_limit=None) as env:
        return planning.plan(env, encoder, world_model, goal.frame, steps=3, seed=seed, imagine=False)


def test_same_seed_gives_same_plan():
    first, second = run_plan(seed=5), run_plan(seed=5)

    assert np.array_equal(first.actions, second.actions)
    assert np.array_equal(first.states, second.states)


def test_error_text_in_brackets_is_printed(tmp_path):
    # Rich would read "[nan, 0.0, ...]" as a style tag and drop it unless the message is escaped.
    result = runner.invoke(app, ["goal", "--cart-position", "nan", "--out", str(tmp_path / "goal.png")])

    assert result.exit_code == 2
    assert "[nan, 0.0, 0.0, 0.0]" in result.output


def test_truncated_goal_png_is_rejected(tmp_path):
    data = GOAL.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])

    with pytest.raises(InvalidInputError):
        planning.load_goal_image(truncated, 64)

    result = runner.invoke(app, ["plan", "--goal", str(truncated), "--steps", "2", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "episode.gif").exists()


def test_text_file_named_png_is_rejected(tmp_path):
    fake = tmp_path / "goal.png"
    fake.write_text("this is not an image")

    result = runner.invoke(app, ["plan", "--goal", str(fake), "--steps", "2", "--out", str(tmp_path / "o")])

    assert result.exit_code == 2, result.output
    assert "goal.png" in " ".join(result.output.split())


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_correction_outside_unit_interval_is_rejected(value, tmp_path):
    result = runner.invoke(
        app, ["plan", "--goal", str(GOAL), "--steps", "2", "--correction", value, "--out", str(tmp_path / "o")]
    )

    assert result.exit_code == 2, result.output
    assert "--correction must be a number in [0, 1]" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag", ["--smoothness-weight", "--every-step-weight", "--rest-weight"])
def test_negative_cost_weight_names_its_flag(flag, tmp_path):
    result = runner.invoke(app, ["plan", "--goal", str(GOAL), flag, "-1", "--out", str(tmp_path / "o")])

    assert result.exit_code == 2, result.output
    assert f"{flag} must be a number >= 0, got -1.0" in result.output
    assert not (tmp_path / "o").exists()


def test_long_error_stays_one_line(tmp_path):
    missing = tmp_path / "a-rather-long-folder-name-for-goals" / "missing-goal.png"
    result = runner.invoke(app, ["plan", "--goal", str(missing), "--out", str(tmp_path / "o")])

    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if "goal image not found" in line]
    assert len(lines) == 1
    assert len(lines[0]) > 80
    assert f"`flowjepa goal --env cartpole --cart-position 0.5 --pole-angle 0 --out {missing}`" in lines[0]


def test_sixteen_bit_goal_is_rejected(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.zeros((64, 64), np.uint16)).save(path)

    with pytest.raises(InvalidInputError):
        planning.load_goal_image(path, 64)


def test_non_finite_tensors_into_optimize_input_are_rejected():
    encoder = FlowJEPA.from_pretrained(SHIPPED / "encoder").eval()
    x = torch.full((1, 3, 64, 64), 0.5)
    goal = torch.zeros(1, encoder.code_dim)

    with pytest.raises(ValueError):
        optimize_input(encoder, x, goal.fill_(float("nan")), steps=1, lr=0.1)
    with pytest.raises(ValueError):
        optimize_input(encoder, x.clone().fill_(float("inf")), torch.zeros(1, encoder.code_dim), steps=1, lr=0.1)
