"""Encoder benchmarks: training throughput, exactness, bits/dim against PNG/WebP, and linear probes.

    python -m bench.encoder speed                       # training images/s at 32 and 64 px, side by side
    python -m bench.encoder quality --model RUN/model   # exactness, bits/dim, probes on Imagenette val

Every comparison is measured in the same run and printed as a ratio as well as in absolute values.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from pathlib import Path

import torch

from flowjepa import FlowJEPA, FlowJEPAConfig
from flowjepa.data import ImageFiles
from flowjepa.losses import LossWeights, pretraining_losses

DEFAULT_IMAGENETTE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-224"


def hardware() -> str:
    """One line naming the CPU, the core count and the torch build."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


# ---------------------------------------------------------------------------------------------- speed


def training_throughput(image_size: int, batch_size: int, steps: int, views: int = 2) -> float:
    """Training images per second (each image is 1 + views flow passes) of the default architecture."""
    torch.manual_seed(0)
    model = FlowJEPA(FlowJEPAConfig(image_size=image_size)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    clean = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8)
    view_batch = torch.randint(0, 256, (views, batch_size, 3, image_size, image_size), dtype=torch.uint8)

    def step() -> None:
        loss, _ = pretraining_losses(model, clean, view_batch, LossWeights())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up: ActNorm initialisation and allocator growth
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - started)


def run_speed(args: argparse.Namespace) -> dict:
    results = {}
    for size in (32, 64):
        results[size] = training_throughput(size, args.batch_size, args.steps)
        print(f"{size} px: {results[size]:.1f} training images/s (batch {args.batch_size}, 1 + 2 views)")
    print(f"ratio 32 px / 64 px: {results[32] / results[64]:.2f}")
    return {"images_per_s": results, "batch_size": args.batch_size, "steps": args.steps, "hardware": hardware()}


# -------------------------------------------------------------------------------------------- quality


def load_images(root: Path, split: str, count: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images of ``root/split`` chosen with a fixed seed, resized and centre-cropped: uint8 and labels."""
    from torchvision.transforms import v2

    files = ImageFiles(root / split)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:count]
    transform = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    images, labels = [], []
    for index in order.tolist():
        image, label = files[index]
        images.append(transform(image))
        labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def lossless_bits_per_dim(images: torch.Tensor, format_name: str) -> float:
    """Mean bits per sub-pixel of the images saved losslessly by Pillow (PNG at max compression, or WebP)."""
    from PIL import Image

    total = 0
    for image in images:
        buffer = io.BytesIO()
        array = image.permute(1, 2, 0).numpy()
        if format_name == "PNG":
            Image.fromarray(array).save(buffer, format="PNG", optimize=True)
        else:
            Image.fromarray(array).save(buffer, format="WEBP", lossless=True, quality=100, method=6)
        total += buffer.tell()
    return 8.0 * total / images.numel()


@torch.no_grad()
def round_trip(model: FlowJEPA, images: torch.Tensor, batch: int = 50) -> dict:
    """Max |x - decode(encode(x))| on bin centres and the fraction of uint8-exact images."""
    errors, exact = [], 0
    for chunk in images.split(batch):
        z = model.encode(chunk)
        decoded = model.decode(z)
        centres = (chunk.to(decoded.dtype) + 0.5) / 256
        errors.append((decoded - centres).abs().flatten(1).max(1).values)
        exact += int((model.decode(z, quantize_output=True) == chunk).flatten(1).all(1).sum())
    errors_all = torch.cat(errors)
    return {
        "max_abs_error": float(errors_all.max()),
        "median_max_abs_error": float(errors_all.median()),
        "uint8_exact_fraction": exact / len(images),
    }


@torch.no_grad()
def features(model: FlowJEPA, images: torch.Tensor, batch: int = 50) -> dict[str, torch.Tensor]:
    """Linear code ``W z``, projector output and raw pixels of the images."""
    codes, projections = [], []
    for chunk in images.split(batch):
        z = model.encode(chunk)
        codes.append(model.code(z))
        projections.append(model.project(z))
    return {
        "code": torch.cat(codes),
        "projector": torch.cat(projections),
        "pixels": images.flatten(1).float() / 255.0,
    }


def linear_probe(train_x, train_y, test_x, test_y, classes: int, epochs: int = 300, weight_decay=1e-4) -> float:
    """Top-1 of a multinomial logistic regression (full-batch Adam on standardised features)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Linear(train_x.shape[1], classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(train_x), train_y).backward()
        optimizer.step()
    with torch.no_grad():
        return float((head(test_x).argmax(1) == test_y).float().mean())


def run_quality(args: argparse.Namespace) -> dict:
    model = FlowJEPA.from_pretrained(args.model).eval()
    size = model.config.image_size
    root = Path(args.data_root)
    started = time.perf_counter()

    val_images, val_labels = load_images(root, "val", args.val_images, size, seed=1)
    results: dict = {"model": str(args.model), "image_size": size, "val_images": len(val_images)}

    results["round_trip_float32"] = round_trip(model, val_images)
    results["round_trip_float64"] = round_trip(model.double(), val_images)
    model.float()
    print("round trip float32:", results["round_trip_float32"])
    print("round trip float64:", results["round_trip_float64"])

    generator = torch.Generator().manual_seed(0)
    bpd = torch.cat(
        [model.bits_per_dim(chunk, num_samples=args.iw_samples, generator=generator) for chunk in val_images.split(50)]
    )
    results["bpd_flow"] = float(bpd.mean())
    results["bpd_png"] = lossless_bits_per_dim(val_images, "PNG")
    results["bpd_webp"] = lossless_bits_per_dim(val_images, "WEBP")
    print(
        f"bits/dim: flow {results['bpd_flow']:.3f}, PNG {results['bpd_png']:.3f} "
        f"(ratio {results['bpd_flow'] / results['bpd_png']:.3f}), WebP {results['bpd_webp']:.3f} "
        f"(ratio {results['bpd_flow'] / results['bpd_webp']:.3f})"
    )

    train_images, train_labels = load_images(root, "train", args.train_images, size, seed=2)
    train_features, val_features = features(model, train_images), features(model, val_images)
    results["probe_top1"] = {}
    for name in ("pixels", "code", "projector"):
        top1 = linear_probe(train_features[name], train_labels, val_features[name], val_labels, 10)
        results["probe_top1"][name] = top1
        print(f"linear probe top-1 on {name}: {top1:.3f}")
    pixels = results["probe_top1"]["pixels"]
    print(f"probe ratio code / pixels: {results['probe_top1']['code'] / pixels:.2f}")
    results["wall_s"] = time.perf_counter() - started
    results["hardware"] = hardware()
    return results


def main() -> None:
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
