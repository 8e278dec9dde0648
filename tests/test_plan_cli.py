"""`flowjepa train-world-model` and `flowjepa plan` end to end with tiny models, plus goal images and plan()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

# NOTE: the first torch.optim step imports triton. Triton crashes (SIGSEGV) in a process that has already
# rendered with MuJoCo's EGL backend, so it is imported here, before anything renders.
import torch._dynamo  # noqa: F401
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from cli.plan import _check_model_folders
from flowjepa import FlowJEPA, FlowJEPAConfig
from flowjepa.errors import InvalidInputError
from planning.episode import plan
from planning.goal_image import load_goal_image
from planning.world_model import LatentWorldModel, WorldModelConfig, encoder_fingerprint

IMAGE_SIZE = 16
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return (
        FlowJEPA(FlowJEPAConfig.tiny(image_size=IMAGE_SIZE))
        .eval()
        .save_pretrained(tmp_path_factory.mktemp("encoder") / "model")
    )


@pytest.fixture(scope="module")
def world_model_dir(tmp_path_factory, encoder_dir) -> Path:
    from envs.collect import collect

    data = collect(
        "cartpole",
        tmp_path_factory.mktemp("episodes"),
        episodes=3,
        steps=16,
        policy="ou",
        size=IMAGE_SIZE,
        progress=False,
    )
    out = tmp_path_factory.mktemp("world_model") / "run"
    arguments = ["train-world-model", "--encoder", str(encoder_dir), "--data", str(data), "--out", str(out)]
    arguments += ["--steps", "6", "--batch-size", "4", "--hidden-dim", "16", "--rollout", "3", "--history", "2"]
    arguments += ["--val-fraction", "0.34", "--val-every", "3", "--device", "cpu"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def goal_png(tmp_path_factory) -> Path:
    from envs.goal import goal_state, render_goal, save_goal_png
    from envs.registry import get_spec

    state = goal_state("cartpole", cart_position=0.3)
    path = tmp_path_factory.mktemp("goal") / "goal.png"
    return save_goal_png(
        path, render_goal("cartpole", state, size=IMAGE_SIZE), "cartpole", state, get_spec("cartpole").state_names
    )


def plan_arguments(encoder_dir: Path, world_model_dir: Path, goal_png: Path, out: Path) -> list[str]:
    return [
        "plan", "--goal", str(goal_png), "--model", str(encoder_dir), "--world-model", str(world_model_dir),
        "--out", str(out), "--device", "cpu",
    ]  # fmt: skip


def test_train_world_model_cli_writes_model(world_model_dir):
    for name in ("world_model.safetensors", "config.json", "checkpoint.safetensors", "metrics.jsonl", "metrics.png"):
        assert (world_model_dir / name).is_file(), name
    rows = [json.loads(line) for line in (world_model_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val/rollout_mse" in row for row in rows)


def test_plan_cli_writes_video_plot_and_result(encoder_dir, world_model_dir, goal_png, tmp_path):
    out = tmp_path / "plan"
    arguments = plan_arguments(encoder_dir, world_model_dir, goal_png, out)

    result = runner.invoke(app, arguments + ["--steps", "4", "--horizon", "4", "--iterations", "2"])

    assert result.exit_code == 0, result.output
    assert "step    4/4" in result.output
    assert "success:" in result.output
    assert "final latent distance" in result.output
    assert "final true state distance" in result.output
    assert (out / "costs.png").is_file()
    summary = json.loads((out / "result.json").read_text())
    assert isinstance(summary["success"], bool)
    assert (summary["planner"], summary["rest_weight"]) == ("cem", 5.0)
    assert len(summary["actions"]) == 4
    assert len(summary["latent_distances"]) == 5
    import imageio.v3 as iio

    video = iio.imread(out / "episode.gif", index=None)
    side = IMAGE_SIZE * 8
    assert video.shape[0] == 5
    assert video.shape[2] == 3 * side + 8, "expected real | imagined | goal panels side by side"


def test_plan_cli_runs_mppi(encoder_dir, world_model_dir, goal_png, tmp_path):
    arguments = plan_arguments(encoder_dir, world_model_dir, goal_png, tmp_path / "plan")

    result = runner.invoke(
        app, arguments + ["--planner", "mppi", "--steps", "2", "--horizon", "3", "--candidates", "16"]
    )

    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "plan" / "result.json").read_text())["planner"] == "mppi"


@pytest.mark.parametrize(
    ("planner", "iterations", "candidates", "expected"),
    [
        ("cem", None, None, {"population": 300, "iterations": 5}),
        ("mppi", None, None, {"population": 2000, "iterations": 5}),
        ("mppi", 2, 64, {"population": 64, "iterations": 2}),
        ("gd", None, None, {}),
        ("gd", 3, 4, {"candidates": 4, "iterations": 3}),
    ],
)
def test_plan_cli_budget_defaults(planner, iterations, candidates, expected):
    from cli.plan import _planner_options

    assert _planner_options(planner, iterations, candidates, None) == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--horizon", "0"], "--horizon must be > 0"),
        (["--steps", "-1"], "--steps must be > 0"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--planner", "ilqr"], "valid planners: gd, cem, mppi"),
        (["--env", "mountaincar"], "unknown environment"),
        (["--planner", "cem", "--lr", "0.1"], "gd planner only"),
        (["--video-format", "avi"], "valid formats: gif, mp4"),
        (["--threads", "0"], "--threads must be > 0"),
    ],
)
def test_plan_cli_rejects_bad_options(encoder_dir, world_model_dir, goal_png, tmp_path, extra, message):
    result = runner.invoke(app, plan_arguments(encoder_dir, world_model_dir, goal_png, tmp_path / "plan") + extra)

    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "plan").exists()


def test_plan_cli_rejects_missing_goal(encoder_dir, world_model_dir, tmp_path):
    result = runner.invoke(app, plan_arguments(encoder_dir, world_model_dir, tmp_path / "absent.png", tmp_path / "o"))

    assert result.exit_code == 2
    assert "goal image not found" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_plan_help_shows_budget_defaults():
    result = runner.invoke(app, ["plan", "--help"], env={"COLUMNS": "200"})

    help_text = " ".join(result.output.split())
    assert "[default: 5 for cem and mppi, 10 for gd]" in help_text
    assert "[default: 300 for cem, 2000 for mppi, 8 for gd]" in help_text
    assert "[default: 0.3]" in help_text


def test_missing_models_name_the_training_commands(tmp_path):
    with pytest.raises(InvalidInputError, match="flowjepa pretrain"):
        _check_model_folders(tmp_path / "encoder", tmp_path)
    with pytest.raises(InvalidInputError, match="flowjepa train-world-model"):
        _check_model_folders(tmp_path, tmp_path / "world_model")


def save_image(path: Path, array: np.ndarray, mode: str | None = None, **options) -> Path:
    Image.fromarray(array, mode=mode).save(path, **options)
    return path


def test_goal_png_with_state_loads_unchanged(goal_png):
    goal = load_goal_image(goal_png, IMAGE_SIZE)

    assert goal.frame.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert goal.frame.dtype == np.uint8
    assert goal.env == "cartpole"
    assert goal.state[0] == pytest.approx(0.3)
    assert goal.conversions == []


def test_goal_rgba_opaque_and_palette_convert(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((IMAGE_SIZE, IMAGE_SIZE, 1), 255, np.uint8)], axis=2)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.png")

    opaque = load_goal_image(save_image(tmp_path / "rgba.png", rgba), IMAGE_SIZE)
    converted = load_goal_image(tmp_path / "palette.png", IMAGE_SIZE)

    assert np.array_equal(opaque.frame, rgb)
    assert opaque.conversions == ["RGBA -> RGB (alpha fully opaque, dropped)"]
    assert np.array_equal(converted.frame, np.asarray(palette.convert("RGB")))
    assert converted.state is None


def test_goal_large_square_is_resized_and_jpeg_accepted(tmp_path):
    big = np.zeros((4 * IMAGE_SIZE, 4 * IMAGE_SIZE, 3), np.uint8)
    big[:, : 2 * IMAGE_SIZE] = (200, 30, 30)
    nearly_square = np.zeros((100, 101, 3), np.uint8)

    resized = load_goal_image(save_image(tmp_path / "big.png", big), IMAGE_SIZE)
    jpeg = load_goal_image(save_image(tmp_path / "big.jpg", big, quality=95), IMAGE_SIZE)
    nearly = load_goal_image(save_image(tmp_path / "near.png", nearly_square), IMAGE_SIZE)

    assert resized.frame.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert tuple(resized.frame[IMAGE_SIZE // 2, 2]) == (200, 30, 30)
    assert "resized 64x64 -> 16x16 (Lanczos)" in resized.conversions
    assert jpeg.frame.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert nearly.frame.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("grey.png", lambda: Image.new("L", (16, 16)), "greyscale"),
        ("deep.png", lambda: Image.new("I;16", (16, 16)), "greyscale"),
        ("wide.png", lambda: Image.new("RGB", (32, 16)), "square"),
        ("anim.gif", lambda: Image.new("RGB", (16, 16)), "pass a PNG or JPEG"),
        ("huge.png", lambda: Image.new("1", (4097, 4097)), "over the limit of 4096x4096"),
        ("cmyk.jpg", lambda: Image.new("CMYK", (16, 16)), "CMYK"),
        ("dot.png", lambda: Image.new("RGB", (1, 1)), "too small"),
        ("small.png", lambda: Image.new("RGB", (3, 3)), "at most 4x upscaling"),
    ],
)
def test_goal_images_rejected_with_reason(tmp_path, name, make, message):
    make().save(tmp_path / name)

    with pytest.raises(InvalidInputError, match=message):
        load_goal_image(tmp_path / name, IMAGE_SIZE)


def test_goal_transparent_pixels_rejected(tmp_path):
    rgba = np.full((IMAGE_SIZE, IMAGE_SIZE, 4), 255, np.uint8)
    rgba[0, 0, 3] = 0

    with pytest.raises(InvalidInputError, match="1 transparent pixel"):
        load_goal_image(save_image(tmp_path / "alpha.png", rgba), IMAGE_SIZE)


def identity_world_model(encoder: FlowJEPA, action_dim: int = 1) -> LatentWorldModel:
    """An untrained world model: its zero output layer predicts that the code never changes."""
    config = WorldModelConfig(
        code_dim=encoder.code_dim,
        action_dim=action_dim,
        hidden_dim=16,
        image_size=IMAGE_SIZE,
        encoder_fingerprint=encoder_fingerprint(encoder),
    )
    return LatentWorldModel(config).requires_grad_(False)


def test_plan_from_goal_state_succeeds_immediately(encoder_dir):
    from envs.registry import make

    encoder = FlowJEPA.from_pretrained(encoder_dir).requires_grad_(False)
    world_model = identity_world_model(encoder)
    with make("cartpole", size=IMAGE_SIZE) as env:
        goal_frame = env.reset(seed=3)
        goal_state = env.physical_state()

        result = plan(
            env, encoder, world_model, goal_frame, planner="gd", horizon=4, steps=3, seed=3, goal_state=goal_state
        )

    assert result.latent_distances[0] == 0.0
    assert result.costs[0] == 0.0
    assert np.all(result.actions[0] == 0.0), "a zero-cost start should keep the warm start (no force)"
    assert result.success is True
    assert result.imagined_frames.shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)


def test_plan_on_discrete_env_sends_valid_actions(encoder_dir):
    from envs.registry import make

    encoder = FlowJEPA.from_pretrained(encoder_dir).requires_grad_(False)
    world_model = identity_world_model(encoder)
    with make("cartpole-gym", size=IMAGE_SIZE) as env:
        goal_frame = env.reset(seed=1)

        options = {"population": 8, "elites": 2, "iterations": 2}
        result = plan(
            env, encoder, world_model, goal_frame, planner="cem", planner_options=options, horizon=3, steps=3, seed=1,
            imagine=False,
        )  # fmt: skip

    assert result.actions.shape == (3, 1)
    assert np.all(np.abs(result.actions) <= 1.0)
    assert result.success is None
    assert "no physical state" in result.success_rule


def test_short_episode_checks_every_step():
    from planning.success import CARTPOLE_RULE

    errors = np.array([[0.5, 0.0], [0.05, 0.1], [0.05, 0.1]])

    assert CARTPOLE_RULE.describe(3).endswith("at each of the 3 steps")
    assert CARTPOLE_RULE.describe(30).endswith("at each of the last 10 steps")
    assert not CARTPOLE_RULE.succeeded(errors, completed=True)
    assert CARTPOLE_RULE.succeeded(errors[1:], completed=True)
    assert not CARTPOLE_RULE.succeeded(errors[1:], completed=False)
