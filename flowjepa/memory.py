"""Memory needed by one pretraining step, checked before a run starts.

A step keeps the activations of every coupling for the backward pass. They
grow with the number of images in the step and with the square of the image
side, so ``--image-size 512`` needs sixteen times the memory of 128 px.
The estimate below was fitted to the peak resident memory of one step on the
CPU (float32, 32 to 128 px, 32 and 64 conditioner channels) and came within
7% of it there. A run that would need more than the device has free is
rejected before it writes anything.
"""

from __future__ import annotations

import logging
import os

import torch

from flowjepa.config import FlowJEPAConfig
from flowjepa.errors import InvalidInputError

logger = logging.getLogger(__name__)

# Floats kept per pixel of a coupling's input, per conditioner channel and per flow channel (fitted).
_FLOATS_PER_HIDDEN_CHANNEL = 12.0
_FLOATS_PER_FLOW_CHANNEL = 4.5
_BYTES_PER_FLOAT = 4

# Share of the free memory that one step's activations may use. The rest is left for the model, optimiser and data.
_USABLE_SHARE = 0.8


def training_step_bytes(config: FlowJEPAConfig, images: int) -> int:
    """Return the estimated activation memory, in bytes, of one training step on ``images`` images.

    Args:
        config: the model's architecture.
        images: images in one forward pass (batch size times views plus one).
    """
    couplings_per_level = 2 * config.pairs_per_level
    floats_per_image = 0.0
    for level in range(1, config.levels + 1):
        pixels = config.image_size**2 / 4**level
        channels = config.flow_channels * 4**level
        per_pixel = _FLOATS_PER_HIDDEN_CHANNEL * config.hidden_channels + _FLOATS_PER_FLOW_CHANNEL * channels
        floats_per_image += couplings_per_level * pixels * per_pixel
    return int(images * floats_per_image * _BYTES_PER_FLOAT)


def free_bytes(device: torch.device) -> int | None:
    """Return the memory free for a new run on ``device`` in bytes, or None when it cannot be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_training_memory(config: FlowJEPAConfig, batch_size: int, views: int, device: torch.device) -> int:
    """Raise :class:`InvalidInputError` when one step of ``batch_size`` images cannot fit in ``device``'s memory.

    Returns the estimate in bytes.
    """
    needed = training_step_bytes(config, batch_size * (views + 1))
    free = free_bytes(device)
    if free is None:
        logger.info("could not read the free memory; one step needs about %.1f GiB", needed / 2**30)
        return needed
    if needed > _USABLE_SHARE * free:
        raise InvalidInputError(
            f"one training step at --image-size {config.image_size} with --batch-size {batch_size} and "
            f"--views {views} needs about {needed / 2**30:.1f} GiB, but {device.type} has "
            f"{free / 2**30:.1f} GiB free; lower --image-size or --batch-size (memory grows with "
            "the batch and the square of the image side), or use a device with more memory"
        )
    return needed
