"""Experience replay for vectorised envs, with n-step returns that never cross an episode end.

Transitions are stored time-major, ``[capacity, N]``: slot ``t`` holds the N copies' step t,
so the steps that follow a transition of copy ``i`` are found at ``t + 1, t + 2, ...`` in column
``i``. A sampled ``(t, i)`` gets its n-step target from those steps:

    R     = sum_{k < K} gamma^k r_{t+k}          K = steps up to and including the first end
    boot  = next_obs_{t+K-1}                    (the true final observation at an end)
    disc  = gamma^K, or 0 if step t+K-1 terminated

where the window stops at the first step that ends an episode (terminated or truncated) or after
n steps. A truncated end bootstraps from its true final observation; a terminated one does not.
Only transitions whose n - 1 following steps are already stored are sampled, so every window is
complete and no window runs past the newest step into the oldest (overwritten) slots.

Example:
    >>> buf = ReplayBuffer(capacity=100, num_envs=2, obs_shape=(3,), obs_dtype=np.float32)
    >>> len(buf)
    0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass
class Batch:
    """A sampled batch; every tensor has leading size B."""

    obs: Tensor  # [B, *obs_shape]
    actions: Tensor  # [B] long
    returns: Tensor  # [B] n-step discounted extrinsic return
    int_returns: Tensor  # [B] the same sum over the stored (episodic) intrinsic rewards
    next_obs: Tensor  # [B, *obs_shape] observation to bootstrap from
    discount: Tensor  # [B] gamma^K, or 0 after a termination
    masks: Tensor | None  # [B, heads] bootstrap masks (bootstrapped DQN), else None
    window_obs: Tensor  # [n, B, *obs_shape] obs of each window step (for a bonus)
    window_actions: Tensor  # [n, B] long
    window_next_obs: Tensor  # [n, B, *obs_shape] next_obs of each window step
    window_weights: Tensor  # [n, B] gamma^k inside the window, 0 past its end
    window_terminated: Tensor  # [n, B] bool
    window_truncated: Tensor  # [n, B] bool


class ReplayBuffer:
    """A ring buffer of ``capacity`` vector steps of ``num_envs`` copies each."""

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: Any,
        num_heads: int = 0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1 vector step, got {capacity}")
        self.capacity, self.num_envs = capacity, num_envs
        shape = (capacity, num_envs)
        self.obs = np.zeros((*shape, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((*shape, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros(shape, dtype=np.int64)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.int_rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.truncated = np.zeros(shape, dtype=bool)
        self.masks = np.zeros((*shape, num_heads), dtype=np.float32) if num_heads else None
        self.pos = 0  # next slot to write
        self.steps = 0  # vector steps written so far

    def __len__(self) -> int:
        """Transitions stored (vector steps x copies)."""
        return min(self.steps, self.capacity) * self.num_envs

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        next_obs: np.ndarray,
        int_rewards: np.ndarray | None = None,
        masks: np.ndarray | None = None,
    ) -> None:
        """Store one vector step; ``next_obs`` is the true successor (``EnvStep.final_obs``)."""
        t = self.pos
        self.obs[t] = obs
        self.actions[t] = actions
        self.rewards[t] = rewards
        self.terminated[t] = terminated
        self.truncated[t] = truncated
        self.next_obs[t] = next_obs
        self.int_rewards[t] = 0.0 if int_rewards is None else int_rewards
        if self.masks is not None:
            if masks is None:
                raise ValueError("this buffer stores bootstrap masks: pass masks")
            self.masks[t] = masks
        self.pos = (t + 1) % self.capacity
        self.steps += 1

    def cut_episodes(self) -> None:
        """Mark the newest stored step of every copy whose episode is still running as
        truncated: the run resumes with fresh episodes (an env whose state a checkpoint cannot
        hold, such as EnvPool's), so no n-step window may run from the old episode into the new
        one. The stored ``next_obs`` is that step's true successor, so bootstrapping from it
        is exact, as at a time limit."""
        if self.steps == 0:
            return
        last = (self.pos - 1) % self.capacity
        self.truncated[last] |= ~self.terminated[last]

    def can_sample(self, n_step: int) -> bool:
        return min(self.steps, self.capacity) >= n_step

    def sample(self, batch_size: int, n_step: int, gamma: float, rng: np.random.Generator) -> Batch:
        """``batch_size`` uniform transitions with their n-step targets (module docstring)."""
        stored = min(self.steps, self.capacity)
        if stored < n_step:
            raise ValueError(f"need {n_step} stored vector steps to sample, have {stored}")
        # Ages n-1 .. stored-1 (age 0 = newest): their n-1 successors are all stored.
        ages = rng.integers(n_step - 1, stored, size=batch_size)
        env = rng.integers(0, self.num_envs, size=batch_size)
        return self.gather(ages, env, n_step, gamma)

    def gather(self, ages: np.ndarray, env: np.ndarray, n_step: int, gamma: float) -> Batch:
        """The transitions stored ``ages`` vector steps ago (0: the newest) in copies ``env``,
        with their n-step targets; ``ages`` must be >= n_step - 1."""
        if (ages < n_step - 1).any() or (ages >= min(self.steps, self.capacity)).any():
            raise ValueError("ages must lie in [n_step - 1, stored vector steps)")
        batch_size = len(ages)
        t0 = (self.pos - 1 - ages) % self.capacity
        steps = (t0[None, :] + np.arange(n_step)[:, None]) % self.capacity  # [n, B]
        cols = np.broadcast_to(env, steps.shape)
        term, trunc = self.terminated[steps, cols], self.truncated[steps, cols]
        ended = term | trunc
        # alive[k]: no end among window steps 0..k-1, so step k belongs to the episode.
        alive = np.ones_like(ended)
        alive[1:] = np.cumprod(~ended[:-1], axis=0).astype(bool)
        weights = alive * gamma ** np.arange(n_step, dtype=np.float64)[:, None]
        returns = (weights * self.rewards[steps, cols]).sum(0)
        int_returns = (weights * self.int_rewards[steps, cols]).sum(0)
        last = alive.sum(0) - 1  # index of the window's last step
        batch_index = np.arange(batch_size)
        last_step = steps[last, batch_index]
        discount = gamma ** (last + 1.0) * ~self.terminated[last_step, env]
        masks = None if self.masks is None else torch.from_numpy(self.masks[t0, env])
        return Batch(
            obs=torch.from_numpy(self.obs[t0, env]),
            actions=torch.from_numpy(self.actions[t0, env]),
            returns=torch.from_numpy(returns.astype(np.float32)),
            int_returns=torch.from_numpy(int_returns.astype(np.float32)),
            next_obs=torch.from_numpy(self.next_obs[last_step, env]),
            discount=torch.from_numpy(discount.astype(np.float32)),
            masks=masks,
            window_obs=torch.from_numpy(self.obs[steps, cols]),
            window_actions=torch.from_numpy(self.actions[steps, cols]),
            window_next_obs=torch.from_numpy(self.next_obs[steps, cols]),
            window_weights=torch.from_numpy(weights.astype(np.float32)),
            window_terminated=torch.from_numpy(term),
            window_truncated=torch.from_numpy(trunc),
        )

    def state_dict(self) -> dict[str, Any]:
        names = ("obs", "next_obs", "actions", "rewards", "int_rewards", "terminated")
        state: dict[str, Any] = {k: getattr(self, k) for k in (*names, "truncated")}
        state.update(masks=self.masks, pos=self.pos, steps=self.steps)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["obs"].shape != self.obs.shape:
            raise ValueError(
                f"replay shape {state['obs'].shape} does not match this buffer's {self.obs.shape}"
            )
        for key, value in state.items():
            setattr(self, key, value)
