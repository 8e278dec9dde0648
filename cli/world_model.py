"""``flowjepa train-world-model``: train the latent world model on a collected data set."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from cli.common import console, training_progress, user_errors
from planning.train import WorldModelTrainConfig

_DEFAULTS = WorldModelTrainConfig(encoder="", data="")


@user_errors
def train_world_model_command(
    encoder: Path = typer.Option(..., help="Encoder folder, or a pretrain run folder containing model/."),
    data: list[Path] = typer.Option(
        ...,
        help="Collection folder written by `flowjepa collect`. Repeat to combine folders of the same env, "
        "e.g. scripted and random-action episodes.",
    ),
    out: Path = typer.Option(Path(_DEFAULTS.out), help="Run folder; the trained world model is written into it."),
    history: int = typer.Option(_DEFAULTS.history, help="Past frames k whose codes form the state."),
    transition: str = typer.Option(_DEFAULTS.transition, help="Transition network: ode or residual."),
    solver: str = typer.Option(
        _DEFAULTS.solver, help="ODE solver: rk4, midpoint, euler (fixed step) or dopri5, bosh3, adaptive_heun."
    ),
    dt: float = typer.Option(_DEFAULTS.dt, help="Model time of one environment step (ODE integration interval)."),
    substeps: int = typer.Option(_DEFAULTS.substeps, help="Fixed-step solver steps per environment step."),
    hidden_dim: int = typer.Option(_DEFAULTS.hidden_dim, help="Width of the transition MLP."),
    layers: int = typer.Option(_DEFAULTS.layers, help="Hidden layers of the transition MLP."),
    rollout: int = typer.Option(_DEFAULTS.rollout, help="Open-loop prediction steps of the training loss."),
    steps: int = typer.Option(_DEFAULTS.steps, help="Optimiser steps of the whole run."),
    batch_size: int = typer.Option(_DEFAULTS.batch_size, help="Windows per optimiser step."),
    lr: float = typer.Option(_DEFAULTS.lr, help="Adam learning rate."),
    grad_clip: float = typer.Option(_DEFAULTS.grad_clip, help="Maximum global gradient norm."),
    val_fraction: float = typer.Option(_DEFAULTS.val_fraction, help="Fraction of episodes (the last ones) held out."),
    val_every: int = typer.Option(_DEFAULTS.val_every, help="Steps between validation passes."),
    checkpoint_every: int = typer.Option(_DEFAULTS.checkpoint_every, help="Steps between checkpoints."),
    log_every: int = typer.Option(_DEFAULTS.log_every, help="Steps between metric lines in metrics.jsonl."),
    seed: int = typer.Option(_DEFAULTS.seed, help="Seed of the initial weights and the batch order."),
    device: str = typer.Option(_DEFAULTS.device, help="auto, cpu, cuda or cuda:N."),
    latent: str = typer.Option(
        _DEFAULTS.latent,
        help="Planning latent: code (the encoder's linear code) or readout (a head on the flow latent z, "
        "regressed on the recorded states of the goal-defining components, e.g. cart position and pole angle).",
    ),
    readout_steps: int = typer.Option(_DEFAULTS.readout_steps, help="Optimiser steps of the read-out head."),
    ensemble: int = typer.Option(
        _DEFAULTS.ensemble,
        help="Transition networks trained side by side from different initial weights; planners use their "
        "mean prediction, which the planner cannot exploit as easily as one model's errors.",
    ),
    mirror: bool = typer.Option(
        _DEFAULTS.mirror,
        help="Also train on the left-right mirror image of every training episode (read-outs and actions "
        "change sign); needs --latent readout and an env with that symmetry, such as the cart-poles.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train a latent world model on the frozen encoder's codes of collected episodes.

    Every frame is encoded once and cached in OUT/codes.safetensors. The loss
    is the open-loop error of --rollout predicted codes; validation uses the
    held-out episodes. Ctrl-C writes a checkpoint; continue with --resume.
    With --latent readout, a read-out head on z is trained first (kept in
    OUT/readout.safetensors) and the model predicts its outputs instead of codes.
    """
    from planning.train import TrainingInterrupted, train_world_model

    config = WorldModelTrainConfig(
        encoder=str(encoder),
        data=str(data[0]) if len(data) == 1 else [str(folder) for folder in data],
        out=str(out),
        history=history,
        transition=transition,
        solver=solver,
        dt=dt,
        substeps=substeps,
        hidden_dim=hidden_dim,
        layers=layers,
        rollout=rollout,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        grad_clip=grad_clip,
        val_fraction=val_fraction,
        val_every=val_every,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        seed=seed,
        device=device,
        latent=latent,
        readout_steps=readout_steps,
        ensemble=ensemble,
        mirror=mirror,
    )
    config.validate()
    console.print(f"[bold]train-world-model[/] -> {out}  ({steps} steps, {transition}, history {history})")

    with training_progress() as progress:
        encode_task = progress.add_task("encode episodes", total=None, metrics="")
        readout_task = progress.add_task("read-out head", total=readout_steps, metrics="", visible=False)
        train_task = progress.add_task("train", total=steps, metrics="", visible=False)
        status: dict[str, str] = {}

        def on_encode(done: int, total: int) -> None:
            progress.update(encode_task, completed=done, total=total)

        def on_readout(step: int, metrics: dict[str, float]) -> None:
            progress.update(encode_task, visible=False)
            text = f"train {metrics['readout/train_mse']:.4f}"
            progress.update(readout_task, completed=step, visible=True, metrics=text)

        def on_step(step: int, metrics: dict[str, float]) -> None:
            progress.update(encode_task, visible=False)
            status["train"] = f"train {metrics['train/rollout_mse']:.4f}"
            if "val/rollout_mse" in metrics:
                status["val"] = f"val {metrics['val/rollout_mse']:.4f} (copy-last {metrics['val/copy_last_mse']:.4f})"
            progress.update(train_task, completed=step, visible=True, metrics="  ".join(status.values()))

        try:
            model_dir = train_world_model(
                config, resume=resume, on_step=on_step, on_encode=on_encode, on_readout=on_readout
            )
        except TrainingInterrupted as stopped:
            progress.stop()
            console.print(
                f"[yellow]{escape(str(stopped))}[/]. Resume with: flowjepa train-world-model --encoder {encoder} "
                f"{' '.join(f'--data {folder}' for folder in data)} "
                f"--out {stopped.run_dir} --resume (plus the original options)"
            )
            raise typer.Exit(130) from None

    console.print(f"[green]done[/]: world model in {model_dir}; metrics in {Path(out) / 'metrics.jsonl'}")


def register(app: typer.Typer) -> None:
    """Add ``train-world-model`` to the app."""
    app.command("train-world-model")(train_world_model_command)
