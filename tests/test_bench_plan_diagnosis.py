"""The plan diagnosis: its simulator replay is faithful, and the quick path prints a full table."""

from __future__ import annotations

import math

import numpy as np
import pytest

# NOTE: imported before anything renders, because triton crashes when loaded after MuJoCo's EGL context.
import torch._dynamo  # noqa: F401

from bench.plan_diagnosis import lqr_actions, main, replay
from envs.registry import make


def test_replay_of_lqr_actions_matches_a_fresh_run():
    with make("cartpole", size=16, time_limit=None) as env:
        env.reset(seed=3)
        start = env.physical_state()
        actions = lqr_actions(env, start, target=0.3, horizon=25)
        _, states = replay(env, start, actions)
        _, again = replay(env, start, actions)

    assert actions.shape == (25, 1)
    assert np.array_equal(states, again)
    # The controller keeps the pole up while it starts to move the cart toward +0.3 m.
    assert np.all(np.abs(states[:, 1]) < 0.2)
    assert states[-1, 0] > start[0]


def test_quick_path_prints_every_task(capsys):
    rows = main(["--quick", "--tasks", "2", "--horizon", "4"])

    assert len(rows) == 2
    assert all(math.isfinite(value) for row in rows for value in row.values())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| goal x (m) |")
    assert len([line for line in lines if line.startswith("| ")]) == 3


def test_zero_horizon_exits_with_code_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--horizon", "0"])
    assert stopped.value.code == 2
    assert "--horizon must be at least 1" in capsys.readouterr().err
