"""Planning in the frozen Flow-JEPA latent: world model, planners and the closed-loop episode."""

from planning.cost import CostWeights, goal_cost, latent_distance
from planning.episode import PlanResult, plan
from planning.goal_image import GoalImage, load_goal_image
from planning.gradient import GradientMPC
from planning.problem import ActionBounds, LatentDynamics, PlanningDivergedError, PlanningProblem, PlanOutput
from planning.registry import PLANNERS, Planner, make_planner
from planning.render import plot_episode_costs, write_episode_video
from planning.sampling import CEM, MPPI
from planning.train import WorldModelTrainConfig, train_world_model
from planning.world_model import LatentWorldModel, WorldModelConfig, encoder_fingerprint

__all__ = [
    "PLANNERS",
    "CEM",
    "MPPI",
    "ActionBounds",
    "CostWeights",
    "GoalImage",
    "GradientMPC",
    "LatentDynamics",
    "LatentWorldModel",
    "PlanOutput",
    "PlanResult",
    "Planner",
    "PlanningDivergedError",
    "PlanningProblem",
    "WorldModelConfig",
    "WorldModelTrainConfig",
    "encoder_fingerprint",
    "goal_cost",
    "latent_distance",
    "load_goal_image",
    "make_planner",
    "plan",
    "plot_episode_costs",
    "train_world_model",
    "write_episode_video",
]
