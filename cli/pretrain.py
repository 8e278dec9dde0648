"""``flowjepa pretrain``: train a Flow-JEPA encoder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from cli.common import console, training_progress, user_errors
from flowjepa.errors import InvalidInputError

FIELD_DOCS = 'Fields of --config use the option names with underscores, for example {"batch_size": 32}.'


@user_errors
def pretrain_command(
    data: str | None = typer.Option(None, help="Data source: frames, folder or imagenette. \\[default: frames]"),
    data_root: Path | None = typer.Option(
        None, help="Data folder. Without it, --data frames renders cartpole frames into OUT/frames first."
    ),
    download: bool | None = typer.Option(
        None, "--download/--no-download", help="Download Imagenette into --data-root (needs internet)."
    ),
    env: str | None = typer.Option(None, help="Environment rendered when --data frames has no --data-root."),
    image_size: int | None = typer.Option(None, help="Side of the square training images in pixels. \\[default: 64]"),
    batch_size: int | None = typer.Option(None, help="Images per step (global batch under torchrun). \\[default: 16]"),
    steps: int | None = typer.Option(None, help="Optimiser steps of the whole run. \\[default: 800]"),
    epochs: float | None = typer.Option(
        None, help="Train for this many passes over the data instead of --steps (rounded up to whole steps)."
    ),
    lr: float | None = typer.Option(None, help="Peak AdamW learning rate. \\[default: 1e-3]"),
    bpd_weight: float | None = typer.Option(None, help="Weight of bits/dim. \\[default: 1.0]"),
    invariance_weight: float | None = typer.Option(None, help="Weight of the invariance loss. \\[default: 0.95]"),
    sigreg_weight: float | None = typer.Option(None, help="Weight of SIGReg. \\[default: 0.05]"),
    sigreg_directions: int | None = typer.Option(None, help="Random directions per SIGReg call. \\[default: 256]"),
    grad_clip: float | None = typer.Option(None, help="Maximum global gradient norm. \\[default: 50]"),
    warmup_steps: int | None = typer.Option(None, help="Steps of linear learning-rate warm-up. \\[default: 20]"),
    views: int | None = typer.Option(None, help="Augmented views per image. \\[default: 2]"),
    time_limit: float | None = typer.Option(
        None, help="Wall-clock budget in minutes; the run stops early, checkpoints and exports the model."
    ),
    augment: str | None = typer.Option(None, help="View augmentation: auto, strong or mild. \\[default: auto]"),
    seed: int | None = typer.Option(None, help="Seed of every random choice. \\[default: 0]"),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N. \\[default: auto]"),
    out: Path | None = typer.Option(None, help="Run folder. \\[default: runs/pretrain]"),
    checkpoint_every: int | None = typer.Option(None, help="Steps between checkpoints. \\[default: 100]"),
    log_every: int | None = typer.Option(None, help="Steps between metric lines. \\[default: 10]"),
    num_workers: int | None = typer.Option(None, help="Data-loading worker processes. \\[default: 0]"),
    model_option: list[str] = typer.Option(
        [], "--model", help="Override a FlowJEPAConfig field, as NAME=JSON_VALUE (repeatable), e.g. code_dim=128."
    ),
    config: Path | None = typer.Option(None, help="JSON file of options; command-line options override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Pretrain a Flow-JEPA encoder: exact bits/dim + multi-view invariance + SIGReg.

    With no options it renders cartpole frames and trains a small 64 px model
    (about ten minutes on two CPU cores). The final model is written to
    OUT/model and loads with FlowJEPA.from_pretrained.
    """
    from flowjepa.checkpoint import read_json
    from flowjepa.data import open_source
    from flowjepa.train import RUN_CONFIG_FILE, PretrainConfig, TrainingInterrupted, pretrain

    values: dict[str, Any] = PretrainConfig.from_file(config) if config is not None else {}
    given = {
        "data": data,
        "data_root": None if data_root is None else str(data_root),
        "download": download,
        "env": env,
        "image_size": image_size,
        "batch_size": batch_size,
        "steps": steps,
        "lr": lr,
        "bpd_weight": bpd_weight,
        "invariance_weight": invariance_weight,
        "sigreg_weight": sigreg_weight,
        "sigreg_directions": sigreg_directions,
        "grad_clip": grad_clip,
        "warmup_steps": warmup_steps,
        "views": views,
        "time_limit": time_limit,
        "augment": augment,
        "seed": seed,
        "device": device,
        "out": None if out is None else str(out),
        "checkpoint_every": checkpoint_every,
        "log_every": log_every,
        "num_workers": num_workers,
    }
    values.update({key: value for key, value in given.items() if value is not None})
    if resume:
        # A resumed run starts from its stored options, so `--out RUN --resume` is enough.
        stored_path = Path(values.get("out", PretrainConfig.out)) / RUN_CONFIG_FILE
        if stored_path.is_file():
            values = {**read_json(stored_path, "run config"), **values}
    if model_option:
        values["model"] = {**values.get("model", {}), **_parse_model_options(model_option)}
    run_config = PretrainConfig(**values)

    if epochs is not None:
        if not epochs > 0:
            raise InvalidInputError(f"--epochs must be positive, got {epochs}")
        if run_config.data_root is None:
            raise InvalidInputError("--epochs needs --data-root, because the default frames are rendered later")
        size = len(open_source(run_config.data, run_config.data_root, "train", run_config.download))
        run_config.steps = max(1, int(-(-epochs * size // run_config.batch_size)))

    run_config.validate()
    console.print(f"[bold]pretrain[/] -> {run_config.out}  ({run_config.steps} steps, batch {run_config.batch_size})")

    with training_progress() as progress:
        task = progress.add_task("pretrain", total=run_config.steps, metrics="")

        def on_step(step: int, metrics: dict[str, float]) -> None:
            shown = [f"bpd {metrics['train/bpd']:.3f}", f"inv {metrics['train/invariance']:.3f}"]
            shown.append(f"sigreg {metrics['train/sigreg']:.2f}")
            shown += [f"{key.split('/')[1]} {value:.2f}" for key, value in metrics.items() if key.startswith("probe/")]
            progress.update(task, completed=step, metrics="  ".join(shown))

        try:
            model_dir = pretrain(run_config, resume=resume, on_step=on_step)
        except TrainingInterrupted as stopped:
            progress.stop()
            console.print(
                f"[yellow]{escape(str(stopped))}[/]. Resume with: flowjepa pretrain --out {stopped.run_dir} --resume"
            )
            raise typer.Exit(130) from None

    console.print(f"[green]done[/]: model in {model_dir}; metrics in {Path(run_config.out) / 'metrics.jsonl'}")


def _parse_model_options(items: list[str]) -> dict[str, Any]:
    from flowjepa.config import FlowJEPAConfig

    known = {f.name for f in dataclasses.fields(FlowJEPAConfig)}
    parsed: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in known:
            raise InvalidInputError(
                f"--model {item!r} must be NAME=VALUE with NAME a FlowJEPAConfig field: {', '.join(sorted(known))}"
            )
        try:
            parsed[name] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[name] = raw
    return parsed


def register(app: typer.Typer) -> None:
    """Add ``pretrain`` to the app."""
    app.command("pretrain", epilog=FIELD_DOCS)(pretrain_command)
