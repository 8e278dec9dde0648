"""The closed-loop episode: encode, plan in the latent, act, repeat; the function the CLI and the benchmark use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowjepa.errors import InvalidInputError
from planning.controller import LatentMPC
from planning.cost import CostWeights, latent_distance
from planning.registry import Planner, make_planner
from planning.success import success_rule_for
from planning.world_model import LatentWorldModel

ProgressCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class PlanResult:
    """Everything one closed-loop episode produced. T is the number of executed actions."""

    actions: np.ndarray
    """Executed actions as planned, ``(T, A)``; relaxed values in [-1, 1] for a discrete env."""
    costs: np.ndarray
    """Planner cost of the plan each action came from, ``(T,)``."""
    latent_distances: np.ndarray
    """RMS distance between the current and the goal latent, in training stds, ``(T + 1,)``, from the start."""
    real_frames: np.ndarray
    """Observed frames ``(T + 1, S, S, 3)`` uint8, from the start."""
    imagined_frames: np.ndarray
    """Frames decoded from the predicted codes, ``(T + 1, S, S, 3)`` uint8; index 0 renders the start code.

    Empty ``(0, S, S, 3)`` when the episode ran with ``imagine=False``.
    """
    goal_frame: np.ndarray
    """The goal ``(S, S, 3)`` uint8."""
    states: np.ndarray
    """True physical states ``(T + 1, state_dim)``, from the start."""
    state_names: tuple[str, ...]
    goal_state: np.ndarray | None
    """Physical state of the goal, when the goal image carries it."""
    state_errors: np.ndarray | None
    """Absolute goal errors of the components of the success rule, ``(T + 1, C)``; None without goal state or rule."""
    success: bool | None
    """Whether the success rule held; None when the goal has no state or the env has no rule."""
    success_rule: str
    """The rule in words, or why success is unknown."""
    completed: bool
    """False when the environment ended the episode before ``steps`` actions."""
    planning_seconds: float
    """Wall time spent inside the planner, in seconds."""
    rollouts: int = 0
    """Candidate rollouts the planner evaluated over the episode."""
    state_error_names: tuple[str, ...] = ()
    """Names of the columns of ``state_errors``."""

    @property
    def seconds_per_action(self) -> float:
        """Planner wall time per executed action, in seconds."""
        return self.planning_seconds / max(1, len(self.actions))

    @property
    def final_latent_distance(self) -> float:
        """Latent distance after the last action."""
        return float(self.latent_distances[-1])


def tensor_to_frames(images: Tensor) -> np.ndarray:
    """Convert images in [0, 1] ``(B, 3, S, S)`` to uint8 frames ``(B, S, S, 3)``."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _validate_episode(
    env: Any,
    encoder: Any,
    world_model: LatentWorldModel,
    goal_frame: np.ndarray,
    horizon: int,
    steps: int,
    replan: int,
    correction: float,
) -> None:
    for name, value in (("horizon", horizon), ("steps", steps), ("replan_every", replan)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(correction, bool) or not isinstance(correction, (int, float)) or not 0 <= correction <= 1:
        raise InvalidInputError(
            f"correction (flowjepa plan --correction) must be a number in [0, 1], the gain of the model-error "
            f"estimate (0 turns it off); got {correction!r}"
        )
    if replan > horizon:
        raise InvalidInputError(f"replan_every={replan} exceeds horizon={horizon}; replan at least once per horizon")
    size = encoder.config.image_size
    if env.size != size:
        raise InvalidInputError(
            f"the environment renders {env.size} px frames but the encoder takes {size} px; "
            f"make the env with size={size}"
        )
    if goal_frame.shape != (size, size, 3) or goal_frame.dtype != np.uint8:
        raise InvalidInputError(
            f"goal frame must be uint8 ({size}, {size}, 3), got {goal_frame.dtype} {goal_frame.shape}; "
            "load goal images with planning.load_goal_image"
        )
    if env.action_dim != world_model.config.action_dim:
        raise InvalidInputError(
            f"the world model was trained with {world_model.config.action_dim}-dimensional actions but {env.name} "
            f"takes {env.action_dim}; use a world model trained on this environment"
        )
    world_model.check_encoder(encoder)


@torch.no_grad()
def plan(
    env: Any,
    encoder: Any,
    world_model: LatentWorldModel,
    goal_frame: np.ndarray,
    *,
    planner: str | Planner = "gd",
    planner_options: dict[str, Any] | None = None,
    horizon: int = 15,
    steps: int = 50,
    replan_every: int = 1,
    cost: CostWeights | None = None,
    seed: int = 0,
    goal_state: np.ndarray | None = None,
    imagine: bool = True,
    correction: float = 0.0,
    progress: ProgressCallback | None = None,
) -> PlanResult:
    """Run one closed-loop episode that steers ``env`` towards ``goal_frame`` by planning in the latent.

    The env is reset with ``seed``. The state window starts as k copies of the
    first frame's code, which matches a start at rest. Every ``replan_every``
    steps the planner optimises ``horizon`` actions from the current window,
    warm-started with the previous plan shifted by the executed actions (receding
    horizon). ``encoder`` is a frozen :class:`~flowjepa.FlowJEPA`; ``goal_frame``
    is uint8 ``(S, S, 3)``. ``correction`` in [0, 1] is the gain of the online
    estimate of the model's one-step error that is added to its predictions
    (offset-free MPC, :mod:`planning.correction`); 0 plans with the model as it
    is. ``progress(step, info)`` is called after each action
    with the keys ``cost``, ``latent_distance`` and ``state`` (the true physical state).
    """
    _validate_episode(env, encoder, world_model, goal_frame, horizon, steps, replan_every, correction)
    active_planner = make_planner(planner, **(planner_options or {})) if isinstance(planner, str) else planner
    controller = LatentMPC(
        encoder,
        world_model,
        active_planner,
        horizon=horizon,
        replan_every=replan_every,
        cost=cost,
        correction=correction,
    )

    def imagine_frame(latent: Tensor) -> np.ndarray:
        codes = world_model.denormalize(latent.reshape(1, -1)).to(encoder.device)
        return tensor_to_frames(encoder.decode_code(codes))[0]

    # Start: reset, encode the goal and the first frame.
    frame = env.reset(seed=seed)
    goal_latent = controller.set_goal(goal_frame)
    latent = controller.start(frame)
    real_frames = [frame]
    imagine = imagine and world_model.decodes_to_pixels
    imagined_frames = [imagine_frame(latent)] if imagine else []
    states = [env.physical_state()]
    distances = [float(latent_distance(latent, goal_latent))]
    actions: list[np.ndarray] = []
    costs: list[float] = []
    completed = True

    for step in range(steps):
        # Act with the next planned action (replanning on schedule), then observe the new frame.
        decision = controller.decide()
        frame, _, terminated, truncated, info = env.step(env.to_env_action(decision.action.cpu().numpy()))
        latent = controller.observe(frame, decision.action)

        real_frames.append(frame)
        if imagine:
            imagined_frames.append(imagine_frame(decision.predicted))
        states.append(np.asarray(info["state"], dtype=np.float64))
        distances.append(float(latent_distance(latent, goal_latent)))
        actions.append(decision.action.cpu().numpy().astype(np.float32))
        costs.append(decision.cost)
        if progress is not None:
            progress(step + 1, {"cost": costs[-1], "latent_distance": distances[-1], "state": states[-1]})
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
        np.stack(real_frames),
        np.stack(imagined_frames) if imagine else np.zeros((0, *goal_frame.shape), np.uint8),
        np.stack(states),
        completed,
        controller.planning_seconds,
        controller.rollouts,
    )


def finish_episode(
    env: Any,
    goal_frame: np.ndarray,
    goal_state: np.ndarray | None,
    actions: np.ndarray,
    costs: np.ndarray,
    distances: np.ndarray,
    real_frames: np.ndarray,
    imagined_frames: np.ndarray,
    states: np.ndarray,
    completed: bool,
    planning_seconds: float,
    rollouts: int,
) -> PlanResult:
    """Judge success with the env's rule and pack the result."""
    rule = success_rule_for(env.name)
    state_names = tuple(env.state_names)
    state_errors, success, error_names = None, None, ()
    if goal_state is None:
        description = "unknown: the goal image carries no physical state"
    elif rule is None:
        description = f"unknown: {env.name} has no success rule"
    else:
        goal_state = np.asarray(goal_state, dtype=np.float64)
        if goal_state.shape != (len(state_names),):
            raise InvalidInputError(
                f"goal state has shape {goal_state.shape} but {env.name} states are ({', '.join(state_names)})"
            )
        state_errors = rule.errors(states, goal_state, state_names)
        success = rule.succeeded(state_errors[1:], completed)
        description = rule.describe(len(actions))
        error_names = rule.components
    return PlanResult(
        actions=actions,
        costs=costs,
        latent_distances=distances,
        real_frames=real_frames,
        imagined_frames=imagined_frames,
        goal_frame=goal_frame,
        states=states,
        state_names=state_names,
        goal_state=goal_state,
        state_errors=state_errors,
        success=success,
        success_rule=description,
        completed=completed,
        planning_seconds=planning_seconds,
        rollouts=rollouts,
        state_error_names=error_names,
    )
