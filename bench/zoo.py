"""Section "models": train every model the chosen sections compare, each for the same wall-clock budget."""

from __future__ import annotations

from bench.context import BenchContext
from bench.report import SectionResult, Table, ratio
from bench.training import TrainJob, VariantSpec, train_all

KEY = "models"
TITLE = "Models trained for this run"


def jobs_for(context: BenchContext, specs: list[VariantSpec]) -> list[TrainJob]:
    """Return the training jobs of ``specs``, rendering or locating their data first."""
    data = context.data
    roots = {}
    for dataset in sorted({spec.dataset for spec in specs}):
        if dataset == "images":
            roots[dataset] = ("folder", str(data.image_training_root()))
        else:
            roots[dataset] = ("frames", str(data.cartpole_folder("train")))
    return [
        TrainJob(
            spec=spec,
            budget=context.budget,
            data_source=roots[spec.dataset][0],
            data_root=roots[spec.dataset][1],
            folder=str(context.options.work / "models" / spec.key),
            seed=context.options.seed,
        )
        for spec in specs
    ]


def run(context: BenchContext, specs: list[VariantSpec]) -> SectionResult:
    """Train (or reuse) ``specs`` into ``context.models`` and tabulate their budgets and throughput."""
    result = SectionResult(KEY, TITLE)
    if not specs:
        result.status, result.reason = "skipped", "no chosen section needs a trained model"
        return result
    trained, failures = train_all(jobs_for(context, specs), context.options.processes, context.options.retrain)
    context.models.update(trained)
    context.failures.update(failures)

    rows = []
    for spec in specs:
        if spec.key in failures:
            rows.append([spec.label, spec.dataset, spec.change, *[None] * 7, f"failed: {failures[spec.key]}", None])
            continue
        model = trained[spec.key]
        reference = trained.get(f"{spec.dataset}-flowjepa")
        reference_rate = reference.images_per_second if reference is not None else None
        rows.append(
            [
                spec.label,
                spec.dataset,
                spec.change,
                model.parameters["total"],
                model.parameters["density"] or None,
                model.parameters["encoder"],
                model.steps,
                model.train_seconds,
                model.images_per_second,
                ratio(model.images_per_second, reference_rate),
                "reused" if model.reused else "trained now",
                model.load_average,
            ]
        )
    result.tables.append(
        Table(
            caption=(
                f"Every model trained for {context.budget.minutes_per_variant:g} min of wall-clock time "
                f"(batch {context.budget.batch_size}, image side {context.budget.image_size} px, seed "
                f"{context.options.seed}, {context.options.processes} training process(es) at once). Images: "
                f"{context.data.image_description}. Throughput ratios are relative to Flow-JEPA on the same data."
            ),
            columns=[
                "model",
                "data",
                "change from Flow-JEPA",
                "parameters",
                "density parameters",
                "encoder parameters",
                "steps",
                "training s",
                "images/s",
                "images/s / Flow-JEPA",
                "origin",
                "load average at start",
            ],
            rows=rows,
        )
    )
    result.notes.append(
        "Flow-JEPA and its ablations train through `flowjepa.train.pretrain` (the `flowjepa pretrain` code) with "
        "its time limit; the two baselines train in the benchmark's own loop with the same optimiser, batch "
        "order and budget. A Flow-JEPA step passes the clean image and two augmented views through the flow, the "
        "fixed-mask flow passes only the clean image and the conv encoder only the two views, so equal time "
        "gives them different numbers of steps. Density parameters count the flow, the augmentation net and "
        "the VAE prior, which define bits/dim. Encoder parameters count the flow and augmentation net, or the "
        "conv encoder. Models marked reused come from an earlier run with identical options (see the work "
        "folder), so their load average is that run's."
    )
    if failures:
        result.status = "failed"
        result.reason = "; ".join(f"{key}: {error}" for key, error in failures.items())
    result.data = {"failures": failures}
    result.data.update(
        {
            spec.key: {
                "label": spec.label,
                "kind": spec.kind,
                "dataset": spec.dataset,
                "overrides": spec.overrides,
                "sigreg_weight": spec.sigreg_weight,
                "steps": trained[spec.key].steps,
                "train_seconds": trained[spec.key].train_seconds,
                "images_per_second": trained[spec.key].images_per_second,
                "parameters": trained[spec.key].parameters,
                "config": trained[spec.key].config,
                "trained_at": trained[spec.key].trained_at,
                "hardware": trained[spec.key].hardware,
                "reused": trained[spec.key].reused,
            }
            for spec in specs
            if spec.key in trained
        }
    )
    return result
