"""The pole probe: read-outs of known features score as expected, and the script runs on real frames."""

from __future__ import annotations

import math

import pytest
import torch

from bench.pole_probe import main, probe_features


def _states(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(count, 4, generator=generator, dtype=torch.float64) * torch.tensor([0.5, 0.2, 1.0, 1.0])
    episodes = torch.arange(count) // (count // 10)
    return states, episodes


def test_features_that_contain_the_state_score_high():
    states, episodes = _states(2000, seed=0)
    features = torch.cat([states[:, :1], torch.sin(states[:, 1:2]), torch.cos(states[:, 1:2]), states[:, 2:]], 1)

    result = probe_features(features, states, episodes, max_angle=0.4, mlp_steps=300)

    assert result["ridge_all"]["sin_pole_angle"] > 0.99
    assert result["ridge_all"]["cart_position"] > 0.99
    assert result["mlp_near_upright"]["sin_angle"] > 0.9


def test_features_without_the_angle_score_low():
    states, episodes = _states(2000, seed=1)
    features = torch.cat([states[:, :1], torch.randn(2000, 4, dtype=torch.float64)], 1)

    result = probe_features(features, states, episodes, max_angle=0.4, mlp_steps=300)

    assert result["ridge_all"]["cart_position"] > 0.99
    assert result["ridge_near_upright"]["sin_pole_angle"] < 0.1
    assert result["mlp_near_upright"]["sin_angle"] < 0.1


def test_near_upright_counts_wrapped_angles():
    states, episodes = _states(100, seed=2)
    states[:, 1] = 2 * math.pi + 0.01  # upright after wrapping
    result = probe_features(torch.randn(100, 3, dtype=torch.float64), states, episodes, 0.4, mlp_steps=1)
    assert result["near_upright_frames"] == 100


def test_one_episode_is_rejected():
    states, _ = _states(100, seed=3)
    with pytest.raises(ValueError, match="at least 2 episodes"):
        probe_features(torch.randn(100, 3), states, torch.zeros(100, dtype=torch.long), 0.4, mlp_steps=1)


def test_script_runs_on_rendered_frames(tmp_path, capsys):
    from envs.collect import collect
    from flowjepa import FlowJEPA, FlowJEPAConfig

    torch.manual_seed(0)
    encoder_dir = FlowJEPA(FlowJEPAConfig.tiny(image_size=16)).save_pretrained(tmp_path / "encoder")
    data = collect("cartpole", tmp_path / "data", episodes=5, steps=40, policy="balance", noise=0.5, size=16,
                   progress=False)  # fmt: skip

    result = main(["--encoder", str(encoder_dir), "--data", str(data), "--episodes", "5", "--mlp-steps", "20"])

    assert result["frames"] == 5 * 21
    assert all(math.isfinite(value) for value in result["ridge_all"].values())
    assert "sin(angle) R²" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments",
    [["--data", "/nonexistent/folder"], ["--data", ".", "--episodes", "1"], ["--data", ".", "--max-angle", "0"]],
)
def test_script_bad_input_exits_with_code_2(arguments, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2
    assert "error:" in capsys.readouterr().err
