"""PNG plots of the benchmark page, drawn with matplotlib's Agg backend and written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path

from flowjepa.checkpoint import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    _pyplot().close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def log_histogram(path: Path, series: dict[str, list[float]], xlabel: str, title: str, floor: float = 1e-12) -> None:
    """Plot overlaid histograms of positive values on a log10 axis; values below ``floor`` are drawn at it."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6))
    logs = {label: [math.log10(max(value, floor)) for value in values] for label, values in series.items() if values}
    if logs:
        low = min(min(values) for values in logs.values())
        high = max(max(values) for values in logs.values())
        edges = [low + (high - low + 1e-9) * index / 40 for index in range(41)]
        for label, values in logs.items():
            axis.hist(values, bins=edges, histtype="step", linewidth=1.5, label=label)
        axis.legend(fontsize=8)
    axis.set_xlabel(f"log10 {xlabel}")
    axis.set_ylabel("count")
    axis.set_title(title, fontsize=10)
    _save(figure, path)


def grouped_bars(path: Path, groups: list[str], series: dict[str, list[float | None]], ylabel: str, title: str) -> None:
    """Plot one bar per series inside each group; None values leave a gap."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(series)) / 2), 3.8))
    width = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series.items()):
        positions = [group + (index - (len(series) - 1) / 2) * width for group in range(len(groups))]
        heights = [math.nan if value is None else value for value in values]
        axis.bar(positions, heights, width=width, label=label)
    axis.set_xticks(range(len(groups)))
    axis.set_xticklabels(groups, fontsize=8, rotation=15, ha="right")
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    if len(series) > 1:
        axis.legend(fontsize=8)
    _save(figure, path)


def labelled_scatter(
    path: Path, points: list[tuple[str, float | None, float | None]], xlabel: str, ylabel: str, title: str
) -> None:
    """Plot labelled points ``(label, x, y)``; points with a missing coordinate are left out."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for label, x, y in points:
        if x is None or y is None:
            continue
        axis.scatter([x], [y])
        axis.annotate(label, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    _save(figure, path)
