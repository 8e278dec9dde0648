"""The ``flowjepa`` command: one typer app, one module per sub-command."""

from __future__ import annotations

import typer

from cli.common import setup_logging, tune_allocator

app = typer.Typer(
    name="flowjepa",
    help="Flow-JEPA: a bijective image encoder, pixel worlds and planning in its latent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Flow-JEPA: a bijective image encoder, pixel worlds and planning in its latent."""


def _register() -> None:
    # Each sub-command lives in its own module; a module that is not there yet is skipped.
    import importlib

    for module_name in ("pretrain", "collect", "goal", "world_model", "plan", "bench"):
        try:
            module = importlib.import_module(f"cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"cli.{module_name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    """Entry point of the ``flowjepa`` console script."""
    tune_allocator()
    setup_logging()
    app()


if __name__ == "__main__":
    main()
