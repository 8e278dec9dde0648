"""Run the benchmark sections in order, time each one, and write the page, JSON and plots after every section.

A section that raises anything but :class:`InvalidInputError` or an interruption (SIGINT, SIGTERM) is
recorded as failed, with the error, and the run goes on, so one broken section does not cost the results
of a two-hour run.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from types import ModuleType

from bench import ablations, density, exactness, planning_suite, representation, speed, zoo
from bench.context import BenchContext, BenchOptions
from bench.machine import git_commit, hardware_line, load_average
from bench.report import RunInfo, SectionResult, render_section, write_outputs
from bench.training import VariantSpec
from flowjepa.errors import InvalidInputError
from flowjepa.train import TrainingInterrupted

logger = logging.getLogger(__name__)

SECTIONS: dict[str, ModuleType] = {
    "exactness": exactness,
    "density": density,
    "representation": representation,
    "ablations": ablations,
    "planning": planning_suite,
    "speed": speed,
}
RUN_ORDER = ("speed", "exactness", "density", "representation", "ablations", "planning")
"""Execution order: speed first, while nothing else of the run has touched the caches."""


def resolve_sections(names: list[str]) -> list[str]:
    """Expand ``all`` and check the names; returns the sections in execution order."""
    valid = ["all", *SECTIONS]
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise InvalidInputError(f"unknown benchmark section(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    chosen = set(SECTIONS) if "all" in names or not names else set(names)
    return [name for name in RUN_ORDER if name in chosen]


def required_specs(context: BenchContext, sections: list[str]) -> list[VariantSpec]:
    """Return every model the sections need, each once, in first-use order."""
    specs: dict[str, VariantSpec] = {}
    for name in sections:
        for spec in SECTIONS[name].required_models(context):
            specs.setdefault(spec.key, spec)
    return list(specs.values())


def _timed(key: str, title: str, function: Callable[[], SectionResult], context: BenchContext, commit: str):
    """Run one section, recording its wall time and run facts, and turn an unexpected error into a failure."""
    options = context.options
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load = load_average()
    clock = time.perf_counter()
    logger.info("section %s: started", key)
    try:
        result = function()
    except (InvalidInputError, TrainingInterrupted):
        raise
    except Exception as error:  # noqa: BLE001 - recorded on the page and in the log, and the run goes on
        logger.exception("section %s failed", key)
        result = SectionResult(key, title, status="failed", reason=f"{type(error).__name__}: {error}")
    wall = time.perf_counter() - clock
    result.run = RunInfo(
        command=options.command,
        commit=commit,
        hardware=hardware_line(),
        budget=options.budget.name,
        started=started,
        wall_s=wall,
        load_average=load,
    )
    logger.info("section %s: %s in %.1f s", key, result.status, wall)
    return result


def run(options: BenchOptions, echo: Callable[[str], None] = print) -> list[SectionResult]:
    """Run the chosen sections (after training the models they need) and write the outputs after each one.

    ``echo`` receives each finished section as Markdown.
    """
    sections = resolve_sections(options.sections)
    context = BenchContext.create(options)
    commit = git_commit()
    results: list[SectionResult] = []

    def finish(result: SectionResult) -> None:
        results.append(result)
        write_outputs([result], options.out, options.page)
        echo(render_section(result, len(results), str(options.out)))

    if "speed" in sections:
        finish(_timed("speed", speed.TITLE, lambda: speed.run(context), context, commit))
    specs = required_specs(context, sections)
    if specs:
        finish(_timed(zoo.KEY, zoo.TITLE, lambda: zoo.run(context, specs), context, commit))
    for name in sections:
        if name == "speed":
            continue
        module = SECTIONS[name]
        finish(_timed(name, module.TITLE, lambda module=module: module.run(context), context, commit))
    return results
