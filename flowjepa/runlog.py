"""Run folders: resolved config, metrics as JSON lines, and a PNG of the curves."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from flowjepa.checkpoint import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Append-only JSON-lines log of namespaced metrics (``train/bpd``, ``probe/top1``).

    On resume, lines logged after the restored step are dropped so the log
    matches the restored state exactly.
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [row for row in self.read() if row.get("step", 0) <= resume_step]
            atomic_write_bytes(self.path, "".join(json.dumps(row) + "\n" for row in kept).encode())

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one row; non-finite values are stored as ``null``."""
        row: dict[str, Any] = {"step": step}
        for key, value in metrics.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else None
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Return every row logged so far."""
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("skipping a malformed line in %s", self.path)
        return rows


def write_config(run_dir: str | Path, config: dict[str, Any], name: str = "config.json") -> None:
    """Write the resolved configuration of a run at its start."""
    atomic_write_json(Path(run_dir) / name, config)


def plot_metrics(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Plot every metric against the step, one panel per metric, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({key for row in rows for key in row if key != "step"})
    if not keys:
        return
    columns = min(3, len(keys))
    lines = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 2.8 * lines), squeeze=False)
    for axis, key in zip(axes.flat, keys):
        points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
        if points:
            steps, values = zip(*points)
            axis.plot(steps, values, linewidth=1)
        axis.set_title(key, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(keys) :]:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)
