"""Pretraining loop: resumable, crash-safe, single process or torchrun DDP.

A run folder contains ``pretrain_config.json`` (the resolved options, written at
start), ``metrics.jsonl``, ``metrics.png``, ``checkpoint.safetensors`` (the
full training state, replaced atomically every ``checkpoint_every`` steps and
at the end) and ``model/`` (the final weights for ``FlowJEPA.from_pretrained``).

Every random choice of step ``s`` (batch order, augmentations, dequantisation
noise, masks, SIGReg directions) is a function of ``(seed, s)``, so a run
resumed from a checkpoint repeats exactly what the uninterrupted run would
have done on the same device.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from flowjepa.checkpoint import load_state, read_json, save_state
from flowjepa.config import FlowJEPAConfig
from flowjepa.data import (
    SOURCES,
    MultiViewDataset,
    StepBatchSampler,
    ViewSpec,
    collate,
    num_classes,
    open_source,
    target_kind,
)
from flowjepa.device import resolve_device
from flowjepa.errors import InvalidInputError, TrainingDivergedError, reject_unknown_fields
from flowjepa.interrupt import TrainingInterrupted, stop_signals
from flowjepa.losses import LossWeights, pretraining_losses
from flowjepa.memory import check_training_memory
from flowjepa.model import FlowJEPA
from flowjepa.runlog import MetricsLog, plot_metrics, write_config

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.safetensors"
RUN_CONFIG_FILE = "pretrain_config.json"

# Options that may differ between a run and its resumption.
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "log_every", "num_workers", "device", "time_limit"}


@dataclass
class PretrainConfig:
    """Every option of ``flowjepa pretrain``; a JSON config file uses the same field names."""

    data: str = "frames"
    """Data source: frames (rendered environment frames), folder (class folders), imagenette (torchvision)."""
    data_root: str | None = None
    """Data folder. For frames without a root, cartpole frames are rendered into RUN/frames first."""
    download: bool = False
    """Let torchvision download Imagenette into --data-root (needs internet)."""
    env: str = "cartpole"
    """Environment rendered when --data frames has no --data-root."""
    collect_episodes: int = 16
    """Episodes rendered for the default frame data."""
    collect_steps: int = 100
    """Steps per episode rendered for the default frame data."""
    image_size: int = 64
    """Side of the square training images, in pixels."""
    batch_size: int = 16
    """Images per step (the global batch under torchrun)."""
    steps: int = 800
    """Optimiser steps of the whole run."""
    lr: float = 1e-3
    """Peak learning rate of AdamW (linear warm-up, then cosine decay to 10%)."""
    warmup_steps: int = 20
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 50.0
    """Maximum global gradient norm."""
    bpd_weight: float = 1.0
    """Weight of bits/dim."""
    invariance_weight: float = 0.95
    """Weight of the multi-view invariance loss."""
    sigreg_weight: float = 0.05
    """Weight of SIGReg."""
    sigreg_directions: int = 256
    """Random directions per SIGReg call."""
    views: int = 2
    """Augmented views per image for invariance and SIGReg (the density term gets one more, unaugmented)."""
    augment: str = "auto"
    """View augmentation: strong (natural images), mild (rendered frames), or auto (chosen by data source)."""
    seed: int = 0
    """Seed of every random choice of the run."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    out: str = "runs/pretrain"
    """Run folder."""
    checkpoint_every: int = 100
    """Steps between checkpoints (one is always written at the end)."""
    log_every: int = 10
    """Steps between metric lines."""
    num_workers: int = 0
    """Data-loading worker processes."""
    time_limit: float | None = None
    """Wall-clock budget in minutes: stop early, checkpoint and export the model when it is spent."""
    model: dict[str, Any] = field(default_factory=dict)
    """FlowJEPAConfig fields to override (hidden_channels, levels, code_dim, aug_channels, mask_mode, ...)."""

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an option that cannot work, naming it and its value."""
        if self.data not in SOURCES:
            raise InvalidInputError(f"unknown data source {self.data!r}; valid sources: {', '.join(SOURCES)}")
        for name in ("batch_size", "steps", "image_size", "views", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise InvalidInputError(
                f"--batch-size must be at least 2 (batch statistics of the probes and ActNorm need two images), "
                f"got {self.batch_size}"
            )
        for name in ("collect_episodes", "collect_steps", "sigreg_directions"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InvalidInputError(f"--lr must be a positive finite number, got {self.lr}")
        for name in ("bpd_weight", "invariance_weight", "sigreg_weight", "weight_decay", "warmup_steps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"--{name.replace('_', '-')} must be a non-negative number, got {value}")
        if self.grad_clip <= 0:
            raise InvalidInputError(f"--grad-clip must be positive, got {self.grad_clip}")
        if self.augment not in ("auto", "strong", "mild"):
            raise InvalidInputError(f"--augment must be auto, strong or mild, got {self.augment!r}")
        if self.num_workers < 0:
            raise InvalidInputError(f"--num-workers must be >= 0, got {self.num_workers}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise InvalidInputError(f"--time-limit must be a positive number of minutes, got {self.time_limit}")

    def to_dict(self) -> dict[str, Any]:
        """Return the options as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_file(cls, path: str | Path) -> dict[str, Any]:
        """Read a JSON config file and return its fields, rejecting unknown names."""
        values = read_json(path, "pretrain config file")
        if not isinstance(values, dict):
            raise InvalidInputError(f"pretrain config file {path} must hold a JSON object of options")
        reject_unknown_fields(values, cls, f"pretrain config file {path}")
        return values


StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class _Distributed:
    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Distributed:
    """Join the process group that torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Distributed(rank=dist.get_rank(), world=dist.get_world_size(), owns_group=owned)


def _learning_rate_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _prepare_data(config: PretrainConfig, run_dir: Path, parallel: _Distributed) -> Path | None:
    """Return the data root, rendering default frames into the run folder when none is given."""
    if config.data_root is not None:
        return Path(config.data_root)
    if config.data != "frames":
        raise InvalidInputError(f"--data {config.data} needs --data-root DIR")
    root = run_dir / "frames"
    if parallel.is_main:
        from envs.collect import collect

        logger.info(
            "rendering %d x %d %s frames into %s", config.collect_episodes, config.collect_steps, config.env, root
        )
        collect(
            config.env,
            root,
            episodes=config.collect_episodes,
            steps=config.collect_steps,
            policy="balance",
            seed=config.seed,
            size=config.image_size,
            progress=False,
        )
    if parallel.world > 1:
        dist.barrier()
    return root


def _model_config(config: PretrainConfig, dataset: Any, kind: str) -> FlowJEPAConfig:
    values: dict[str, Any] = {"image_size": config.image_size}
    if kind == "label":
        values["num_probe_classes"] = num_classes(dataset)
    elif kind == "state":
        state = dataset[0][1]
        values["probe_state_dim"] = int(state.numel())
    values.update(config.model)
    extra = dict(values.pop("extra", {}))
    extra.update({"data": config.data, "env": getattr(dataset, "env_name", None) if kind == "state" else None})
    return FlowJEPAConfig.from_dict({**values, "extra": extra}, source="pretrain model options")


def _check_resume_compatible(stored: dict[str, Any], config: PretrainConfig, run_dir: Path) -> None:
    current = config.to_dict()

    def same(key: str) -> bool:
        if key == "data_root" and stored.get(key) and current[key]:
            return Path(stored[key]).resolve() == Path(current[key]).resolve()
        return stored.get(key) == current[key]

    changed = sorted(key for key in current if key not in RESUMABLE_CHANGES and key != "out" and not same(key))
    if changed:
        details = ", ".join(f"{key}: {stored.get(key)!r} -> {current[key]!r}" for key in changed)
        raise InvalidInputError(
            f"cannot resume {run_dir}: options differ from the original run ({details}); "
            "resume with the original options (only steps, checkpoint/log intervals, workers and device may change)"
        )


def pretrain(config: PretrainConfig, resume: bool = False, on_step: StepCallback | None = None) -> Path:
    """Run (or resume) pretraining and return the folder of the final model.

    Raises:
        InvalidInputError: bad options, data or run folder.
        TrainingDivergedError: the loss became non-finite (the last checkpoint is kept).
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint was written first.
    """
    config.validate()
    device = resolve_device(config.device)
    parallel = _init_distributed(device)
    architecture = FlowJEPAConfig.from_dict({"image_size": config.image_size, **config.model}, "pretrain model options")
    check_training_memory(architecture, max(1, config.batch_size // parallel.world), config.views, device)
    run_dir = Path(config.out)
    checkpoint_path = run_dir / CHECKPOINT_FILE

    # Run folder: refuse to overwrite a run unless resuming it.
    if resume and not checkpoint_path.is_file():
        raise InvalidInputError(f"--resume was given but {checkpoint_path} does not exist; start without --resume")
    if not resume and checkpoint_path.is_file():
        raise InvalidInputError(
            f"run folder {run_dir} already contains a checkpoint; pass --resume to continue it, or choose another --out"
        )
    if resume:
        _check_resume_compatible(read_json(run_dir / RUN_CONFIG_FILE, "run config"), config, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if parallel.is_main:
        write_config(run_dir, config.to_dict(), RUN_CONFIG_FILE)

    # Data.
    root = _prepare_data(config, run_dir, parallel)
    base = open_source(config.data, root, "train", config.download)
    kind = target_kind(base)
    strength = config.augment
    if strength == "auto":
        strength = "mild" if kind == "state" else "strong"
    dataset = MultiViewDataset(base, ViewSpec(config.image_size, config.views, strength), kind)
    if config.batch_size % parallel.world != 0:
        raise InvalidInputError(
            f"--batch-size {config.batch_size} is not divisible by the {parallel.world} torchrun processes"
        )

    # Model and optimiser.
    torch.manual_seed(config.seed)
    model_config = _model_config(config, base, kind)
    model = FlowJEPA(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _learning_rate_factor(step, config.warmup_steps, config.steps)
    )
    weights = LossWeights(config.bpd_weight, config.invariance_weight, config.sigreg_weight, config.sigreg_directions)

    start_step = 0
    if resume:
        start_step = _restore(checkpoint_path, model, optimizer, scheduler)
        logger.info("resumed %s at step %d", run_dir, start_step)
    else:
        _initialize_actnorm(model, dataset, config, device)

    objective: torch.nn.Module = _Objective(model, weights)
    if parallel.world > 1:
        objective = torch.nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)

    sampler = StepBatchSampler(len(dataset), config.batch_size, config.seed, start_step, parallel.rank, parallel.world)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=config.num_workers)
    metrics_log = None
    if parallel.is_main:
        metrics_log = MetricsLog(run_dir, resume_step=start_step if resume else None)

    step = start_step
    deadline = None if config.time_limit is None else time.monotonic() + 60.0 * config.time_limit
    try:
        with stop_signals() as stop:
            batches = iter(loader)
            while step < config.steps:
                batch = next(batches)
                started = time.perf_counter()
                metrics = _train_step(objective, model, optimizer, scheduler, batch, config, step, device, parallel)
                step += 1
                metrics["time/step_s"] = time.perf_counter() - started

                if metrics_log is not None and (step % config.log_every == 0 or step == config.steps):
                    metrics_log.log(step, metrics)
                if on_step is not None and parallel.is_main:
                    on_step(step, metrics)
                if parallel.is_main and (step % config.checkpoint_every == 0 or step == config.steps):
                    _save(checkpoint_path, model, optimizer, scheduler, step)
                if stop["received"] is not None:
                    if parallel.is_main:
                        _save(checkpoint_path, model, optimizer, scheduler, step)
                    raise TrainingInterrupted(step, run_dir, stop["received"])
                if deadline is not None and _time_is_up(deadline, parallel):
                    if parallel.is_main:
                        _save(checkpoint_path, model, optimizer, scheduler, step)
                    logger.info("time limit of %s minutes reached at step %d", config.time_limit, step)
                    break
    finally:
        if metrics_log is not None:
            plot_metrics(metrics_log.read(), run_dir / "metrics.png", title=f"pretrain {run_dir.name}")

    model_dir = run_dir / "model"
    if parallel.is_main:
        model.eval()
        model.save_pretrained(model_dir)
        logger.info("saved the model to %s", model_dir)
    if parallel.world > 1:
        dist.barrier()
    if parallel.owns_group:
        dist.destroy_process_group()
    return model_dir


def _time_is_up(deadline: float, parallel: _Distributed) -> bool:
    """Return whether the budget is spent; rank 0 decides, so every rank stops at the same step."""
    flag = torch.tensor([float(time.monotonic() >= deadline)])
    if parallel.world > 1:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


class _Objective(torch.nn.Module):
    """The loss as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, model: FlowJEPA, weights: LossWeights) -> None:
        super().__init__()
        self.model = model
        self.weights = weights

    def forward(self, batch: dict[str, Any], generator: Any, sigreg_generator: torch.Generator):
        return pretraining_losses(
            self.model,
            batch["clean"],
            batch["views"],
            self.weights,
            label=batch["label"],
            state=batch["state"],
            generator=generator,
            sigreg_generator=sigreg_generator,
        )


def _step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator | None:
    if device.type != "cpu":
        # NOTE: on CUDA the noise comes from the global CUDA generator, so resumed runs match only statistically.
        return None
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


def _train_step(
    objective: torch.nn.Module,
    model: FlowJEPA,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: dict[str, Any],
    config: PretrainConfig,
    step: int,
    device: torch.device,
    parallel: _Distributed,
) -> dict[str, float]:
    model.train()
    batch = {key: (value.to(device) if torch.is_tensor(value) else value) for key, value in batch.items()}
    generator = _step_generator(config.seed, step, parallel.rank, device)
    sigreg_generator = torch.Generator().manual_seed(config.seed * 7919 + step)

    loss, metrics = objective(batch, generator, sigreg_generator)
    if not torch.isfinite(loss):
        raise TrainingDivergedError(
            f"the loss became {loss.item()} at step {step + 1}; the last good checkpoint is kept. "
            "Lower --lr or --grad-clip, then resume with --resume"
        )

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    if not torch.isfinite(grad_norm):
        raise TrainingDivergedError(
            f"the gradient norm became {grad_norm.item()} at step {step + 1}; the last good checkpoint is kept. "
            "Lower --lr or --grad-clip, then resume with --resume"
        )
    optimizer.step()
    scheduler.step()

    if parallel.world > 1:
        # Report the mean over ranks, i.e. the metric of the global batch.
        names = sorted(metrics)
        values = torch.stack([metrics[name].float() for name in names])
        dist.all_reduce(values)
        metrics = dict(zip(names, values / parallel.world))
    result = {key: float(value) for key, value in metrics.items()}
    result["train/grad_norm"] = float(grad_norm)
    result["train/lr"] = scheduler.get_last_lr()[0]
    return result


@torch.no_grad()
def _initialize_actnorm(model: FlowJEPA, dataset: MultiViewDataset, config: PretrainConfig, device: torch.device):
    """Initialise ActNorm from the first global batch, identical on every rank (DDP then broadcasts rank 0's)."""
    sampler = StepBatchSampler(len(dataset), config.batch_size, config.seed)
    batch = collate([dataset[item] for item in next(iter(sampler))])
    images = torch.cat([batch["clean"], batch["views"].flatten(0, 1)]).to(device)
    model.train()
    model.log_density(images, generator=_step_generator(config.seed, -1, 0, device))


def _save(path: Path, model: FlowJEPA, optimizer, scheduler, step: int) -> None:
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(),
            "python": _python_state(),
        },
    }
    save_state(path, state)


def _restore(path: Path, model: FlowJEPA, optimizer, scheduler) -> int:
    state = load_state(path)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None]})
    except (KeyError, RuntimeError, ValueError) as error:
        raise InvalidInputError(
            f"checkpoint {path} does not match this model configuration ({error}); "
            "resume with the options of the original run"
        ) from error
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(_numpy_tuple(state["rng"]["numpy"]))
    random.setstate(_python_tuple(state["rng"]["python"]))
    return int(state["step"])


def _numpy_state() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(position),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _numpy_tuple(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached"])


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_tuple(state: list[Any]) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
