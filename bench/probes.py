"""Offline linear probes: logistic regression for classes, ridge regression for physical states.

Both standardise features with the train split's mean and std. Columns whose train std is tiny, such as
constant pixels of a rendered background, are set to zero instead of divided by their std. A column that
never varied in training but varies at test time would otherwise blow up the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

STATE_TARGET_NAMES = ("cart_position", "cos_pole_angle", "sin_pole_angle", "cart_velocity", "pole_angular_velocity")
RIDGE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
"""Ridge penalties tried, as multiples of the number of training rows."""


@dataclass
class Standardizer:
    """Per-column affine map fitted on training features ``(N, D)``."""

    mean: Tensor
    scale: Tensor
    """Reciprocal std per column, 0 for near-constant columns."""

    @classmethod
    def fit(cls, features: Tensor, relative_floor: float = 1e-4, absolute_floor: float = 1e-8) -> Standardizer:
        """Fit on ``features``; a column counts as constant when its std is below both floors' maximum.

        ``relative_floor`` is relative to the largest std of any column.
        """
        features = features.double()
        mean = features.mean(0)
        std = features.std(0, unbiased=False)
        floor = max(absolute_floor, relative_floor * float(std.max()) if std.numel() else 0.0)
        scale = torch.where(std > floor, 1.0 / std.clamp_min(floor), torch.zeros_like(std))
        return cls(mean, scale)

    def __call__(self, features: Tensor) -> Tensor:
        return (features.double() - self.mean) * self.scale


def logistic_probe_top1(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    classes: int,
    epochs: int = 300,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Return the top-1 accuracy on the test set of a multinomial logistic regression.

    Fitted by full-batch Adam (learning rate 0.01) on standardised features ``(N, D)`` with labels ``(N,)``.
    """
    standardize = Standardizer.fit(train_x)
    train_features = standardize(train_x).float()
    test_features = standardize(test_x).float()

    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(train_features.shape[1], classes, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-2, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(train_features @ weight + bias, train_y)
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        predicted = (test_features @ weight + bias).argmax(1)
    return float((predicted == test_y).float().mean())


def state_targets(states: Tensor) -> Tensor:
    """Map cartpole states ``(N, 4)`` (x, angle, x velocity, angular velocity) to ``(N, 5)`` probe targets.

    The targets are laid out as :data:`STATE_TARGET_NAMES`; the angle becomes its cosine and sine, so the
    wrap-around at pi does not count as an error.
    """
    position, angle, velocity, angular_velocity = states.double().unbind(1)
    return torch.stack([position, torch.cos(angle), torch.sin(angle), velocity, angular_velocity], dim=1)


def r_squared_per_column(prediction: Tensor, target: Tensor) -> Tensor:
    """Return the coefficient of determination of each column of ``(N, S)`` tensors, ``(S,)``."""
    residual = ((target - prediction) ** 2).sum(0)
    total = ((target - target.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return 1.0 - residual / total


class _RidgeSolver:
    """Ridge solutions of standardised features ``(N, D)`` for any penalty, from one eigendecomposition.

    Works on the smaller of the Gram matrix ``X X^T`` (when D > N) and the covariance ``X^T X``.
    """

    def __init__(self, features: Tensor, targets: Tensor) -> None:
        self.features = features
        self.target_mean = targets.mean(0)
        centred = targets - self.target_mean
        self.dual = features.shape[1] > features.shape[0]
        gram = features @ features.T if self.dual else features.T @ features
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(gram)
        projected = centred if self.dual else features.T @ centred
        self.rotated = self.eigenvectors.T @ projected

    def weights(self, penalty: float) -> Tensor:
        """Return the weights ``(D, S)`` minimising ``|X w - y|^2 + penalty |w|^2``."""
        solution = self.eigenvectors @ (self.rotated / (self.eigenvalues.clamp_min(0.0) + penalty)[:, None])
        return self.features.T @ solution if self.dual else solution

    def predict(self, features: Tensor, penalty: float) -> Tensor:
        """Predict targets ``(M, S)`` for standardised features ``(M, D)``."""
        return features @ self.weights(penalty) + self.target_mean


def ridge_probe_r2(
    train_x: Tensor, train_y: Tensor, train_groups: Tensor, test_x: Tensor, test_y: Tensor
) -> tuple[Tensor, float]:
    """Fit a ridge regression of targets ``(N, S)`` and return ``(R^2 per target (S,), chosen penalty)``.

    The penalty is chosen among :data:`RIDGE_PENALTIES` (times N) by the mean R^2 on the last fifth of the
    training groups (episodes), fitted on the others. The final fit uses every training row, and test
    features are clipped to the range of the training features, column by column.
    """
    groups = torch.unique(train_groups)
    held_out_count = max(1, len(groups) // 5)
    held_out = torch.isin(train_groups, groups[-held_out_count:])

    fit_x, fit_y = train_x[~held_out], train_y[~held_out].double()
    standardize = Standardizer.fit(fit_x)
    solver = _RidgeSolver(standardize(fit_x), fit_y)
    held_out_features = standardize(train_x[held_out])
    scores = {}
    for multiple in RIDGE_PENALTIES:
        prediction = solver.predict(held_out_features, multiple * len(fit_x))
        scores[multiple] = float(r_squared_per_column(prediction, train_y[held_out].double()).mean())
    best_multiple = max(scores, key=lambda multiple: scores[multiple])

    standardize = Standardizer.fit(train_x)
    train_features = standardize(train_x)
    solver = _RidgeSolver(train_features, train_y.double())
    # Clip test features to the range each column took in training: a column that barely varied there
    # gets a large weight, and a test value far outside that range would then swamp the prediction.
    test_features = torch.maximum(torch.minimum(standardize(test_x), train_features.max(0).values),
                                  train_features.min(0).values)  # fmt: skip
    prediction = solver.predict(test_features, best_multiple * len(train_x))
    return r_squared_per_column(prediction, test_y.double()), best_multiple
