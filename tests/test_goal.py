"""Goal images: rendering a target state, extracting a collected frame, and the PNG metadata."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import envs
from cli.main import app
from envs.collect import collect
from envs.dataset import load_episodes
from envs.goal import goal_state, read_goal_png, render_goal, save_goal_png
from flowjepa.errors import InvalidInputError


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    root = tmp_path_factory.mktemp("goal") / "data"
    return collect("cartpole-gym", root, episodes=2, steps=6, size=24, progress=False)


def test_cli_goal_renders_requested_state(tmp_path):
    out = tmp_path / "goal.png"
    result = CliRunner().invoke(
        app,
        [
            "goal",
            "--env",
            "cartpole",
            "--cart-position",
            "0.5",
            "--pole-angle",
            "0.2",
            "--size",
            "48",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "")
    assert "cart_position=0.5" in result.output

    pixels, metadata = read_goal_png(out)
    assert pixels.shape == (48, 48, 3)
    assert pixels.dtype == np.uint8
    assert metadata["mode"] == "RGB"
    assert metadata["env"] == "cartpole"
    assert metadata["size"] == 48
    assert metadata["source"] == "render"
    assert metadata["state_names"] == ("cart_position", "pole_angle", "cart_velocity", "pole_angular_velocity")
    assert np.array_equal(metadata["state"], [0.5, 0.2, 0.0, 0.0])

    with envs.make("cartpole", size=48) as env:
        env.reset(seed=0)
        assert np.array_equal(pixels, env.set_physical_state([0.5, 0.2, 0.0, 0.0]))


def test_cli_goal_from_episode(collected, tmp_path):
    out = tmp_path / "from_episode.png"
    result = CliRunner().invoke(
        app, ["goal", "--episode", str(collected), "--episode-index", "1", "--step", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output

    _, episodes = load_episodes(collected)
    pixels, metadata = read_goal_png(out)
    assert np.array_equal(pixels, episodes[1].frames[3])
    assert np.array_equal(metadata["state"], episodes[1].states[3])
    assert metadata["env"] == "cartpole-gym"
    assert metadata["size"] == 24


def test_cli_goal_from_shard_file(collected, tmp_path):
    out = tmp_path / "from_shard.png"
    shard = collected / "episode_000000.npz"
    result = CliRunner().invoke(app, ["goal", "--episode", str(shard), "--step", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    _, episodes = load_episodes(collected)
    assert np.array_equal(read_goal_png(out)[0], episodes[0].frames[0])


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--env", "pendulum", "--cart-position", "0.3"], "does not apply to pendulum"),
        (["--env", "cartpole", "--value", "speed=1"], "no state value"),
        (["--env", "cartpole", "--value", "cart_velocity"], "NAME=NUMBER"),
        (["--env", "cartpole", "--step", "3"], "need --episode"),
        (["--env", "cartpole", "--size", "4"], "size"),
        (["--env", "nowhere"], "valid names"),
    ],
)
def test_cli_goal_rejects_bad_values(tmp_path, arguments, expected):
    result = CliRunner().invoke(app, ["goal", *arguments, "--out", str(tmp_path / "goal.png")])
    assert result.exit_code == 2
    assert expected in result.output.replace("\n", " ")
    assert not (tmp_path / "goal.png").exists()


def test_cli_goal_rejects_step_outside_episode(collected, tmp_path):
    result = CliRunner().invoke(
        app, ["goal", "--episode", str(collected), "--step", "99", "--out", str(tmp_path / "g.png")]
    )
    assert result.exit_code == 2
    assert "pass 0 to 6" in result.output


def test_goal_state_fills_unset_values_with_zero():
    assert np.array_equal(goal_state("cartpole", pole_angle=0.1), [0.0, 0.1, 0.0, 0.0])
    assert np.array_equal(goal_state("pendulum", [1.0, 2.0]), [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="not both"):
        goal_state("cartpole", [0, 0, 0, 0], pole_angle=0.1)
    with pytest.raises(InvalidInputError, match="expected 4"):
        goal_state("cartpole", [0.0, 0.0])
    with pytest.raises(InvalidInputError, match="NaN"):
        goal_state("cartpole", pole_angle=float("nan"))


@pytest.mark.parametrize("env_name", ["cartpole", "cartpole-gym"])
def test_goal_cart_outside_the_view_is_rejected(env_name):
    with pytest.raises(InvalidInputError, match="outside the camera's view"):
        goal_state(env_name, cart_position=100.0)
    with pytest.raises(InvalidInputError, match="outside the camera's view"):
        goal_state(env_name, [-1.5, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("env_name", ["cartpole", "cartpole-gym"])
def test_goal_cart_at_the_view_edge_is_drawn(env_name):
    # Against the same scene with the cart far outside the frame, the cart at the edge of the
    # accepted range still covers pixels.
    edge = render_goal(env_name, size=64, cart_position=1.4).astype(int)
    with envs.make(env_name, size=64, seed=0) as env:
        env.reset()
        cart_outside = env.set_physical_state([100.0, 0.0, 0.0, 0.0]).astype(int)
    centre = render_goal(env_name, size=64, cart_position=0.0).astype(int)
    # The whole cart and pole: at least 90% of the pixels they cover at the centre.
    assert (np.abs(edge - cart_outside).sum(-1) > 30).sum() >= 0.9 * (np.abs(centre - cart_outside).sum(-1) > 30).sum()


def test_render_goal_for_gym_cartpole():
    frame = render_goal("cartpole-gym", size=32, cart_position=-0.5)
    assert frame.shape == (32, 32, 3)
    assert frame.std() > 0
    assert not np.array_equal(frame, render_goal("cartpole-gym", size=32, cart_position=0.5))


def test_goal_png_round_trip_without_state(tmp_path):
    frame = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    path = save_goal_png(tmp_path / "goal.png", frame, "cartpole", None, ("a", "b"))
    pixels, metadata = read_goal_png(path)
    assert np.array_equal(pixels, frame)
    assert metadata["state"] is None
    assert metadata["env"] == "cartpole"


@pytest.mark.parametrize("mode, shape", [("RGBA", (10, 12, 4)), ("L", (10, 12))])
def test_read_goal_png_keeps_foreign_modes(tmp_path, mode, shape):
    path = tmp_path / f"{mode}.png"
    Image.new(mode, (12, 10)).save(path)
    pixels, metadata = read_goal_png(path)
    assert pixels.shape == shape
    assert metadata["mode"] == mode
    assert metadata["width"] == 12
    assert metadata["height"] == 10
    assert metadata["env"] is None
    assert metadata["state"] is None


def test_read_goal_png_rejects_missing_and_broken_files(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        read_goal_png(tmp_path / "absent.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match="cannot be read"):
        read_goal_png(broken)


def test_read_goal_png_rejects_malformed_metadata(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("flowjepa", "{not json")
    path = tmp_path / "malformed.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with pytest.raises(InvalidInputError, match="malformed"):
        read_goal_png(path)
