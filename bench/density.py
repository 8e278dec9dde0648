"""Section "density": bits/dim of Flow-JEPA beside PNG, lossless WebP and a parameter-matched fixed-mask flow.

The flows' bits/dim are variational estimates: uniform dequantisation, the augmentation posterior and an
importance-sampled VAE prior each make them an upper bound on the model's true code length, up to Monte
Carlo noise. PNG and WebP numbers are the sizes of real files, headers included.
"""

from __future__ import annotations

from bench.baselines import codec_bits_per_dim, density_parameters
from bench.context import BenchContext
from bench.measures import mean_bits_per_dim
from bench.plots import grouped_bars
from bench.report import SectionResult, Table, ratio
from bench.training import VariantSpec, main_variants
from flowjepa.model import FlowJEPA

KEY = "density"
TITLE = "Density: bits/dim beside PNG, WebP and a fixed-mask flow"


def required_models(context: BenchContext) -> list[VariantSpec]:
    """Return Flow-JEPA and the fixed-mask flow of each dataset."""
    return [spec for dataset in ("images", "cartpole") for spec in main_variants(dataset)[:2]]


def run(context: BenchContext) -> SectionResult:
    """Estimate bits/dim of every model and codec on the same held-out images of each dataset."""
    budget = context.budget
    count = budget.density_images
    samples = budget.importance_samples
    inputs = {
        "images": (context.data.images("val", count, seed=1).images, context.data.image_description),
        "cartpole": (
            context.data.cartpole("test", count, seed=1).images,
            f"held-out cartpole swing-up frames at {budget.image_size} px",
        ),
    }

    tables, raw, bars = [], {}, {}
    for dataset, (images, description) in inputs.items():
        values: dict[str, float] = {
            "PNG": codec_bits_per_dim(images, "PNG"),
            "WebP (lossless)": codec_bits_per_dim(images, "WebP"),
        }
        details: dict[str, dict] = {}

        flowjepa = context.model(f"{dataset}-flowjepa")
        model = FlowJEPA.from_pretrained(flowjepa.path)
        values["Flow-JEPA, frozen masks"] = mean_bits_per_dim(model, images, samples)
        details["Flow-JEPA, frozen masks"] = {"parameters": flowjepa.parameters["density"], "steps": flowjepa.steps}
        if budget.mixture_masks > 0:
            name = f"Flow-JEPA, mixture over {budget.mixture_masks} random masks"
            values[name] = mean_bits_per_dim(model, images, samples, "logmeanexp", budget.mixture_masks)
            details[name] = details["Flow-JEPA, frozen masks"]

        baseline = context.model(f"{dataset}-fixed-mask-flow")
        values["fixed-mask flow"] = mean_bits_per_dim(FlowJEPA.from_pretrained(baseline.path), images, samples)
        details["fixed-mask flow"] = {"parameters": baseline.parameters["density"], "steps": baseline.steps}

        if dataset in context.given:
            given = context.given[dataset]
            given_model = FlowJEPA.from_pretrained(given.path)
            values[given.label] = mean_bits_per_dim(given_model, images, samples)
            details[given.label] = {"parameters": density_parameters(given_model), "steps": None}

        rows = []
        for name, value in values.items():
            info = details.get(name, {})
            rows.append(
                [
                    name,
                    value,
                    ratio(value, values["PNG"]),
                    ratio(value, values["WebP (lossless)"]),
                    ratio(value, values["fixed-mask flow"]),
                    info.get("parameters"),
                    info.get("steps"),
                ]
            )
        tables.append(
            Table(
                caption=f"{description}, {len(images)} images; flows use {samples} importance samples per image.",
                columns=["method", "bits/dim", "/ PNG", "/ WebP", "/ fixed-mask flow", "parameters", "steps"],
                rows=rows,
            )
        )
        raw[dataset] = {"images": len(images), "bits_per_dim": values, "details": details}
        bars[dataset] = values

    result = SectionResult(KEY, TITLE, tables=tables, data=raw)
    methods = list(dict.fromkeys(name for values in bars.values() for name in values))
    plot = "density.png"
    grouped_bars(
        context.options.out / plot,
        list(bars),
        {method: [bars[dataset].get(method) for dataset in bars] for method in methods},
        "bits/dim (lower is better)",
        "Bits/dim on held-out data",
    )
    result.plots.append(plot)
    result.notes.append(
        "Both flows trained for the same wall time. The fixed-mask flow spent all of it on bits/dim of clean "
        "images, Flow-JEPA also on its invariance and SIGReg terms (see the models section for steps). "
        "Parameters count the flow, augmentation net and VAE prior. The frozen-mask row is the density of the "
        "single bijection that encode and decode use. The mixture row is the log-mean-exp over random mask "
        "draws, an estimate of the density of the stochastic-mask model itself."
    )
    return result
