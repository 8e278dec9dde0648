"""A scripted cart-pole controller: energy-based swing-up and LQR balancing around a target cart position.

State vectors follow the cart-pole layout ``[cart_position (m), pole_angle
(rad, 0 = upright, positive = pole tip toward +x), cart_velocity (m/s),
pole_angular_velocity (rad/s)]``. The output is a unit action in [-1, 1],
which the envs scale to ``force_per_action`` newtons on the cart.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import expm, solve_discrete_are

from envs.registry import CartPoleParams

# LQR weights on [x, theta, x_dot, theta_dot] and on the unit action.
_LQR_STATE_WEIGHTS = (1.0, 10.0, 0.5, 0.5)
_LQR_ACTION_WEIGHT = 1.0


def linearized_cartpole(params: CartPoleParams) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(A, B)`` of the continuous-time cart-pole linearized at upright rest: ``ds/dt = A s + B u``.

    The pole is a uniform rod hinged at one end, with moment of inertia
    ``4/3 m l^2`` about the hinge (``l`` the half length), as in gymnasium's
    CartPole equations. ``u`` is the unit action.
    """
    total_mass = params.cart_mass + params.pole_mass
    half_length = params.pole_half_length
    denominator = half_length * (4.0 / 3.0 - params.pole_mass / total_mass)
    force = params.force_per_action

    # theta_dd = (g theta - F / M) / d and x_dd = F / M - (m l / M) theta_dd, with F = force * u.
    theta_from_angle = params.gravity / denominator
    theta_from_action = -force / (total_mass * denominator)
    x_from_angle = -params.pole_mass * half_length * theta_from_angle / total_mass
    x_from_action = force / total_mass - params.pole_mass * half_length * theta_from_action / total_mass

    a = np.zeros((4, 4))
    a[0, 2] = 1.0
    a[1, 3] = 1.0
    a[2, 1] = x_from_angle
    a[3, 1] = theta_from_angle
    b = np.array([[0.0], [0.0], [x_from_action], [theta_from_action]])
    return a, b


def discretize(a: np.ndarray, b: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the zero-order-hold discretization ``(Ad, Bd)`` of ``ds/dt = A s + B u`` over ``dt`` seconds."""
    n, m = b.shape
    block = np.zeros((n + m, n + m))
    block[:n, :n] = a
    block[:n, n:] = b
    transition = expm(block * dt)
    return transition[:n, :n], transition[:n, n:]


def lqr_gain(params: CartPoleParams, dt: float) -> np.ndarray:
    """Return the discrete-time LQR gain ``K`` (shape ``(1, 4)``) for ``u = -K (s - s_target)`` at step ``dt``."""
    a, b = discretize(*linearized_cartpole(params), dt)
    q = np.diag(_LQR_STATE_WEIGHTS)
    r = np.array([[_LQR_ACTION_WEIGHT]])
    p = solve_discrete_are(a, b, q, r)
    return np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)


class CartPoleController:
    """Swing the pole up by pumping energy, then balance it with LQR while steering the cart to a target.

    Near upright (``cos(theta) > cos(capture_angle)``) the LQR law acts on the
    state relative to ``[target, 0, 0, 0]``, with the position error limited
    to ``max_position_error`` so that a far target moves the cart gently.
    Elsewhere the cart is accelerated to raise the pole's energy toward the
    upright value (Astrom and Furuta's swing-up law), plus a spring toward
    the track centre.
    """

    def __init__(
        self,
        params: CartPoleParams,
        dt: float,
        *,
        capture_angle: float = 0.5,
        max_position_error: float = 0.6,
        energy_gain: float = 10.0,
        centering_gain: float = 8.0,
        damping_gain: float = 2.0,
    ) -> None:
        self.params = params
        self.dt = dt
        self.gain = lqr_gain(params, dt)
        self.capture_cos = math.cos(capture_angle)
        self.max_position_error = max_position_error
        self.energy_gain = energy_gain
        self.centering_gain = centering_gain
        self.damping_gain = damping_gain

    def action(self, state: np.ndarray, target_position: float = 0.0) -> float:
        """Return the unit action in [-1, 1] for ``state`` (cart-pole layout) and a target cart position in m."""
        position, angle, velocity, angular_velocity = (float(value) for value in state)
        if math.cos(angle) > self.capture_cos:
            return self._balance(position, angle, velocity, angular_velocity, target_position)
        return self._swing_up(position, angle, velocity, angular_velocity)

    def _balance(self, position: float, angle: float, velocity: float, angular_velocity: float, target: float) -> float:
        error = float(np.clip(position - target, -self.max_position_error, self.max_position_error))
        wrapped = math.atan2(math.sin(angle), math.cos(angle))
        deviation = np.array([error, wrapped, velocity, angular_velocity])
        return float(np.clip(-(self.gain @ deviation)[0], -1.0, 1.0))

    def _swing_up(self, position: float, angle: float, velocity: float, angular_velocity: float) -> float:
        params = self.params
        mass, half_length = params.pole_mass, params.pole_half_length
        inertia = 4.0 / 3.0 * mass * half_length**2

        # Pole energy relative to upright rest; it is -2 m g l when hanging at rest.
        energy = 0.5 * inertia * angular_velocity**2 + mass * params.gravity * half_length * (math.cos(angle) - 1.0)

        # dE/dt = -m l a cos(theta) theta_dot for cart acceleration a, so accelerating
        # against sign(theta_dot cos(theta)) raises the energy while it is below zero.
        pump_direction = angular_velocity * math.cos(angle)
        sign = 1.0 if pump_direction >= 0.0 else -1.0
        acceleration = self.energy_gain * energy * sign
        acceleration -= self.centering_gain * position + self.damping_gain * velocity

        total_mass = params.cart_mass + params.pole_mass
        return float(np.clip(acceleration * total_mass / params.force_per_action, -1.0, 1.0))
