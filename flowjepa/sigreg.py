"""SIGReg: sketched isotropic Gaussian regularisation (LeJEPA, Balestriero and LeCun, arXiv:2511.08544).

Embeddings are projected on K random unit directions; each 1-D projection is
compared with N(0, 1) by the Epps-Pulley statistic

    T = N * integral over t in [-t_max, t_max] of |phi_N(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt,

where ``phi_N`` is the empirical characteristic function. The integrand is even
in ``t``, so it is computed on ``[0, t_max]`` with the trapezoid rule and doubled.
For standard normal samples ``E[T] = 2 * integral_0^inf (1 - e^{-t^2}) e^{-t^2/2} dt
~= 1.05`` at any batch size (slightly less with a finite ``t_max``); a collapsed
embedding grows linearly with the batch size.

Under ``torch.distributed`` the empirical characteristic function is averaged
over all ranks before the statistic is formed, so the test covers the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def _global_mean(x: Tensor) -> Tensor:
    """Mean over ranks, differentiable for the local contribution."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    total = x.detach().clone()
    dist.all_reduce(total)
    # The local term keeps its gradient; the other ranks' terms enter as constants.
    return (x + (total - x.detach())) / dist.get_world_size()


def _global_count(n: int, device: torch.device) -> int:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return n
    count = torch.tensor([n], device=device)
    dist.all_reduce(count)
    return int(count.item())


def epps_pulley(projections: Tensor, t_max: float = 3.0, num_points: int = 17) -> Tensor:
    """Return the Epps-Pulley statistic of each column of ``projections`` ``(N, K)`` as ``(K,)``."""
    t = torch.linspace(0.0, t_max, num_points, device=projections.device, dtype=projections.dtype)
    target = torch.exp(-0.5 * t**2)  # characteristic function of N(0, 1)

    angles = projections.unsqueeze(-1) * t  # (N, K, T)
    cos_mean = _global_mean(torch.cos(angles).mean(0))  # (K, T)
    sin_mean = _global_mean(torch.sin(angles).mean(0))
    squared_error = (cos_mean - target) ** 2 + sin_mean**2

    step = t_max / (num_points - 1)
    weights = torch.full((num_points,), 2.0 * step, device=t.device, dtype=t.dtype)  # 2x for [-t_max, 0]
    weights[0] = weights[-1] = step
    integral = (squared_error * target * weights).sum(-1)

    return integral * _global_count(projections.shape[0], projections.device)


def sigreg(
    embeddings: Tensor,
    num_directions: int = 256,
    t_max: float = 3.0,
    num_points: int = 17,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SIGReg loss of ``embeddings`` ``(N, d)`` or ``(V, N, d)`` (one test per view), averaged.

    Directions are drawn afresh on every call (pass ``generator`` to fix them).
    Returns a scalar: the mean Epps-Pulley statistic over directions and views.
    """
    if embeddings.ndim == 2:
        embeddings = embeddings.unsqueeze(0)
    if embeddings.ndim != 3:
        raise ValueError(f"embeddings must be (N, d) or (V, N, d), got shape {tuple(embeddings.shape)}")

    dim = embeddings.shape[-1]
    directions = torch.randn(dim, num_directions, generator=generator, device="cpu", dtype=torch.float64)
    directions = (directions / directions.norm(dim=0, keepdim=True)).to(embeddings.device, embeddings.dtype)

    statistics = [epps_pulley(view @ directions, t_max, num_points) for view in embeddings]
    return torch.stack(statistics).mean()
