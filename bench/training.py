"""Training every benchmark model for the same wall-clock budget, and caching the results in the work folder.

Three kinds of model are trained, all with the same data, batch size, AdamW settings, warm-up, gradient
clipping, seeded batch order and wall-clock budget (``Budget.minutes_per_variant``):

- ``flowjepa``: Flow-JEPA variants through :func:`flowjepa.train.pretrain`, the code behind
  ``flowjepa pretrain``, with its ``time_limit``;
- ``fixed-mask-flow``: the parameter-matched checkerboard flow (:func:`bench.baselines.fixed_mask_config`)
  trained on bits/dim of the unaugmented images only;
- ``conv-jepa``: :class:`bench.baselines.ConvJEPA` trained on invariance + SIGReg of two augmented views.

The budget clock starts after data loading and ActNorm initialisation and is checked after every step,
so a model trains for its budget plus at most one step. The learning rate stays at its peak after the
warm-up, because ``steps`` is set far beyond what the budget reaches. When ``Budget.max_steps`` caps
training, the usual cosine schedule over those steps applies instead.

A trained model is stored in ``WORK/models/<key>/`` with ``record.json``; a later run whose options give
the same fingerprint reuses it instead of training again.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# NOTE: the first torch.optim step imports triton, which crashes (SIGSEGV) in a process that has already
# rendered with MuJoCo's EGL backend. The benchmark renders cartpole frames before training, so import it first.
import torch._dynamo  # noqa: F401
from torch.utils.data import DataLoader, Dataset

from bench.baselines import ConvJEPA, count_parameters, density_parameters, fixed_mask_config, matched_conv_width
from bench.budget import Budget
from bench.machine import hardware_line, load_average
from flowjepa.checkpoint import atomic_write_json, load_module_weights, load_weights, read_json, save_weights
from flowjepa.config import FlowJEPAConfig
from flowjepa.data import (
    MultiViewDataset,
    StepBatchSampler,
    ViewSpec,
    build_transforms,
    collate,
    open_source,
    target_kind,
)
from flowjepa.errors import TrainingDivergedError
from flowjepa.losses import LossWeights
from flowjepa.model import FlowJEPA
from flowjepa.preprocess import bits_per_dim
from flowjepa.projector import invariance_loss
from flowjepa.sigreg import sigreg
from flowjepa.train import PretrainConfig, TrainingInterrupted, _learning_rate_factor, pretrain

logger = logging.getLogger(__name__)

KINDS = ("flowjepa", "fixed-mask-flow", "conv-jepa")
UNCAPPED_STEPS = 10_000_000
"""``steps`` of a run that only the wall-clock budget stops."""
RECORD_FILE = "record.json"
RECORD_VERSION = 1


@dataclass(frozen=True)
class VariantSpec:
    """One model to train: its kind, its data and what differs from the default Flow-JEPA."""

    key: str
    """Unique name, also the folder name: ``<dataset>-<variant>``."""
    label: str
    """Name on the page."""
    kind: str
    """One of :data:`KINDS`."""
    dataset: str
    """``images`` (Imagenette or its fallback) or ``cartpole``."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """FlowJEPAConfig fields changed from the budget's architecture."""
    sigreg_weight: float = LossWeights.sigreg
    """Weight of SIGReg (0 turns it off)."""
    change: str = ""
    """Description of what the variant changes, for the page."""


@dataclass(frozen=True)
class TrainJob:
    """Everything a (possibly separate) process needs to train one variant."""

    spec: VariantSpec
    budget: Budget
    data_source: str
    """``folder`` or ``frames``, as ``flowjepa pretrain --data`` takes it."""
    data_root: str
    folder: str
    seed: int
    threads: int | None = None
    """torch intra-op threads of a worker process (None keeps the default)."""

    def fingerprint(self) -> str:
        """Return a hash of every option that changes the trained model."""
        budget = self.budget
        options = {
            "version": RECORD_VERSION,
            "spec": dataclasses.asdict(self.spec),
            "budget": [budget.image_size, budget.model, budget.minutes_per_variant, budget.max_steps],
            "training": [budget.batch_size, budget.sigreg_directions, self.seed],
            "data": [self.data_source, self.data_root],
        }
        return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TrainedModel:
    """A trained variant: where its weights are and how its training went."""

    spec: VariantSpec
    path: Path
    """Folder of the weights: a FlowJEPA model folder, or a ConvJEPA folder for ``conv-jepa``."""
    steps: int
    train_seconds: float
    """Wall time of the training loop (data loading included, set-up excluded), in seconds."""
    images_per_second: float
    """Training images per second of the loop (each image is one or more flow or conv passes)."""
    parameters: dict[str, int]
    """``total``, ``density`` (flow, augmentation and prior; 0 for conv-jepa) and ``encoder`` (flow or conv net)."""
    config: dict[str, Any]
    """The FlowJEPAConfig of the model (for conv-jepa, of the Flow-JEPA it copies shapes from)."""
    trained_at: str
    hardware: str
    load_average: float | None
    reused: bool = False

    def load(self) -> FlowJEPA | ConvJEPA:
        """Load the weights in eval mode."""
        if self.spec.kind == "conv-jepa":
            return load_conv_jepa(self.path)
        return FlowJEPA.from_pretrained(self.path).eval()


# ---------------------------------------------------------------------------------------------- variants


def base_config(budget: Budget, overrides: dict[str, Any] | None = None) -> FlowJEPAConfig:
    """Return the budget's architecture at its image size, with ``overrides`` applied."""
    return FlowJEPAConfig.from_dict(
        {"image_size": budget.image_size, **budget.model, **(overrides or {})}, source="bench model options"
    )


def main_variants(dataset: str) -> list[VariantSpec]:
    """Return Flow-JEPA and the two baselines trained on ``dataset``."""
    return [
        VariantSpec(f"{dataset}-flowjepa", "Flow-JEPA", "flowjepa", dataset, change="default architecture and loss"),
        VariantSpec(
            f"{dataset}-fixed-mask-flow",
            "fixed-mask flow (RealNVP-style)",
            "fixed-mask-flow",
            dataset,
            change="checkerboard masks, no augmentation, bits/dim only, parameter-matched",
        ),
        VariantSpec(
            f"{dataset}-conv-jepa",
            "conv encoder (LeJEPA-style)",
            "conv-jepa",
            dataset,
            change="non-invertible conv encoder, same projector, invariance + SIGReg only",
        ),
    ]


def ablation_variants(dataset: str) -> list[VariantSpec]:
    """Return the Flow-JEPA ablations on ``dataset``, each changing one design choice of the default."""
    table = [
        ("fixed-masks", "fixed masks", {"mask_mode": "checkerboard"}, None, "checkerboard masks instead of random"),
        ("independent-masks", "independent masks", {"mask_mode": "independent"}, None, "independent Bernoulli masks"),
        ("mlp-encoder", "MLP VAE encoder", {"vae_encoder": "mlp"}, None, "MLP instead of linear VAE encoder"),
        ("no-augmentation", "no augmentation", {"aug_channels": 0}, None, "no variational augmentation channel"),
        ("no-sigreg", "no SIGReg", {}, 0.0, "SIGReg weight 0"),
        (
            "no-projector",
            "no projector",
            {"use_projector": False},
            None,
            "invariance and SIGReg on the linear code W z",
        ),
    ]
    return [
        VariantSpec(
            f"{dataset}-{name}",
            label,
            "flowjepa",
            dataset,
            overrides,
            LossWeights.sigreg if sigreg_weight is None else sigreg_weight,
            change,
        )
        for name, label, overrides, sigreg_weight, change in table
    ]


# ---------------------------------------------------------------------------------------------- training


class _StepClock:
    """Step callback that counts steps and measures the loop's wall time."""

    def __init__(self) -> None:
        self.steps = 0
        self.loop_start: float | None = None
        self.last = 0.0
        self.metrics: dict[str, float] = {}

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        if self.loop_start is None:
            # The loop starts when the first step's computation starts, so loading the first batch is left out.
            self.loop_start = now - metrics.get("time/step_s", 0.0)
        self.steps, self.last, self.metrics = step, now, dict(metrics)

    @property
    def seconds(self) -> float:
        return 0.0 if self.loop_start is None else self.last - self.loop_start


def _train_with_pretrain(job: TrainJob, folder: Path) -> tuple[Path, _StepClock]:
    budget = job.budget
    config = PretrainConfig(
        data=job.data_source,
        data_root=job.data_root,
        image_size=budget.image_size,
        batch_size=budget.batch_size,
        steps=budget.max_steps or UNCAPPED_STEPS,
        sigreg_weight=job.spec.sigreg_weight,
        sigreg_directions=budget.sigreg_directions,
        seed=job.seed,
        device="cpu",
        out=str(folder / "run"),
        checkpoint_every=UNCAPPED_STEPS,
        log_every=10,
        time_limit=budget.minutes_per_variant,
        model={**budget.model, **job.spec.overrides},
    )
    clock = _StepClock()
    model_dir = pretrain(config, on_step=clock)
    return model_dir, clock


class _CleanImages(Dataset):
    """The unaugmented view of each image only, in the item layout of :class:`MultiViewDataset`."""

    def __init__(self, base: Dataset, image_size: int) -> None:
        self.base = base
        self.clean, _, _ = build_transforms(ViewSpec(image_size, 1))

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        image, target = self.base[item[0]]
        clean = self.clean(image)
        return {"clean": clean, "views": clean.new_empty((0, *clean.shape)), "target": target}


def _run_loop(model: torch.nn.Module, loss_of_batch, dataset: Dataset, job: TrainJob) -> _StepClock:
    """Train ``model`` on ``loss_of_batch(batch, step)`` with pretrain's optimiser settings until the budget ends."""
    budget, defaults = job.budget, PretrainConfig()
    total = budget.max_steps or UNCAPPED_STEPS
    optimizer = torch.optim.AdamW(model.parameters(), lr=defaults.lr, weight_decay=defaults.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _learning_rate_factor(step, defaults.warmup_steps, total)
    )
    sampler = StepBatchSampler(len(dataset), budget.batch_size, job.seed)  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=0)

    clock = _StepClock()
    deadline = time.monotonic() + 60.0 * budget.minutes_per_variant
    model.train()
    for step, batch in enumerate(loader):
        started = time.perf_counter()
        loss = loss_of_batch(batch, step)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"{job.spec.label}: the loss became {loss.item()} at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), defaults.grad_clip)
        optimizer.step()
        scheduler.step()
        clock(step + 1, {"time/step_s": time.perf_counter() - started, "train/loss": float(loss.detach())})
        if step + 1 >= total or time.monotonic() >= deadline:
            break
    model.eval()
    return clock


def _noise_generator(seed: int, step: int) -> torch.Generator:
    # The same per-step seeding rule as flowjepa.train, so every model gets the same noise stream.
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009)


def _train_fixed_mask_flow(job: TrainJob, folder: Path) -> tuple[Path, _StepClock]:
    base = open_source(job.data_source, job.data_root, "train")
    dataset = _CleanImages(base, job.budget.image_size)
    torch.manual_seed(job.seed)
    model = FlowJEPA(fixed_mask_config(base_config(job.budget, job.spec.overrides)))

    # ActNorm starts from the first batch, as in pretrain.
    first = collate(
        [dataset[item] for item in next(iter(StepBatchSampler(len(dataset), job.budget.batch_size, job.seed)))]
    )
    model.train()
    with torch.no_grad():
        model.log_density(first["clean"], generator=_noise_generator(job.seed, -1))

    def loss_of_batch(batch: dict[str, Any], step: int) -> torch.Tensor:
        log_density, _ = model.log_density(batch["clean"], generator=_noise_generator(job.seed, step))
        return bits_per_dim(log_density, model.config.num_dims).mean()

    clock = _run_loop(model, loss_of_batch, dataset, job)
    _unshare_frozen_masks(model)
    return model.save_pretrained(folder / "model"), clock


def _unshare_frozen_masks(model: FlowJEPA) -> None:
    """Give every frozen mask buffer its own storage, so safetensors can save the model.

    NOTE: with checkerboard masks and two or more pairs per level, MaskedCouplingFlow registers one mask
    tensor for several layers, and safetensors rejects tensors that share memory. This copy works around
    that for the baseline, which the benchmark saves itself. Pretrain saves without it, so a checkerboard
    run through pretrain (the fixed-masks ablation) fails at the save until the flow stops sharing masks.
    """
    for name, buffer in list(model.flow.named_buffers(recurse=False)):
        if name.startswith("frozen_mask_"):
            setattr(model.flow, name, buffer.clone())


def _train_conv_jepa(job: TrainJob, folder: Path) -> tuple[Path, _StepClock]:
    base = open_source(job.data_source, job.data_root, "train")
    kind = target_kind(base)
    # The view augmentation pretrain picks for this data (its "auto" rule).
    views = ViewSpec(job.budget.image_size, 2, "mild" if kind == "state" else "strong")
    dataset = MultiViewDataset(base, views, kind)
    torch.manual_seed(job.seed)
    config = base_config(job.budget, job.spec.overrides)
    model = ConvJEPA(config, matched_conv_width(config))
    weights = LossWeights(sigreg=job.spec.sigreg_weight, sigreg_directions=job.budget.sigreg_directions)

    def loss_of_batch(batch: dict[str, Any], step: int) -> torch.Tensor:
        images = batch["views"]
        embeddings = model.project(images.flatten(0, 1)).view(images.shape[0], images.shape[1], -1)
        directions = torch.Generator().manual_seed(job.seed * 7919 + step)
        sig = sigreg(embeddings, weights.sigreg_directions, generator=directions)
        return weights.invariance * invariance_loss(embeddings) + weights.sigreg * sig

    clock = _run_loop(model, loss_of_batch, dataset, job)
    path = folder / "model"
    save_weights(path / "model.safetensors", model.state_dict())
    atomic_write_json(path / "config.json", {"model": "ConvJEPA", **model.describe()})
    return path, clock


def load_conv_jepa(path: Path) -> ConvJEPA:
    """Load a :class:`ConvJEPA` written by the benchmark, in eval mode."""
    stored = read_json(path / "config.json", "ConvJEPA config")
    model = ConvJEPA(FlowJEPAConfig.from_dict(stored["config"]), int(stored["width"]))
    load_module_weights(model, load_weights(path / "model.safetensors"), str(path / "model.safetensors"))
    return model.eval()


def train_one(job: TrainJob) -> dict[str, Any]:
    """Train one variant into ``job.folder`` and return its record (also written to ``record.json``)."""
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    folder = Path(job.folder)
    if folder.exists():
        # Only a benchmark model folder is removed: one with a record, a pretrain run or a model inside.
        if not any((folder / name).exists() for name in (RECORD_FILE, "run", "model")):
            raise RuntimeError(f"{folder} exists but is not a benchmark model folder; remove it or pick another --work")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load = load_average()
    logger.info("training %s for %.2f min", job.spec.key, job.budget.minutes_per_variant)
    trainers = {
        "flowjepa": _train_with_pretrain,
        "fixed-mask-flow": _train_fixed_mask_flow,
        "conv-jepa": _train_conv_jepa,
    }
    path, clock = trainers[job.spec.kind](job, folder)

    if job.spec.kind == "conv-jepa":
        model = load_conv_jepa(path)
        parameters = {"total": count_parameters(model), "density": 0, "encoder": count_parameters(model.encoder)}
        config = model.config.to_dict()
    else:
        flow_model = FlowJEPA.from_pretrained(path)
        parameters = {
            "total": count_parameters(flow_model),
            "density": density_parameters(flow_model),
            "encoder": count_parameters(flow_model.flow) + count_parameters(flow_model.augmentation),
        }
        config = flow_model.config.to_dict()
    record = {
        "fingerprint": job.fingerprint(),
        "path": str(path.relative_to(folder)),
        "steps": clock.steps,
        "train_seconds": clock.seconds,
        "images_per_second": clock.steps * job.budget.batch_size / max(clock.seconds, 1e-9),
        "parameters": parameters,
        "config": config,
        "trained_at": started,
        "hardware": hardware_line(),
        "load_average": load,
        "last_metrics": clock.metrics,
    }
    atomic_write_json(folder / RECORD_FILE, record)
    return record


def _from_record(spec: VariantSpec, folder: Path, record: dict[str, Any], reused: bool) -> TrainedModel:
    return TrainedModel(
        spec=spec,
        path=folder / record["path"],
        steps=int(record["steps"]),
        train_seconds=float(record["train_seconds"]),
        images_per_second=float(record["images_per_second"]),
        parameters=dict(record["parameters"]),
        config=dict(record["config"]),
        trained_at=str(record["trained_at"]),
        hardware=str(record["hardware"]),
        load_average=record.get("load_average"),
        reused=reused,
    )


def cached_record(job: TrainJob) -> dict[str, Any] | None:
    """Return the stored record of a model trained with the same fingerprint, or None."""
    path = Path(job.folder) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("fingerprint") != job.fingerprint() or not (Path(job.folder) / record["path"]).exists():
        return None
    return record


def _describe_failure(job: TrainJob, error: BaseException) -> str:
    logger.error("training %s failed: %s: %s", job.spec.key, type(error).__name__, error, exc_info=error)
    message = " ".join(str(error).split())  # one line, so it fits a table cell
    if len(message) > 300:
        message = message[:300] + " ..."
    return f"{type(error).__name__}: {message}"


def train_all(
    jobs: list[TrainJob], processes: int = 1, retrain: bool = False
) -> tuple[dict[str, TrainedModel], dict[str, str]]:
    """Train (or reuse) every job's variant; return the trained models and the failures, both by key.

    A variant whose training raises is logged and reported in the failures with its error, and the
    others still train. With ``processes > 1`` that many variants train at once in separate processes,
    one torch thread each unless the job sets ``threads``. They share the cores, and each still gets the
    same wall-clock budget.
    """
    trained: dict[str, TrainedModel] = {}
    failures: dict[str, str] = {}
    todo = []
    for job in jobs:
        record = None if retrain else cached_record(job)
        if record is not None:
            logger.info("reusing %s from %s (same fingerprint)", job.spec.key, job.folder)
            trained[job.spec.key] = _from_record(job.spec, Path(job.folder), record, reused=True)
        else:
            todo.append(job)

    records: dict[str, dict[str, Any]] = {}
    if processes <= 1 or len(todo) <= 1:
        for job in todo:
            try:
                records[job.spec.key] = train_one(job)
            except TrainingInterrupted:
                raise  # SIGINT or SIGTERM stops the whole run, not only this model
            except Exception as error:  # noqa: BLE001 - reported per model; the other models still train
                failures[job.spec.key] = _describe_failure(job, error)
    else:
        import multiprocessing

        threaded = [dataclasses.replace(job, threads=job.threads or 1) for job in todo]
        with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {job.spec.key: (job, pool.submit(train_one, job)) for job in threaded}
            for key, (job, future) in futures.items():
                try:
                    records[key] = future.result()
                except Exception as error:  # noqa: BLE001 - as above
                    failures[key] = _describe_failure(job, error)
    for job in todo:
        if job.spec.key in records:
            trained[job.spec.key] = _from_record(job.spec, Path(job.folder), records[job.spec.key], reused=False)
    return trained, failures
