"""The Bonus protocol every intrinsic reward implements, and the normalisers they share.

Data flows one way (DESIGN.md): env -> rollout -> ``bonus.observe`` per step -> ``bonus.compute``
per rollout -> the agent combines and normalises rewards -> agent update -> ``bonus.update``.

A bonus owns its networks, optimiser and statistics. Statistics live in registered buffers of
``torch.nn.Module`` objects, so ``state_dict`` holds them and a checkpoint restores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Transitions:
    """A time-major batch of transitions; every field has leading shape ``[T, N]``.

    ``next_obs`` is the true successor of ``obs``: at an episode end it is the final observation
    of that episode, never the first observation of the next one.
    """

    obs: Tensor  # [T, N, *obs_shape]
    actions: Tensor  # [T, N, *action_shape]
    next_obs: Tensor  # [T, N, *obs_shape]
    ext_rewards: Tensor  # [T, N] float
    terminated: Tensor  # [T, N] bool
    truncated: Tensor  # [T, N] bool

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.ext_rewards.shape[0]), int(self.ext_rewards.shape[1])

    @classmethod
    def one_step(cls, obs: np.ndarray, actions: np.ndarray, step: Any) -> Transitions:
        """A ``T == 1`` batch from one vector step (an ``EnvStep``) taken from ``obs``."""
        return cls(
            obs=torch.from_numpy(obs).unsqueeze(0),
            actions=torch.as_tensor(actions).unsqueeze(0),
            next_obs=torch.from_numpy(step.final_obs).unsqueeze(0),
            ext_rewards=torch.from_numpy(step.reward).unsqueeze(0),
            terminated=torch.from_numpy(step.terminated).unsqueeze(0),
            truncated=torch.from_numpy(step.truncated).unsqueeze(0),
        )


@runtime_checkable
class Bonus(Protocol):
    """An intrinsic reward. See DESIGN.md for the data flow.

    Attributes:
        episodic: True when the bonus resets per episode (episodic counts, NGU memory, E3B),
            False when it is lifelong (RND).
        warmup_steps: env steps per env of a random policy the agent feeds to ``observe`` before
            training, so that observation statistics are meaningful from the first update
            (0 when the bonus needs none).
    """

    episodic: bool
    warmup_steps: int

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Check the spaces and build the models; the agent calls it once before training.

        Raises ``ValueError`` naming the reason when the bonus cannot take these spaces (an
        exact count on a float Box, say), so a mismatch fails before any env step.
        The constructor itself touches no environment: users build a bonus with its
        hyper-parameters only, e.g. ``RND(learning_rate=1e-3)``.
        """

    def observe(self, step: Transitions) -> None:
        """See one env step (``T == 1``): update counts or input statistics."""

    def compute(self, batch: Transitions) -> Tensor:
        """Raw bonus for each transition, ``[T, N]`` float, computed without gradients.

        A bonus with per-episode state (episodic counts, first-visit flags, NGU's memory) fixes
        each step's value in ``observe``; its ``compute`` then expects ``batch`` to be the last
        ``T`` observed steps, which is how every agent here calls it.
        """

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train the bonus's own models on a rollout; returns scalars for the log.

        PPO runs it on a second thread while the agent updates (``PPOConfig.bonus_thread``):
        touch only the bonus's own state, and draw random numbers from the bonus's own
        ``torch.Generator``, not torch's global one, so that runs stay reproducible."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class RunningMeanStd(nn.Module):
    """Running mean and variance over a stream of batches (parallel Welford / Chan et al.).

    The statistics are buffers: they travel with ``state_dict`` and do not move in eval mode
    (``update`` is a no-op when ``self.training`` is False).

    Example:
        >>> rms = RunningMeanStd(shape=(3,))
        >>> rms.update(torch.randn(100, 3))
        >>> rms.normalize(torch.zeros(5, 3)).shape
        torch.Size([5, 3])
    """

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        # A tiny prior count keeps the first update from dividing by zero (as in baselines).
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Fold in a batch ``x`` of shape ``[B, *shape]``."""
        if not self.training or x.shape[0] == 0:
            return
        x = x.to(torch.float64)
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        batch_count = x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        new_mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count
        m2 = m2 + delta.square() * self.count * batch_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def std(self) -> Tensor:
        return self.var.sqrt()

    def normalize(self, x: Tensor, clip: float | None = None, eps: float = 1e-8) -> Tensor:
        """``(x - mean) / std``, optionally clipped to ``[-clip, clip]``; keeps ``x``'s dtype."""
        mean = self.mean.to(x.dtype)
        std = (self.var + eps).sqrt().to(x.dtype)
        out = (x - mean) / std
        return out.clamp(-clip, clip) if clip is not None else out


class DiscountedReturnStd(nn.Module):
    """Scale of a reward stream: the running std of its discounted return, per env along time.

    RND (Burda et al. 2018) divides the intrinsic reward by this std; the mean is not
    subtracted. The return ``R_t = gamma * R_{t-1} + r_t`` runs along the time axis of each env
    separately (one reference script runs it over the env axis; that is a bug we do not copy),
    and it is never reset at episode ends because the intrinsic return is non-episodic.

    Example:
        >>> scale = DiscountedReturnStd(num_envs=4, gamma=0.99)
        >>> r = torch.rand(128, 4)            # [T, N]
        >>> scale.update(r)
        >>> (r / scale.std).shape
        torch.Size([128, 4])
    """

    returns: Tensor

    def __init__(self, num_envs: int, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("returns", torch.zeros(num_envs, dtype=torch.float64))
        self.rms = RunningMeanStd(shape=())

    @torch.no_grad()
    def update(self, rewards: Tensor) -> None:
        """Fold in a rollout of rewards ``[T, N]``."""
        if not self.training:
            return
        rewards = rewards.to(torch.float64)
        discounted = torch.empty_like(rewards)
        running = self.returns.clone()
        for t in range(rewards.shape[0]):
            running = running * self.gamma + rewards[t]
            discounted[t] = running
        self.returns.copy_(running)
        self.rms.update(discounted.reshape(-1))

    @property
    def std(self) -> float:
        return float(self.rms.var.sqrt().clamp_min(1e-8))
