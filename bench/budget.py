"""Budgets of ``python -m bench``: the data, training time and planning effort of each preset.

``full`` is sized to take about two hours on 2 CPU cores, ``quick`` about five minutes, and ``tiny`` well
under a minute for the test suite. These durations are estimates from timing parts of the benchmark on
the development machine (2-core AMD EPYC VM, other jobs running), not guarantees. Only ``full`` at
64 px answers the questions of the benchmark page; the other two check that every path runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from flowjepa.errors import InvalidInputError


@dataclass(frozen=True)
class Budget:
    """How much each benchmark spends; every bench-trained model gets the same wall-clock budget."""

    name: str
    """Preset name, printed on the page next to every number."""
    image_size: int
    """Side of the images (Imagenette and cartpole frames) every benchmark uses, in pixels."""
    model: dict[str, Any] = field(default_factory=dict)
    """FlowJEPAConfig overrides shared by every bench-trained Flow-JEPA variant and the baselines."""
    minutes_per_variant: float = 5.0
    """Training wall-clock budget of each bench-trained model, in minutes."""
    max_steps: int | None = None
    """Optional cap on the optimiser steps of each model (None: only the time budget stops training)."""
    batch_size: int = 16
    """Images per training step, for every bench-trained model."""
    sigreg_directions: int = 256
    """Random directions per SIGReg call."""
    exactness_images: int = 1000
    """Images (Imagenette val) and frames (held-out cartpole episodes) of the round-trip test."""
    density_images: int = 1000
    """Images and frames whose bits/dim the density benchmark estimates."""
    importance_samples: int = 8
    """Importance samples of the VAE prior's log p(z) in each bits/dim estimate."""
    mixture_masks: int = 4
    """Random mask draws of the mixture bits/dim of Flow-JEPA (0 skips the mixture estimate)."""
    probe_train_images: int = 3000
    """Imagenette train images the classification probes are fitted on."""
    probe_test_images: int = 1000
    """Imagenette val images the classification probes are scored on."""
    probe_epochs: int = 300
    """Full-batch Adam epochs of each logistic-regression probe."""
    cartpole_train_episodes: int = 20
    """Cartpole episodes for pretraining the cartpole models and fitting the state probes."""
    cartpole_test_episodes: int = 10
    """Held-out cartpole episodes for exactness, density and probe scores."""
    cartpole_steps: int = 100
    """Env steps per cartpole episode (each episode has one more frame than steps)."""
    planning_tasks: int = 8
    """Seeded cartpole goal tasks every planner runs."""
    planning_steps: int = 60
    """Actions per planning episode."""
    planning_horizon: int = 15
    """Planning horizon, in env steps."""
    planning_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Options of each planner (``gd``, ``cem``, ``mppi``, ``random``, ``oracle``)."""
    speed_steps: int = 10
    """Timed training steps per model in the speed benchmark."""
    speed_batch: int = 16
    """Batch of the speed benchmark's training steps."""
    latency_repeats: int = 5
    """Timed repeats of each encode/decode latency measurement."""
    matmul_size: int = 2048
    """Side n of the square float32 matrices of the matmul peak measurement (2 n^3 FLOP per product)."""

    def with_overrides(self, **values: Any) -> Budget:
        """Return a copy with some fields replaced; unknown names raise :class:`InvalidInputError`."""
        known = {item.name for item in dataclasses.fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(f"unknown budget fields {unknown}; valid fields: {', '.join(sorted(known))}")
        budget = dataclasses.replace(self, **values)
        budget.validate()
        return budget

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for a budget that cannot run."""
        if not self.minutes_per_variant > 0:
            raise InvalidInputError(
                f"minutes per variant must be a positive number, got {self.minutes_per_variant}; "
                "pass for example --minutes-per-variant 6"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidInputError(f"max_steps must be None or >= 1, got {self.max_steps}")
        counts = {
            "image_size": self.image_size,
            "batch_size": self.batch_size,
            "exactness_images": self.exactness_images,
            "density_images": self.density_images,
            "importance_samples": self.importance_samples,
            "probe_train_images": self.probe_train_images,
            "probe_test_images": self.probe_test_images,
            "probe_epochs": self.probe_epochs,
            "cartpole_train_episodes": self.cartpole_train_episodes,
            "cartpole_test_episodes": self.cartpole_test_episodes,
            "cartpole_steps": self.cartpole_steps,
            "planning_tasks": self.planning_tasks,
            "planning_steps": self.planning_steps,
            "planning_horizon": self.planning_horizon,
            "speed_steps": self.speed_steps,
            "speed_batch": self.speed_batch,
            "latency_repeats": self.latency_repeats,
            "matmul_size": self.matmul_size,
        }
        for name, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"budget field {name} must be a positive integer, got {value!r}")
        if self.cartpole_train_episodes < 2:
            raise InvalidInputError("cartpole_train_episodes must be >= 2 so the ridge probe can hold one out")
        if self.mixture_masks < 0:
            raise InvalidInputError(f"mixture_masks must be >= 0, got {self.mixture_masks}")
        if self.image_size % 8 != 0:
            raise InvalidInputError(f"image_size must be a multiple of 8, got {self.image_size}")


FULL = Budget(
    name="full",
    image_size=64,
    planning_options={
        "gd": {},
        "cem": {"population": 300, "iterations": 5},
        "mppi": {"population": 300, "iterations": 5},
        "random": {"population": 1500},
        "oracle": {"population": 300, "iterations": 5},
    },
)

QUICK = Budget(
    name="quick",
    image_size=32,
    minutes_per_variant=0.1,
    exactness_images=200,
    density_images=200,
    importance_samples=4,
    mixture_masks=2,
    probe_train_images=400,
    probe_test_images=200,
    probe_epochs=100,
    cartpole_train_episodes=6,
    cartpole_test_episodes=3,
    cartpole_steps=40,
    planning_tasks=2,
    planning_steps=12,
    planning_horizon=8,
    planning_options={
        "gd": {"iterations": 5},
        "cem": {"population": 100, "iterations": 3},
        "mppi": {"population": 100, "iterations": 3},
        "random": {"population": 300},
        "oracle": {"population": 100, "iterations": 3},
    },
    speed_steps=3,
    latency_repeats=3,
    matmul_size=1024,
)

TINY = Budget(
    name="tiny",
    image_size=16,
    model=dict(
        levels=2,
        pairs_per_level=1,
        hidden_channels=8,
        aug_hidden_channels=4,
        code_dim=8,
        decoder_hidden=16,
        decoder_channels=4,
        projector_channels=2,
        projector_hidden=16,
        projector_dim=8,
    ),
    minutes_per_variant=0.05,
    max_steps=2,
    batch_size=4,
    sigreg_directions=16,
    exactness_images=8,
    density_images=8,
    importance_samples=2,
    mixture_masks=2,
    probe_train_images=24,
    probe_test_images=12,
    probe_epochs=20,
    cartpole_train_episodes=3,
    cartpole_test_episodes=2,
    cartpole_steps=8,
    planning_tasks=1,
    planning_steps=3,
    planning_horizon=3,
    planning_options={
        "gd": {"iterations": 2},
        "cem": {"population": 16, "iterations": 2},
        "mppi": {"population": 16, "iterations": 2},
        "random": {"population": 32},
        "oracle": {"population": 16, "iterations": 2},
    },
    speed_steps=1,
    speed_batch=2,
    latency_repeats=1,
    matmul_size=128,
)

PRESETS = {budget.name: budget for budget in (FULL, QUICK, TINY)}
