"""Crash safety of pretraining: SIGKILL mid-run, non-finite losses and atomic checkpoint files."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import flowjepa.train as train_module
from flowjepa import FlowJEPA, InvalidInputError, TrainingDivergedError
from flowjepa.checkpoint import atomic_write_bytes, load_state, save_state
from flowjepa.train import CHECKPOINT_FILE, pretrain
from tests.killing import kill_at_checkpoint
from tests.test_pretrain_cli import TINY_MODEL, tiny_config

# A tiny step takes roughly 10 ms on a fast CPU (estimate), so the run needs far more steps than
# it can finish between the poll that reads step 4 and the kill.
KILLED_RUN_STEPS = 160


def test_sigkill_then_resume_matches_uninterrupted_run(small_image_folder, tmp_path, single_thread):
    reference = pretrain(tiny_config(small_image_folder, tmp_path / "reference", steps=KILLED_RUN_STEPS))

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "cli.main", "pretrain", "--data", "folder", "--data-root",
               str(small_image_folder), "--image-size", "16", "--batch-size", "4", "--steps", str(KILLED_RUN_STEPS),
               "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu", "--out", str(out),
               "--sigreg-directions", "16"] + TINY_MODEL  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=single_thread)
    killed_at = kill_at_checkpoint(process, out / CHECKPOINT_FILE, step=4)
    assert 4 <= killed_at < KILLED_RUN_STEPS

    resumed = pretrain(tiny_config(small_image_folder, out, steps=KILLED_RUN_STEPS), resume=True)

    first = FlowJEPA.from_pretrained(reference).state_dict()
    second = FlowJEPA.from_pretrained(resumed).state_dict()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(small_image_folder, tmp_path, monkeypatch):
    real_losses = train_module.pretraining_losses
    calls = {"count": 0}

    def losses_that_diverge_at_step_4(*args, **kwargs):
        # Stands in for a diverging optimiser: the loss of the fourth step is NaN.
        loss, metrics = real_losses(*args, **kwargs)
        calls["count"] += 1
        if calls["count"] == 4:
            loss = loss * float("nan")
        return loss, metrics

    monkeypatch.setattr(train_module, "pretraining_losses", losses_that_diverge_at_step_4)
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="last good checkpoint"):
        pretrain(tiny_config(small_image_folder, out, steps=6))

    state = load_state(out / CHECKPOINT_FILE)
    assert state["step"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_killed_checkpoint_write_leaves_previous_file_valid(tmp_path, monkeypatch):
    path = tmp_path / "state.safetensors"
    save_state(path, {"step": 1, "weights": torch.ones(3)})

    def fail_midway(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"step": 2, "weights": torch.zeros(3)})

    assert load_state(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]


def test_truncated_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "state.safetensors"
    save_state(path, {"step": 3, "weights": torch.ones(100)})
    atomic_write_bytes(path, path.read_bytes()[:-50])
    with pytest.raises(InvalidInputError, match="truncated"):
        load_state(path)


def test_state_round_trip_keeps_types(tmp_path):
    state = {"step": 7, "nested": {3: (1.5, "a"), "list": [torch.arange(4), None, True]}}
    save_state(tmp_path / "s.safetensors", state)
    loaded = load_state(tmp_path / "s.safetensors")
    assert loaded["step"] == 7
    assert loaded["nested"][3] == (1.5, "a")
    assert torch.equal(loaded["nested"]["list"][0], torch.arange(4))
    assert loaded["nested"]["list"][1:] == [None, True]
