"""Left-right mirror symmetry: the envs that declare it obey it, and mirrored training data is built from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

# NOTE: imported before anything renders, for the reason given in tests/test_world_model.py.
import torch._dynamo  # noqa: F401

from envs.registry import ENV_NAMES, get_spec, make
from flowjepa.errors import InvalidInputError
from planning.data import EncodedSplit, mirror_split
from planning.readout import mirror_signs
from planning.train import WorldModelTrainConfig, train_world_model
from planning.world_model import LatentWorldModel
from tests.test_readout import tiny_encoder_and_episodes

IMAGE_SIZE = 16
SYMMETRIC_ENVS = [name for name in ENV_NAMES if get_spec(name).mirrored]

pytestmark = pytest.mark.usefixtures("single_thread")


def test_registry_symmetric_envs():
    assert set(SYMMETRIC_ENVS) == {"cartpole", "cartpole-swingup", "cartpole-gym", "pendulum"}
    for name in SYMMETRIC_ENVS:
        spec = get_spec(name)
        assert set(spec.mirrored) <= set(spec.state_names)


@pytest.mark.parametrize("name", SYMMETRIC_ENVS)
def test_simulator_obeys_declared_symmetry(name):
    """Stepping the mirrored state with the negated action lands on the mirror image of the original step."""
    spec = get_spec(name)
    signs = np.array([-1.0 if component in spec.mirrored else 1.0 for component in spec.state_names])
    generator = np.random.default_rng(0)

    with make(name, size=IMAGE_SIZE, time_limit=None) as env:
        env.reset(seed=0)
        for _ in range(3):
            state = generator.uniform(-0.3, 0.3, size=len(spec.state_names))
            relaxed = np.array([generator.choice([-1.0, 1.0]) if spec.discrete else generator.uniform(-1, 1)])
            trajectories = []
            for sign in (1.0, -1.0):
                env.set_physical_state(state * (signs if sign < 0 else 1.0))
                visited = []
                for _ in range(4):
                    _, _, _, _, info = env.step(env.to_env_action(sign * relaxed))
                    visited.append(np.asarray(info["state"], dtype=np.float64))
                trajectories.append(np.stack(visited))

            np.testing.assert_allclose(trajectories[1], trajectories[0] * signs, atol=1e-6)


def test_mirror_signs_readout_layout():
    signs = mirror_signs(["cart_position", "pole_angle"], [False, True], ("cart_position", "pole_angle"))
    torch.testing.assert_close(signs, torch.tensor([-1.0, -1.0, 1.0]))

    # A component outside the mirrored set keeps its sign, and an angle's cosine never flips.
    signs = mirror_signs(["height", "pole_angle"], [False, True], ("pole_angle",))
    torch.testing.assert_close(signs, torch.tensor([1.0, -1.0, 1.0]))


def test_mirror_split_appends_negated_episodes():
    codes = [torch.tensor([[0.5, 0.1, 0.9], [0.6, -0.2, 0.8]])]
    actions = [torch.tensor([[0.3]])]
    split = mirror_split(EncodedSplit(codes, actions), torch.tensor([-1.0, -1.0, 1.0]))

    assert len(split.codes) == 2
    assert len(split.actions) == 2
    torch.testing.assert_close(split.codes[0], codes[0])
    torch.testing.assert_close(split.codes[1], torch.tensor([[-0.5, -0.1, 0.9], [-0.6, 0.2, 0.8]]))
    torch.testing.assert_close(split.actions[1], torch.tensor([[-0.3]]))


def test_mirror_needs_the_readout_latent():
    with pytest.raises(InvalidInputError, match="--mirror needs --latent readout"):
        WorldModelTrainConfig(encoder="e", data="d", mirror=True).validate()


@pytest.fixture(scope="module")
def encoder_and_data(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_encoder_and_episodes(tmp_path_factory, seed=1)


def test_mirrored_training_centres_readouts(encoder_and_data, tmp_path):
    """With every episode and its mirror image, the flipped read-outs average to zero and the cosine is unchanged."""
    encoder_dir, data = encoder_and_data
    means = {}
    for mirror in (False, True):
        out = tmp_path / f"mirror-{mirror}"
        config = WorldModelTrainConfig(
            encoder=str(encoder_dir), data=str(data), out=str(out), latent="readout", readout_steps=20, history=2,
            hidden_dim=16, rollout=3, steps=2, batch_size=8, val_fraction=0.25, val_every=2, device="cpu",
            mirror=mirror,
        )  # fmt: skip
        train_world_model(config)
        means[mirror] = LatentWorldModel.from_pretrained(out).code_mean

    assert abs(float(means[False][0])) > 1e-3
    torch.testing.assert_close(means[True][:2], torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(means[True][2], means[False][2], atol=1e-6, rtol=1e-6)


def test_cli_mirror_errors(encoder_and_data, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from envs.collect import collect

    encoder_dir, data = encoder_and_data
    runner = CliRunner()
    common = ["train-world-model", "--encoder", str(encoder_dir), "--readout-steps", "2", "--steps", "2", "--mirror"]

    result = runner.invoke(app, [*common, "--data", str(data), "--out", str(tmp_path / "a")])
    assert result.exit_code == 2, result.output
    assert "--mirror needs --latent readout" in result.output
    assert "Traceback" not in result.output

    reacher = collect(
        "reacher", tmp_path / "reacher", episodes=2, steps=6, policy="ou", seed=0, size=IMAGE_SIZE, progress=False
    )
    out = tmp_path / "b"
    result = runner.invoke(app, [*common, "--data", str(reacher), "--out", str(out), "--latent", "readout"])
    assert result.exit_code == 2, result.output
    assert "'reacher' declares no such symmetry; train without --mirror" in result.output
    assert not out.exists()
