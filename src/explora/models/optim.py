"""Small training utilities shared by agents and bonuses."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> Tensor:
    """Scale the gradients of ``params`` in place so their global L2 norm is at most
    ``max_norm``; returns the norm before clipping.

    The same rule as ``torch.nn.utils.clip_grad_norm_`` (coefficient ``max_norm / (norm +
    1e-6)``, capped at 1) in three fused calls: torch's general version costs 2x more per step at
    the dozen small tensors of the networks here (measured 90 vs 39 us), and PPO and RND take
    one such step every few milliseconds.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    dense = [g for g in grads if not g.is_sparse]
    norms = list(torch._foreach_norm(dense)) if dense else []
    norms += [torch.linalg.vector_norm(g.coalesce().values()) for g in grads if g.is_sparse]
    norm = torch.linalg.vector_norm(torch.stack(norms))
    coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    if dense:
        torch._foreach_mul_(dense, coef)
    for g in grads:
        if g.is_sparse:
            g.mul_(coef)
    return norm
