"""Section "exactness": how exactly ``decode(encode(x))`` returns ``x``, in float32 and float64.

For each image the error is ``max |x - f^-1(f(x))|`` over its sub-pixels, with ``x`` the bin centre
``(k + 0.5) / 256`` of the uint8 value ``k`` that ``encode`` maps, and ``f^-1`` the inverse before any
clamping or rounding. An image is uint8-exact when rounding the inverse back to uint8 gives every pixel
back, which is the case whenever the error is below half a bin, 1/512.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from bench.context import BenchContext
from bench.measures import BATCH
from bench.plots import log_histogram
from bench.report import SectionResult, Table, ratio
from bench.training import VariantSpec, main_variants
from flowjepa.model import FlowJEPA
from flowjepa.preprocess import bin_centres, quantize

KEY = "exactness"
TITLE = "Exactness of the round trip x -> z -> x"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def required_models(context: BenchContext) -> list[VariantSpec]:
    """Return the bench-trained Flow-JEPA of each dataset."""
    return [main_variants(dataset)[0] for dataset in ("images", "cartpole")]


@torch.no_grad()
def round_trip(model: FlowJEPA, images: Tensor) -> tuple[Tensor, Tensor]:
    """Return the per-image max absolute error ``(N,)`` (float64) and whether each image is uint8-exact ``(N,)``."""
    errors, exact = [], []
    channels = model.config.channels
    for chunk in images.split(BATCH):
        z = model.encode(chunk)
        inverse = model.logit.inverse(model.flow.inverse(z, frozen=True)[:, :channels])
        centres = bin_centres(chunk, inverse.dtype)
        errors.append((inverse - centres).abs().flatten(1).max(1).values.double())
        exact.append((quantize(inverse) == chunk).flatten(1).all(1))
    return torch.cat(errors), torch.cat(exact)


def run(context: BenchContext) -> SectionResult:
    """Measure the round trip of every Flow-JEPA on held-out images and frames, in both precisions."""
    budget = context.budget
    count = budget.exactness_images
    inputs = {
        "images": (context.data.images("val", count, seed=1).images, context.data.image_description),
        "cartpole": (
            context.data.cartpole("test", count, seed=1).images,
            f"held-out cartpole swing-up frames at {budget.image_size} px",
        ),
    }
    models: list[tuple[str, str, Path]] = []
    for dataset in ("images", "cartpole"):
        trained = context.model(f"{dataset}-flowjepa")
        models.append((dataset, f"Flow-JEPA ({budget.minutes_per_variant:g} min)", trained.path))
        if dataset in context.given:
            models.append((dataset, context.given[dataset].label, context.given[dataset].path))

    rows, histograms, raw = [], {}, []
    for dataset, label, path in models:
        images, description = inputs[dataset]
        measured = {}
        for dtype_name, dtype in DTYPES.items():
            model = FlowJEPA.from_pretrained(path).to(dtype).eval()
            measured[dtype_name] = round_trip(model, images)

        float64_median = float(measured["float64"][0].median())
        for dtype_name, (errors, exact) in measured.items():
            histograms[f"{label}, {dataset}, {dtype_name}"] = errors.tolist()
            summary = {
                "model": label,
                "data": dataset,
                "dtype": dtype_name,
                "images": len(images),
                "median_max_abs_error": float(errors.median()),
                "p99_max_abs_error": float(torch.quantile(errors, 0.99)),
                "max_abs_error": float(errors.max()),
                "uint8_exact_fraction": float(exact.float().mean()),
            }
            raw.append({**summary, "errors": errors.tolist()})
            rows.append(
                [
                    label,
                    description,
                    dtype_name,
                    len(images),
                    summary["median_max_abs_error"],
                    summary["p99_max_abs_error"],
                    summary["max_abs_error"],
                    summary["uint8_exact_fraction"],
                    ratio(summary["median_max_abs_error"], float64_median),
                ]
            )

    result = SectionResult(KEY, TITLE, data={"rows": raw})
    result.tables.append(
        Table(
            caption=(
                "Per-image max |x - f^-1(f(x))| on the unit scale (a uint8 bin is 1/256 wide, so errors below "
                "1/512 = 1.95e-03 round back to the exact pixel)."
            ),
            columns=[
                "model",
                "data",
                "dtype",
                "images",
                "median error",
                "99th percentile",
                "max error",
                "uint8-exact fraction",
                "median / float64 median",
            ],
            rows=rows,
        )
    )
    plot = "exactness.png"
    log_histogram(
        context.options.out / plot, histograms, "max |x - f^-1(f(x))| per image", "Round-trip error per image",
        floor=1e-18,
    )  # fmt: skip
    result.plots.append(plot)
    result.notes.append(
        "Errors of exactly 0 are drawn at 1e-18 in the histogram. The float64 rows run the same trained weights "
        "converted to float64, which shows how much of the float32 error is rounding."
    )
    return result
