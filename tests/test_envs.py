"""Pixel environments: registry, determinism, state round trips, action bounds and the gymnasium adapter."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest

import envs
from envs.dmc import wrap_angle
from flowjepa.errors import InvalidInputError

SIZE = 32


def _actions(env: envs.PixelEnv, count: int, seed: int) -> list:
    """A fixed, valid action sequence for ``env``."""
    rng = np.random.default_rng(seed)
    if env.is_discrete:
        return [int(value) for value in rng.integers(0, 2, count)]
    return [rng.uniform(-1.0, 1.0, env.action_dim) for _ in range(count)]


def _rollout(env: envs.PixelEnv, seed: int, actions: list) -> tuple[list[np.ndarray], list[np.ndarray]]:
    frames = [env.reset(seed=seed)]
    states = [env.physical_state()]
    for action in actions:
        frame, _, terminated, truncated, info = env.step(action)
        frames.append(frame)
        states.append(info["state"])
        if terminated or truncated:
            break
    return frames, states


@pytest.fixture(scope="module", params=envs.ENV_NAMES)
def env(request):
    environment = envs.make(request.param, size=SIZE, time_limit=None)
    yield environment
    environment.close()


def test_unknown_env_lists_valid_names():
    with pytest.raises(InvalidInputError) as error:
        envs.make("cartpol")
    for name in envs.ENV_NAMES:
        assert name in str(error.value)


def test_unknown_option_is_rejected():
    with pytest.raises(InvalidInputError, match="accepted options"):
        envs.make("cartpole-gym", quality="high")


@pytest.mark.parametrize("size", [0, 7, 2000, 32.0, True])
def test_invalid_size_is_rejected(size):
    with pytest.raises(InvalidInputError, match="size"):
        envs.make("cartpole-gym", size=size)


def test_registry_names():
    assert set(envs.ENV_NAMES) >= {"cartpole", "cartpole-swingup", "cartpole-gym", "pendulum", "reacher"}


def test_frames_are_uint8_and_not_blank(env):
    frames, _ = _rollout(env, seed=1, actions=_actions(env, 5, seed=0))
    for frame in frames:
        assert frame.dtype == np.uint8
        assert frame.shape == (SIZE, SIZE, 3)
        assert frame.std() > 0


def test_equal_seeds_give_equal_frames(env):
    actions = _actions(env, 8, seed=3)
    first_frames, first_states = _rollout(env, seed=7, actions=actions)
    second_frames, second_states = _rollout(env, seed=7, actions=actions)
    assert len(first_frames) == len(second_frames)
    for first, second in zip(first_frames, second_frames):
        assert np.array_equal(first, second)
    for first, second in zip(first_states, second_states):
        assert np.array_equal(first, second)


def test_different_seeds_give_different_starts(env):
    first = env.reset(seed=1)
    first_state = env.physical_state()
    second = env.reset(seed=2)
    assert not np.array_equal(first_state, env.physical_state())
    assert first.shape == second.shape


def test_seed_at_make_fixes_first_reset():
    with envs.make("cartpole", size=SIZE, seed=11) as first, envs.make("cartpole", size=SIZE, seed=11) as second:
        assert np.array_equal(first.reset(), second.reset())
        assert np.array_equal(first.physical_state(), second.physical_state())


def test_set_state_renders_the_frame_of_that_state(env):
    frames, states = _rollout(env, seed=5, actions=_actions(env, 10, seed=4))
    for frame, state in zip(frames, states):
        assert np.array_equal(env.set_physical_state(state), frame)
        assert np.array_equal(env.physical_state(), state)


def test_state_layout_matches_names(env):
    env.reset(seed=0)
    state = env.physical_state()
    assert state.dtype == np.float64
    assert state.shape == (len(env.state_names),)
    _, _, _, _, info = env.step(_actions(env, 1, seed=0)[0])
    assert np.array_equal(info["state"], env.physical_state())


def test_cartpole_state_is_position_angle_velocities():
    with envs.make("cartpole", size=SIZE) as env:
        env.reset(seed=0)
        state = np.array([0.3, -0.2, 0.5, 1.5])
        env.set_physical_state(state)
        assert env.state_names == ("cart_position", "pole_angle", "cart_velocity", "pole_angular_velocity")
        physics = env._physics
        assert physics.named.data.qpos["slider"][0] == 0.3
        assert physics.named.data.qpos["hinge_1"][0] == -0.2
        assert physics.named.data.qvel["slider"][0] == 0.5
        assert physics.named.data.qvel["hinge_1"][0] == 1.5


def test_pole_angle_sign_agrees_between_cartpoles():
    # A positive angle tilts the tip toward +x (image right) in both simulators,
    # so the right half of the image gains more pole pixels than the left.
    for name in ("cartpole", "cartpole-gym"):
        with envs.make(name, size=64) as env:
            env.reset(seed=0)
            upright = env.set_physical_state([0.0, 0.0, 0.0, 0.0]).astype(np.int32)
            tilted = env.set_physical_state([0.0, 0.6, 0.0, 0.0]).astype(np.int32)
            changed = np.abs(tilted - upright).sum(axis=2) > 30
            columns = np.nonzero(changed.any(axis=0))[0]
            added_right = changed[:, 32:].sum()
            added_left = changed[:, :32].sum()
            assert columns.size > 0, name
            assert added_right > added_left, name


def test_continuous_action_is_clipped_and_counted():
    with envs.make("cartpole", size=SIZE) as clipped_env, envs.make("cartpole", size=SIZE) as bounded_env:
        clipped_env.reset(seed=3)
        bounded_env.reset(seed=3)
        _, _, _, _, info = clipped_env.step([5.0])
        _, _, _, _, bounded_info = bounded_env.step([1.0])
        assert info["clipped"] == 1
        assert bounded_info["clipped"] == 0
        assert np.array_equal(info["state"], bounded_info["state"])

        _, _, _, _, info = clipped_env.step(np.array([-1.5]))
        assert info["clipped"] == 1
        assert info["clipped_total"] == 2


def test_clipping_counts_components():
    with envs.make("reacher", size=SIZE) as env:
        env.reset(seed=0)
        _, _, _, _, info = env.step([2.0, 0.5])
        assert info["clipped"] == 1
        _, _, _, _, info = env.step([-2.0, 3.0])
        assert info["clipped"] == 2


def test_action_repeat_equals_repeated_steps():
    with (
        envs.make("cartpole", size=SIZE, action_repeat=1) as single,
        envs.make("cartpole", size=SIZE, action_repeat=4) as repeated,
    ):
        single.reset(seed=2)
        repeated.reset(seed=2)
        assert math.isclose(repeated.dt, 4 * single.dt)
        for _ in range(4):
            single.step([0.7])
        repeated.step([0.7])
        assert np.array_equal(single.physical_state(), repeated.physical_state())


@pytest.mark.parametrize("name", ["cartpole", "cartpole-gym"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_action_raises_value_error(name, bad):
    with envs.make(name, size=SIZE) as env:
        env.reset(seed=0)
        with pytest.raises(ValueError, match="NaN|infinity"):
            env.step([bad])


def test_continuous_action_of_wrong_length_raises():
    with envs.make("cartpole", size=SIZE) as env:
        env.reset(seed=0)
        with pytest.raises(InvalidInputError, match="expected 1"):
            env.step([0.1, 0.2])


def test_discrete_env_receives_python_int():
    with envs.make("cartpole-gym", size=SIZE) as env:
        env.reset(seed=0)
        for action in (1, np.int64(0), np.array([1]), 1.0, True):
            validated, clipped = env.validate_action(action)
            assert type(validated) is int
            assert clipped == 0
        _, _, _, _, info = env.step(np.int64(1))
        assert info["clipped"] == 0


@pytest.mark.parametrize("bad", [2, -1, 0.5, [0, 1]])
def test_invalid_discrete_action_raises(bad):
    with envs.make("cartpole-gym", size=SIZE) as env:
        env.reset(seed=0)
        with pytest.raises(InvalidInputError):
            env.step(bad)


def test_to_env_action_maps_relaxed_values():
    with envs.make("cartpole-gym", size=SIZE) as discrete, envs.make("cartpole", size=SIZE) as continuous:
        assert discrete.to_env_action(1.0) == 1
        assert discrete.to_env_action(0.2) == 1
        assert discrete.to_env_action(0.0) == 0
        assert discrete.to_env_action(-1.0) == 0
        assert type(discrete.to_env_action(np.float32(0.7))) is int
        assert np.array_equal(envs.discrete_to_relaxed(np.array([0, 1])), np.array([[-1.0], [1.0]], dtype=np.float32))
        assert np.array_equal(continuous.to_env_action(3.0), np.array([1.0]))
        with pytest.raises(ValueError):
            discrete.to_env_action(float("nan"))


def test_time_limit_truncates_and_blocks_further_steps():
    with envs.make("cartpole", size=SIZE, time_limit=0.2) as env:
        env.reset(seed=0)
        assert env.max_steps == 5
        flags = [env.step([0.0])[3] for _ in range(5)]
        assert flags == [False, False, False, False, True]
        with pytest.raises(InvalidInputError, match="reset"):
            env.step([0.0])
        env.reset(seed=0)
        env.step([0.0])


def test_gym_cartpole_terminates_when_pole_falls():
    with envs.make("cartpole-gym", size=SIZE) as env:
        env.reset(seed=0)
        # gymnasium ends the episode beyond 12 degrees (0.209 rad).
        env.set_physical_state([0.0, 0.3, 0.0, 0.0])
        _, reward, terminated, truncated, _ = env.step(1)
        assert terminated
        assert not truncated
        assert reward == 1.0


def test_step_before_reset_raises():
    with envs.make("cartpole-gym", size=SIZE) as env:
        with pytest.raises(InvalidInputError, match="reset"):
            env.step(0)
        with pytest.raises(InvalidInputError, match="reset"):
            env.physical_state()


def test_closed_env_raises():
    env = envs.make("cartpole-gym", size=SIZE)
    env.close()
    env.close()
    with pytest.raises(InvalidInputError, match="closed"):
        env.reset()


def test_invalid_physical_state_raises():
    with envs.make("cartpole", size=SIZE) as env:
        env.reset(seed=0)
        with pytest.raises(InvalidInputError, match="expected 4"):
            env.set_physical_state([0.0, 0.0])
        with pytest.raises(InvalidInputError, match="NaN"):
            env.set_physical_state([0.0, float("nan"), 0.0, 0.0])


def test_reacher_state_includes_target():
    with envs.make("reacher", size=SIZE) as env:
        env.reset(seed=0)
        state = env.physical_state()
        state[4:6] = [0.1, -0.15]
        first = env.set_physical_state(state)
        state[4:6] = [-0.1, 0.15]
        second = env.set_physical_state(state)
        assert np.array_equal(env.physical_state()[4:6], [-0.1, 0.15])
        assert not np.array_equal(first, second)


def test_wrap_angle():
    assert wrap_angle(0.3) == 0.3
    assert wrap_angle(-math.pi) == -math.pi
    assert math.isclose(wrap_angle(math.pi), -math.pi)
    assert math.isclose(wrap_angle(3 * math.pi / 2), -math.pi / 2)
    assert math.isclose(wrap_angle(-5 * math.pi / 2), -math.pi / 2)


@pytest.mark.parametrize("name", ["cartpole", "cartpole-gym"])
def test_gymnasium_make_gives_pixel_observations(name):
    env = gymnasium.make(envs.gym_id(name), size=SIZE)
    try:
        assert env.observation_space == gymnasium.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        observation, info = env.reset(seed=4)
        assert env.observation_space.contains(observation)
        assert info["state"].shape == (4,)
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(observation)
        assert isinstance(reward, float)
    finally:
        env.close()
