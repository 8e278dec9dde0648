"""Pretraining data: image sources, multi-view augmentation and a resumable, seeded batch order.

Sources:

- ``imagenette``: ``torchvision.datasets.Imagenette`` (its own layout under
  ``root``; ``download=True`` fetches it when online);
- ``folder``: any class-folder tree (``root/<class>/*.jpg``), or a root with
  ``train/<class>/`` and ``val/<class>/`` such as a resized Imagenette copy;
- ``frames``: rendered environment frames collected by ``flowjepa collect``.

Every item yields an unaugmented view for the density term and ``V``
augmented views for the invariance and SIGReg terms, all uint8. The order of
batches and every random augmentation are functions of ``(seed, step)``, so a
resumed run gets exactly the batches of the uninterrupted run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import v2

from flowjepa.errors import InvalidInputError

logger = logging.getLogger(__name__)

SOURCES = ("imagenette", "folder", "frames")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG")

FOLDER_LAYOUT_HELP = (
    "expected class folders of images, either ROOT/<class>/*.jpg or ROOT/train/<class>/*.jpg and "
    "ROOT/val/<class>/*.jpg; for Imagenette use --data imagenette --download to fetch it"
)


@dataclass
class ViewSpec:
    """Recipe for the views of one image."""

    image_size: int
    num_views: int = 2
    strength: str = "strong"
    """``strong`` (random resized crop 0.25-1, flip, colour jitter: natural images) or ``mild`` (crop 0.9-1 and
    colour jitter, no flip: rendered frames, whose geometry carries the physical state)."""


class ColourJitter(torch.nn.Module):
    """Random brightness, contrast and saturation factors in ``[1 - s, 1 + s]``, applied with probability ``p``.

    A light replacement for torchvision's ColorJitter (no hue shift), written with a few whole-tensor
    operations because per-image torchvision jitter dominated the step time on a 2-core CPU.
    """

    def __init__(self, strength: float, p: float = 0.8) -> None:
        super().__init__()
        self.strength, self.p = strength, p

    def forward(self, image: Tensor) -> Tensor:
        if float(torch.rand(())) >= self.p:
            return image
        brightness, contrast, saturation = (1.0 + self.strength * (2 * torch.rand(3) - 1)).tolist()
        x = image.float() * brightness
        grey = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
        x = grey + (x - grey) * saturation
        x = (x - grey.mean()) * contrast + grey.mean()
        return x.clamp(0, 255).round().to(torch.uint8)


def build_transforms(spec: ViewSpec) -> tuple[v2.Transform, v2.Transform, v2.Transform]:
    """Return ``(clean, shrink, augment)`` transforms of uint8 image tensors ``(C, H, W)``.

    ``clean`` resizes and centre-crops to ``(C, S, S)``. ``shrink`` resizes once to 1.5 S, so every view
    crops from a small image; ``augment`` turns that into one random ``(C, S, S)`` view.
    """
    size = spec.image_size
    clean = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    shrink = v2.Resize(int(1.5 * size), antialias=True)
    if spec.strength == "strong":
        augment = v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                ColourJitter(0.4, p=0.8),
                v2.RandomGrayscale(p=0.2),
            ]
        )
    elif spec.strength == "mild":
        augment = v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.9, 1.0), ratio=(0.95, 1.05), antialias=True),
                ColourJitter(0.3, p=0.8),
            ]
        )
    else:
        raise InvalidInputError(f"unknown augmentation strength {spec.strength!r}; valid: strong, mild")
    return clean, shrink, augment


class MultiViewDataset(Dataset):
    """Wrap a base dataset of ``(image uint8 (C, H, W), target)`` into multi-view training items.

    Indices are ``(index, sample_seed)`` pairs from :class:`StepBatchSampler`;
    the seed makes every augmentation reproducible.
    """

    def __init__(self, base: Dataset, spec: ViewSpec, target_kind: str) -> None:
        self.base = base
        self.spec = spec
        self.target_kind = target_kind  # "label", "state" or "none"
        self.clean, self.shrink, self.augment = build_transforms(spec)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        index, sample_seed = item
        image, target = self.base[index]
        small = self.shrink(image)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            views = torch.stack([self.augment(small) for _ in range(self.spec.num_views)])
        return {"clean": self.clean(image), "views": views, "target": target}


def collate(items: list[dict[str, Any]]) -> dict[str, Tensor | None]:
    """Stack items into ``clean (B, C, S, S)``, ``views (V, B, C, S, S)`` and ``label (B,)`` or ``state (B, S)``."""
    batch: dict[str, Tensor | None] = {
        "clean": torch.stack([item["clean"] for item in items]),
        "views": torch.stack([item["views"] for item in items], dim=1),
        "label": None,
        "state": None,
    }
    targets = [item["target"] for item in items]
    if all(isinstance(t, int) for t in targets):
        batch["label"] = torch.tensor(targets, dtype=torch.long)
    elif all(isinstance(t, Tensor) for t in targets):
        batch["state"] = torch.stack(targets).float()
    return batch


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches whose content depends only on ``(seed, step)``.

    Step ``s`` takes batch ``s % batches_per_epoch`` of the permutation of
    epoch ``s // batches_per_epoch`` (drawn from ``seed + epoch``); the last
    incomplete batch of an epoch is dropped. Under data parallelism rank ``r`` of
    ``world`` takes every ``world``-th image of the global batch.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        if size < batch_size:
            raise InvalidInputError(
                f"the dataset has {size} images, fewer than the batch size {batch_size}; lower --batch-size or add data"
            )
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_step, self.rank, self.world = start_step, rank, world
        self.batches_per_epoch = size // batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        epoch, permutation = -1, torch.empty(0, dtype=torch.long)
        while True:
            if step // self.batches_per_epoch != epoch:
                epoch = step // self.batches_per_epoch
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                permutation = torch.randperm(self.size, generator=generator)
            offset = (step % self.batches_per_epoch) * self.batch_size
            indices = permutation[offset : offset + self.batch_size].tolist()
            seeds = [hash((self.seed, step, position)) % 2**62 for position in range(self.batch_size)]
            pairs = list(zip(indices, seeds))
            yield pairs[self.rank :: self.world]
            step += 1

    def __len__(self) -> int:
        return self.batches_per_epoch


class ImageFiles(Dataset):
    """Images under class folders, read as uint8 RGB tensors ``(3, H, W)`` with their class index.

    Unreadable files are skipped with one warning that counts them.
    """

    def __init__(self, root: Path) -> None:
        classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            for path in sorted((root / name).rglob("*")):
                if path.suffix in IMAGE_EXTENSIONS or path.suffix.lower() in IMAGE_EXTENSIONS:
                    self.samples.append((path, label))
        self.classes = classes
        self.root = root
        self.skipped = 0
        if not self.samples:
            raise InvalidInputError(f"no images found under {root}; {FOLDER_LAYOUT_HELP}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                with Image.open(path) as image:
                    array = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
                    width, height = image.size
                return array.view(height, width, 3).permute(2, 0, 1).contiguous(), label
            except (OSError, UnidentifiedImageError, ValueError) as error:
                self.skipped += 1
                logger.warning("skipping unreadable image %s (%s); %d skipped so far", path, error, self.skipped)
        raise InvalidInputError(f"no readable image under {self.root}")


def read_rgb(path: str) -> Tensor:
    """Decode an image file to a uint8 RGB tensor ``(3, H, W)`` (greyscale and RGBA become RGB)."""
    from torchvision.io import ImageReadMode, decode_image

    return decode_image(path, mode=ImageReadMode.RGB)


class TorchvisionImagenette(Dataset):
    """``torchvision.datasets.Imagenette`` as uint8 tensors with labels (downloads only when asked)."""

    def __init__(self, root: Path, split: str, download: bool) -> None:
        from torchvision.datasets import Imagenette

        try:
            self.dataset = Imagenette(str(root), split=split, size="full", download=download, loader=read_rgb)
        except RuntimeError as error:
            raise InvalidInputError(
                f"Imagenette not found under {root} ({error}); pass --download to fetch it (needs internet), "
                f"or point --data folder --data-root at a folder laid out as train/<class>/ and val/<class>/"
            ) from error

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.dataset[index]
        return image, int(label)


class EnvironmentFrames(Dataset):
    """Frames of a ``flowjepa collect`` folder as ``(uint8 (3, H, W), state float (S,))``."""

    def __init__(self, root: Path) -> None:
        from envs.dataset import FrameDataset

        self.frames = FrameDataset(root)
        self.env_name = getattr(self.frames, "env", None)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        frame, state = self.frames[index]
        return frame, torch.as_tensor(state, dtype=torch.float32)


def open_source(source: str, root: str | Path | None, split: str = "train", download: bool = False) -> Dataset:
    """Open a base dataset by name; see the module docstring for the layouts.

    Raises :class:`InvalidInputError` for an unknown source or a missing, empty or wrongly laid out root.
    """
    if source not in SOURCES:
        raise InvalidInputError(f"unknown data source {source!r}; valid sources: {', '.join(SOURCES)}")
    if root is None:
        raise InvalidInputError(f"data source {source!r} needs a data root (--data-root DIR)")
    root = Path(root).expanduser()

    if source == "imagenette":
        if not download and not root.exists():
            raise InvalidInputError(
                f"data root {root} does not exist; pass --download to fetch Imagenette there (needs internet), "
                "or use --data folder with an existing train/<class>/ layout"
            )
        return TorchvisionImagenette(root, split, download)

    if not root.is_dir():
        if source == "frames":
            raise InvalidInputError(
                f"frame folder {root} does not exist; create it with `flowjepa collect --env cartpole --out {root}`"
            )
        raise InvalidInputError(f"data root {root} does not exist; {FOLDER_LAYOUT_HELP}")

    if source == "frames":
        return EnvironmentFrames(root)

    split_dir = root / split
    if split_dir.is_dir():
        return ImageFiles(split_dir)
    if (root / "train").is_dir():
        raise InvalidInputError(f"data root {root} has train/ but no {split}/ folder; {FOLDER_LAYOUT_HELP}")
    return ImageFiles(root)


def target_kind(dataset: Dataset) -> str:
    """``state`` for environment frames, ``label`` for class folders."""
    return "state" if isinstance(dataset, EnvironmentFrames) else "label"


def num_classes(dataset: Dataset) -> int:
    """Number of classes of a labelled dataset, 0 otherwise."""
    if isinstance(dataset, ImageFiles):
        return len(dataset.classes)
    if isinstance(dataset, TorchvisionImagenette):
        return 10
    return 0
