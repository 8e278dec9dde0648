"""The README's main-job command and Python snippet, run on the shipped cartpole models."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

from flowjepa import FlowJEPA
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
SHIPPED = REPO_ROOT / "models" / "cartpole"


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def main_job_command() -> list[str]:
    """The `flowjepa plan ...` part of the README's install-and-run line."""
    setup = readme_blocks("bash")[0].strip()
    install, _, command = setup.partition("&&")
    assert install.strip() == "./install.sh"
    words = shlex.split(command)
    assert words[0] == ".venv/bin/flowjepa"
    return words[1:]


def test_main_job_command_writes_video_plot_and_finite_metrics(tmp_path):
    arguments = main_job_command()
    assert arguments[:1] == ["plan"]

    short = arguments + ["--steps", "6", "--out", str(tmp_path / "plan")]
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *short], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "plan" / "episode.gif").stat().st_size > 0
    assert (tmp_path / "plan" / "costs.png").stat().st_size > 0
    summary = json.loads((tmp_path / "plan" / "result.json").read_text())
    assert math.isfinite(summary["final_latent_distance"])
    assert math.isfinite(summary["seconds_per_action"])
    assert all(math.isfinite(value) for value in summary["final_state_errors"].values())


def test_python_snippet_runs(monkeypatch):
    snippet = next(block for block in readme_blocks("python") if "optimize_input" in block)
    monkeypatch.chdir(REPO_ROOT)
    exec(compile(snippet, "README.md", "exec"), {})


def test_shipped_encoder_round_trips_real_frames_exactly():
    import envs

    encoder = FlowJEPA.from_pretrained(SHIPPED / "encoder").eval()
    frames = []
    with envs.make("cartpole", size=encoder.config.image_size, seed=3) as env:
        frames.append(env.reset())
        for action in np.linspace(-1, 1, 15):
            frames.append(env.step([action])[0])
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()

    z = encoder.encode(x)

    assert torch.equal(encoder.decode(z, quantize_output=True), x)
    assert (encoder.decode(z) - (x.double() + 0.5).float() / 256).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["encoder", "world_model"])
def test_shipped_model_folders_are_small_safetensors(name):
    folder = SHIPPED / name
    files = sorted(path.name for path in folder.iterdir())
    assert "config.json" in files
    assert not [f for f in files if f.endswith((".pt", ".pth", ".pkl", ".bin"))]
    assert sum(path.stat().st_size for path in folder.iterdir()) < 16 * 2**20
