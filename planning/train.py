"""Training of the latent world model with a multi-step open-loop rollout loss, resumable and interruptible.

The loss of a window is the mean squared error between the codes predicted
open loop for ``rollout`` steps from ``history`` true context codes and the
true codes, in normalised units (training std). Validation runs the same loss
on windows of the held-out episodes. The training state (model, optimiser,
step, RNG states) goes to ``checkpoint.safetensors``; the final model is
written with :meth:`LatentWorldModel.save_pretrained` into the run folder.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowjepa.checkpoint import load_module_weights, load_state, load_weights, read_json, save_state, save_weights
from flowjepa.device import resolve_device
from flowjepa.errors import InvalidInputError, TrainingDivergedError
from flowjepa.interrupt import TrainingInterrupted, stop_signals
from flowjepa.runlog import MetricsLog, plot_metrics, write_config
from planning.data import (
    EncodedDataset,
    WindowSampler,
    data_folders,
    encode_dataset,
    encode_frames,
    load_split_episodes,
    mirror_split,
    read_manifests,
)
from planning.loading import load_frozen_encoder
from planning.readout import ReadoutHead, mirror_signs, readout_names, readout_targets, train_readout
from planning.success import success_rule_for
from planning.transitions import SOLVERS, TRANSITIONS
from planning.world_model import LATENTS, LatentWorldModel, WorldModelConfig, encoder_fingerprint

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.safetensors"
READOUT_FILE = "readout.safetensors"
RUN_CONFIG_FILE = "train_config.json"
VALIDATION_WINDOWS = 512
# Options that may differ when a run is resumed, because they do not change what is learned so far.
RESUMABLE_CHANGES = ("steps", "val_every", "checkpoint_every", "log_every", "device", "out")

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class WorldModelTrainConfig:
    """Options of ``flowjepa train-world-model``; every field has a CLI option of the same name."""

    encoder: str
    """Encoder folder (``RUN/model`` of pretrain) or a pretrain run folder."""
    data: str | list[str]
    """Collection folder written by ``flowjepa collect``, or a list of such folders of the same env."""
    out: str = "runs/world_model"
    """Run folder; it also becomes the world model folder."""
    history: int = 3
    transition: str = "ode"
    solver: str = "rk4"
    dt: float = 1.0
    substeps: int = 1
    hidden_dim: int = 256
    layers: int = 2
    rollout: int = 8
    """Open-loop steps of the training loss."""
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    grad_clip: float = 10.0
    """Maximum global gradient norm."""
    val_fraction: float = 0.1
    val_every: int = 100
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    latent: str = "code"
    """``code`` (the encoder's linear code) or ``readout`` (a state read-out head on z, trained first)."""
    readout_steps: int = 3000
    """Optimiser steps of the read-out head (``latent=readout`` only)."""
    ensemble: int = 1
    """Transition networks, each trained on its own open-loop loss; planning uses their mean."""
    mirror: bool = False
    """Whether every training episode is also used as its left-right mirror image (``latent=readout`` only,
    envs that declare the symmetry)."""

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the first invalid option."""
        names = ("history", "substeps", "hidden_dim", "layers", "rollout", "steps", "batch_size", "val_every")
        for name in (*names, "readout_steps", "ensemble"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("checkpoint_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("lr", "dt", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InvalidInputError(f"--{name.replace('_', '-')} must be a number > 0, got {value!r}")
        if not 0 < self.val_fraction < 1:
            raise InvalidInputError(f"--val-fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.transition not in TRANSITIONS:
            raise InvalidInputError(
                f"unknown --transition {self.transition!r}; valid transitions: {', '.join(TRANSITIONS)}"
            )
        if self.solver not in SOLVERS:
            raise InvalidInputError(f"unknown --solver {self.solver!r}; valid solvers: {', '.join(SOLVERS)}")
        if self.latent not in LATENTS:
            raise InvalidInputError(f"unknown --latent {self.latent!r}; valid latents: {', '.join(LATENTS)}")
        if self.mirror and self.latent != "readout":
            raise InvalidInputError(
                "--mirror needs --latent readout: codes of a mirrored frame are not a sign change of the "
                "original codes, while read-outs of physical state components are"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the options as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


def rollout_loss(
    model: LatentWorldModel,
    context: torch.Tensor,
    actions: torch.Tensor,
    targets: torch.Tensor,
    member: int | None = None,
):
    """Return the open-loop loss (mean over steps, dims and batch) and the per-step MSE ``(H,)``.

    ``context`` ``(B, k, D)`` and ``targets`` ``(B, H, D)`` are raw codes, ``actions`` ``(B, H, A)``.
    ``member`` scores one ensemble member's own rollout; None scores the model as planners use it.
    """
    predicted = model.rollout(model.normalize(context), actions, member)
    per_step = (predicted - model.normalize(targets)).pow(2).mean(dim=(0, 2))
    return per_step.mean(), per_step


def training_loss(model: LatentWorldModel, context: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor):
    """Return the summed rollout losses of the ensemble members and the mean per-step MSE ``(H,)``.

    Each member is trained on its own open-loop rollout, so the members stay
    separate models whose errors differ; a single model is its own ensemble.
    """
    losses = [rollout_loss(model, context, actions, targets, member) for member in range(model.config.ensemble)]
    total = torch.stack([loss for loss, _ in losses]).sum()
    per_step = torch.stack([steps for _, steps in losses]).mean(dim=0)
    return total, per_step


@torch.no_grad()
def validation_metrics(model: LatentWorldModel, sampler: WindowSampler, device: torch.device) -> dict[str, float]:
    """Return the rollout loss on up to 512 evenly spaced validation windows, and the copy-last-code baseline."""
    count = min(len(sampler), VALIDATION_WINDOWS)
    indices = torch.linspace(0, len(sampler) - 1, count).round().long()
    context, actions, targets = (tensor.to(device) for tensor in sampler.windows(indices))
    loss, per_step = rollout_loss(model, context, actions, targets)
    copy_last = (model.normalize(targets) - model.normalize(context[:, -1:])).pow(2).mean()
    return {
        "val/rollout_mse": float(loss),
        "val/final_step_mse": float(per_step[-1]),
        "val/copy_last_mse": float(copy_last),
    }


def _check_resume_compatible(stored: dict[str, Any], config: WorldModelTrainConfig, run_dir: Path) -> None:
    current = config.to_dict()
    # An option added after the run started was implicitly at its default then.
    defaults = {field.name: field.default for field in dataclasses.fields(WorldModelTrainConfig)}
    stored = {**{key: value for key, value in defaults.items() if key not in stored}, **stored}
    changed = sorted(key for key in current if key not in RESUMABLE_CHANGES and stored.get(key) != current[key])
    if changed:
        details = ", ".join(f"{key}: {stored.get(key)!r} -> {current[key]!r}" for key in changed)
        raise InvalidInputError(
            f"cannot resume {run_dir}: options differ from the original run ({details}); resume with the original "
            f"options (only {', '.join(RESUMABLE_CHANGES)} may change)"
        )


def _readout_layout(manifest: dict[str, Any]) -> tuple[list[str], list[bool]]:
    """Return the components and angle flags a read-out head estimates: those that define a goal's success."""
    rule = success_rule_for(str(manifest["env"]))
    if rule is None:
        raise InvalidInputError(
            f"--latent readout needs the goal-defining state components of the environment, and "
            f"{manifest['env']!r} has no success rule; use --latent code"
        )
    return list(rule.components), list(rule.angular)


def _mirror_signs(manifest: dict[str, Any]) -> torch.Tensor:
    """Return the read-out signs under the env's left-right reflection, or raise when it declares none."""
    from envs.registry import get_spec

    env = str(manifest["env"])
    mirrored = get_spec(env).mirrored
    if not mirrored:
        raise InvalidInputError(
            f"--mirror needs an environment that is symmetric under a left-right reflection, and {env!r} "
            "declares no such symmetry; train without --mirror"
        )
    components, angular = _readout_layout(manifest)
    return mirror_signs(components, angular, mirrored)


def _read_out(head: ReadoutHead, encoder: Any, images: torch.Tensor) -> torch.Tensor:
    """Return the head's read-out ``(B, R)`` of images ``(B, 3, S, S)``."""
    return head(encoder.encode(images).to(head.z_mean.device))


def prepare_readout(
    encoder: Any,
    config: WorldModelTrainConfig,
    run_dir: Path,
    device: torch.device,
    resume: bool,
    on_step: StepCallback | None = None,
) -> ReadoutHead:
    """Train the read-out head on z and the recorded states (or reload it when resuming) and return it.

    The head is written to ``RUN/readout.safetensors`` before the world model
    trains, so an interrupted run resumes without training it again.
    """
    folders = data_folders(config.data)
    manifest = read_manifests(folders)[0]
    components, angular = _readout_layout(manifest)
    names = readout_names(components, angular)
    torch.manual_seed(config.seed)
    head = ReadoutHead(encoder.config.latent_shape, len(names)).to(device)
    path = run_dir / READOUT_FILE
    if resume and path.is_file():
        load_module_weights(head, load_weights(path), source=str(path))
        return head.eval()

    def half_latent(images: torch.Tensor) -> torch.Tensor:
        return encoder.encode(images).half()

    state_names = list(manifest["state_names"])
    pairs = {}
    for split, episodes in load_split_episodes(encoder, folders, manifest, config.val_fraction).items():
        # z in float16 halves the memory (16,384 values per 64 px frame), and the head standardises it anyway.
        # NOTE: every frame's z stays in memory while the head trains: about 3 GiB for 100,000 frames at 64 px.
        latents = [encode_frames(encoder, episode.frames, half_latent) for episode in episodes]
        states = [readout_targets(episode.states, state_names, components, angular) for episode in episodes]
        pairs[split] = (torch.cat(latents), torch.cat(states))

    errors = train_readout(head, pairs["train"], pairs["val"], config.readout_steps, seed=config.seed, on_step=on_step)
    logger.info(
        "read-out head validation RMSE: %s",
        ", ".join(f"{name} {errors.get(f'readout_rmse/{index}', math.nan):.4f}" for index, name in enumerate(names)),
    )
    save_weights(path, head.state_dict())
    return head


def _model_config(config: WorldModelTrainConfig, encoder: Any, data: EncodedDataset, fingerprint: str, latent_dim: int):
    manifest = data.manifest
    space = manifest["action_space"]
    discrete = space["type"] == "discrete"
    action_dim = 1 if discrete else int(math.prod(space["shape"]))
    readout = {}
    if config.latent == "readout":
        components, angular = _readout_layout(manifest)
        readout = {
            "latent": "readout",
            "latent_shape": list(encoder.config.latent_shape),
            "readout_components": components,
            "readout_angular": angular,
        }
    return WorldModelConfig(
        **readout,
        code_dim=latent_dim,
        action_dim=action_dim,
        history=config.history,
        transition=config.transition,
        hidden_dim=config.hidden_dim,
        layers=config.layers,
        dt=config.dt,
        solver=config.solver,
        substeps=config.substeps,
        action_low=[-1.0] * action_dim if discrete else [float(v) for v in space["low"]],
        action_high=[1.0] * action_dim if discrete else [float(v) for v in space["high"]],
        discrete_actions=discrete,
        env=str(manifest["env"]),
        env_dt=float(manifest["dt"]),
        image_size=encoder.config.image_size,
        encoder_fingerprint=fingerprint,
        ensemble=config.ensemble,
    )


def _save_checkpoint(path: Path, model, optimizer, generator: torch.Generator, step: int) -> None:
    save_state(
        path,
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "sampler": generator.get_state()},
        },
    )


def _restore_checkpoint(path: Path, model, optimizer, generator: torch.Generator) -> int:
    state = load_state(path)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        generator.set_state(state["rng"]["sampler"])
    except (KeyError, RuntimeError, ValueError) as error:
        raise InvalidInputError(
            f"checkpoint {path} does not match this world model configuration ({error}); "
            "resume with the options of the original run"
        ) from error
    return int(state["step"])


def train_world_model(
    config: WorldModelTrainConfig,
    resume: bool = False,
    on_step: StepCallback | None = None,
    on_encode: Callable[[int, int], None] | None = None,
    on_readout: StepCallback | None = None,
) -> Path:
    """Train (or resume) a world model and return its folder (the run folder).

    ``on_step(step, metrics)`` is called after every optimiser step,
    ``on_encode(done, total)`` after each encoded episode, and
    ``on_readout(step, metrics)`` after every step of the read-out head.

    Raises:
        InvalidInputError: invalid options, data, encoder or run folder.
        TrainingDivergedError: the loss became non-finite; the last checkpoint is kept.
        TrainingInterrupted: SIGINT/SIGTERM arrived; a checkpoint was written first.
    """
    config.validate()
    device = resolve_device(config.device)
    run_dir = Path(config.out)
    checkpoint_path = run_dir / CHECKPOINT_FILE

    # Run folder: never overwrite a run unless resuming it.
    if resume and not checkpoint_path.is_file():
        raise InvalidInputError(f"--resume was given but {checkpoint_path} does not exist; start without --resume")
    if not resume and checkpoint_path.is_file():
        raise InvalidInputError(
            f"run folder {run_dir} already contains a checkpoint; pass --resume to continue it, or choose another --out"
        )
    if resume:
        _check_resume_compatible(read_json(run_dir / RUN_CONFIG_FILE, "run config"), config, run_dir)
    # Check the data and the encoder before the run folder is written, so a bad option leaves nothing behind.
    manifests = read_manifests(data_folders(config.data))
    signs = _mirror_signs(manifests[0]) if config.mirror else None
    encoder = load_frozen_encoder(config.encoder, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config.to_dict(), RUN_CONFIG_FILE)

    # Data: encode every frame once with the frozen encoder.
    fingerprint = encoder_fingerprint(encoder)
    head, features, cache_key = None, None, fingerprint
    if config.latent == "readout":
        head = prepare_readout(encoder, config, run_dir, device, resume, on_readout)
        features = functools.partial(_read_out, head, encoder)
        cache_key = f"{fingerprint}:{encoder_fingerprint(head)}"
    data = encode_dataset(encoder, config.data, run_dir, cache_key, config.val_fraction, on_encode, features)
    if signs is not None:
        data.train = mirror_split(data.train, signs)
    train_windows = WindowSampler(data.train, config.history, config.rollout)
    val_windows = WindowSampler(data.val, config.history, config.rollout)
    model_config = _model_config(config, encoder, data, fingerprint, data.train.codes[0].shape[1])
    del encoder

    # Model, normalisation and optimiser.
    torch.manual_seed(config.seed)
    model = LatentWorldModel(model_config)
    if head is not None:
        model.readout.load_state_dict(head.state_dict())
    all_codes = torch.cat(data.train.codes)
    model.set_normalization(all_codes.mean(dim=0), all_codes.std(dim=0))
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    step = 0
    if resume:
        step = _restore_checkpoint(checkpoint_path, model, optimizer, generator)
        logger.info("resumed %s at step %d", run_dir, step)
    metrics_log = MetricsLog(run_dir, resume_step=step if resume else None)

    try:
        with stop_signals() as stop:
            while step < config.steps:
                started = time.perf_counter()
                model.train()
                indices = torch.randint(len(train_windows), (config.batch_size,), generator=generator)
                context, actions, targets = (tensor.to(device) for tensor in train_windows.windows(indices))
                loss, per_step = training_loss(model, context, actions, targets)
                if not torch.isfinite(loss.detach()):
                    raise TrainingDivergedError(
                        f"world model loss became {float(loss.detach())} at step {step + 1}; the last checkpoint in "
                        f"{run_dir} is kept: lower --lr or --grad-clip (an ODE model may also need more --substeps)"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                gradient_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                if not torch.isfinite(gradient_norm):
                    raise TrainingDivergedError(
                        f"world model gradient became {float(gradient_norm)} at step {step + 1}; the last checkpoint "
                        f"in {run_dir} is kept: lower --lr or --grad-clip"
                    )
                optimizer.step()
                step += 1

                metrics = {
                    "train/rollout_mse": float(per_step.mean().detach()),
                    "train/final_step_mse": float(per_step[-1].detach()),
                    "train/grad_norm": float(gradient_norm),
                    "time/step_s": time.perf_counter() - started,
                }
                if step % config.val_every == 0 or step == config.steps:
                    model.eval()
                    metrics.update(validation_metrics(model, val_windows, device))
                if step % config.log_every == 0 or step == config.steps or "val/rollout_mse" in metrics:
                    metrics_log.log(step, metrics)
                if on_step is not None:
                    on_step(step, metrics)
                if step % config.checkpoint_every == 0 or step == config.steps:
                    _save_checkpoint(checkpoint_path, model, optimizer, generator, step)
                if stop["received"] is not None:
                    _save_checkpoint(checkpoint_path, model, optimizer, generator, step)
                    raise TrainingInterrupted(step, run_dir, stop["received"])
    finally:
        plot_metrics(metrics_log.read(), run_dir / "metrics.png", title=f"world model {run_dir.name}")

    model.eval()
    model.save_pretrained(run_dir)
    logger.info("saved the world model to %s", run_dir)
    return run_dir
