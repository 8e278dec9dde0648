"""The state read-out latent: targets, the head, its training, and a read-out world model end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

# NOTE: imported before anything renders, for the reason given in tests/test_world_model.py.
import torch._dynamo  # noqa: F401

from flowjepa import FlowJEPA, FlowJEPAConfig
from flowjepa.errors import InvalidInputError
from planning.readout import ReadoutHead, readout_names, readout_targets, train_readout
from planning.train import READOUT_FILE, WorldModelTrainConfig, train_world_model
from planning.world_model import LatentWorldModel, WorldModelConfig

IMAGE_SIZE = 16
CARTPOLE_STATE = ("cart_position", "pole_angle", "cart_velocity", "pole_angular_velocity")

pytestmark = pytest.mark.usefixtures("single_thread")


def test_targets_read_angles_as_sine_and_cosine():
    states = np.array([[0.5, math.pi / 2, 1.0, 2.0], [-1.0, -math.pi, 0.0, 0.0]])
    targets = readout_targets(states, CARTPOLE_STATE, ["cart_position", "pole_angle"], [False, True])

    expected = torch.tensor([[0.5, 1.0, 0.0], [-1.0, 0.0, -1.0]])
    torch.testing.assert_close(targets, expected, atol=1e-6, rtol=0)
    assert readout_names(["cart_position", "pole_angle"], [False, True]) == [
        "cart_position",
        "sin(pole_angle)",
        "cos(pole_angle)",
    ]


def test_targets_name_a_missing_component():
    with pytest.raises(InvalidInputError, match="'pole_length'.*cart_position, pole_angle"):
        readout_targets(np.zeros((2, 4)), CARTPOLE_STATE, ["pole_length"], [False])


def test_head_learns_a_nonlinear_function_of_z():
    # Targets that a linear map of z cannot give: the squared norm of one cell and the sign of another.
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(1200, 4, 3, 3, generator=generator)
    targets = torch.stack([z[:, :, 0, 0].pow(2).sum(1), torch.tanh(3 * z[:, 0, 2, 2])], dim=1)
    torch.manual_seed(0)
    head = ReadoutHead((4, 3, 3), out_dim=2, channels=16, hidden=64)
    before = (targets[1000:] - targets[1000:].mean(0)).pow(2).mean(0).sqrt()

    errors = train_readout(head, (z[:1000], targets[:1000]), (z[1000:], targets[1000:]), steps=1500, batch_size=64)

    after = torch.tensor([errors["readout_rmse/0"], errors["readout_rmse/1"]])
    assert torch.all(after < 0.5 * before), (after, before)
    # The outputs are in target units: the stored statistics undo the standardisation.
    torch.testing.assert_close(head.target_mean, targets[:1000].mean(0))


def test_readout_config_is_validated():
    base = dict(action_dim=1, latent="readout", latent_shape=[4, 2, 2])
    with pytest.raises(InvalidInputError, match="readout_components"):
        WorldModelConfig(code_dim=3, **base)
    with pytest.raises(InvalidInputError, match="code_dim=2 does not match the 3 read-out dimensions"):
        WorldModelConfig(code_dim=2, readout_components=["x", "angle"], readout_angular=[False, True], **base)
    with pytest.raises(InvalidInputError, match="unknown world model latent 'pixels'"):
        WorldModelConfig(code_dim=3, action_dim=1, latent="pixels")
    with pytest.raises(InvalidInputError, match="unknown --latent 'pixels'"):
        WorldModelTrainConfig(encoder="e", data="d", latent="pixels").validate()


def tiny_encoder_and_episodes(tmp_path_factory, seed: int) -> tuple[Path, Path]:
    """Save a random 16 px encoder and collect 4 noisy balance episodes of 24 steps with ``seed``."""
    from envs.collect import collect

    torch.manual_seed(0)
    encoder_dir = (
        FlowJEPA(FlowJEPAConfig.tiny(image_size=IMAGE_SIZE))
        .eval()
        .save_pretrained(tmp_path_factory.mktemp("encoder") / "model")
    )
    data = collect(
        "cartpole", tmp_path_factory.mktemp("episodes"), episodes=4, steps=24, policy="balance", noise=0.5, seed=seed,
        size=IMAGE_SIZE, progress=False,
    )  # fmt: skip
    return encoder_dir, data


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    encoder_dir, data = tiny_encoder_and_episodes(tmp_path_factory, seed=0)
    out = tmp_path_factory.mktemp("run") / "wm"
    config = WorldModelTrainConfig(
        encoder=str(encoder_dir), data=str(data), out=str(out), latent="readout", readout_steps=30, history=2,
        hidden_dim=32, rollout=3, steps=6, batch_size=8, val_fraction=0.25, val_every=3, checkpoint_every=3,
        device="cpu",
    )  # fmt: skip
    train_world_model(config)
    return encoder_dir, data, out


def test_readout_world_model_round_trips_and_reads_z(trained):
    encoder_dir, data, out = trained
    assert (out / READOUT_FILE).is_file()
    model = LatentWorldModel.from_pretrained(out)
    encoder = FlowJEPA.from_pretrained(encoder_dir)

    assert model.config.latent == "readout"
    assert model.config.readout_names == ["cart_position", "sin(pole_angle)", "cos(pole_angle)"]
    assert not model.decodes_to_pixels
    model.check_encoder(encoder)

    frames = torch.from_numpy(np.load(sorted(data.glob("episode_*.npz"))[0])["frames"][:5]).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = model.normalize(model.readout(encoder.encode(frames)))
        torch.testing.assert_close(model.embed(encoder, frames), expected)
    # The cached training latents are the head's outputs on the same frames.
    from flowjepa.checkpoint import load_state

    cached = load_state(out / "codes.safetensors")["train_codes"][0][:5]
    torch.testing.assert_close(cached, model.readout(encoder.encode(frames)).detach(), atol=1e-5, rtol=1e-5)


def test_readout_world_model_resumes_without_retraining_the_head(trained, tmp_path):
    encoder_dir, data, out = trained
    import shutil

    copy = tmp_path / "wm"
    shutil.copytree(out, copy)
    head_bytes = (copy / READOUT_FILE).read_bytes()
    config = WorldModelTrainConfig(
        encoder=str(encoder_dir), data=str(data), out=str(copy), latent="readout", readout_steps=30, history=2,
        hidden_dim=32, rollout=3, steps=9, batch_size=8, val_fraction=0.25, val_every=3, checkpoint_every=3,
        device="cpu",
    )  # fmt: skip
    train_world_model(config, resume=True)

    assert (copy / READOUT_FILE).read_bytes() == head_bytes
    assert LatentWorldModel.from_pretrained(copy).readout is not None


def test_readout_world_model_plans_an_episode(trained):
    from envs.goal import render_goal
    from envs.registry import make
    from planning.episode import plan

    encoder_dir, _, out = trained
    encoder = FlowJEPA.from_pretrained(encoder_dir)
    model = LatentWorldModel.from_pretrained(out)
    goal = render_goal("cartpole", cart_position=0.3, size=IMAGE_SIZE)

    with make("cartpole", size=IMAGE_SIZE) as env:
        result = plan(env, encoder, model, goal, planner="gd", horizon=3, steps=4, seed=0)
        corrected = plan(env, encoder, model, goal, planner="mppi", horizon=3, steps=4, seed=0, correction=0.5,
                         planner_options={"population": 16, "iterations": 2})  # fmt: skip

    assert len(result.actions) == 4
    assert len(corrected.actions) == 4
    assert np.all(np.isfinite(corrected.costs))
    assert result.imagined_frames.shape[0] == 0
    assert np.all(np.isfinite(result.costs))


def test_cli_latent_errors(trained, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from envs.collect import collect

    encoder_dir, data, _ = trained
    runner = CliRunner()
    common = ["train-world-model", "--encoder", str(encoder_dir), "--readout-steps", "2", "--steps", "2"]

    result = runner.invoke(app, [*common, "--data", str(data), "--out", str(tmp_path / "a"), "--latent", "pixels"])
    assert result.exit_code == 2, result.output
    assert "unknown --latent 'pixels'" in result.output
    assert "Traceback" not in result.output

    reacher = collect(
        "reacher", tmp_path / "reacher", episodes=2, steps=6, policy="ou", seed=0, size=IMAGE_SIZE, progress=False
    )
    result = runner.invoke(app, [*common, "--data", str(reacher), "--out", str(tmp_path / "b"), "--latent", "readout"])
    assert result.exit_code == 2, result.output
    assert "'reacher' has no success rule; use --latent code" in result.output
