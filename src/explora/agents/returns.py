"""Advantage estimation shared by the on-policy agents. Pure functions, time-major tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
    episodic: bool = True,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) with episode ends kept apart.

    Args:
        rewards: ``[T, N]`` reward of each transition.
        values: ``[T, N]`` V(s_t).
        next_values: ``[T, N]`` V of the true successor of s_t: V(s_{t+1}) inside an episode,
            V(final observation) where the episode ended at t (that is what lets a truncated
            episode bootstrap), V(obs after the rollout) at t = T - 1.
        terminated: ``[T, N]`` bool, the successor is terminal: its value is 0 when ``episodic``.
        truncated: ``[T, N]`` bool, the episode was cut by a time limit: bootstrap from
            ``next_values`` (the successor is not terminal).
        episodic: False for a non-episodic return (RND's intrinsic stream): termination does
            not zero the successor's value either.

    The lambda-chain is cut at every episode end, terminated or truncated, so the advantage of
    a step never mixes in the next episode.

    Returns:
        ``(advantages, returns)``, each ``[T, N]``, with ``returns = advantages + values``.
    """
    terminated = terminated.to(values.dtype)
    ended = torch.maximum(terminated, truncated.to(values.dtype))
    bootstrap = 1.0 - terminated if episodic else torch.ones_like(terminated)
    deltas = rewards + gamma * next_values * bootstrap - values
    chain = gamma * lam * (1.0 - ended)
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in range(values.shape[0] - 1, -1, -1):
        running = deltas[t] + chain[t] * running
        advantages[t] = running
    return advantages, advantages + values
