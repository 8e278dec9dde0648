"""`flowjepa pretrain`: smoke run, resume, interruption and bad options."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from flowjepa import FlowJEPA
from flowjepa.checkpoint import load_state
from flowjepa.train import PretrainConfig, TrainingInterrupted, pretrain

runner = CliRunner()

TINY_MODEL = [
    "--model", "levels=2", "--model", "pairs_per_level=1", "--model", "hidden_channels=8",
    "--model", "code_dim=8", "--model", "decoder_hidden=16", "--model", "decoder_channels=4",
    "--model", "projector_hidden=16", "--model", "projector_dim=8", "--model", "projector_channels=2",
]  # fmt: skip


def tiny_config(data_root, out, steps: int) -> PretrainConfig:
    model = dict(
        levels=2, pairs_per_level=1, hidden_channels=8, code_dim=8, decoder_hidden=16,
        decoder_channels=4, projector_hidden=16, projector_dim=8, projector_channels=2,
    )  # fmt: skip
    return PretrainConfig(
        data="folder", data_root=str(data_root), image_size=16, batch_size=4, steps=steps, out=str(out),
        checkpoint_every=2, log_every=1, device="cpu", sigreg_directions=16, model=model,
    )  # fmt: skip


def test_pretrain_smoke_then_resume(small_image_folder, tmp_path):
    out = tmp_path / "run"
    base = ["pretrain", "--data", "folder", "--data-root", str(small_image_folder), "--image-size", "16"]
    base += ["--batch-size", "4", "--log-every", "1", "--checkpoint-every", "2", "--device", "cpu", "--out", str(out)]

    result = runner.invoke(app, base + ["--steps", "3"] + TINY_MODEL)
    assert result.exit_code == 0, result.output
    for name in ("pretrain_config.json", "metrics.jsonl", "metrics.png", "checkpoint.safetensors"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert all(key in rows[-1] for key in ("train/bpd", "train/invariance", "train/sigreg", "probe/code_top1"))
    model = FlowJEPA.from_pretrained(out / "model")
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(model.decode(model.encode(x), quantize_output=True), x)

    # Running again into the same folder without --resume is refused; with it, training continues.
    again = runner.invoke(app, base + ["--steps", "3"] + TINY_MODEL)
    assert again.exit_code == 2
    assert "--resume" in again.output
    resumed = runner.invoke(app, ["pretrain", "--out", str(out), "--resume", "--steps", "5"])
    assert resumed.exit_code == 0, resumed.output
    assert load_state(out / "checkpoint.safetensors")["step"] == 5
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5]


def test_interrupted_run_resumes_identically(small_image_folder, tmp_path):
    reference = pretrain(tiny_config(small_image_folder, tmp_path / "reference", steps=4))

    def interrupt_at_two(step, _metrics):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as stopped:
        pretrain(tiny_config(small_image_folder, tmp_path / "split", steps=4), on_step=interrupt_at_two)
    assert stopped.value.step == 2
    resumed = pretrain(tiny_config(small_image_folder, tmp_path / "split", steps=4), resume=True)

    first = FlowJEPA.from_pretrained(reference).state_dict()
    second = FlowJEPA.from_pretrained(resumed).state_dict()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--batch-size", "-1"], "--batch-size must be a positive integer"),
        (["--lr", "0"], "--lr must be a positive"),
        (["--data", "cifar"], "unknown data source"),
        (["--device", "cuda:7"], "CUDA"),
        (["--data", "folder", "--data-root", "/nonexistent/flowjepa"], "does not exist"),
        (["--model", "colour=3"], "FlowJEPAConfig field"),
    ],
)
def test_bad_options_exit_2(tmp_path, options, message):
    if "cuda" in " ".join(options) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "run")] + options)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_empty_data_root_names_layout(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    result = runner.invoke(app, ["pretrain", "--data", "folder", "--data-root", str(tmp_path / "empty"),
                                 "--out", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 2
    assert "class folders" in " ".join(result.output.split())


def test_config_file_unknown_field(tmp_path):
    config = tmp_path / "pretrain.json"
    config.write_text(json.dumps({"steps": 2, "batchsize": 8}))

    result = runner.invoke(app, ["pretrain", "--config", str(config), "--out", str(tmp_path / "run")])

    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "unknown PretrainConfig field(s) batchsize; valid fields:" in message
    assert "batch_size" in message
    assert not (tmp_path / "run").exists()
