"""Options of a benchmark run and the state its sections share: data, trained models and given models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.budget import Budget
from bench.datasets import BenchData, resolve_imagenette
from bench.machine import REPO_ROOT
from bench.training import TrainedModel
from flowjepa.errors import InvalidInputError
from planning.loading import SHIPPED_ENCODER, SHIPPED_WORLD_MODEL

DEFAULT_PLANNING_ENCODER = SHIPPED_ENCODER
DEFAULT_WORLD_MODEL = SHIPPED_WORLD_MODEL
DATASETS = ("images", "cartpole")


@dataclass
class BenchOptions:
    """Everything ``python -m bench`` and ``flowjepa bench`` take."""

    budget: Budget
    sections: list[str]
    out: Path = REPO_ROOT / "docs" / "bench"
    """Folder of results.json and the PNG plots."""
    page: Path | None = REPO_ROOT / "docs" / "benchmarks.md"
    """Page whose generated block is rewritten (None: JSON and plots only)."""
    work: Path = REPO_ROOT / "runs" / "bench"
    """Folder of rendered frames and trained models, reused by later runs."""
    imagenette: Path | None = None
    use_imagenette: bool = True
    imagenette_model: Path | None = None
    cartpole_model: Path | None = None
    world_model: Path | None = None
    ablation_data: str = "images"
    processes: int = 1
    retrain: bool = False
    seed: int = 0
    command: str = "python -m bench all"

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for options that cannot run, before anything is trained."""
        self.budget.validate()
        if self.ablation_data not in DATASETS:
            raise InvalidInputError(f"--ablation-data must be one of {', '.join(DATASETS)}, got {self.ablation_data!r}")
        if self.processes < 1:
            raise InvalidInputError(f"--processes must be >= 1, got {self.processes}")
        for name in ("imagenette_model", "cartpole_model", "world_model"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_dir():
                raise InvalidInputError(f"--{name.replace('_', '-')} {path} is not a folder; pass a model folder")


@dataclass
class GivenModel:
    """A pretrained Flow-JEPA passed on the command line, evaluated beside the bench-trained models."""

    label: str
    path: Path


@dataclass
class BenchContext:
    """Shared state of one run; ``models`` fills up as the models section trains them."""

    options: BenchOptions
    data: BenchData
    models: dict[str, TrainedModel] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Models whose training failed, with the error."""
    given: dict[str, GivenModel] = field(default_factory=dict)
    """Given Flow-JEPA models by dataset (``images``, ``cartpole``)."""

    @property
    def budget(self) -> Budget:
        return self.options.budget

    @classmethod
    def create(cls, options: BenchOptions) -> BenchContext:
        """Check the options, find the data and the given models."""
        from planning.loading import resolve_encoder_dir

        options.validate()
        imagenette = resolve_imagenette(options.imagenette, options.use_imagenette)
        data = BenchData(options.budget, options.work, imagenette)
        given = {}
        for dataset, path in (("images", options.imagenette_model), ("cartpole", options.cartpole_model)):
            if path is None:
                continue
            folder = resolve_encoder_dir(path)
            given[dataset] = GivenModel(f"Flow-JEPA (given: {path})", folder)
        context = cls(options, data, given=given)
        for dataset in given:
            context.check_given_size(dataset)
        return context

    def check_given_size(self, dataset: str) -> None:
        """Raise :class:`InvalidInputError` when a given model takes another image size than the budget."""
        from flowjepa.checkpoint import read_json

        stored = read_json(self.given[dataset].path / "config.json", "model config")
        size = stored.get("config", {}).get("image_size")
        if size != self.budget.image_size:
            raise InvalidInputError(
                f"the given {dataset} model {self.given[dataset].path} takes {size} px images but the budget "
                f"uses {self.budget.image_size} px; pass --image-size {size}"
            )

    def model(self, key: str) -> TrainedModel:
        """Return the bench-trained model ``key`` (the models section must have trained it)."""
        if key in self.failures:
            raise RuntimeError(f"model {key} failed to train ({self.failures[key]})")
        if key not in self.models:
            raise RuntimeError(f"model {key} was not trained in this run; the models section trains it first")
        return self.models[key]

    def planning_paths(self) -> tuple[Path, Path]:
        """Return the encoder and world-model folders planning uses (given, or the defaults under models/)."""
        encoder = self.options.cartpole_model or DEFAULT_PLANNING_ENCODER
        world_model = self.options.world_model or DEFAULT_WORLD_MODEL
        return Path(encoder), Path(world_model)


def make_options(
    sections: list[str],
    *,
    preset: str = "full",
    command: str,
    minutes_per_variant: float | None = None,
    image_size: int | None = None,
    max_steps: int | None = None,
    budget_overrides: dict | None = None,
    out: Path | None = None,
    page: Path | None = None,
    write_page: bool = True,
    work: Path | None = None,
    imagenette: Path | None = None,
    use_imagenette: bool = True,
    imagenette_model: Path | None = None,
    cartpole_model: Path | None = None,
    world_model: Path | None = None,
    ablation_data: str = "images",
    processes: int = 1,
    retrain: bool = False,
    seed: int = 0,
) -> BenchOptions:
    """Build the options of a run from command-line values; both ``python -m bench`` and ``flowjepa bench`` use it."""
    from bench.budget import PRESETS

    if preset not in PRESETS:
        raise InvalidInputError(f"unknown budget {preset!r}; valid: {', '.join(PRESETS)}")
    overrides = dict(budget_overrides or {})
    for name, value in (("minutes_per_variant", minutes_per_variant), ("image_size", image_size)):
        if value is not None:
            overrides[name] = value
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    budget = PRESETS[preset].with_overrides(**overrides) if overrides else PRESETS[preset]
    defaults = BenchOptions(budget=budget, sections=sections)
    return BenchOptions(
        budget=budget,
        sections=sections,
        out=out or defaults.out,
        page=(page or defaults.page) if write_page else None,
        work=work or defaults.work,
        imagenette=imagenette,
        use_imagenette=use_imagenette,
        imagenette_model=imagenette_model,
        cartpole_model=cartpole_model,
        world_model=world_model,
        ablation_data=ablation_data,
        processes=processes,
        retrain=retrain,
        seed=seed,
        command=command,
    )
