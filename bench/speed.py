"""Section "speed": training throughput, encode/decode latency and how close the couplings run to the CPU's limit.

All models here have the benchmark's architecture and random weights (a step costs the same trained or
not) and see random uint8 images. FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which
counts matrix products and convolutions (2 FLOP per multiply-add) but not element-wise operations.

Two references are measured in the same process with the same threads: the float32 matmul peak
(``torch.mm``) and the throughput of one large dense 3x3 convolution. They can differ a lot. On the
development machine's AMD EPYC, torch's MKL matmul reached about 90 GFLOP/s on one thread while oneDNN
convolutions reached about 180 (torch 2.14.1). Achieved/matmul above 1 is therefore possible, and the
larger of the two references is the better estimate of the hardware limit.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from bench.baselines import ConvJEPA, fixed_mask_config, matched_conv_width
from bench.context import BenchContext
from bench.plots import grouped_bars
from bench.report import SectionResult, Table, ratio
from bench.training import VariantSpec, base_config
from flowjepa.config import FlowJEPAConfig
from flowjepa.losses import LossWeights, pretraining_losses
from flowjepa.model import FlowJEPA
from flowjepa.preprocess import bits_per_dim
from flowjepa.projector import invariance_loss
from flowjepa.sigreg import sigreg

KEY = "speed"
TITLE = "Speed: training throughput, latency and FLOP/s against the measured peak"
COUPLING_NET = re.compile(r"\.couplings\.\d+\.net$")
VIEWS = 2


def required_models(context: BenchContext) -> list[VariantSpec]:
    """Speed uses untrained models of the benchmark architecture."""
    return []


def matmul_peak(size: int, repeats: int = 5) -> float:
    """Return the best float32 GFLOP/s of ``size`` x ``size`` matrix products over ``repeats`` runs."""
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(size, size, generator=generator)
    right = torch.randn(size, size, generator=generator)
    product = torch.empty(size, size)
    torch.mm(left, right, out=product)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(left, right, out=product)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def conv_peak(channels: int, repeats: int = 5) -> float:
    """Return the best float32 GFLOP/s of a ``channels`` -> ``channels`` 3x3 convolution on a (8, C, 16, 16) input."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    inputs = torch.randn(8, channels, 16, 16)
    flops = 2 * 8 * 16 * 16 * channels * channels * 9
    with torch.no_grad():
        conv(inputs)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            conv(inputs)
            best = min(best, time.perf_counter() - started)
    return flops / best / 1e9


def _training_step(kind: str, model: torch.nn.Module, batch: int, size: int, directions: int) -> Callable[[], Tensor]:
    """Return a function computing one training loss of ``kind`` on fixed random images."""
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    views = torch.randint(0, 256, (VIEWS, batch, 3, size, size), dtype=torch.uint8, generator=generator)
    weights = LossWeights(sigreg_directions=directions)

    if kind == "flowjepa":
        return lambda: pretraining_losses(model, clean, views, weights)[0]  # type: ignore[arg-type]
    if kind == "fixed-mask-flow":
        return lambda: bits_per_dim(model.log_density(clean)[0], model.config.num_dims).mean()  # type: ignore[operator]

    def conv_loss() -> Tensor:
        embeddings = model.project(views.flatten(0, 1)).view(VIEWS, batch, -1)  # type: ignore[operator]
        return weights.invariance * invariance_loss(embeddings) + weights.sigreg * sigreg(embeddings, directions)

    return conv_loss


def training_rate(kind: str, model: torch.nn.Module, batch: int, size: int, steps: int, directions: int) -> dict:
    """Time ``steps`` optimiser steps and count one step's FLOPs; returns images/s, s/step and GFLOP/step."""
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_of = _training_step(kind, model, batch, size, directions)

    def step() -> None:
        loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: ActNorm initialisation and allocator growth
    with FlopCounterMode(display=False) as counter:
        loss = loss_of()
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - started) / steps
    return {"images_per_s": batch / seconds, "s_per_step": seconds, "gflop_per_step": counter.get_total_flops() / 1e9}


def _median_seconds(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@torch.no_grad()
def latencies(model: FlowJEPA | ConvJEPA, size: int, batch: int, repeats: int) -> dict[str, float]:
    """Return the median encode (and, for flows, decode) time per image at ``batch``, in milliseconds."""
    images = torch.randint(
        0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    model.eval()
    if isinstance(model, ConvJEPA):
        return {"encode": 1000 * _median_seconds(lambda: model.encoder(images), repeats) / batch}
    z = model.encode(images)
    return {
        "encode": 1000 * _median_seconds(lambda: model.encode(images), repeats) / batch,
        "decode": 1000 * _median_seconds(lambda: model.decode(z), repeats) / batch,
    }


class _NetTimer:
    """Forward hooks that add up the wall time spent inside the hooked modules."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0

    def start(self, *_: object) -> None:
        self._started = time.perf_counter()

    def stop(self, *_: object) -> None:
        self.total += time.perf_counter() - self._started


@torch.no_grad()
def coupling_throughput(model: FlowJEPA, size: int, batch: int, repeats: int) -> dict[str, float]:
    """Return the FLOPs of the coupling conditioner nets in one encode and their measured time.

    The time is the sum of forward-hook intervals around each coupling's net, the median over ``repeats``
    encodes, so the ActNorm, mask and affine arithmetic between the nets is excluded.
    """
    images = torch.randint(
        0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model.encode(images)
    flops = sum(sum(ops.values()) for name, ops in counter.get_flop_counts().items() if COUPLING_NET.search(name))

    timer = _NetTimer()
    handles = []
    for coupling in model.flow.couplings:
        handles.append(coupling.net.register_forward_pre_hook(timer.start))
        handles.append(coupling.net.register_forward_hook(timer.stop))
    try:
        model.encode(images)  # warm-up
        times = []
        for _ in range(repeats):
            timer.total = 0.0
            model.encode(images)
            times.append(timer.total)
    finally:
        for handle in handles:
            handle.remove()
    seconds = statistics.median(times)
    return {"gflop": flops / 1e9, "seconds": seconds, "gflop_per_s": flops / 1e9 / seconds}


def _models(config: FlowJEPAConfig) -> dict[str, tuple[str, torch.nn.Module]]:
    torch.manual_seed(0)
    return {
        "Flow-JEPA": ("flowjepa", FlowJEPA(config)),
        "fixed-mask flow": ("fixed-mask-flow", FlowJEPA(fixed_mask_config(config))),
        "conv encoder (LeJEPA-style)": ("conv-jepa", ConvJEPA(config, matched_conv_width(config))),
    }


def run(context: BenchContext) -> SectionResult:
    """Measure the matmul peak, then every model's training rate, latency and coupling FLOP/s."""
    budget = context.budget
    size, batch = budget.image_size, budget.speed_batch
    peak = matmul_peak(budget.matmul_size)
    conv_channels = max(16, budget.matmul_size // 8)
    conv_reference = conv_peak(conv_channels)
    best_peak = max(peak, conv_reference)
    config = base_config(budget)

    training = {}
    for label, (kind, model) in _models(config).items():
        training[label] = training_rate(kind, model, batch, size, budget.speed_steps, budget.sigreg_directions)
    half = size // 2
    if half % 2**config.levels == 0:
        half_model = FlowJEPA(base_config(budget, {"image_size": half}))
        training[f"Flow-JEPA at {half} px"] = training_rate(
            "flowjepa", half_model, batch, half, budget.speed_steps, budget.sigreg_directions
        )

    passes = {"Flow-JEPA": 1 + VIEWS, "fixed-mask flow": 1, "conv encoder (LeJEPA-style)": VIEWS}
    reference = training["Flow-JEPA"]["images_per_s"]
    training_rows = []
    for label, values in training.items():
        achieved = values["gflop_per_step"] / values["s_per_step"]
        training_rows.append(
            [
                label,
                half if label.endswith(f"{half} px") else size,
                passes.get(label, 1 + VIEWS),
                values["images_per_s"],
                ratio(values["images_per_s"], reference),
                values["gflop_per_step"],
                achieved,
                achieved / peak,
                achieved / best_peak,
            ]
        )

    latency_rows, latency_data = [], {}
    models = _models(config)
    for batch_size in (1, batch):
        reference_latency = latencies(models["Flow-JEPA"][1], size, batch_size, budget.latency_repeats)
        for label, (_, model) in models.items():
            values = (
                reference_latency
                if label == "Flow-JEPA"
                else latencies(model, size, batch_size, budget.latency_repeats)
            )
            latency_data[f"{label}, batch {batch_size}"] = values
            for operation, milliseconds in values.items():
                latency_rows.append(
                    [label, operation, batch_size, milliseconds, ratio(milliseconds, reference_latency[operation])]
                )

    couplings = {}
    for label in ("Flow-JEPA", "fixed-mask flow"):
        model = models[label][1]
        assert isinstance(model, FlowJEPA)
        couplings[label] = coupling_throughput(model, size, batch, budget.latency_repeats)
    coupling_rows = [
        [
            label,
            batch,
            values["gflop"],
            1000 * values["seconds"],
            values["gflop_per_s"],
            values["gflop_per_s"] / peak,
            values["gflop_per_s"] / best_peak,
        ]
        for label, values in couplings.items()
    ]

    result = SectionResult(KEY, TITLE)
    result.tables.append(
        Table(
            caption=(
                f"Training steps at batch {batch} with random images ({budget.speed_steps} timed steps after one "
                f"warm-up). References in this process: matmul peak {peak:.1f} GFLOP/s (float32, n = "
                f"{budget.matmul_size}), dense 3x3 convolution {conv_reference:.1f} GFLOP/s ({conv_channels} channels)."
            ),
            columns=[
                "model",
                "image px",
                "passes per image",
                "images/s",
                "/ Flow-JEPA",
                "GFLOP per step",
                "GFLOP/s",
                "/ matmul peak",
                "/ best reference",
            ],
            rows=training_rows,
        )
    )
    result.tables.append(
        Table(
            caption=f"Median latency over {budget.latency_repeats} runs, in milliseconds per image.",
            columns=["model", "operation", "batch", "ms per image", "/ Flow-JEPA"],
            rows=latency_rows,
        )
    )
    result.tables.append(
        Table(
            caption="Coupling conditioner nets inside one encode (convolutions only, forward pass).",
            columns=["model", "batch", "GFLOP", "ms", "GFLOP/s", "/ matmul peak", "/ best reference"],
            rows=coupling_rows,
        )
    )
    plot = "speed.png"
    grouped_bars(
        context.options.out / plot,
        [row[0] for row in training_rows] + [f"{label} couplings" for label in couplings],
        {
            "/ matmul peak": [row[-2] for row in training_rows] + [row[-2] for row in coupling_rows],
            "/ best reference": [row[-1] for row in training_rows] + [row[-1] for row in coupling_rows],
        },
        "achieved / reference",
        f"Achieved FLOP/s against the matmul peak ({peak:.0f} GFLOP/s) and the best reference ({best_peak:.0f})",
    )
    result.plots.append(plot)
    result.notes.append(
        "Passes per image counts flow or conv passes in one training step: Flow-JEPA encodes the clean image and "
        f"{VIEWS} views, the fixed-mask flow only the clean image, the conv encoder only the views. A training "
        "step's GFLOP include the backward pass."
    )
    result.data = {
        "matmul_peak_gflop_per_s": peak,
        "conv_reference_gflop_per_s": conv_reference,
        "conv_reference_channels": conv_channels,
        "matmul_size": budget.matmul_size,
        "training": training,
        "latency_ms_per_image": latency_data,
        "couplings": couplings,
    }
    return result
