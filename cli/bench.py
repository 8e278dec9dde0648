"""``flowjepa bench``: run the benchmarks and ablations, and rewrite the generated part of docs/benchmarks.md."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer
from rich.markup import escape

from cli.common import console, user_errors
from flowjepa.errors import InvalidInputError


def _command_line(context: typer.Context) -> str:
    """Rebuild the command as typed, from the parsed values that differ from the defaults."""
    parts = context.command_path.split()
    for parameter in context.command.params:
        value = context.params.get(parameter.name or "")
        if value is None or value is False or value == [] or value == parameter.default:
            continue
        # Typer bundles its own click, so parameters are distinguished by attributes, not by class.
        if parameter.param_type_name == "argument":
            parts += [str(item) for item in value]
        elif getattr(parameter, "is_flag", False):
            parts.append(parameter.opts[0])
        else:
            parts += [parameter.opts[0], str(value)]
    return shlex.join(parts)


@user_errors
def bench_command(
    context: typer.Context,
    sections: list[str] = typer.Argument(
        None, help="Sections to run: all (default), exactness, density, representation, ablations, planning, speed."
    ),
    quick: bool = typer.Option(False, "--quick", help="Quick budget: about five minutes on 2 CPU cores."),
    tiny: bool = typer.Option(False, "--tiny", help="Test-suite budget: tiny models, seconds."),
    minutes_per_variant: float | None = typer.Option(None, help="Training wall time of every model, in minutes."),
    image_size: int | None = typer.Option(None, help="Image side in pixels (a multiple of 8)."),
    max_steps: int | None = typer.Option(None, help="Cap on each model's training steps (default: time only)."),
    budget: str | None = typer.Option(None, help='JSON of budget fields to override, e.g. {"density_images": 500}.'),
    out: Path | None = typer.Option(
        None, help="Folder of results.json and the plots. \\[default: the repository's docs/bench]"
    ),
    page: Path | None = typer.Option(
        None, help="Page whose generated block is rewritten. \\[default: the repository's docs/benchmarks.md]"
    ),
    no_page: bool = typer.Option(False, "--no-page", help="Write only the JSON and the plots."),
    work: Path | None = typer.Option(
        None, help="Folder of frames and trained models. \\[default: the repository's runs/bench]"
    ),
    imagenette: Path | None = typer.Option(None, help="Imagenette folder with train/ and val/ (default: found)."),
    no_imagenette: bool = typer.Option(False, "--no-imagenette", help="Use labelled cartpole frames instead."),
    imagenette_model: Path | None = typer.Option(None, help="A pretrained Flow-JEPA to evaluate on images too."),
    cartpole_model: Path | None = typer.Option(None, help="A pretrained cartpole Flow-JEPA (also planning's encoder)."),
    world_model: Path | None = typer.Option(
        None, help="World model for planning. \\[default: the repository's models/cartpole/world_model]"
    ),
    ablation_data: str = typer.Option("images", help="Data of the ablations: images or cartpole."),
    processes: int = typer.Option(1, help="Models trained at once, one torch thread each."),
    retrain: bool = typer.Option(False, "--retrain", help="Train every model again instead of reusing --work."),
    seed: int = typer.Option(0, help="Seed of training, data choice and planning tasks."),
) -> None:
    """Measure Flow-JEPA's open questions beside the alternatives, and rewrite docs/benchmarks.md.

    Trains every compared model for the same wall time, then measures round-trip exactness, bits/dim,
    linear probes, ablations, planning and speed. The full budget takes about two hours on 2 CPU cores.
    """
    from bench.context import make_options
    from bench.suite import run
    from flowjepa.train import TrainingInterrupted

    if quick and tiny:
        raise InvalidInputError("--quick and --tiny choose different budgets; pass one of them")
    try:
        overrides = json.loads(budget) if budget is not None else None
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"--budget {budget!r} is not valid JSON ({error}); pass an object of fields") from None
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidInputError(f"--budget must be a JSON object of budget fields, got {budget!r}")

    preset = "full"
    if quick:
        preset = "quick"
    elif tiny:
        preset = "tiny"
    options = make_options(
        sections or ["all"],
        preset=preset,
        command=_command_line(context),
        minutes_per_variant=minutes_per_variant,
        image_size=image_size,
        max_steps=max_steps,
        budget_overrides=overrides,
        out=out,
        page=page,
        write_page=not no_page,
        work=work,
        imagenette=imagenette,
        use_imagenette=not no_imagenette,
        imagenette_model=imagenette_model,
        cartpole_model=cartpole_model,
        world_model=world_model,
        ablation_data=ablation_data,
        processes=processes,
        retrain=retrain,
        seed=seed,
    )
    try:
        results = run(options, echo=typer.echo)
    except TrainingInterrupted as error:
        console.print(f"[bold yellow]interrupted:[/] {escape(str(error))}; sections finished before it are on the page")
        raise typer.Exit(130) from None
    failed = [result.key for result in results if result.status == "failed"]
    if failed:
        console.print(f"[bold red]failed sections:[/] {', '.join(failed)}; see the log and the page", highlight=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to the ``flowjepa`` app."""
    app.command("bench")(bench_command)
