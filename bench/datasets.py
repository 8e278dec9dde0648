"""Evaluation and training data of the benchmarks: Imagenette images and rendered cartpole frames.

Imagenette is read in place from ``--imagenette DIR``, ``$FLOWJEPA_IMAGENETTE`` or
``<repo>/../shared/data/imagenette-224`` (a folder with ``train/<class>/`` and ``val/<class>/``). Without
it, the image benchmarks run on cartpole frames sorted into three classes by cart position (left, centre,
right third of the training positions), so every path still runs. The page names the data it used.

Cartpole frames come from two collections of the dm_control ``cartpole-swingup`` env driven by the
``balance`` policy: training episodes (seed 0) and held-out episodes (seed 1), rendered once into the
work folder and reused by later runs. The pole starts hanging down, and the policy swings it up, then
balances it while moving the cart to random targets. The frames therefore cover every pole angle as well
as the upright pole that planning works with: in 4 trial episodes of 100 steps, about 30% of the frames
were within 0.3 rad of upright.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.budget import Budget
from bench.machine import REPO_ROOT
from flowjepa.errors import InvalidInputError

logger = logging.getLogger(__name__)

CARTPOLE_ENV = "cartpole-swingup"
CARTPOLE_POLICY = "balance"
CARTPOLE_SEEDS = {"train": 0, "test": 1}
FALLBACK_CLASSES = ("left", "centre", "right")
DEFAULT_IMAGENETTE = REPO_ROOT.parent / "shared" / "data" / "imagenette-224"


@dataclass
class ImageSet:
    """A batch of evaluation images with whatever targets they have."""

    images: Tensor
    """uint8 ``(N, 3, S, S)``."""
    labels: Tensor | None = None
    """Class indices ``(N,)`` (Imagenette, or cart-position classes in the fallback)."""
    states: Tensor | None = None
    """Physical states ``(N, 4)``: cart position (m), pole angle (rad), their velocities (m/s, rad/s)."""
    groups: Tensor | None = None
    """Episode index of each frame ``(N,)``, so splits never cut an episode."""

    def __len__(self) -> int:
        return len(self.images)


def _is_image_root(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "val").is_dir()


def resolve_imagenette(explicit: Path | None, enabled: bool = True) -> Path | None:
    """Return the Imagenette folder to use, or None to fall back to cartpole frames.

    An explicit folder that lacks ``train/`` and ``val/`` raises :class:`InvalidInputError`; the
    environment variable and the default location are used only when they exist.
    """
    if not enabled:
        return None
    if explicit is not None:
        if not _is_image_root(explicit):
            raise InvalidInputError(
                f"--imagenette {explicit} has no train/ and val/ class folders; pass a resized Imagenette copy "
                "laid out as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, or --no-imagenette to use cartpole frames"
            )
        return explicit
    for candidate in (os.environ.get("FLOWJEPA_IMAGENETTE"), DEFAULT_IMAGENETTE):
        if candidate and _is_image_root(Path(candidate)):
            return Path(candidate)
    return None


def load_folder_images(root: Path, split: str, count: int, size: int, seed: int) -> ImageSet:
    """Load ``count`` images of ``root/split`` chosen with ``seed``, resized and centre-cropped to ``size``."""
    from torchvision.transforms import v2

    from flowjepa.data import ImageFiles

    files = ImageFiles(root / split)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:count]
    transform = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    images, labels = [], []
    for index in order.tolist():
        image, label = files[index]
        images.append(transform(image))
        labels.append(label)
    return ImageSet(torch.stack(images), labels=torch.tensor(labels))


class BenchData:
    """Loads and caches the benchmark data at the budget's image size.

    Args:
        budget: image size and the number of cartpole episodes and steps.
        work_dir: folder for rendered frames and the fallback image folders.
        imagenette: Imagenette folder, or None for the cartpole fallback.
    """

    def __init__(self, budget: Budget, work_dir: Path, imagenette: Path | None) -> None:
        self.budget = budget
        self.size = budget.image_size
        self.work_dir = work_dir
        self.imagenette = imagenette
        self._cache: dict[tuple, ImageSet] = {}

    # ------------------------------------------------------------------------------------------ images

    @property
    def image_description(self) -> str:
        """Name of the labelled image data, for the page."""
        if self.imagenette is not None:
            return f"Imagenette at {self.size} px"
        return f"cartpole frames at {self.size} px in 3 cart-position classes (no Imagenette copy was found)"

    def image_training_root(self) -> Path:
        """Folder with ``train/<class>/`` and ``val/<class>/`` that ``flowjepa pretrain --data folder`` reads."""
        if self.imagenette is not None:
            return self.imagenette
        return self._fallback_image_folder()

    def images(self, split: str, count: int, seed: int = 0) -> ImageSet:
        """Return ``count`` labelled images of ``split`` (``train`` or ``val``), chosen with ``seed``."""
        key = ("images", split, count, seed)
        if key not in self._cache:
            self._cache[key] = load_folder_images(self.image_training_root(), split, count, self.size, seed)
        return self._cache[key]

    def _fallback_image_folder(self) -> Path:
        root = self.work_dir / "data" / f"classes-{self._cartpole_tag()}"
        done = root / "complete"
        if done.is_file():
            return root
        from PIL import Image

        train = self.cartpole("train")
        assert train.states is not None
        edges = torch.quantile(train.states[:, 0].double(), torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
        for folder_split, split in (("train", "train"), ("val", "test")):
            frames = self.cartpole(split)
            assert frames.states is not None
            labels = torch.bucketize(frames.states[:, 0].double(), edges)
            for index, (image, label) in enumerate(zip(frames.images, labels.tolist())):
                target = root / folder_split / FALLBACK_CLASSES[label]
                target.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(target / f"{index:06d}.png")
        done.write_text("written\n")
        return root

    # ---------------------------------------------------------------------------------------- cartpole

    def _cartpole_tag(self) -> str:
        """Return the part of the data folder names that changes with the frames' options."""
        budget = self.budget
        episodes = f"{budget.cartpole_train_episodes}x{budget.cartpole_test_episodes}x{budget.cartpole_steps}"
        return f"{CARTPOLE_ENV}-{CARTPOLE_POLICY}-{self.size}px-{episodes}"

    def cartpole_folder(self, split: str) -> Path:
        """Return the collection folder of ``split`` (``train`` or ``test``), rendering it on first use."""
        from envs.collect import collect

        episodes = self.budget.cartpole_train_episodes if split == "train" else self.budget.cartpole_test_episodes
        folder = self.work_dir / "data" / f"{split}-{self._cartpole_tag()}"
        # collect() keeps the intact episodes of an earlier call with the same options and renders the rest.
        return collect(
            CARTPOLE_ENV,
            folder,
            episodes=episodes,
            steps=self.budget.cartpole_steps,
            policy=CARTPOLE_POLICY,
            seed=CARTPOLE_SEEDS[split],
            size=self.size,
            progress=False,
        )

    def cartpole(self, split: str, count: int | None = None, seed: int = 0) -> ImageSet:
        """Return frames of ``split`` with states and episode indices: all, or ``count`` chosen with ``seed``."""
        key = ("cartpole", split, count, seed)
        if key in self._cache:
            return self._cache[key]
        from envs.dataset import load_episodes

        _, episodes = load_episodes(self.cartpole_folder(split))
        frames = torch.from_numpy(np.concatenate([episode.frames for episode in episodes])).permute(0, 3, 1, 2)
        states = torch.from_numpy(np.concatenate([episode.states for episode in episodes])).float()
        groups = torch.cat(
            [torch.full((len(episode.frames),), index, dtype=torch.long) for index, episode in enumerate(episodes)]
        )
        if count is not None and count < len(frames):
            chosen = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))[:count]
            chosen = chosen.sort().values
            frames, states, groups = frames[chosen], states[chosen], groups[chosen]
        self._cache[key] = ImageSet(frames.contiguous(), states=states, groups=groups)
        return self._cache[key]
