"""Encoder benchmarks of one model: training throughput, exactness, bits/dim against PNG/WebP, and linear probes.

    python -m bench.encoder speed                       # training images/s at 32 and 64 px, side by side
    python -m bench.encoder quality --model RUN/model   # exactness, bits/dim, probes on Imagenette val

``python -m bench all`` runs the same measurements for every compared model and writes the benchmark
page; this command checks a single trained model quickly. Every comparison is measured in the same run
and printed as a ratio as well as in absolute values.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.baselines import codec_bits_per_dim
from bench.datasets import DEFAULT_IMAGENETTE, load_folder_images
from bench.exactness import round_trip
from bench.machine import hardware_line
from bench.measures import classification_scores, flowjepa_features, mean_bits_per_dim, pixel_features
from bench.report import ratio
from bench.speed import training_rate
from flowjepa import FlowJEPA, FlowJEPAConfig


def run_speed(args: argparse.Namespace) -> dict:
    """Print and return the training images/s of the default architecture at 32 and 64 px."""
    rates = {}
    for size in (32, 64):
        model = FlowJEPA(FlowJEPAConfig(image_size=size))
        rates[size] = training_rate("flowjepa", model, args.batch_size, size, args.steps, 256)["images_per_s"]
        print(f"{size} px: {rates[size]:.1f} training images/s (batch {args.batch_size}, 1 + 2 views)")
    print(f"ratio 32 px / 64 px: {rates[32] / rates[64]:.2f}")
    return {"images_per_s": rates, "batch_size": args.batch_size, "steps": args.steps, "hardware": hardware_line()}


def _round_trip_summary(model: FlowJEPA, images: torch.Tensor) -> dict:
    errors, exact = round_trip(model, images)
    return {
        "max_abs_error": float(errors.max()),
        "median_max_abs_error": float(errors.median()),
        "uint8_exact_fraction": float(exact.float().mean()),
    }


def run_quality(args: argparse.Namespace) -> dict:
    """Print and return exactness, bits/dim beside PNG and WebP, and probe top-1 of one trained model."""
    model = FlowJEPA.from_pretrained(args.model).eval()
    size = model.config.image_size
    root = Path(args.data_root)
    started = time.perf_counter()

    val = load_folder_images(root, "val", args.val_images, size, seed=1)
    results: dict = {"model": str(args.model), "image_size": size, "val_images": len(val)}

    results["round_trip_float32"] = _round_trip_summary(model, val.images)
    results["round_trip_float64"] = _round_trip_summary(FlowJEPA.from_pretrained(args.model).double(), val.images)
    print("round trip float32:", results["round_trip_float32"])
    print("round trip float64:", results["round_trip_float64"])

    results["bpd_flow"] = mean_bits_per_dim(model, val.images, args.iw_samples)
    results["bpd_png"] = codec_bits_per_dim(val.images, "PNG")
    results["bpd_webp"] = codec_bits_per_dim(val.images, "WebP")
    print(
        f"bits/dim: flow {results['bpd_flow']:.3f}, PNG {results['bpd_png']:.3f} "
        f"(ratio {results['bpd_flow'] / results['bpd_png']:.3f}), WebP {results['bpd_webp']:.3f} "
        f"(ratio {results['bpd_flow'] / results['bpd_webp']:.3f})"
    )

    train = load_folder_images(root, "train", args.train_images, size, seed=2)
    train_features = {**pixel_features(train.images), **flowjepa_features(model, train.images)}
    val_features = {**pixel_features(val.images), **flowjepa_features(model, val.images)}
    results["probe_top1"] = classification_scores(train_features, train, val_features, val, epochs=300)
    for name, top1 in results["probe_top1"].items():
        print(f"linear probe top-1 on {name}: {top1:.3f}")
    code_ratio = ratio(results["probe_top1"]["code"], results["probe_top1"]["pixels"])
    print(f"probe ratio code / pixels: {code_ratio if code_ratio is None else round(code_ratio, 2)}")
    results["wall_s"] = time.perf_counter() - started
    results["hardware"] = hardware_line()
    return results


def main() -> None:
    """Parse the sub-command and its options, run it, and write the JSON when asked."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="training images/s at 32 and 64 px")
    speed.add_argument("--batch-size", type=int, default=16)
    speed.add_argument("--steps", type=int, default=10)
    quality = sub.add_parser("quality", help="exactness, bits/dim and probes of a trained model")
    quality.add_argument("--model", required=True)
    quality.add_argument("--data-root", default=str(DEFAULT_IMAGENETTE))
    quality.add_argument("--val-images", type=int, default=1000)
    quality.add_argument("--train-images", type=int, default=3000)
    quality.add_argument("--iw-samples", type=int, default=8)
    for command in (speed, quality):
        command.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args()

    results = run_speed(args) if args.command == "speed" else run_quality(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
