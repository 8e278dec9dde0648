"""The named environments and :func:`make`, the one place where their options are validated."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envs.base import PixelEnv, validate_seed
from flowjepa.errors import InvalidInputError

MIN_SIZE = 8
MAX_SIZE = 1024


@dataclass(frozen=True)
class CartPoleParams:
    """Physical constants of a cart-pole, for scripted controllers.

    Both cart-poles model the pole as a uniform rod hinged at its end.
    ``pole_half_length`` is the distance from hinge to centre of mass (m), and
    ``force_per_action`` the force in newtons of a unit action.
    ``target_range`` bounds the cart positions (m, symmetric) that the
    ``balance`` policy steers to, chosen to stay inside the camera's view.
    ``view_range`` bounds the cart positions (m, symmetric) at which the
    cart is still inside the default camera's frame (measured at 64 px: at
    1.6 m about half of it is cut off, from 1.8 m on nothing is left).
    """

    cart_mass: float
    pole_mass: float
    pole_half_length: float
    force_per_action: float
    target_range: float
    view_range: float = 1.4
    gravity: float = 9.81


@dataclass(frozen=True)
class EnvSpec:
    """A registered environment: its defaults, state layout and constructor."""

    name: str
    description: str
    backend: str
    state_names: tuple[str, ...]
    default_action_repeat: int
    default_time_limit: float
    build: Callable[..., PixelEnv]
    options: tuple[str, ...] = ()
    cartpole: CartPoleParams | None = None
    discrete: bool = False
    mirrored: tuple[str, ...] = ()
    """State components that change sign when the scene is reflected left to right.

    A non-empty tuple declares that the dynamics are symmetric under that
    reflection together with negating every action, so that training data can be
    mirrored (``train-world-model --mirror``). Components not listed keep their
    value. Empty when the env has no such symmetry.
    """


def _build_dm_control(layout_key: str) -> Callable[..., PixelEnv]:
    def build(*, name: str, size: int, action_repeat: int, time_limit: float | None, seed: int | None, **options):
        from envs.dmc import LAYOUTS, QUALITY_LEVELS, DmControlEnv

        quality = options.get("quality", "medium")
        if quality not in QUALITY_LEVELS:
            raise InvalidInputError(f"quality={quality!r} is invalid; pass one of {', '.join(QUALITY_LEVELS)}")
        camera = options.get("camera", 0)
        if not isinstance(camera, (int, str)) or isinstance(camera, bool):
            raise InvalidInputError(f"camera={camera!r} is invalid; pass a camera index or name of the MuJoCo model")
        return DmControlEnv(
            name=name,
            layout=LAYOUTS[layout_key],
            size=size,
            action_repeat=action_repeat,
            time_limit=time_limit,
            seed=seed,
            camera=camera,
            quality=quality,
        )

    return build


def _build_gym_cartpole(
    *, name: str, size: int, action_repeat: int, time_limit: float | None, seed: int | None, **options
) -> PixelEnv:
    from envs.gym_cartpole import GymCartPoleEnv

    return GymCartPoleEnv(name=name, size=size, action_repeat=action_repeat, time_limit=time_limit, seed=seed)


_CARTPOLE_STATE = ("cart_position", "pole_angle", "cart_velocity", "pole_angular_velocity")
_DM_OPTIONS = ("quality", "camera", "time_limit")

# dm_control cartpole.xml: 1 kg cart, 0.1 kg pole of length 1 m, actuator gear 10,
# MuJoCo's default gravity 9.81; rails end at +-1.8 m and camera 0 shows about +-1.5 m.
_DM_CARTPOLE = CartPoleParams(
    cart_mass=1.0, pole_mass=0.1, pole_half_length=0.5, force_per_action=10.0, target_range=1.2
)
# gymnasium CartPole-v1: masscart 1.0, masspole 0.1, length (half the pole) 0.5,
# force_mag 10, gravity 9.8; the episode ends at |x| > 2.4 m, the square frame shows +-1.6 m.
_GYM_CARTPOLE = CartPoleParams(
    cart_mass=1.0,
    pole_mass=0.1,
    pole_half_length=0.5,
    force_per_action=10.0,
    target_range=1.2,
    gravity=9.8,
)

# Default action repeats make one env step 0.04 s for every env. At the
# simulators' 0.01-0.02 s steps the cart moves less than a pixel between
# 64 px frames, so velocities cannot be read from frame differences.
SPECS: dict[str, EnvSpec] = {
    spec.name: spec
    for spec in (
        EnvSpec(
            name="cartpole",
            description="dm_control cartpole balance: pole starts near upright, force in [-1, 1]",
            backend="dm_control",
            state_names=_CARTPOLE_STATE,
            default_action_repeat=4,
            default_time_limit=10.0,
            build=_build_dm_control("cartpole-balance"),
            options=_DM_OPTIONS,
            cartpole=_DM_CARTPOLE,
            mirrored=_CARTPOLE_STATE,
        ),
        EnvSpec(
            name="cartpole-swingup",
            description="dm_control cartpole swing-up: pole starts hanging down, force in [-1, 1]",
            backend="dm_control",
            state_names=_CARTPOLE_STATE,
            default_action_repeat=4,
            default_time_limit=10.0,
            build=_build_dm_control("cartpole-swingup"),
            options=_DM_OPTIONS,
            cartpole=_DM_CARTPOLE,
            mirrored=_CARTPOLE_STATE,
        ),
        EnvSpec(
            name="cartpole-gym",
            description="gymnasium CartPole-v1: actions {0: push left, 1: push right}, pygame rendering",
            backend="gymnasium",
            state_names=_CARTPOLE_STATE,
            default_action_repeat=2,
            default_time_limit=10.0,
            build=_build_gym_cartpole,
            options=("time_limit",),
            cartpole=_GYM_CARTPOLE,
            discrete=True,
            mirrored=_CARTPOLE_STATE,
        ),
        EnvSpec(
            name="pendulum",
            description="dm_control pendulum swing-up: torque in [-1, 1]",
            backend="dm_control",
            state_names=("pole_angle", "pole_angular_velocity"),
            default_action_repeat=2,
            default_time_limit=20.0,
            build=_build_dm_control("pendulum-swingup"),
            options=_DM_OPTIONS,
            mirrored=("pole_angle", "pole_angular_velocity"),
        ),
        EnvSpec(
            name="reacher",
            description="dm_control reacher easy: two-link arm, two torques in [-1, 1], random target",
            backend="dm_control",
            state_names=(
                "shoulder_angle",
                "wrist_angle",
                "shoulder_velocity",
                "wrist_velocity",
                "target_x",
                "target_y",
            ),
            default_action_repeat=2,
            default_time_limit=20.0,
            build=_build_dm_control("reacher-easy"),
            options=_DM_OPTIONS,
        ),
    )
}

ENV_NAMES: tuple[str, ...] = tuple(SPECS)


def get_spec(name: str) -> EnvSpec:
    """Return the spec of a registered env; an unknown name raises an error listing the valid ones."""
    spec = SPECS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise InvalidInputError(f"unknown environment {name!r}; valid names: {', '.join(ENV_NAMES)}")
    return spec


def make(
    name: str,
    *,
    size: int = 64,
    action_repeat: int | None = None,
    seed: int | None = None,
    **options: Any,
) -> PixelEnv:
    """Build a registered pixel environment.

    Args:
        name: one of :data:`ENV_NAMES`.
        size: frame height and width in pixels.
        action_repeat: simulator steps per env step; ``None`` takes the env's default.
        seed: seed of the first :meth:`~PixelEnv.reset` that is called without one.
        options: ``time_limit`` (seconds per episode, ``None`` for no limit) for
            every env; ``quality`` ("high", "medium", "low") and ``camera``
            (index or name) for dm_control envs.
    """
    spec = get_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepted = ", ".join(spec.options) or "none"
        raise InvalidInputError(f"{name}: unknown option(s) {', '.join(unknown)}; accepted options: {accepted}")

    size = validate_size(size)
    action_repeat = validate_action_repeat(spec.default_action_repeat if action_repeat is None else action_repeat)
    if seed is not None:
        seed = validate_seed(seed)
    time_limit = _validate_time_limit(options.pop("time_limit", spec.default_time_limit))

    return spec.build(name=name, size=size, action_repeat=action_repeat, time_limit=time_limit, seed=seed, **options)


def validate_size(size: Any) -> int:
    """Return ``size`` as an int frame size, raising ``InvalidInputError`` outside ``[MIN_SIZE, MAX_SIZE]``."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidInputError(
            f"size={size!r} is invalid; pass an integer number of pixels in [{MIN_SIZE}, {MAX_SIZE}]"
        )
    return size


def validate_action_repeat(action_repeat: Any) -> int:
    """Return ``action_repeat`` as a positive int, raising ``InvalidInputError`` otherwise."""
    if isinstance(action_repeat, bool) or not isinstance(action_repeat, int) or action_repeat < 1:
        raise InvalidInputError(f"action_repeat={action_repeat!r} is invalid; pass an integer >= 1")
    return action_repeat


def _validate_time_limit(time_limit: Any) -> float | None:
    if time_limit is None:
        return None
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise InvalidInputError(f"time_limit={time_limit!r} is invalid; pass a positive number of seconds or None")
    if math.isinf(time_limit):
        return None
    return float(time_limit)
