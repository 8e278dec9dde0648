"""The public FlowJEPA API: shapes, gradients, save/load, density estimates and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from flowjepa import FlowJEPA, FlowJEPAConfig, InvalidInputError
from flowjepa.losses import LossWeights, pretraining_losses


@pytest.fixture
def model() -> FlowJEPA:
    torch.manual_seed(0)
    return FlowJEPA(FlowJEPAConfig.tiny(image_size=16, num_probe_classes=3))


def images(batch: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def test_api_shapes(model):
    x = images()
    config = model.config
    assert model.encode(x).shape == (4, *config.latent_shape)
    assert model.embed(x).shape == (4, config.code_dim)
    assert model.decode_code(model.embed(x)).shape == (4, 3, 16, 16)
    assert model.sample(3).dtype == torch.uint8
    assert model.log_prob(x).shape == (4,)
    assert model.bits_per_dim(x).shape == (4,)


def test_gradient_reaches_every_trained_parameter(model):
    # Zero-initialised output layers block gradients to the layers below them; move every weight off zero first.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.train()
    x = images(8)
    views = torch.stack([images(8, seed=1), images(8, seed=2)])
    loss, metrics = pretraining_losses(model, x, views, LossWeights(), label=torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    loss.backward()

    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
    assert {"train/bpd", "train/invariance", "train/sigreg", "probe/code_top1", "probe/proj_top1"} <= set(metrics)


def test_probe_features_are_detached(model):
    model.train()
    x = images(8)
    views = torch.stack([images(8, seed=1), images(8, seed=2)])
    weights = LossWeights(bpd=0.0, invariance=0.0, sigreg=0.0)
    loss, _ = pretraining_losses(model, x, views, weights, label=torch.zeros(8, dtype=torch.long))
    loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.flow.parameters())


def test_log_prob_mask_estimates(model):
    model.eval()
    x = images(2)
    generator = torch.Generator().manual_seed(0)
    mean = model.log_prob(x, masks="mean", num_masks=4, num_samples=4, generator=generator)
    generator = torch.Generator().manual_seed(0)
    log_mean_exp = model.log_prob(x, masks="logmeanexp", num_masks=4, num_samples=4, generator=generator)
    frozen = model.log_prob(x, masks="frozen")
    assert torch.isfinite(frozen).all()
    # Jensen: the log of a mean is at least the mean of the logs (same draws).
    assert (log_mean_exp >= mean - 1e-4).all()


def test_bits_per_dim_matches_log_prob(model):
    import math

    x = images(2)
    generator_a, generator_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    log_p = model.log_prob(x, generator=generator_a)
    bpd = model.bits_per_dim(x, generator=generator_b)
    assert torch.allclose(bpd, -log_p / (3 * 16 * 16 * math.log(2)), rtol=1e-5)


def test_save_and_load_round_trip(model, tmp_path):
    model.eval().save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["config"]["image_size"] == 16

    loaded = FlowJEPA.from_pretrained(tmp_path / "m")
    x = images()
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert torch.equal(loaded.embed(x), model.embed(x))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.zeros(3, 16, 16, dtype=torch.uint8), "shape"),
        (torch.zeros(2, 1, 16, 16, dtype=torch.uint8), "channels"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "16x16"),
        (torch.zeros(2, 3, 16, 16, dtype=torch.int32), "dtype"),
        (torch.full((2, 3, 16, 16), float("nan")), "NaN"),
        (torch.full((2, 3, 16, 16), 2.0), "[0, 1]"),
    ],
)
def test_bad_images_raise_value_error(model, bad, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model.encode(bad)


def test_bad_latent_raises(model):
    with pytest.raises(InvalidInputError, match="latent z must have shape"):
        model.decode(torch.zeros(1, 5))
    with pytest.raises(InvalidInputError, match="NaN"):
        model.decode(torch.full((1, *model.config.latent_shape), float("inf")))


def test_bad_config_values():
    with pytest.raises(InvalidInputError, match="divisible"):
        FlowJEPAConfig(image_size=20, levels=3)
    with pytest.raises(InvalidInputError, match="mask_mode"):
        FlowJEPAConfig(mask_mode="random")
    unknown = r"config has unknown FlowJEPAConfig field\(s\) image_sise; valid fields: .*image_size"
    with pytest.raises(InvalidInputError, match=unknown):
        FlowJEPAConfig.from_dict({"image_sise": 32})


def test_loading_mismatched_or_corrupt_files(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    stored = json.loads(config_path.read_text())
    stored["config"]["code_dim"] = 32
    config_path.write_text(json.dumps(stored))
    with pytest.raises(InvalidInputError, match="do not match the config"):
        FlowJEPA.from_pretrained(tmp_path / "m")

    model.save_pretrained(tmp_path / "t")
    weights = tmp_path / "t" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InvalidInputError, match="not a valid safetensors file"):
        FlowJEPA.from_pretrained(tmp_path / "t")

    with pytest.raises(InvalidInputError, match="model folder not found"):
        FlowJEPA.from_pretrained(tmp_path / "missing")


def test_pickle_in_place_of_weights_is_rejected_without_running(model, tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(InvalidInputError, match="not a valid safetensors file"):
        FlowJEPA.from_pretrained(tmp_path / "m")
    assert not (tmp_path / "pwned").exists()
