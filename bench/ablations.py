"""Section "ablations": each design choice of Flow-JEPA switched off alone, at the same training wall time.

Every variant is scored like the default: bits/dim (frozen masks) on held-out data and a linear probe on
the linear code ``W z`` and on the projector output. On images the probe is logistic regression on the
classes (top-1); on cartpole it is ridge regression of the state (mean R^2).
"""

from __future__ import annotations

from bench.context import BenchContext
from bench.measures import classification_scores, features_of, mean_bits_per_dim, state_scores
from bench.plots import labelled_scatter
from bench.report import SectionResult, Table, ratio
from bench.training import VariantSpec, ablation_variants, main_variants
from flowjepa.model import FlowJEPA

KEY = "ablations"
TITLE = "Ablations at equal training wall time"


def required_models(context: BenchContext) -> list[VariantSpec]:
    """Return the default Flow-JEPA and its ablations on the ablation dataset."""
    dataset = context.options.ablation_data
    return [main_variants(dataset)[0], *ablation_variants(dataset)]


def run(context: BenchContext) -> SectionResult:
    """Score every ablation and compare it with the default Flow-JEPA."""
    budget = context.budget
    dataset = context.options.ablation_data
    if dataset == "images":
        train = context.data.images("train", budget.probe_train_images, seed=2)
        test = context.data.images("val", budget.probe_test_images, seed=1)
        density_images = context.data.images("val", budget.density_images, seed=1).images
        metric, description = "top-1", context.data.image_description
    else:
        train, test = context.data.cartpole("train"), context.data.cartpole("test")
        density_images = context.data.cartpole("test", budget.density_images, seed=1).images
        metric, description = "mean R^2", f"cartpole swing-up frames at {budget.image_size} px"

    scores: dict[str, dict[str, float]] = {}
    specs = required_models(context)
    missing = {spec.key: context.failures[spec.key] for spec in specs[1:] if spec.key in context.failures}
    specs = [spec for spec in specs if spec.key not in missing]
    for spec in specs:
        trained = context.model(spec.key)
        model = FlowJEPA.from_pretrained(trained.path)
        train_features = {name: value for name, value in features_of(model, train.images).items() if name != "z"}
        test_features = {name: value for name, value in features_of(model, test.images).items() if name != "z"}
        if dataset == "images":
            probe = classification_scores(train_features, train, test_features, test, budget.probe_epochs)
        else:
            probe = {
                name: values["mean"]
                for name, values in state_scores(train_features, train, test_features, test).items()
            }
        scores[spec.key] = {
            "bits_per_dim": mean_bits_per_dim(model, density_images, budget.importance_samples),
            "probe_code": probe["code"],
            "probe_projector": probe["projector"],
            "steps": trained.steps,
        }

    default = scores[specs[0].key]
    rows = []
    for spec in specs:
        values = scores[spec.key]
        rows.append(
            [
                spec.label,
                spec.change,
                int(values["steps"]),
                values["bits_per_dim"],
                ratio(values["bits_per_dim"], default["bits_per_dim"]),
                values["probe_code"],
                ratio(values["probe_code"], default["probe_code"]),
                values["probe_projector"],
                ratio(values["probe_projector"], default["probe_projector"]),
            ]
        )
    result = SectionResult(KEY, TITLE, data={"dataset": dataset, "metric": metric, "scores": scores, "failed": missing})
    result.tables.append(
        Table(
            caption=(
                f"{description}; bits/dim on {len(density_images)} held-out images, probes fitted on {len(train)} and "
                f"scored on {len(test)}. Every variant trained for {budget.minutes_per_variant:g} min."
            ),
            columns=[
                "variant",
                "change",
                "steps",
                "bits/dim",
                "/ default",
                f"code probe {metric}",
                "/ default",
                f"projector probe {metric}",
                "/ default",
            ],
            rows=rows,
        )
    )
    plot = "ablations.png"
    labelled_scatter(
        context.options.out / plot,
        [(spec.label, scores[spec.key]["bits_per_dim"], scores[spec.key]["probe_code"]) for spec in specs],
        "bits/dim (lower is better)",
        f"code probe {metric} (higher is better)",
        "Ablations: density against linear readability",
    )
    result.plots.append(plot)
    if missing:
        result.notes.append(
            "Left out because their training failed: "
            + "; ".join(f"{key} ({error})" for key, error in missing.items())
            + "."
        )
    result.notes.append(
        "Fixed masks are the checkerboard and its complement; independent masks draw each layer's mask alone, so "
        "a dimension may stay untouched for several layers. Without a projector this project applies invariance "
        "and SIGReg to the linear code W z (the flow's `use_projector=False`), not to the full latent z. The "
        "variants without augmentation or with the MLP encoder change the parameter count (see the models "
        "section); the others keep it."
    )
    return result
