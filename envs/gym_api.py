"""The pixel environments as ``gymnasium.Env`` classes, registered as ``flowjepa/<name>-v0``."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from envs.base import PixelEnv
from envs.registry import ENV_NAMES, make

GYM_NAMESPACE = "flowjepa"


def gym_id(name: str) -> str:
    """Return the gymnasium id of a flowjepa env, e.g. ``flowjepa/cartpole-v0``."""
    return f"{GYM_NAMESPACE}/{name}-v0"


class PixelGymEnv(gymnasium.Env):
    """gymnasium adapter over a :class:`PixelEnv`: observations are the uint8 ``(size, size, 3)`` frames.

    ``info`` carries the physical state under ``"state"`` (also after
    ``reset``) and the clipping counts of :meth:`PixelEnv.step`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, name: str, render_mode: str | None = None, **make_options: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None")
        self.pixel_env: PixelEnv = make(name, **make_options)
        self.render_mode = render_mode
        size = self.pixel_env.size
        self.observation_space = spaces.Box(low=0, high=255, shape=(size, size, 3), dtype=np.uint8)
        self.action_space = self.pixel_env.action_space
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.pixel_env.dt)}
        self._frame: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._frame = self.pixel_env.reset(seed=seed)
        return self._frame, {"state": self.pixel_env.physical_state()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        frame, reward, terminated, truncated, info = self.pixel_env.step(action)
        self._frame = frame
        return frame, reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self.pixel_env.render()

    def close(self) -> None:
        self.pixel_env.close()
        super().close()


def register_gymnasium_envs() -> None:
    """Register every env in :data:`ENV_NAMES` with gymnasium; registering twice is harmless."""
    for name in ENV_NAMES:
        env_id = gym_id(name)
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(id=env_id, entry_point="envs.gym_api:PixelGymEnv", kwargs={"name": name})
