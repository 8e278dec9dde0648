"""Pixel environments on dm_control/MuJoCo and gymnasium, rendered headless.

``envs.make(name, size=64)`` builds one; :data:`ENV_NAMES` lists the names.
Importing this package does not import dm_control, so
:func:`configure_rendering` can still choose ``MUJOCO_GL``. The envs are also
registered with gymnasium as ``flowjepa/<name>-v0``.
"""

from envs.base import PixelEnv, discrete_to_relaxed
from envs.gym_api import gym_id, register_gymnasium_envs
from envs.registry import ENV_NAMES, EnvSpec, get_spec, make
from envs.rendering import RenderingBackendError, configure_rendering

register_gymnasium_envs()

__all__ = [
    "ENV_NAMES",
    "EnvSpec",
    "PixelEnv",
    "RenderingBackendError",
    "configure_rendering",
    "discrete_to_relaxed",
    "get_spec",
    "gym_id",
    "make",
]
