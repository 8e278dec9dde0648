"""gymnasium ``CartPole-v1`` observed through its pygame ``rgb_array`` renderer.

Frame rule: gymnasium draws 600x400 (width x height) frames of the track
x in [-2.4, 2.4] m at 125 px/m. The central 400x400 square (x in [-1.6, 1.6] m)
is cut out and resized to ``size`` x ``size`` by area averaging (PIL ``BOX``).
This gives the same scale as the dm_control cartpole camera (about 20 px/m at
64 px). A cart centred beyond 1.6 m is partly out of view, and one beyond
1.8 m is wholly out of view. The episode terminates at 2.4 m.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from envs.base import PixelEnv
from envs.rendering import configure_rendering

CARTPOLE_GYM_STATE = ("cart_position", "pole_angle", "cart_velocity", "pole_angular_velocity")


def square_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """Cut the central square out of a ``(400, 600, 3)`` gymnasium frame and resize it to ``(size, size, 3)``."""
    height, width, _ = frame.shape
    left = (width - height) // 2
    square = np.ascontiguousarray(frame[:, left : left + height])
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


class GymCartPoleEnv(PixelEnv):
    """gymnasium ``CartPole-v1`` with discrete actions {0: push left, 1: push right}.

    The episode terminates as in gymnasium (|pole_angle| > 12 degrees or
    |cart_position| > 2.4 m). The gymnasium state ``[x, x_dot, theta,
    theta_dot]`` is reordered to ``state_names``. Rewards (1 per simulator
    step) are summed over ``action_repeat`` steps; the repeat stops early
    when the episode terminates.
    """

    def __init__(self, *, name: str, size: int, action_repeat: int, time_limit: float | None, seed: int | None) -> None:
        configure_rendering(mujoco=False)
        import gymnasium

        # The registered env with its wrappers is kept for close(); stepping
        # goes to the unwrapped env because the time limit is handled here.
        self._gym_env = gymnasium.make("CartPole-v1", render_mode="rgb_array")
        self._cartpole = self._gym_env.unwrapped
        self._pending_seed = seed
        super().__init__(
            name=name,
            size=size,
            dt=float(self._cartpole.tau) * action_repeat,
            action_repeat=action_repeat,
            time_limit=time_limit,
        )
        self.state_names = CARTPOLE_GYM_STATE
        self.action_space = self._cartpole.action_space

    def _reset_simulation(self, seed: int | None) -> None:
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        self._cartpole.reset(seed=seed)

    def _advance(self, action: np.ndarray | int) -> tuple[float, bool]:
        reward = 0.0
        for _ in range(self.action_repeat):
            _, step_reward, terminated, _, _ = self._cartpole.step(int(action))
            reward += float(step_reward)
            if terminated:
                return reward, True
        return reward, False

    def _read_state(self) -> np.ndarray:
        x, x_dot, theta, theta_dot = self._cartpole.state
        return np.array([x, theta, x_dot, theta_dot], dtype=np.float64)

    def _write_state(self, state: np.ndarray) -> None:
        position, angle, velocity, angular_velocity = state
        self._cartpole.state = np.array([position, velocity, angle, angular_velocity], dtype=np.float64)
        self._cartpole.steps_beyond_terminated = None

    def _render_frame(self) -> np.ndarray:
        return square_frame(self._cartpole.render(), self.size)

    def _release(self) -> None:
        self._gym_env.close()
