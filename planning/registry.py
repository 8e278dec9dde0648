"""Planners by name: the table that the API, the CLI and the benchmark share."""

from __future__ import annotations

import inspect
from typing import Any, Protocol

from torch import Tensor

from flowjepa.errors import InvalidInputError
from planning.gradient import GradientMPC
from planning.problem import PlanningProblem, PlanOutput
from planning.sampling import CEM, MPPI


class Planner(Protocol):
    """Anything with a ``plan(problem, warm_start)`` method that returns the best plan found."""

    name: str

    def plan(self, problem: PlanningProblem, warm_start: Tensor | None = None) -> PlanOutput: ...


PLANNERS: dict[str, type] = {
    "gd": GradientMPC,
    "cem": CEM,
    "mppi": MPPI,
}


def make_planner(name: str, **options: Any) -> Planner:
    """Build the planner called ``name`` with keyword ``options`` (for example ``iterations=20``).

    Unknown names and options raise :class:`InvalidInputError` listing the valid ones.
    """
    if name not in PLANNERS:
        raise InvalidInputError(f"unknown planner {name!r}; valid planners: {', '.join(PLANNERS)}")
    planner_class = PLANNERS[name]
    valid = [parameter for parameter in inspect.signature(planner_class.__init__).parameters if parameter != "self"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InvalidInputError(
            f"planner {name!r} has no option(s) {', '.join(unknown)}; its options are: {', '.join(valid)}"
        )
    return planner_class(**options)


def budget_options(name: str, samples: int | None = None, iterations: int | None = None) -> dict[str, Any]:
    """Return the options of planner ``name`` that set its search budget. None keeps the planner's default.

    ``samples`` is the number of action sequences per iteration: gd's parallel
    ``candidates``, or the ``population`` of cem and mppi.
    """
    options: dict[str, Any] = {}
    if samples is not None:
        options["candidates" if name == "gd" else "population"] = samples
    if iterations is not None:
        options["iterations"] = iterations
    return options
