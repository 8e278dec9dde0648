"""dm_control suite tasks rendered offscreen with MuJoCo.

dm_control is imported inside :class:`DmControlEnv` only, after
:func:`envs.rendering.configure_rendering` has chosen ``MUJOCO_GL``.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.base import PixelEnv
from envs.rendering import configure_rendering

# Rendering quality presets. Shadow maps cost about two thirds of the render time
# at 64 px, and without multisampling (offsamples=0) the thin cartpole rail
# vanishes at 64 px, so "medium" drops shadows and keeps anti-aliasing.
QUALITY_LEVELS = ("high", "medium", "low")


def wrap_angle(angle: float) -> float:
    """Wrap an angle in radians to ``[-pi, pi)``; angles already in range are returned unchanged (bit for bit)."""
    if -math.pi <= angle < math.pi:
        return angle
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


@dataclass(frozen=True)
class DomainLayout:
    """Mapping between a dm_control domain's physical state and a flat vector.

    ``read`` returns the vector laid out as ``state_names``; ``write`` sets
    it inside ``physics.reset_context()``, which recomputes the kinematics.
    """

    domain: str
    task: str
    state_names: tuple[str, ...]
    read: Callable[[Any], np.ndarray]
    write: Callable[[Any, np.ndarray], None]


def _read_cartpole(physics: Any) -> np.ndarray:
    position, angle = physics.data.qpos
    velocity, angular_velocity = physics.data.qvel
    return np.array([position, wrap_angle(angle), velocity, angular_velocity], dtype=np.float64)


def _write_cartpole(physics: Any, state: np.ndarray) -> None:
    physics.data.qpos[:] = state[:2]
    physics.data.qvel[:] = state[2:]


def _read_pendulum(physics: Any) -> np.ndarray:
    return np.array([wrap_angle(physics.data.qpos[0]), physics.data.qvel[0]], dtype=np.float64)


def _write_pendulum(physics: Any, state: np.ndarray) -> None:
    physics.data.qpos[0] = state[0]
    physics.data.qvel[0] = state[1]


def _read_reacher(physics: Any) -> np.ndarray:
    shoulder, wrist = physics.data.qpos
    shoulder_velocity, wrist_velocity = physics.data.qvel
    target_x, target_y = physics.named.model.geom_pos["target", ["x", "y"]]
    return np.array(
        [wrap_angle(shoulder), wrist, shoulder_velocity, wrist_velocity, target_x, target_y], dtype=np.float64
    )


def _write_reacher(physics: Any, state: np.ndarray) -> None:
    physics.data.qpos[:] = state[:2]
    physics.data.qvel[:] = state[2:4]
    # The suite draws the target position into the model at each episode start.
    physics.named.model.geom_pos["target", ["x", "y"]] = state[4:6]


CARTPOLE_STATE = ("cart_position", "pole_angle", "cart_velocity", "pole_angular_velocity")

LAYOUTS = {
    "cartpole-balance": DomainLayout("cartpole", "balance", CARTPOLE_STATE, _read_cartpole, _write_cartpole),
    "cartpole-swingup": DomainLayout("cartpole", "swingup", CARTPOLE_STATE, _read_cartpole, _write_cartpole),
    "pendulum-swingup": DomainLayout(
        "pendulum", "swingup", ("pole_angle", "pole_angular_velocity"), _read_pendulum, _write_pendulum
    ),
    "reacher-easy": DomainLayout(
        "reacher",
        "easy",
        ("shoulder_angle", "wrist_angle", "shoulder_velocity", "wrist_velocity", "target_x", "target_y"),
        _read_reacher,
        _write_reacher,
    ),
}


def _quiet_import_logs() -> None:
    # dm_control (through absl) and PyOpenGL log their backend choice at INFO on import.
    # Raising those loggers to WARNING keeps that out of the CLI output, unless the user set their level.
    for name in ("absl", "OpenGL.acceleratesupport"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


class DmControlEnv(PixelEnv):
    """A dm_control suite task observed through MuJoCo's offscreen renderer.

    Rewards are summed over the ``action_repeat`` simulator steps. The suite's
    own time limit is replaced by ``time_limit`` (seconds, ``None`` for none),
    which truncates the episode.
    """

    def __init__(
        self,
        *,
        name: str,
        layout: DomainLayout,
        size: int,
        action_repeat: int,
        time_limit: float | None,
        seed: int | None,
        camera: int | str = 0,
        quality: str = "medium",
    ) -> None:
        configure_rendering(mujoco=True)
        _quiet_import_logs()
        from dm_control import suite

        # One RandomState shared with the task: re-seeding it in place makes
        # reset(seed) reproducible without rebuilding the model or GL context.
        self._random = np.random.RandomState(seed)
        self._suite_env = suite.load(
            layout.domain,
            layout.task,
            task_kwargs={"random": self._random},
        )
        self._physics = self._suite_env.physics
        # Freeing the physics before interpreter exit avoids OSMesa's "cannot schedule
        # new futures after shutdown" error; the finalizer also covers envs never closed.
        self._free_physics = weakref.finalize(self, self._physics.free)
        self._task = self._suite_env.task
        self._layout = layout
        self._camera = camera
        self._pending_seed = seed

        control_dt = float(self._suite_env.control_timestep())
        self._substeps = max(1, round(control_dt / float(self._physics.timestep())))
        super().__init__(
            name=name, size=size, dt=control_dt * action_repeat, action_repeat=action_repeat, time_limit=time_limit
        )

        self.state_names = layout.state_names
        spec = self._suite_env.action_spec()
        self.action_space = spaces.Box(
            low=spec.minimum.astype(np.float32), high=spec.maximum.astype(np.float32), dtype=np.float32
        )
        self._apply_quality(quality, size)

    def _apply_quality(self, quality: str, size: int) -> None:
        visual = self._physics.model.vis
        if quality in ("medium", "low"):
            visual.quality.shadowsize = 0
        if quality == "low":
            visual.quality.offsamples = 0
        # The offscreen buffer must hold the frame; the suite models default to 640x480.
        visual.global_.offwidth = max(int(visual.global_.offwidth), size)
        visual.global_.offheight = max(int(visual.global_.offheight), size)

    def _reset_simulation(self, seed: int | None) -> None:
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        if seed is not None:
            self._random.seed(seed)
        self._suite_env.reset()

    def _advance(self, action: np.ndarray | int) -> tuple[float, bool]:
        reward = 0.0
        for _ in range(self.action_repeat):
            self._task.before_step(action, self._physics)
            self._physics.step(self._substeps)
            self._task.after_step(self._physics)
            reward += float(self._task.get_reward(self._physics) or 0.0)
            if self._task.get_termination(self._physics) is not None:
                return reward, True
        return reward, False

    def _read_state(self) -> np.ndarray:
        return self._layout.read(self._physics)

    def _write_state(self, state: np.ndarray) -> None:
        with self._physics.reset_context():
            self._layout.write(self._physics, state)

    def _render_frame(self) -> np.ndarray:
        frame = self._physics.render(height=self.size, width=self.size, camera_id=self._camera)
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def _release(self) -> None:
        self._free_physics()
