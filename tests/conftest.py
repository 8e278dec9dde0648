"""Shared fixtures: real data locations and small real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Undo a test's torch.set_num_threads (bench scripts set it), so later tests run as configured."""
    import torch

    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def single_thread() -> dict[str, str]:
    """Run torch on one thread and return an environment that does the same for subprocesses.

    Tiny models run faster on one thread than on two contended ones, and float sums then have one
    order whatever the machine's load. ``restore_torch_threads`` undoes the setting after the test.
    """
    import torch

    torch.set_num_threads(1)
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def imagenette_root() -> Path | None:
    """The resized Imagenette copy beside the repository, or FLOWJEPA_IMAGENETTE, if present."""
    candidates = [os.environ.get("FLOWJEPA_IMAGENETTE"), REPO_ROOT.parent / "shared" / "data" / "imagenette-224"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "val").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def small_image_folder(tmp_path_factory) -> Path:
    """A class-folder dataset of real photographs: 6 images of each of 3 Imagenette classes.

    Falls back to rendered cartpole frames at three cart positions when no Imagenette copy is available.
    """
    import shutil

    root = tmp_path_factory.mktemp("images")
    source = imagenette_root()
    if source is not None:
        for class_dir in sorted((source / "val").iterdir())[:3]:
            target = root / "train" / class_dir.name
            target.mkdir(parents=True)
            for path in sorted(class_dir.iterdir())[:6]:
                shutil.copy(path, target / path.name)
        return root

    import numpy as np
    from PIL import Image

    import envs

    env = envs.make("cartpole", size=32)
    env.reset(seed=0)
    try:
        for label, position in enumerate((-0.8, 0.0, 0.8)):
            target = root / "train" / f"cart_{label}"
            target.mkdir(parents=True)
            for index, angle in enumerate(np.linspace(-0.3, 0.3, 6)):
                frame = env.set_physical_state(np.array([position, angle, 0.0, 0.0]))
                Image.fromarray(frame).save(target / f"{index}.png")
    finally:
        env.close()
    return root
