"""Results of the benchmark sections and the Markdown page, raw JSON and plots written from them.

Every section returns a :class:`SectionResult`. :func:`write_outputs` merges the sections of this run into
``results.json`` of the output folder, where sections not run now keep their earlier results. It then
rewrites the generated block of the benchmark page. Only the text between :data:`BEGIN_MARKER` and
:data:`END_MARKER` changes, and the markers are appended to the end of the page when it has none.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowjepa.checkpoint import atomic_write_bytes, atomic_write_json
from flowjepa.errors import InvalidInputError

logger = logging.getLogger(__name__)

BEGIN_MARKER = "<!-- bench:all:begin -->"
END_MARKER = "<!-- bench:all:end -->"
RESULTS_FILE = "results.json"
RESULTS_FORMAT = "flowjepa-bench-results"

# Order of the sections on the page; sections with other keys follow in the order they were stored.
SECTION_ORDER = ("models", "exactness", "density", "representation", "ablations", "planning", "speed")


@dataclass
class Table:
    """A Markdown table: a caption line, column names and rows of cell values (str, int, float or None)."""

    caption: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class RunInfo:
    """Provenance of a section: command, commit, hardware, budget and timing."""

    command: str
    commit: str
    hardware: str
    budget: str
    started: str
    """Start time, ISO 8601 in UTC."""
    wall_s: float = 0.0
    """Wall time of the section, in seconds."""
    load_average: float | None = None
    """1-minute load average when the section started (other jobs compete for the cores when it is high)."""


@dataclass
class SectionResult:
    """Measurements of one benchmark section: tables for the page, raw numbers for JSON, plots and notes."""

    key: str
    title: str
    status: str = "ok"
    """``ok``, ``skipped`` (something it needs is missing, named in ``reason``) or ``failed``."""
    reason: str = ""
    tables: list[Table] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    """PNG file names inside the output folder."""
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    run: RunInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data (non-finite floats become None)."""
        return _finite(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SectionResult:
        """Rebuild a result stored by :meth:`to_dict`."""
        values = dict(values)
        values["tables"] = [Table(**table) for table in values.get("tables", [])]
        run = values.get("run")
        values["run"] = RunInfo(**run) if run else None
        return cls(**values)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return ``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def format_cell(value: Any) -> str:
    """Format a table cell: 4 significant digits for floats, ``n/a`` for None, ``|`` escaped."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def render_table(table: Table) -> str:
    """Return a table as Markdown, with its caption as a line above it."""
    lines = [table.caption, ""] if table.caption else []
    lines.append("| " + " | ".join(format_cell(name) for name in table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    for row in table.rows:
        if len(row) != len(table.columns):
            raise ValueError(f"row {row!r} has {len(row)} cells but the table has {len(table.columns)} columns")
        lines.append("| " + " | ".join(format_cell(cell) for cell in row) + " |")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def render_section(result: SectionResult, number: int, plot_prefix: str) -> str:
    """Return the Markdown of one section; ``plot_prefix`` is the path from the page to the output folder."""
    parts = [f"### {number}. {result.title}"]
    if result.run is not None:
        run = result.run
        load = "" if run.load_average is None else f", load average {run.load_average} at start"
        parts.append(
            f"Command: `{run.command}`  \n"
            f"Commit: `{run.commit}`; budget: {run.budget}; wall time {_duration(run.wall_s)}; "
            f"started {run.started}  \n"
            f"Hardware: {run.hardware}{load}"
        )
    if result.status != "ok":
        parts.append(f"**{result.status.capitalize()}:** {result.reason}")
    for table in result.tables:
        parts.append(render_table(table))
    for plot in result.plots:
        parts.append(f"![{result.title}]({plot_prefix}/{plot})")
    for note in result.notes:
        parts.append(note)
    return "\n\n".join(parts)


def ordered(sections: dict[str, SectionResult]) -> list[SectionResult]:
    """Return the sections in page order."""
    known = [sections[key] for key in SECTION_ORDER if key in sections]
    return known + [result for key, result in sections.items() if key not in SECTION_ORDER]


def render_block(sections: dict[str, SectionResult], plot_prefix: str) -> str:
    """Return the generated block of the page: an overview table, then one part per section."""
    results = ordered(sections)
    overview = Table(
        caption="",
        columns=["section", "status", "budget", "wall time", "commit"],
        rows=[
            [
                result.title,
                result.status,
                result.run.budget if result.run else None,
                _duration(result.run.wall_s) if result.run else None,
                result.run.commit if result.run else None,
            ]
            for result in results
        ],
    )
    header = (
        "## Flow-JEPA's open questions, measured\n\n"
        "Written by `python -m bench all` (or `flowjepa bench`). Each run rewrites the text between the "
        "`bench:all` markers, so edit this part through the benchmark code, not by hand. Raw numbers are in "
        f"`{plot_prefix}/{RESULTS_FILE}`. Every comparison below was measured in one run, and tables give "
        "ratios beside the absolute values because other jobs share this machine's cores. Budgets other than "
        "`full` only check that the code runs, so do not read conclusions from their numbers.\n\n"
        "The full run (`python -m bench all`, an estimated two hours on 2 CPU cores) trains every compared "
        "model for 5 minutes by default. `--minutes-per-variant`, `--image-size` and `--budget '{...}'` change the "
        "budget, `--processes 2` trains two models at once (one core each), and trained models are reused "
        "from `runs/bench` when the options match. Pretrained models join the comparison with "
        "`--imagenette-model DIR` and `--cartpole-model DIR`. Planning needs `--cartpole-model` and "
        "`--world-model` (default: `models/cartpole/encoder` and `models/cartpole/world_model`) and is "
        "skipped in a full run without them."
    )
    body = [header, render_table(overview)]
    body += [render_section(result, number, plot_prefix) for number, result in enumerate(results, start=1)]
    return "\n\n".join(body)


def replace_block(page_text: str, block: str) -> str:
    """Return ``page_text`` with the text between the markers replaced by ``block``; everything else is kept.

    Without markers, the markers and the block are appended at the end. Raises
    :class:`InvalidInputError` when only one marker is present, or they are out of order or repeated.
    """
    begin_count, end_count = page_text.count(BEGIN_MARKER), page_text.count(END_MARKER)
    if begin_count == 0 and end_count == 0:
        if page_text == "" or page_text.endswith("\n\n"):
            separator = ""
        else:
            separator = "\n" if page_text.endswith("\n") else "\n\n"
        return f"{page_text}{separator}{BEGIN_MARKER}\n{block}\n{END_MARKER}\n"
    if begin_count != 1 or end_count != 1:
        raise InvalidInputError(
            f"the benchmark page must contain {BEGIN_MARKER} and {END_MARKER} once each, found them "
            f"{begin_count} and {end_count} times; fix the markers by hand, or remove both to append a new block"
        )
    begin = page_text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = page_text.index(END_MARKER)
    if end < begin:
        raise InvalidInputError(
            f"{END_MARKER} comes before {BEGIN_MARKER} in the benchmark page; put the begin marker first"
        )
    return f"{page_text[:begin]}\n{block}\n{page_text[end:]}"


def load_results(path: Path) -> dict[str, SectionResult]:
    """Read the sections stored in ``results.json``; a missing or unreadable file gives no sections."""
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
        if stored.get("format") != RESULTS_FORMAT:
            raise ValueError(f"format is {stored.get('format')!r}, not {RESULTS_FORMAT!r}")
        return {key: SectionResult.from_dict(values) for key, values in stored["sections"].items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("ignoring earlier results in %s, which cannot be read (%s)", path, error)
        return {}


def write_outputs(sections: list[SectionResult], out_dir: Path, page: Path | None) -> dict[str, SectionResult]:
    """Merge ``sections`` into ``out_dir/results.json`` and rewrite the generated block of ``page``.

    Returns every stored section, the new ones included. ``page=None`` writes only the JSON.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    merged = load_results(results_path)
    for result in sections:
        merged[result.key] = result
    stored = {
        "format": RESULTS_FORMAT,
        "sections": {result.key: result.to_dict() for result in ordered(merged)},
    }
    atomic_write_json(results_path, stored)

    if page is not None:
        plot_prefix = Path(os.path.relpath(out_dir.resolve(), page.resolve().parent)).as_posix()
        # Bytes, not read_text: newline translation would change the hand-written part of the page.
        text = page.read_bytes().decode("utf-8") if page.is_file() else ""
        new_text = replace_block(text, render_block(merged, plot_prefix))
        atomic_write_bytes(page, new_text.encode("utf-8"))
    return merged
