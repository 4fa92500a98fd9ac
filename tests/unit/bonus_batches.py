"""Builders of ``Transitions`` shared by the bonus tests."""

from __future__ import annotations

import torch

from explora.bonuses import Transitions


def batch_of(next_obs: torch.Tensor) -> Transitions:
    """Transitions whose ``next_obs`` is ``next_obs`` ``[T, N, ...]``; other fields are zeros."""
    t, n = int(next_obs.shape[0]), int(next_obs.shape[1])
    zeros = torch.zeros(t, n)
    return Transitions(
        obs=torch.zeros_like(next_obs),
        actions=zeros.long(),
        next_obs=next_obs,
        ext_rewards=zeros,
        terminated=zeros.bool(),
        truncated=zeros.bool(),
    )
