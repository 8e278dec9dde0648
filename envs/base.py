"""The interface every pixel environment implements, with the shared action checks and episode bookkeeping."""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np
from gymnasium import spaces

from flowjepa.errors import InvalidInputError

StepResult = tuple[np.ndarray, float, bool, bool, dict[str, Any]]


class PixelEnv(abc.ABC):
    """A simulated world observed through rendered RGB frames from a fixed camera.

    Frames are uint8 arrays of shape ``(size, size, 3)``. ``dt`` is the
    simulated time in seconds covered by one :meth:`step`, that is the
    simulator's control timestep times ``action_repeat``. The physical state
    is a float64 vector laid out as ``state_names``.

    Action rule: continuous actions outside ``action_space`` are clipped to
    its bounds, and ``info["clipped"]`` counts the clipped components of the
    step. Discrete actions must be an integer in the space, and the simulator
    receives a Python ``int``. A NaN or infinite action raises
    :class:`~flowjepa.errors.InvalidInputError` (a ``ValueError``).
    """

    name: str
    size: int
    dt: float
    action_repeat: int
    time_limit: float | None
    action_space: spaces.Box | spaces.Discrete
    state_names: tuple[str, ...]

    def __init__(self, *, name: str, size: int, dt: float, action_repeat: int, time_limit: float | None) -> None:
        self.name = name
        self.size = size
        self.dt = dt
        self.action_repeat = action_repeat
        self.time_limit = time_limit
        self.steps = 0
        self.clipped_total = 0
        self._started = False
        self._episode_over = False
        self._closed = False

    # Subclass hooks.

    @abc.abstractmethod
    def _reset_simulation(self, seed: int | None) -> None:
        """Start a new episode; ``seed=None`` continues the current random stream."""

    @abc.abstractmethod
    def _advance(self, action: np.ndarray | int) -> tuple[float, bool]:
        """Apply a validated action for ``action_repeat`` simulator steps; return the summed reward and termination."""

    @abc.abstractmethod
    def _read_state(self) -> np.ndarray:
        """Return the physical state as a float64 vector laid out as ``state_names``."""

    @abc.abstractmethod
    def _write_state(self, state: np.ndarray) -> None:
        """Put the simulator in ``state`` (already validated) with up-to-date kinematics."""

    @abc.abstractmethod
    def _render_frame(self) -> np.ndarray:
        """Render the current state as uint8 ``(size, size, 3)``."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Free the simulator and renderer."""

    # Public interface.

    @property
    def is_discrete(self) -> bool:
        """Whether actions are integers (``Discrete``) rather than a ``Box`` vector."""
        return isinstance(self.action_space, spaces.Discrete)

    @property
    def action_dim(self) -> int:
        """Length A of a relaxed action vector: the Box dimension, or 1 for a discrete env."""
        if isinstance(self.action_space, spaces.Discrete):
            return 1
        return int(np.prod(self.action_space.shape))

    @property
    def max_steps(self) -> int | None:
        """Env steps after which an episode is truncated, or ``None`` without a time limit."""
        if self.time_limit is None:
            return None
        return max(1, math.ceil(self.time_limit / self.dt - 1e-9))

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode and return its first frame; equal seeds give equal episodes."""
        self._check_open()
        if seed is not None:
            seed = validate_seed(seed)
        self._reset_simulation(seed)
        self.steps = 0
        self.clipped_total = 0
        self._started = True
        self._episode_over = False
        return self._render_frame()

    def step(self, action: Any) -> StepResult:
        """Advance one env step (``action_repeat`` simulator steps) and return frame, reward, flags and info.

        ``info`` contains ``state`` (float64 physical state after the step),
        ``clipped`` (action components clipped in this step), ``clipped_total``
        (in this episode) and ``steps`` (env steps since the reset).
        """
        self._check_open()
        if not self._started:
            raise InvalidInputError(f"{self.name}: step() was called before reset(); call reset() first")
        if self._episode_over:
            raise InvalidInputError(
                f"{self.name}: step() was called after the episode ended (terminated or truncated); call reset()"
            )

        env_action, clipped = self.validate_action(action)
        reward, terminated = self._advance(env_action)
        self.steps += 1
        self.clipped_total += clipped

        limit = self.max_steps
        truncated = not terminated and limit is not None and self.steps >= limit
        self._episode_over = terminated or truncated

        frame = self._render_frame()
        info = {
            "state": self._read_state(),
            "clipped": clipped,
            "clipped_total": self.clipped_total,
            "steps": self.steps,
        }
        return frame, float(reward), bool(terminated), bool(truncated), info

    def physical_state(self) -> np.ndarray:
        """Return a copy of the physical state, float64 ``(S,)`` laid out as ``state_names``."""
        self._check_started()
        return np.array(self._read_state(), dtype=np.float64)

    def set_physical_state(self, state: Any) -> np.ndarray:
        """Put the world in ``state`` (laid out as ``state_names``) and return the frame rendered there.

        The episode continues from that state: an ended episode can be stepped
        again, and the step counter restarts at zero.
        """
        self._check_started()
        vector = self._validate_state(state)
        self._write_state(vector)
        self.steps = 0
        self._episode_over = False
        return self._render_frame()

    def render(self) -> np.ndarray:
        """Render the current state as uint8 ``(size, size, 3)``."""
        self._check_started()
        return self._render_frame()

    def to_env_action(self, value: Any) -> np.ndarray | int:
        """Map a relaxed action in ``[-1, 1]`` (per component) to a valid action of this env.

        A discrete env returns ``1`` (push right) for a value above 0 and ``0``
        (push left) otherwise; this inverts :func:`discrete_to_relaxed`. A
        continuous env returns the value clipped to the bounds, as float64 ``(A,)``.
        """
        vector = _as_float_vector(value, self.name)
        if isinstance(self.action_space, spaces.Discrete):
            if vector.size != 1:
                raise InvalidInputError(
                    f"{self.name}: a relaxed discrete action must be one number, got shape {vector.shape}"
                )
            return 1 if vector[0] > 0 else 0
        return self._clip_box_action(vector)[0]

    def close(self) -> None:
        """Free the simulator and renderer; further calls raise. Calling it twice is harmless."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> PixelEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        settings = f"name={self.name!r}, size={self.size}, dt={self.dt:g}, action_repeat={self.action_repeat}"
        return f"{type(self).__name__}({settings})"

    # Validation.

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError(f"{self.name}: the environment is closed; make a new one with envs.make()")

    def _check_started(self) -> None:
        self._check_open()
        if not self._started:
            raise InvalidInputError(f"{self.name}: the environment has no state before reset(); call reset() first")

    def validate_action(self, action: Any) -> tuple[np.ndarray | int, int]:
        """Return the action the simulator receives and the number of clipped components (rule in the class doc).

        Continuous actions come back as float64 arrays of the space's shape,
        discrete ones as a Python ``int``.
        """
        if isinstance(self.action_space, spaces.Discrete):
            return self._validate_discrete_action(action), 0
        return self._clip_box_action(_as_float_vector(action, self.name))

    def _validate_discrete_action(self, action: Any) -> int:
        vector = _as_float_vector(action, self.name)
        valid = f"one of {{{', '.join(str(value) for value in range(self.action_space.n))}}}"
        if vector.size != 1:
            raise InvalidInputError(
                f"{self.name}: a discrete action must be one integer {valid}, got shape {vector.shape}"
            )
        value = float(vector[0])
        if value != round(value):
            raise InvalidInputError(
                f"{self.name}: discrete action {value!r} is not an integer; pass {valid}, "
                "or map a relaxed value in [-1, 1] with env.to_env_action()"
            )
        index = int(value)
        if not 0 <= index < self.action_space.n:
            raise InvalidInputError(f"{self.name}: discrete action {index} is out of range; pass {valid}")
        return index

    def _clip_box_action(self, vector: np.ndarray) -> tuple[np.ndarray, int]:
        space = self.action_space
        assert isinstance(space, spaces.Box)
        if vector.size != self.action_dim:
            raise InvalidInputError(
                f"{self.name}: action has {vector.size} components, expected {self.action_dim} "
                f"(shape {space.shape}, bounds [{space.low.min():g}, {space.high.max():g}])"
            )
        vector = vector.reshape(space.shape)
        low = space.low.astype(np.float64)
        high = space.high.astype(np.float64)
        clipped = int(np.count_nonzero((vector < low) | (vector > high)))
        return np.clip(vector, low, high), clipped

    def _validate_state(self, state: Any) -> np.ndarray:
        try:
            vector = np.asarray(_detach(state), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"{self.name}: physical state {state!r} is not a vector of numbers") from error
        if vector.size != len(self.state_names):
            raise InvalidInputError(
                f"{self.name}: physical state has {vector.size} values, expected {len(self.state_names)} "
                f"laid out as ({', '.join(self.state_names)})"
            )
        if not np.all(np.isfinite(vector)):
            raise InvalidInputError(f"{self.name}: physical state {vector.tolist()} contains NaN or infinity")
        return vector


def discrete_to_relaxed(actions: np.ndarray) -> np.ndarray:
    """Map discrete actions {0, 1} to relaxed float32 values {-1.0, +1.0}, shape ``(..., 1)``."""
    return (2.0 * np.asarray(actions, dtype=np.float32) - 1.0)[..., None]


def validate_seed(seed: Any) -> int:
    """Return ``seed`` as an int in ``[0, 2**32)``, the range NumPy's ``RandomState`` accepts."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InvalidInputError(f"seed {seed!r} is not an integer; pass an int in [0, 2**32)")
    if not 0 <= int(seed) < 2**32:
        raise InvalidInputError(f"seed {seed} is out of range; pass an int in [0, 2**32)")
    return int(seed)


def _detach(value: Any) -> Any:
    # Torch tensors (possibly on a GPU, possibly requiring grad) become NumPy arrays.
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return value


def _as_float_vector(value: Any, env_name: str) -> np.ndarray:
    try:
        vector = np.asarray(_detach(value), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{env_name}: action {value!r} is not a number or a vector of numbers") from error
    if np.any(np.isnan(vector)):
        raise InvalidInputError(f"{env_name}: action {vector.tolist()} contains NaN; the policy or planner diverged")
    if np.any(np.isinf(vector)):
        raise InvalidInputError(f"{env_name}: action {vector.tolist()} contains infinity; pass finite values")
    return vector
