"""The memory estimate of a pretraining step, against what autograd keeps, and the guard that uses it."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from flowjepa.config import FlowJEPAConfig
from flowjepa.losses import LossWeights, pretraining_losses
from flowjepa.memory import training_step_bytes
from flowjepa.model import FlowJEPA

runner = CliRunner()


def saved_activation_bytes(config: FlowJEPAConfig, batch: int) -> int:
    """Bytes of the distinct tensors autograd saves for the backward pass of one step, parameters excluded."""
    torch.manual_seed(0)
    model = FlowJEPA(config).train()
    clean = torch.rand(batch, 3, config.image_size, config.image_size)
    views = torch.rand(batch, 2, 3, config.image_size, config.image_size)
    with torch.no_grad():
        model.log_density(torch.cat([clean, views.flatten(0, 1)]))  # ActNorm initialisation
    weights = {tensor.untyped_storage().data_ptr() for tensor in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        pretraining_losses(model, clean, views, LossWeights(1.0, 0.95, 0.05, 64))
    return sum(saved.values())


@pytest.mark.parametrize(
    "overrides",
    [
        dict(image_size=32, hidden_channels=64),
        dict(image_size=32, hidden_channels=32),
        dict(image_size=64, hidden_channels=32, levels=2, pairs_per_level=1),
    ],
)
def test_estimate_brackets_the_saved_activations(overrides):
    # The estimate was fitted to peak resident memory, which also contains transient buffers: it must lie
    # between what autograd saves and twice that, for each architecture.
    config = FlowJEPAConfig(**overrides)
    saved = saved_activation_bytes(config, batch=2)
    estimate = training_step_bytes(config, images=2 * 3)
    assert saved <= estimate <= 2 * saved, (saved, estimate)


def test_estimate_grows_with_images_and_area():
    config = FlowJEPAConfig(image_size=64)
    assert training_step_bytes(config, 12) == pytest.approx(2 * training_step_bytes(config, 6), rel=1e-9)
    larger = FlowJEPAConfig(image_size=128)
    assert training_step_bytes(larger, 6) == pytest.approx(4 * training_step_bytes(config, 6), rel=1e-9)


def test_oversized_image_exits_2_without_folder(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["pretrain", "--image-size", "4096", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "--image-size 4096" in text
    assert "lower --image-size or --batch-size" in text
    assert "Traceback" not in result.output
    assert not out.exists()
