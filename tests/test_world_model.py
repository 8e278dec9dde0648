"""World model training on a real tiny encoder and collected cartpole episodes: resume, signals, divergence, files."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

# NOTE: the first torch.optim step imports triton. Triton crashes (SIGSEGV) in a process that has already
# rendered with MuJoCo's EGL backend, so it is imported here, before anything renders.
import torch._dynamo  # noqa: F401

from flowjepa import FlowJEPA, FlowJEPAConfig
from flowjepa.checkpoint import load_state, load_weights
from flowjepa.errors import InvalidInputError, TrainingDivergedError
from planning.train import CHECKPOINT_FILE, TrainingInterrupted, WorldModelTrainConfig, train_world_model
from planning.world_model import LatentWorldModel, WorldModelConfig, encoder_fingerprint

IMAGE_SIZE = 16


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = FlowJEPA(FlowJEPAConfig.tiny(image_size=IMAGE_SIZE)).eval()
    return model.save_pretrained(tmp_path_factory.mktemp("encoder") / "model")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from envs.collect import collect

    root = tmp_path_factory.mktemp("episodes")
    return collect("cartpole", root, episodes=4, steps=24, policy="ou", seed=0, size=IMAGE_SIZE, progress=False)


def make_config(encoder_dir: Path, data_dir: Path | list[str], out: Path, **overrides) -> WorldModelTrainConfig:
    values = dict(
        encoder=str(encoder_dir),
        data=[str(folder) for folder in data_dir] if isinstance(data_dir, list) else str(data_dir),
        out=str(out),
        history=2,
        hidden_dim=32,
        rollout=3,
        steps=8,
        batch_size=8,
        val_fraction=0.25,
        val_every=4,
        checkpoint_every=4,
        log_every=1,
        device="cpu",
    )
    values.update(overrides)
    return WorldModelTrainConfig(**values)


def test_two_data_folders_are_combined(encoder_dir, data_dir, tmp_path):
    from envs.collect import collect
    from planning.data import encode_dataset

    second = collect(
        "cartpole", tmp_path / "balance", episodes=4, steps=20, policy="balance", seed=1, size=IMAGE_SIZE,
        progress=False,
    )  # fmt: skip
    encoder = FlowJEPA.from_pretrained(encoder_dir)
    combined = encode_dataset(
        encoder, [data_dir, second], tmp_path / "codes", encoder_fingerprint(encoder), val_fraction=0.25
    )

    # Each folder gives 3 training and 1 validation episode; frames keep their own episode lengths.
    assert len(combined.train.codes) == 6
    assert len(combined.val.codes) == 2
    assert sorted(len(codes) for codes in combined.train.codes) == [21, 21, 21, 25, 25, 25]

    folder = train_world_model(make_config(encoder_dir, [str(data_dir), str(second)], tmp_path / "run"))
    assert (folder / "world_model.safetensors").is_file()


def test_data_folders_of_other_envs_are_rejected(encoder_dir, data_dir, tmp_path):
    from envs.collect import collect

    swingup = collect(
        "cartpole-swingup", tmp_path / "swingup", episodes=2, steps=8, policy="ou", seed=0, size=IMAGE_SIZE,
        progress=False,
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match="differ in env"):
        train_world_model(make_config(encoder_dir, [str(data_dir), str(swingup)], tmp_path / "run"))
    with pytest.raises(InvalidInputError, match="given twice"):
        train_world_model(make_config(encoder_dir, [str(data_dir), str(data_dir / ".")], tmp_path / "run"))


@pytest.mark.parametrize("transition", ["ode", "residual"])
def test_training_lowers_loss_and_validates(encoder_dir, data_dir, tmp_path, transition):
    config = make_config(encoder_dir, data_dir, tmp_path / "run", transition=transition, steps=40, lr=3e-3)

    folder = train_world_model(config)

    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    validation = [row["val/rollout_mse"] for row in rows if "val/rollout_mse" in row]
    first_train = sum(row["train/rollout_mse"] for row in rows[:5]) / 5
    last_train = sum(row["train/rollout_mse"] for row in rows[-5:]) / 5
    assert len(validation) == 10
    assert last_train < first_train
    assert validation[-1] < validation[0]
    assert (folder / "metrics.png").is_file()
    assert (folder / "world_model.safetensors").is_file()


def test_resume_equals_uninterrupted_run(encoder_dir, data_dir, tmp_path):
    straight = train_world_model(make_config(encoder_dir, data_dir, tmp_path / "straight", steps=8))
    resumed_dir = tmp_path / "resumed"
    train_world_model(make_config(encoder_dir, data_dir, resumed_dir, steps=4))
    encoded = []

    train_world_model(
        make_config(encoder_dir, data_dir, resumed_dir, steps=8),
        resume=True,
        on_encode=lambda done, total: encoded.append(done),
    )

    expected = load_weights(straight / "world_model.safetensors")
    actual = load_weights(resumed_dir / "world_model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert encoded == [], "resuming encoded the episodes again instead of using the code cache"


def test_run_from_before_a_new_option_resumes(encoder_dir, data_dir, tmp_path):
    """A run folder written before an option existed resumes when that option is at its default."""
    run = tmp_path / "old"
    train_world_model(make_config(encoder_dir, data_dir, run, steps=4))
    stored = json.loads((run / "train_config.json").read_text())
    del stored["mirror"], stored["ensemble"]
    (run / "train_config.json").write_text(json.dumps(stored))

    train_world_model(make_config(encoder_dir, data_dir, run, steps=6), resume=True)
    with pytest.raises(InvalidInputError, match=r"ensemble: 1 -> 2"):
        train_world_model(make_config(encoder_dir, data_dir, run, steps=8, ensemble=2), resume=True)


def test_sigint_saves_checkpoint_then_resumes(encoder_dir, data_dir, tmp_path):
    run_dir = tmp_path / "run"

    def interrupt(step: int, metrics: dict[str, float]) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="SIGINT received: checkpoint saved at step 3"):
        train_world_model(make_config(encoder_dir, data_dir, run_dir), on_step=interrupt)

    assert load_state(run_dir / CHECKPOINT_FILE)["step"] == 3
    train_world_model(make_config(encoder_dir, data_dir, run_dir), resume=True)
    assert load_state(run_dir / CHECKPOINT_FILE)["step"] == 8


def test_divergence_raises_and_keeps_finite_checkpoint(encoder_dir, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = make_config(encoder_dir, data_dir, run_dir, lr=1e8, steps=50, checkpoint_every=1, transition="residual")

    with pytest.raises(TrainingDivergedError, match="became inf at step 2"):
        train_world_model(config)

    state = load_state(run_dir / CHECKPOINT_FILE)
    assert state["step"] == 1
    assert all(bool(torch.isfinite(tensor).all()) for tensor in state["model"].values())


def test_existing_run_needs_resume_flag(encoder_dir, data_dir, tmp_path):
    config = make_config(encoder_dir, data_dir, tmp_path / "run", steps=2)
    train_world_model(config)

    with pytest.raises(InvalidInputError, match="pass --resume"):
        train_world_model(config)
    with pytest.raises(InvalidInputError, match="options differ"):
        train_world_model(make_config(encoder_dir, data_dir, tmp_path / "run", steps=4, history=3), resume=True)


def test_saved_model_round_trips_with_config(encoder_dir, data_dir, tmp_path):
    folder = train_world_model(make_config(encoder_dir, data_dir, tmp_path / "run", steps=2))

    config = json.loads((folder / "config.json").read_text())
    model = LatentWorldModel.from_pretrained(folder)
    encoder = FlowJEPA.from_pretrained(encoder_dir)
    start = torch.randn(2, 16)
    actions = torch.rand(3, 4, 1) * 2 - 1
    reloaded = LatentWorldModel.from_pretrained(folder)

    expected = {"history": 2, "code_dim": 16, "action_dim": 1, "transition": "ode", "solver": "rk4", "dt": 1.0}
    expected.update(env="cartpole", image_size=IMAGE_SIZE)
    for key, value in expected.items():
        assert config[key] == value, key
    assert config["encoder_fingerprint"] == encoder_fingerprint(encoder)
    assert torch.equal(model.rollout(start, actions), reloaded.rollout(start, actions))
    assert not torch.equal(model.code_std, torch.ones(16)), "code normalisation was not stored"
    model.check_encoder(encoder)


def test_other_encoder_is_rejected(encoder_dir, data_dir, tmp_path):
    folder = train_world_model(make_config(encoder_dir, data_dir, tmp_path / "run", steps=2))
    model = LatentWorldModel.from_pretrained(folder)
    torch.manual_seed(5)
    other = FlowJEPA(FlowJEPAConfig.tiny(image_size=IMAGE_SIZE)).eval()
    wider = FlowJEPA(FlowJEPAConfig.tiny(image_size=IMAGE_SIZE, code_dim=8)).eval()

    with pytest.raises(InvalidInputError, match="trained on the codes of encoder"):
        model.check_encoder(other)
    with pytest.raises(InvalidInputError, match="codes of dimension 16"):
        model.check_encoder(wider)


def test_bad_encoder_or_data_leaves_no_run_folder(encoder_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InvalidInputError, match="pretrain"):
        train_world_model(make_config(tmp_path / "no-encoder", data_dir, out))
    assert not out.exists()
    with pytest.raises(InvalidInputError, match="collect"):
        train_world_model(make_config(encoder_dir, tmp_path / "no-data", out))
    assert not out.exists()


def test_missing_world_model_folder_names_command(tmp_path):
    with pytest.raises(InvalidInputError, match="train-world-model"):
        LatentWorldModel.from_pretrained(tmp_path / "absent")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"transition": "lstm"}, "valid transitions: ode, residual"),
        ({"solver": "rk45"}, "valid solvers: rk4"),
        ({"steps": 0}, "--steps must be a positive integer"),
        ({"lr": -1.0}, "--lr must be a number > 0"),
        ({"val_fraction": 0.0}, "--val-fraction"),
    ],
)
def test_invalid_options_are_rejected(overrides, message, tmp_path):
    config = make_config(tmp_path, tmp_path, tmp_path / "run", **overrides)
    with pytest.raises(InvalidInputError, match=message):
        config.validate()


def test_world_model_config_rejects_unknown_fields():
    with pytest.raises(InvalidInputError, match="unknown world model fields"):
        WorldModelConfig.from_dict({"code_dim": 4, "action_dim": 1, "horizon": 3})


def test_sigkill_then_resume_matches_uninterrupted_run(encoder_dir, data_dir, tmp_path):
    import subprocess
    import sys

    from tests.killing import kill_at_checkpoint

    steps = 60
    straight = train_world_model(
        make_config(encoder_dir, data_dir, tmp_path / "straight", steps=steps, checkpoint_every=2)
    )

    run_dir = tmp_path / "killed"
    command = [
        sys.executable, "-m", "cli.main", "train-world-model", "--encoder", str(encoder_dir), "--data", str(data_dir),
        "--out", str(run_dir), "--history", "2", "--hidden-dim", "32", "--rollout", "3", "--steps", str(steps),
        "--batch-size", "8", "--val-fraction", "0.25", "--val-every", "4", "--checkpoint-every", "2",
        "--log-every", "1", "--device", "cpu",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_at = kill_at_checkpoint(process, run_dir / CHECKPOINT_FILE, step=4)
    assert 4 <= killed_at < steps

    train_world_model(make_config(encoder_dir, data_dir, run_dir, steps=steps, checkpoint_every=2), resume=True)

    expected = load_weights(straight / "world_model.safetensors")
    actual = load_weights(run_dir / "world_model.safetensors")
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_ensemble_step_is_member_mean():
    torch.manual_seed(0)
    model = LatentWorldModel(WorldModelConfig(code_dim=4, action_dim=1, history=2, hidden_dim=16, ensemble=3))
    for member in model.members:  # zero-initialised outputs would make every member the identity
        torch.nn.init.normal_(list(member.parameters())[-2], std=0.1)
    window, action = torch.randn(5, 2, 4), torch.rand(5, 1) * 2 - 1

    each = torch.stack([model.step(window, action, member=index) for index in range(3)])
    torch.testing.assert_close(model.step(window, action), each.mean(dim=0))
    assert not torch.allclose(each[0], each[1])

    # A member's rollout feeds back its own predictions, the ensemble's feeds back the mean.
    actions = torch.rand(5, 4, 1) * 2 - 1
    own = model.rollout(window, actions, member=1)
    manual, current = [], window
    for t in range(4):
        latent = model.step(current, actions[:, t], member=1)
        manual.append(latent)
        current = torch.cat([current[:, 1:], latent[:, None]], dim=1)
    torch.testing.assert_close(own, torch.stack(manual, dim=1))
    assert model.rollout(window, actions).shape == (5, 4, 4)


def test_ensemble_training_round_trip(encoder_dir, data_dir, tmp_path):
    out = train_world_model(make_config(encoder_dir, data_dir, tmp_path / "run", ensemble=2, steps=4))
    model = LatentWorldModel.from_pretrained(out)

    assert model.config.ensemble == 2
    first, second = (dict(member.named_parameters()) for member in model.members)
    # Both members moved away from their zero-initialised output layers, to different weights.
    last = [name for name in first if name.endswith("weight")][-1]
    assert first[last].abs().sum() > 0
    assert second[last].abs().sum() > 0
    assert not torch.equal(first[last], second[last])
    with pytest.raises(InvalidInputError, match="ensemble must be a positive integer"):
        WorldModelConfig(code_dim=4, action_dim=1, ensemble=0)
