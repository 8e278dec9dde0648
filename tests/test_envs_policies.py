"""Exploration policies and the scripted cart-pole controller, checked against the real simulators."""

from __future__ import annotations

import math

import numpy as np
import pytest

import envs
from envs.cartpole_control import CartPoleController, discretize, linearized_cartpole, lqr_gain
from envs.policies import POLICY_NAMES, make_policy
from envs.registry import get_spec
from flowjepa.errors import InvalidInputError

SIZE = 16


def _gym_accelerations(cartpole, state: np.ndarray, action: int) -> np.ndarray:
    """Return [x_dd, theta_dd] of gymnasium's CartPole at ``state`` ([x, theta, x_dot, theta_dot]).

    gymnasium integrates with explicit Euler, so one step's velocity change over tau is the acceleration.
    """
    position, angle, velocity, angular_velocity = state
    cartpole.state = np.array([position, velocity, angle, angular_velocity], dtype=np.float64)
    cartpole.steps_beyond_terminated = None
    cartpole.step(action)
    _, new_velocity, _, new_angular_velocity = cartpole.state
    return np.array([new_velocity - velocity, new_angular_velocity - angular_velocity]) / cartpole.tau


def test_linearization_matches_gymnasium_dynamics():
    # Brute force in float64: finite differences of gymnasium's nonlinear equations.
    # Force enters linearly, so the zero-force response is the mean of the +-10 N responses.
    import gymnasium

    cartpole = gymnasium.make("CartPole-v1").unwrapped
    cartpole.reset(seed=0)
    a, b = linearized_cartpole(get_spec("cartpole-gym").cartpole)

    def zero_force(state: np.ndarray) -> np.ndarray:
        return 0.5 * (_gym_accelerations(cartpole, state, 1) + _gym_accelerations(cartpole, state, 0))

    rest = np.zeros(4)
    step = 1e-6
    for column in range(4):
        offset = np.zeros(4)
        offset[column] = step
        derivative = (zero_force(rest + offset) - zero_force(rest - offset)) / (2 * step)
        np.testing.assert_allclose(a[2:, column], derivative, rtol=1e-5, atol=1e-6)

    action_response = 0.5 * (_gym_accelerations(cartpole, rest, 1) - _gym_accelerations(cartpole, rest, 0))
    np.testing.assert_allclose(b[2:, 0], action_response, rtol=1e-9)
    cartpole.close()


def test_discretization_matches_fine_integration():
    a, b = linearized_cartpole(get_spec("cartpole").cartpole)
    dt = 0.04
    ad, bd = discretize(a, b, dt)

    state = np.array([0.1, 0.05, -0.2, 0.3])
    action = np.array([0.4])
    substeps = 20000
    h = dt / substeps
    integrated = state.copy()
    for _ in range(substeps):
        # Classic Runge-Kutta on ds/dt = A s + B u with the action held constant.
        k1 = a @ integrated + b @ action
        k2 = a @ (integrated + 0.5 * h * k1) + b @ action
        k3 = a @ (integrated + 0.5 * h * k2) + b @ action
        k4 = a @ (integrated + h * k3) + b @ action
        integrated = integrated + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    np.testing.assert_allclose(ad @ state + bd @ action, integrated, rtol=1e-10, atol=1e-12)


def test_lqr_closed_loop_is_stable():
    params = get_spec("cartpole").cartpole
    ad, bd = discretize(*linearized_cartpole(params), 0.04)
    gain = lqr_gain(params, 0.04)
    radius = np.max(np.abs(np.linalg.eigvals(ad - bd @ gain)))
    assert radius < 1.0


@pytest.mark.parametrize("name", ["cartpole", "cartpole-gym"])
def test_balance_policy_keeps_pole_up_while_cart_moves(name):
    with envs.make(name, size=SIZE, time_limit=None) as env:
        policy = make_policy("balance", env, seed=1)
        env.reset(seed=1)
        state = env.physical_state()
        positions, angles = [state[0]], [state[1]]
        for _ in range(200):
            _, _, terminated, _, info = env.step(env.to_env_action(policy.act(state)))
            state = info["state"]
            positions.append(state[0])
            angles.append(state[1])
            assert not terminated
    assert max(abs(angle) for angle in angles) < 0.3
    assert max(positions) - min(positions) > 0.5
    assert max(abs(position) for position in positions) < 1.5


def test_controller_swings_pole_up():
    with envs.make("cartpole-swingup", size=SIZE, time_limit=None) as env:
        controller = CartPoleController(get_spec("cartpole-swingup").cartpole, env.dt)
        env.reset(seed=0)
        state = env.physical_state()
        assert math.cos(state[1]) < -0.9
        upright_steps = 0
        for _ in range(200):
            _, _, _, _, info = env.step([controller.action(state, 0.0)])
            state = info["state"]
            upright_steps += math.cos(state[1]) > math.cos(0.2)
            assert abs(state[0]) < 1.7
    assert upright_steps > 50
    assert math.cos(state[1]) > math.cos(0.2)


def test_policies_are_seeded():
    with envs.make("cartpole", size=SIZE) as env:
        state = np.zeros(4)
        # The plan policy acts on frames with trained models; tests/test_planner_policy.py checks its seeding.
        for name in (name for name in POLICY_NAMES if name != "plan"):
            first = make_policy(name, env, seed=3)
            second = make_policy(name, env, seed=3)
            other = make_policy(name, env, seed=4)
            first_actions = np.array([first.act(state) for _ in range(20)])
            assert np.array_equal(first_actions, np.array([second.act(state) for _ in range(20)]))
            if name != "balance":
                assert not np.array_equal(first_actions, np.array([other.act(state) for _ in range(20)]))
            assert np.all(np.abs(first_actions) <= 1.0)


def test_ou_policy_is_correlated():
    with envs.make("cartpole-gym", size=SIZE) as env:
        policy = make_policy("ou", env, seed=0)
        values = np.array([policy.act(np.zeros(4))[0] for _ in range(20000)])
    correlation = np.corrcoef(values[:-1], values[1:])[0, 1]
    # Clipping at +-1 lowers the correlation slightly below rho = exp(-dt / 0.3 s).
    assert abs(correlation - policy.rho) < 0.05
    assert 0.4 < values.std() < 0.6


def test_noise_option_sets_ou_std():
    with envs.make("cartpole-gym", size=SIZE) as env:
        policy = make_policy("ou", env, seed=0, noise=0.2)
        values = np.array([policy.act(np.zeros(4))[0] for _ in range(20000)])
    assert policy.sigma == 0.2
    assert 0.17 < values.std() < 0.23


def test_noise_option_widens_balance_tilts():
    # The same seeded episode with more controller noise reaches larger pole angles.
    largest = {}
    with envs.make("cartpole", size=SIZE) as env:
        for noise in (0.0, 0.5):
            env.reset(seed=5)
            policy = make_policy("balance", env, seed=5, noise=noise)
            angles = []
            for _ in range(150):
                env.step(policy.act(env.physical_state()))
                angles.append(abs(math.remainder(env.physical_state()[1], 2 * math.pi)))
            largest[noise] = max(angles)
    assert largest[0.0] < 0.1
    assert largest[0.5] > 2 * largest[0.0]


@pytest.mark.parametrize(("policy", "noise", "message"), [
    ("random", 0.3, "does not apply to policy 'random'"),
    ("ou", -0.1, "invalid"),
    ("ou", float("nan"), "invalid"),
    ("balance", True, "invalid"),
])  # fmt: skip
def test_invalid_noise_is_rejected(policy, noise, message):
    with envs.make("cartpole", size=SIZE) as env:
        with pytest.raises(InvalidInputError, match=message):
            make_policy(policy, env, noise=noise)


def test_unknown_policy_lists_valid_names():
    with envs.make("cartpole-gym", size=SIZE) as env:
        with pytest.raises(InvalidInputError) as error:
            make_policy("greedy", env)
    for name in POLICY_NAMES:
        assert name in str(error.value)


def test_balance_policy_rejects_non_cartpole():
    with envs.make("pendulum", size=SIZE) as env:
        with pytest.raises(InvalidInputError, match="cart-pole"):
            make_policy("balance", env)
