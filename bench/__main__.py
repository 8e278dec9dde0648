"""Run the benchmarks and ablations of Flow-JEPA, and rewrite the generated part of docs/benchmarks.md.

    python -m bench all                     # full budget: about two hours on 2 CPU cores (estimate)
    python -m bench all --quick             # about five minutes; checks every path, numbers mean little
    python -m bench density representation  # only some sections (the page keeps the others' last results)
    python -m bench all --imagenette-model runs/imagenette64/model --cartpole-model models/cartpole/encoder \\
        --world-model models/cartpole/world_model

Sections: exactness, density, representation, ablations, planning, speed. The models they compare are
trained first, each for the same wall-clock budget, and cached in --work for later runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

# NOTE: the first torch.optim step imports triton, which crashes (SIGSEGV) in a process that has already
# rendered with MuJoCo's EGL backend. Importing it here, before anything renders, avoids the crash.
import torch._dynamo  # noqa: F401

from bench.context import make_options
from bench.suite import SECTIONS
from flowjepa.errors import InvalidInputError
from flowjepa.train import TrainingInterrupted


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m bench``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sections", nargs="+", help=f"'all' or any of: {', '.join(SECTIONS)}")

    budget = parser.add_argument_group("budget")
    size = budget.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the quick budget (about five minutes on 2 cores)")
    size.add_argument("--tiny", action="store_true", help="the test-suite budget (tiny models, seconds)")
    budget.add_argument("--minutes-per-variant", type=float, help="training wall time of every model, in minutes")
    budget.add_argument("--image-size", type=int, help="image side in pixels (a multiple of 8)")
    budget.add_argument("--max-steps", type=int, help="cap on each model's training steps (default: time only)")
    budget.add_argument(
        "--budget", type=json.loads, help="JSON of budget fields to override, e.g. '{\"density_images\": 500}'"
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", type=Path, help="folder of results.json and the plots [default: the repository's docs/bench]"
    )
    output.add_argument(
        "--page",
        type=Path,
        help="page whose generated block is rewritten [default: the repository's docs/benchmarks.md]",
    )
    output.add_argument("--no-page", action="store_true", help="write only the JSON and the plots")
    output.add_argument(
        "--work", type=Path, help="folder of frames and trained models [default: the repository's runs/bench]"
    )

    inputs = parser.add_argument_group("data and pretrained models")
    inputs.add_argument("--imagenette", type=Path, help="Imagenette folder with train/ and val/ (default: found)")
    inputs.add_argument("--no-imagenette", action="store_true", help="use labelled cartpole frames instead")
    inputs.add_argument("--imagenette-model", type=Path, help="a pretrained Flow-JEPA to evaluate on images too")
    inputs.add_argument("--cartpole-model", type=Path, help="a pretrained cartpole Flow-JEPA (also planning's encoder)")
    inputs.add_argument(
        "--world-model",
        type=Path,
        help="planning's world model [default: the repository's models/cartpole/world_model]",
    )

    execution = parser.add_argument_group("execution")
    execution.add_argument(
        "--ablation-data", choices=("images", "cartpole"), default="images", help="data of the ablations"
    )
    execution.add_argument("--processes", type=int, default=1, help="models trained at once, one torch thread each")
    execution.add_argument("--threads", type=int, help="torch intra-op threads of this process")
    execution.add_argument("--retrain", action="store_true", help="train every model again instead of reusing --work")
    execution.add_argument("--seed", type=int, default=0, help="seed of training, data choice and planning tasks")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the sections and return the exit status (1 when a section failed, 2 for bad input)."""
    arguments = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    import torch

    from bench.suite import run

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    preset = "full"
    if args.quick:
        preset = "quick"
    elif args.tiny:
        preset = "tiny"
    try:
        options = make_options(
            args.sections,
            preset=preset,
            command=shlex.join(["python", "-m", "bench", *arguments]),
            minutes_per_variant=args.minutes_per_variant,
            image_size=args.image_size,
            max_steps=args.max_steps,
            budget_overrides=args.budget,
            out=args.out,
            page=args.page,
            write_page=not args.no_page,
            work=args.work,
            imagenette=args.imagenette,
            use_imagenette=not args.no_imagenette,
            imagenette_model=args.imagenette_model,
            cartpole_model=args.cartpole_model,
            world_model=args.world_model,
            ablation_data=args.ablation_data,
            processes=args.processes,
            retrain=args.retrain,
            seed=args.seed,
        )
        results = run(options)
    except InvalidInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as error:
        print(f"interrupted: {error}; sections finished before it are on the page", file=sys.stderr)
        return 130
    failed = [result.key for result in results if result.status == "failed"]
    if failed:
        print(f"failed sections: {', '.join(failed)} (see the log above and the page)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
