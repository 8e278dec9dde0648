"""An oracle for the benchmark: plan with the true simulator state instead of the learned latent.

:class:`CartpoleOracle` rolls candidate action sequences out in a private copy
of the dm_control cartpole physics (``mujoco.rollout``, no rendering), starting
from the environment's exact physical state. Its "latent" is the feature vector
``[x / 0.1, sin(theta) / 0.2, cos(theta) / 0.2]`` (cart position x in m, pole
angle theta in rad), so a squared feature distance of about 1 per component
sits at the tolerance of the cartpole success rule. Any planner of the table
can search over it, which gives the ceiling of what planning can reach in the
benchmark's time and sample budget.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from flowjepa.errors import InvalidInputError
from planning.success import CARTPOLE_RULE

ORACLE_ENVS = ("cartpole", "cartpole-swingup")


def cartpole_features(cart_position: Tensor, pole_angle: Tensor) -> Tensor:
    """Return ``(..., 3)`` features of positions and angles ``(...)`` scaled by the success tolerances."""
    position_tolerance, angle_tolerance = CARTPOLE_RULE.tolerances
    return torch.stack(
        [
            cart_position / position_tolerance,
            torch.sin(pole_angle) / angle_tolerance,
            torch.cos(pole_angle) / angle_tolerance,
        ],
        dim=-1,
    )


class CartpoleOracle:
    """Exact dynamics of a dm_control cartpole env, in the :class:`~planning.problem.LatentDynamics` interface.

    ``start`` of :meth:`rollout` is the physical state ``(1, 4)`` laid out as
    ``(cart_position, pole_angle, cart_velocity, pole_angular_velocity)``.
    """

    def __init__(self, env_name: str, action_repeat: int) -> None:
        if env_name not in ORACLE_ENVS:
            raise InvalidInputError(f"the oracle supports {', '.join(ORACLE_ENVS)}, not {env_name!r}")
        from envs.rendering import configure_rendering

        configure_rendering(mujoco=True)
        import mujoco
        from dm_control.suite import cartpole

        self._mujoco = mujoco
        physics = cartpole.Physics.from_xml_string(*cartpole.get_model_and_assets())
        self.model = physics.model.ptr
        self.data = mujoco.MjData(self.model)
        self.action_repeat = action_repeat
        self._spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self._size = mujoco.mj_stateSize(self.model, self._spec)

    def goal_features(self, state: np.ndarray) -> Tensor:
        """Return the features ``(3,)`` of a goal physical state."""
        return cartpole_features(torch.tensor(state[0]), torch.tensor(state[1])).float()

    def _initial_state(self, state: np.ndarray) -> np.ndarray:
        mujoco = self._mujoco
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = state[:2]
        self.data.qvel[:] = state[2:4]
        mujoco.mj_forward(self.model, self.data)
        full = np.empty(self._size)
        mujoco.mj_getState(self.model, self.data, full, self._spec)
        return full

    def rollout(self, start: Tensor, actions: Tensor) -> Tensor:
        """Return the features ``(N, H, 3)`` after each of the actions ``(N, H, 1)``; no gradient flows."""
        from mujoco import rollout

        initial = self._initial_state(start.reshape(-1).detach().cpu().double().numpy())
        control = np.repeat(actions.detach().cpu().double().numpy(), self.action_repeat, axis=1)
        states, _ = rollout.rollout(self.model, self.data, initial[None], control)
        # Full-physics state layout: time, qpos (cart, hinge), qvel, ...; keep the state after each env step.
        after_step = states[:, self.action_repeat - 1 :: self.action_repeat]
        position = torch.from_numpy(after_step[..., 1])
        angle = torch.from_numpy(after_step[..., 2])
        return cartpole_features(position, angle).to(actions.dtype)


def run_oracle_episode(
    env,
    goal_state: np.ndarray,
    goal_frame: np.ndarray,
    planner,
    *,
    horizon: int,
    steps: int,
    seed: int,
    cost=None,
):
    """Run one closed-loop episode that plans on the true state with :class:`CartpoleOracle`.

    Returns a :class:`~planning.episode.PlanResult` whose latent distances are
    feature distances and which has no imagined frames.
    """
    import time

    from planning.cost import CostWeights, latent_distance
    from planning.episode import finish_episode
    from planning.problem import ActionBounds, PlanningProblem, shift_plan

    oracle = CartpoleOracle(env.name, env.action_repeat)
    bounds = ActionBounds(env.action_space.low, env.action_space.high)
    cost = cost or CostWeights(final=1.0, every_step=1.0, smoothness=0.01)
    goal = oracle.goal_features(np.asarray(goal_state))
    frames = [env.reset(seed=seed)]
    states = [env.physical_state()]

    def distance(state: np.ndarray) -> float:
        return float(latent_distance(oracle.goal_features(state), goal))

    distances = [distance(states[0])]
    actions, costs = [], []
    planning_seconds, rollouts, previous = 0.0, 0, None
    completed = True
    for step in range(steps):
        start = torch.tensor(states[-1], dtype=torch.float32)[None]
        problem = PlanningProblem(oracle, start, goal, bounds, horizon, cost)
        started = time.perf_counter()
        output = planner.plan(problem, shift_plan(previous, 1, horizon, bounds))
        planning_seconds += time.perf_counter() - started
        rollouts += output.rollouts
        previous = output.actions
        frame, _, terminated, truncated, info = env.step(env.to_env_action(output.actions[0].numpy()))
        frames.append(frame)
        states.append(np.asarray(info["state"], dtype=np.float64))
        distances.append(distance(states[-1]))
        actions.append(output.actions[0].numpy())
        costs.append(output.cost)
        if (terminated or truncated) and step + 1 < steps:
            completed = False
            break

    return finish_episode(
        env,
        goal_frame,
        goal_state,
        np.stack(actions),
        np.asarray(costs),
        np.asarray(distances),
        np.stack(frames),
        np.zeros((0, *frames[0].shape), np.uint8),
        np.stack(states),
        completed,
        planning_seconds,
        rollouts,
    )
