"""Collection into shards, resuming after interruptions, and the datasets that read the shards back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import envs
from cli.main import app
from envs.collect import collect, episode_seeds, run_episode
from envs.dataset import FrameDataset, SequenceDataset, load_episodes, select_episodes
from envs.policies import make_policy
from envs.shards import MANIFEST_NAME, read_manifest, read_shard
from flowjepa.errors import InvalidInputError

SIZE = 16


def _collect(root: Path, episodes: int, env: str = "cartpole-gym", steps: int = 12, **options) -> Path:
    return collect(env, root, episodes=episodes, steps=steps, size=SIZE, progress=False, **options)


def _arrays(root: Path) -> list[dict[str, np.ndarray]]:
    manifest, episodes = load_episodes(root)
    return [vars(episode) for episode in episodes]


def _assert_same_data(first: Path, second: Path, count: int | None = None) -> None:
    first_arrays, second_arrays = _arrays(first)[:count], _arrays(second)[:count]
    assert len(first_arrays) == len(second_arrays)
    for left, right in zip(first_arrays, second_arrays):
        for key in ("frames", "actions", "states", "rewards"):
            assert left[key].dtype == right[key].dtype, key
            assert np.array_equal(left[key], right[key]), key


@pytest.fixture(scope="module")
def gym_data(tmp_path_factory) -> Path:
    return _collect(tmp_path_factory.mktemp("gym") / "data", episodes=4, steps=12)


@pytest.fixture(scope="module")
def cartpole_data(tmp_path_factory) -> Path:
    return _collect(tmp_path_factory.mktemp("dm") / "data", episodes=2, env="cartpole", steps=8, policy="ou")


def test_read_back_equals_collected_episodes(cartpole_data):
    manifest = read_manifest(cartpole_data)
    with envs.make("cartpole", size=SIZE, time_limit=None) as env:
        policy = make_policy("ou", env)
        for entry in manifest["episodes"]:
            expected, terminated = run_episode(env, policy, 8, *episode_seeds(0, entry["index"]))
            stored = read_shard(cartpole_data, entry, manifest)
            assert entry["terminated"] == terminated
            for key in ("frames", "actions", "states", "rewards"):
                assert np.array_equal(getattr(stored, key), getattr(expected, key)), key


def test_shard_layout_and_manifest(cartpole_data):
    manifest = json.loads((cartpole_data / MANIFEST_NAME).read_text())
    assert manifest["env"] == "cartpole"
    assert manifest["size"] == SIZE
    assert manifest["action_repeat"] == 4
    assert manifest["policy"] == "ou"
    assert manifest["seed"] == 0
    assert manifest["dt"] == pytest.approx(0.04)
    assert [entry["file"] for entry in manifest["episodes"]] == ["episode_000000.npz", "episode_000001.npz"]
    assert manifest["frames"] == 2 * 9
    assert manifest["episodes_done"] == 2

    episode = read_shard(cartpole_data, manifest["episodes"][0], manifest)
    assert episode.frames.shape == (9, SIZE, SIZE, 3)
    assert episode.frames.dtype == np.uint8
    assert episode.frames.flags.c_contiguous
    assert episode.actions.shape == (8, 1)
    assert episode.actions.dtype == np.float32
    assert episode.states.shape == (9, 4)
    assert episode.states.dtype == np.float64
    assert episode.rewards.shape == (8,)


def test_same_seed_gives_identical_data(gym_data, tmp_path):
    _assert_same_data(gym_data, _collect(tmp_path / "again", episodes=4, steps=12))


def test_different_seed_gives_different_data(gym_data, tmp_path):
    other = _collect(tmp_path / "other", episodes=1, steps=12, seed=5)
    assert not np.array_equal(_arrays(other)[0]["states"], _arrays(gym_data)[0]["states"])


def test_resume_extends_without_duplicates(gym_data, tmp_path):
    root = tmp_path / "resumed"
    _collect(root, episodes=2, steps=12)
    first_bytes = (root / "episode_000000.npz").read_bytes()
    _collect(root, episodes=4, steps=12)

    manifest = read_manifest(root)
    assert [entry["index"] for entry in manifest["episodes"]] == [0, 1, 2, 3]
    assert (root / "episode_000000.npz").read_bytes() == first_bytes
    assert sorted(path.name for path in root.iterdir()) == [
        "episode_000000.npz",
        "episode_000001.npz",
        "episode_000002.npz",
        "episode_000003.npz",
        MANIFEST_NAME,
    ]
    _assert_same_data(root, gym_data)


def test_damaged_shard_is_rejected_then_repaired(gym_data, tmp_path):
    root = _collect(tmp_path / "damaged", episodes=4, steps=12)
    shard = root / "episode_000002.npz"
    shard.write_bytes(shard.read_bytes()[:-100])
    (root / ".episode_000003.npz.x1y2.tmp").write_bytes(b"half a shard")

    with pytest.raises(InvalidInputError, match="checksum"):
        FrameDataset(root)

    _collect(root, episodes=4, steps=12)
    assert not (root / ".episode_000003.npz.x1y2.tmp").exists()
    _assert_same_data(root, gym_data)


def test_interrupted_collection_resumes(gym_data, tmp_path):
    # Kill a real collection process (SIGKILL, no clean-up) once it has finished one episode.
    root = tmp_path / "killed"
    code = (
        "from envs.collect import collect\n"
        f"collect('cartpole-gym', {str(root)!r}, episodes=400, steps=12, size={SIZE}, progress=False)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            manifest_path = root / MANIFEST_NAME
            if manifest_path.exists() and json.loads(manifest_path.read_text())["episodes"]:
                break
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)

    manifest = read_manifest(root)
    done = len(manifest["episodes"])
    assert 1 <= done < 400
    load_episodes(root)

    _collect(root, episodes=4, steps=12)
    manifest = read_manifest(root)
    indices = [entry["index"] for entry in manifest["episodes"]]
    assert indices == sorted(set(indices))
    assert indices[:4] == [0, 1, 2, 3]
    assert not [path for path in root.iterdir() if path.name.endswith(".tmp")]
    _assert_same_data(root, gym_data, count=4)


def test_resume_with_other_options_is_rejected(gym_data, tmp_path):
    root = _collect(tmp_path / "data", episodes=1, steps=12)
    with pytest.raises(InvalidInputError, match="policy"):
        _collect(root, episodes=2, steps=12, policy="random")
    with pytest.raises(InvalidInputError, match="steps"):
        _collect(root, episodes=2, steps=13)
    with pytest.raises(InvalidInputError, match="noise=the policy's default"):
        _collect(root, episodes=2, steps=12, noise=0.3)


def test_foreign_folder_is_rejected(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        _collect(tmp_path, episodes=1)


@pytest.mark.parametrize(
    "options, field",
    [
        ({"episodes": 0}, "episodes"),
        ({"steps": -1}, "steps"),
        ({"policy": "greedy"}, "policy"),
        ({"seed": -3}, "seed"),
    ],
)
def test_invalid_collect_arguments(tmp_path, options, field):
    arguments = {"episodes": 1, "steps": 5, **options}
    with pytest.raises(InvalidInputError, match=field):
        collect("cartpole-gym", tmp_path / "data", size=SIZE, progress=False, **arguments)


def test_frame_dataset_items(gym_data):
    dataset = FrameDataset(gym_data)
    manifest, episodes = load_episodes(gym_data)
    assert len(dataset) == manifest["frames"] == sum(len(episode.frames) for episode in episodes)
    assert dataset.size == SIZE
    assert dataset.env == "cartpole-gym"

    frame, state = dataset[len(episodes[0].frames)]
    assert frame.dtype == torch.uint8
    assert frame.shape == (3, SIZE, SIZE)
    assert torch.equal(frame, torch.from_numpy(episodes[1].frames[0]).permute(2, 0, 1))
    assert state.dtype == torch.float32
    assert torch.equal(state, torch.from_numpy(episodes[1].states[0].astype(np.float32)))


def test_frame_dataset_transform(gym_data):
    dataset = FrameDataset(gym_data, transform=lambda frame: frame.float() / 255)
    frame, _ = dataset[0]
    assert frame.dtype == torch.float32
    assert float(frame.max()) <= 1.0


def test_splits_are_disjoint_episodes(gym_data):
    manifest = read_manifest(gym_data)
    train = select_episodes(manifest, "train", 0.25)
    val = select_episodes(manifest, "val", 0.25)
    assert [entry["index"] for entry in train] == [0, 1, 2]
    assert [entry["index"] for entry in val] == [3]
    assert len(FrameDataset(gym_data, split="train", val_fraction=0.25)) + len(
        FrameDataset(gym_data, split="val", val_fraction=0.25)
    ) == len(FrameDataset(gym_data))
    with pytest.raises(InvalidInputError, match="split"):
        FrameDataset(gym_data, split="test")
    with pytest.raises(InvalidInputError, match="validation split is empty"):
        FrameDataset(gym_data, split="val", val_fraction=0.0)


def test_sequence_dataset_windows(gym_data):
    k, horizon = 2, 3
    dataset = SequenceDataset(gym_data, k, horizon)
    manifest, episodes = load_episodes(gym_data)
    assert len(dataset) == sum(episode.length + 2 - (k + horizon) for episode in episodes)

    item = dataset[1]
    episode = episodes[0]
    assert item["frames"].shape == (k + horizon, 3, SIZE, SIZE)
    assert item["frames"].dtype == torch.uint8
    assert torch.equal(item["frames"], torch.from_numpy(episode.frames[1:6]).permute(0, 3, 1, 2))
    assert item["actions"].shape == (k + horizon - 1, 1)
    assert item["actions"].dtype == torch.float32
    assert item["states"].shape == (k + horizon, 4)
    assert np.allclose(item["states"].numpy(), episode.states[1:6])

    with envs.make("cartpole-gym", size=SIZE) as env:
        recovered = [env.to_env_action(value) for value in item["actions"][:, 0].tolist()]
    assert recovered == episode.actions[1:5].tolist()


def test_sequence_dataset_continuous_actions(cartpole_data):
    dataset = SequenceDataset(cartpole_data, 1, 2)
    _, episodes = load_episodes(cartpole_data)
    item = dataset[0]
    assert torch.equal(item["actions"], torch.from_numpy(episodes[0].actions[:2]))


def test_sequence_longer_than_episodes_is_rejected(gym_data):
    with pytest.raises(InvalidInputError, match="lower k or horizon"):
        SequenceDataset(gym_data, 10, 10)
    with pytest.raises(InvalidInputError, match="k="):
        SequenceDataset(gym_data, 0, 2)


def test_missing_folder_says_how_to_create_it(tmp_path):
    with pytest.raises(InvalidInputError, match="flowjepa collect"):
        FrameDataset(tmp_path / "nothing")
    with pytest.raises(InvalidInputError, match="flowjepa collect"):
        SequenceDataset(tmp_path, 1, 1)


def test_cli_collect_writes_and_resumes(tmp_path):
    root = tmp_path / "cli"
    arguments = ["collect", "--env", "cartpole-gym", "--episodes", "2", "--steps", "6", "--size", str(SIZE)]
    result = CliRunner().invoke(app, [*arguments, "--out", str(root), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "2 episodes" in result.output
    assert len(read_manifest(root)["episodes"]) == 2

    result = CliRunner().invoke(app, [*arguments, "--out", str(root), "--policy", "ou"])
    assert result.exit_code == 2
    assert "policy" in result.output


def test_cli_collect_rejects_bad_values(tmp_path):
    result = CliRunner().invoke(app, ["collect", "--env", "nowhere", "--episodes", "1", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "valid names" in result.output
    assert "Traceback" not in result.output
