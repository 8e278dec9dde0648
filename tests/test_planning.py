"""Planner maths: gradients, closed-form optima, bounds, divergence and the planner table."""

from __future__ import annotations

import pytest
import torch

from flowjepa.errors import InvalidInputError
from planning.cost import CostWeights, goal_cost
from planning.gradient import GradientMPC, evaluate_raw
from planning.problem import ActionBounds, PlanningDivergedError, PlanningProblem, shift_plan
from planning.registry import PLANNERS, make_planner
from planning.sampling import CEM, MPPI
from planning.world_model import LatentWorldModel, WorldModelConfig

pytestmark = pytest.mark.usefixtures("single_thread")


class LinearDynamics:
    """The linear latent system z' = A z + B a, with a window of one latent."""

    def __init__(self, transition: torch.Tensor, control: torch.Tensor) -> None:
        self.transition = transition
        self.control = control

    def rollout(self, start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        latent = start[-1].expand(actions.shape[0], -1)
        predictions = []
        for t in range(actions.shape[1]):
            latent = latent @ self.transition.T + actions[:, t] @ self.control.T
            predictions.append(latent)
        return torch.stack(predictions, dim=1)


def random_world_model(transition: str = "ode", dtype: torch.dtype = torch.float32, **overrides) -> LatentWorldModel:
    """A world model with random (non-zero) weights, so every input influences the output."""
    torch.manual_seed(0)
    config = WorldModelConfig(code_dim=5, action_dim=2, history=3, transition=transition, hidden_dim=16, **overrides)
    model = LatentWorldModel(config).to(dtype)
    with torch.no_grad():
        for parameter in model.transition.parameters():
            parameter.normal_(0.0, 0.3)
    return model.requires_grad_(False)


def linear_problem(smoothness: float = 0.1, horizon: int = 5) -> tuple[PlanningProblem, torch.Tensor]:
    """A linear problem with an interior optimum, and that optimum from the normal equations (float64)."""
    generator = torch.Generator().manual_seed(3)
    dim, action_dim = 4, 2
    rotation = torch.linalg.matrix_exp(0.3 * torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    transition = 0.9 * rotation
    control = torch.randn(dim, action_dim, generator=generator, dtype=torch.float64)
    dynamics = LinearDynamics(transition, control)
    start = torch.randn(1, dim, generator=generator, dtype=torch.float64)
    reachable = 0.3 * torch.randn(1, horizon, action_dim, generator=generator, dtype=torch.float64)
    goal = dynamics.rollout(start, reachable)[0, -1]
    weights = CostWeights(final=1.0, every_step=0.0, smoothness=smoothness)
    problem = PlanningProblem(dynamics, start, goal, ActionBounds([-1.0, -1.0], [1.0, 1.0]), horizon, weights)

    # z_H = c + M a with a flattened (H*A,); the cost is quadratic in a.
    effect = torch.cat(
        [torch.linalg.matrix_power(transition, horizon - 1 - t) @ control for t in range(horizon)], dim=1
    )
    free = torch.linalg.matrix_power(transition, horizon) @ start[0]
    difference = torch.zeros((horizon - 1) * action_dim, horizon * action_dim, dtype=torch.float64)
    for t in range(horizon - 1):
        for j in range(action_dim):
            difference[t * action_dim + j, (t + 1) * action_dim + j] = 1.0
            difference[t * action_dim + j, t * action_dim + j] = -1.0
    hessian = weights.final / dim * effect.T @ effect + smoothness / (horizon - 1) * difference.T @ difference
    optimum = torch.linalg.solve(hessian, weights.final / dim * effect.T @ (goal - free)).reshape(horizon, action_dim)
    return problem, optimum


@pytest.mark.parametrize("transition", ["ode", "residual"])
def test_gradients_reach_every_action(transition):
    model = random_world_model(transition, torch.float64)
    start = torch.randn(3, 5, dtype=torch.float64)
    goal = torch.randn(5, dtype=torch.float64)
    problem = PlanningProblem(model, start, goal, model.bounds, horizon=6, cost=CostWeights(smoothness=0.0))
    raw = (0.1 * torch.randn(4, 6, 2, dtype=torch.float64)).requires_grad_(True)

    costs, _, _ = evaluate_raw(problem, raw)
    (gradient,) = torch.autograd.grad(costs.sum(), raw)

    assert gradient.shape == raw.shape
    assert bool((gradient.abs() > 1e-12).all()), "some action gets no gradient from the final-step cost"


@pytest.mark.parametrize("transition", ["ode", "residual"])
def test_world_model_gradcheck(transition):
    model = random_world_model(transition, torch.float64)
    start = torch.randn(3, 5, dtype=torch.float64)
    actions = (0.5 * torch.rand(2, 3, 2, dtype=torch.float64) - 0.25).requires_grad_(True)

    assert torch.autograd.gradcheck(lambda a: model.rollout(start, a), (actions,), eps=1e-6, atol=1e-6)


def test_gd_finds_linear_closed_form_optimum():
    problem, optimum = linear_problem()
    planner = GradientMPC(candidates=4, iterations=1500, lr=0.05, init_std=0.3)

    output = planner.plan(problem)

    optimal_cost = goal_cost(
        problem.dynamics.rollout(problem.start, optimum[None]), problem.goal, optimum[None], problem.cost
    )
    assert float(optimum.abs().max()) < 0.9, "the test problem must have an interior optimum"
    assert torch.allclose(output.actions, optimum, atol=2e-3)
    assert output.cost == pytest.approx(float(optimal_cost), rel=1e-3, abs=1e-9)


def test_cem_approaches_linear_optimum():
    problem, optimum = linear_problem()
    output = CEM(population=400, elites=40, iterations=15, seed=1).plan(problem)
    optimal_cost = goal_cost(
        problem.dynamics.rollout(problem.start, optimum[None]), problem.goal, optimum[None], problem.cost
    )

    assert output.cost < float(optimal_cost) + 5e-3
    assert output.cost >= float(optimal_cost) - 1e-9


@pytest.mark.parametrize("transition", ["ode", "residual"])
def test_batched_rollout_equals_loop(transition):
    model = random_world_model(transition, torch.float64)
    start = torch.randn(3, 5, dtype=torch.float64)
    actions = 2 * torch.rand(7, 4, 2, dtype=torch.float64) - 1

    batched = model.rollout(start, actions)
    looped = torch.cat([model.rollout(start, actions[i : i + 1]) for i in range(actions.shape[0])])

    assert batched.shape == (7, 4, 5)
    assert torch.allclose(batched, looped, atol=1e-12, rtol=0)


def test_rollout_matches_manual_rk4_three_eighths():
    # torchdiffeq's "rk4" method is the 3/8-rule variant of the classical fourth-order Runge-Kutta step.
    model = random_world_model("ode", torch.float64)
    start = torch.randn(1, 3, 5, dtype=torch.float64)
    action = torch.rand(1, 2, dtype=torch.float64) * 2 - 1

    context = torch.cat([start.flatten(1), model.bounds.to_unit(action)], dim=1)

    def field(code):
        return model.transition.field(torch.cat([code, context], dim=1))

    code, dt = start[:, -1], model.config.dt
    k1 = field(code)
    k2 = field(code + dt * k1 / 3)
    k3 = field(code + dt * (k2 - k1 / 3))
    k4 = field(code + dt * (k1 - k2 + k3))
    expected = code + dt * (k1 + 3 * k2 + 3 * k3 + k4) / 8

    assert torch.allclose(model.step(start, action), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["gd", "cem", "mppi"])
def test_actions_stay_within_bounds(name):
    model = random_world_model("residual")
    bounds = ActionBounds([-2.0, 0.0], [0.5, 3.0])
    model.bounds = bounds
    goal = 50.0 * torch.ones(5)
    problem = PlanningProblem(model, torch.zeros(3, 5), goal, bounds, horizon=6)
    options = {"gd": {"lr": 100.0, "iterations": 20}, "cem": {"population": 64, "elites": 8, "init_std": 10.0}}
    options["mppi"] = {"population": 64, "init_std": 10.0}

    output = make_planner(name, **options[name]).plan(problem, warm_start=torch.tensor([[0.5, 3.0]]).repeat(6, 1))

    assert bool((output.actions >= bounds.low).all())
    assert bool((output.actions <= bounds.high).all())
    assert bool(torch.isfinite(output.actions).all())


@pytest.mark.parametrize("name", ["gd", "cem", "mppi"])
def test_start_equal_goal_gives_zero_cost(name):
    # An untrained world model is the identity (zero output layer), so doing nothing keeps the goal.
    model = LatentWorldModel(WorldModelConfig(code_dim=5, action_dim=2, hidden_dim=16)).requires_grad_(False)
    goal = torch.randn(5)
    problem = PlanningProblem(model, goal.expand(3, 5).clone(), goal, model.bounds, horizon=4)

    output = make_planner(name).plan(problem)

    assert output.cost == 0.0
    assert bool((output.actions == 0).all())
    if name == "gd":
        assert len(output.cost_history) == 1, "gd should stop at the first evaluation when the cost is zero"


@pytest.mark.parametrize("name", ["gd", "cem", "mppi"])
def test_blown_up_world_model_raises_clear_error(name):
    model = random_world_model("ode")
    with torch.no_grad():
        for parameter in model.transition.parameters():
            parameter.mul_(1e6)
    problem = PlanningProblem(model, torch.ones(3, 5), torch.zeros(5), model.bounds, horizon=8)

    with pytest.raises(PlanningDivergedError, match="non-finite"):
        make_planner(name, iterations=3).plan(problem)


class PartlyDivergingDynamics:
    """Latent moves with the action but becomes NaN wherever the first action component exceeds 0.2."""

    def rollout(self, start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        path = start[-1] + torch.cumsum(actions.sum(dim=-1, keepdim=True).expand(-1, -1, start.shape[-1]), dim=1)
        poisoned = (actions[..., :1] > 0.2).any(dim=1, keepdim=True)
        return torch.where(poisoned, torch.full_like(path, float("nan")), path)


@pytest.mark.parametrize("name", ["gd", "cem", "mppi"])
def test_partly_diverging_model_gives_finite_plan(name):
    problem = PlanningProblem(
        PartlyDivergingDynamics(), torch.zeros(1, 3), 5.0 * torch.ones(3), ActionBounds([-1, -1], [1, 1]), horizon=4
    )

    output = make_planner(name, iterations=5).plan(problem)

    assert bool(torch.isfinite(output.actions).all())
    assert bool((output.actions[:, 0] <= 0.2).all())
    assert output.cost < float("inf")


def test_adaptive_solver_is_bounded_on_stiff_model():
    model = random_world_model("ode", solver="dopri5", max_substeps=16)
    with torch.no_grad():
        for parameter in model.transition.parameters():
            parameter.mul_(30.0)
    evaluations = []
    model.transition.field.register_forward_hook(lambda *_: evaluations.append(1))

    model.rollout(torch.zeros(3, 5), torch.zeros(2, 1, 2))

    # Each accepted step costs at most 7 evaluations (dopri5) and at most 8 * max_substeps steps are tried.
    assert 0 < len(evaluations) <= 7 * 8 * 16 + 10


def test_shift_plan_drops_executed_and_repeats_last():
    bounds = ActionBounds([-1.0], [1.0])
    previous = torch.tensor([[0.1], [0.2], [0.3], [0.4]])

    shifted = shift_plan(previous, executed=2, horizon=4, bounds=bounds)

    assert torch.allclose(shifted, torch.tensor([[0.3], [0.4], [0.4], [0.4]]))
    assert shift_plan(None, 1, 4, bounds) is None


def test_goal_cost_terms_match_definition():
    predicted = torch.tensor([[[1.0, 0.0], [2.0, 2.0]]])
    goal = torch.tensor([0.0, 2.0])
    unit_actions = torch.tensor([[[0.5], [-0.5]]])
    weights = CostWeights(final=2.0, every_step=3.0, smoothness=0.5)

    cost = goal_cost(predicted, goal, unit_actions, weights)

    final = (4.0 + 0.0) / 2
    every_step = ((1.0 + 4.0) / 2 + final) / 2
    jerk = 1.0
    assert float(cost[0]) == pytest.approx(2.0 * final + 3.0 * every_step + 0.5 * jerk)


def test_rest_term_last_step_change():
    predicted = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]], [[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]]])
    goal = torch.tensor([0.0, 2.0])
    unit_actions = torch.zeros(2, 3, 1)
    plain = CostWeights(final=1.0, every_step=0.0, smoothness=0.0, latent_weights=(3, 0.5))
    resting = CostWeights(final=1.0, every_step=0.0, smoothness=0.0, rest=2.0, latent_weights=(3, 0.5))

    extra = goal_cost(predicted, goal, unit_actions, resting) - goal_cost(predicted, goal, unit_actions, plain)

    # Candidate 0 moves by (2, 2) over its last step. Candidate 1 stays at the goal.
    assert extra.tolist() == pytest.approx([2.0 * (3 * 4.0 + 0.5 * 4.0) / 2, 0.0])
    with pytest.raises(InvalidInputError, match="cost weight rest must be a number >= 0, got -1"):
        CostWeights(rest=-1)


def test_latent_weights_scale_each_dimension():
    predicted = torch.tensor([[[1.0, 0.0], [2.0, 2.0]]])
    goal = torch.tensor([0.0, 2.0])
    unit_actions = torch.zeros(1, 2, 1)
    weights = CostWeights(final=1.0, every_step=1.0, smoothness=0.0, latent_weights=(3, 0.5))

    cost = goal_cost(predicted, goal, unit_actions, weights)

    final = (3 * 4.0 + 0.5 * 0.0) / 2
    every_step = ((3 * 1.0 + 0.5 * 4.0) / 2 + final) / 2
    assert float(cost[0]) == pytest.approx(final + every_step)
    with pytest.raises(InvalidInputError, match="3 latent weights were given for a 2-dimensional latent"):
        goal_cost(predicted, goal, unit_actions, CostWeights(latent_weights=(1, 1, 1)))
    with pytest.raises(InvalidInputError, match=r"latent weights must be finite numbers >= 0, got \[1.0, -1.0\]"):
        CostWeights(latent_weights=(1, -1))


def test_make_planner_rejects_unknown_name_and_option():
    with pytest.raises(InvalidInputError, match="valid planners: gd, cem, mppi"):
        make_planner("ilqr")
    with pytest.raises(InvalidInputError, match="its options are"):
        make_planner("cem", learning_rate=0.1)
    assert set(PLANNERS) == {"gd", "cem", "mppi"}
    assert isinstance(make_planner("mppi"), MPPI)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("gd", {"iterations": 0}, "never runs unbounded"),
        ("gd", {"lr": 0.0}, "learning rate"),
        ("cem", {"elites": 2000}, "elites"),
        ("mppi", {"temperature": -1.0}, "temperature"),
    ],
)
def test_planner_options_are_validated(name, options, message):
    with pytest.raises(InvalidInputError, match=message):
        make_planner(name, **options)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a,1", "'a,1' is not a comma-separated list of numbers"),
        ("1,-1", "'1,-1' contains a weight that is negative or not finite"),
        ("1,1", "--latent-weights has 2 weights but the world model's latent has 3 dimensions"),
    ],
)
def test_bench_latent_weights_errors(value, message, capsys):
    from bench.bench_planning import main

    with pytest.raises(SystemExit) as stopped:
        main(["--latent-weights", value, "--tasks", "1", "--steps", "1", "--planners", "gd"])

    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
