"""Episodic restriction of any bonus: pay it only on the first visit of a view in an episode.

NovelD (Zhang et al. 2021, "NovelD: A Simple yet Effective Exploration Criterion") multiplies
its lifelong novelty by ``1[N_e(s') = 1]``, the indicator that ``s'`` is visited for the first
time in the current episode. ``FirstVisit(bonus)`` applies that factor to any bonus:

    r(s') = bonus(s') * 1[s' not seen earlier in this episode]

Why explora has it: on procedurally generated grids a lifelong bonus stays high on rare views,
and an agent was measured to camp on them. On MiniGrid-DoorKey-8x8 with RND, actions that leave
the view unchanged (pickup, drop, toggle, done on nothing) earned 2.4x the bonus of moving, and
the agent stayed in the first room for 600k frames. Paying first visits only removes that
incentive; the MiniGrid preset (``explora.presets``) wraps RND in it.

Views are keyed by a 64-bit multiplicative hash of their raw values (two distinct views collide
with probability about 2^-56), per env, and forgotten at each episode end. The flags are fixed
in ``observe``, so ``compute`` expects its batch to be the last ``T`` observed steps (the
protocol's rule for bonuses with per-episode state).

Example:
    >>> from explora.bonuses import RND
    >>> bonus = FirstVisit(RND())
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from explora.bonuses.base import Bonus, Transitions


class FirstVisit:
    """``inner``'s bonus, zeroed where ``next_obs`` was already seen in the same episode."""

    episodic = True

    def __init__(self, inner: Bonus) -> None:
        self.inner = inner
        self.warmup_steps = inner.warmup_steps
        self._seen: list[set[int]] = []
        self._flags: list[Tensor] = []
        self._key_weights = np.ones(1, dtype=np.uint64)

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        self.inner.setup(observation_space, action_space, num_envs)
        dim = int(np.prod(observation_space.shape or (1,)))
        # Random odd multipliers: a view's key is its dot product with them, mod 2^64.
        rng = np.random.default_rng(0x5EED)
        self._key_weights = rng.integers(0, 2**63, size=dim, dtype=np.uint64) * 2 + 1
        self._seen = [set() for _ in range(num_envs)]
        self._flags = []

    def observe(self, step: Transitions) -> None:
        """Pass ``step`` on, and note which envs see ``next_obs`` for the first time this
        episode; ``[1, N, *obs_shape]``."""
        self.inner.observe(step)
        rows = step.next_obs[0].reshape(step.next_obs.shape[1], -1).cpu().numpy()
        keys = (rows.astype(np.uint64) * self._key_weights).sum(axis=1, dtype=np.uint64)
        ended = (step.terminated[0] | step.truncated[0]).cpu().numpy()
        first = np.zeros(len(rows), dtype=bool)
        for i, (key, end) in enumerate(zip(keys.tolist(), ended.tolist(), strict=True)):
            seen = self._seen[i]
            first[i] = key not in seen
            if end:
                self._seen[i] = set()  # the final obs closes its episode; nothing carries over
            else:
                seen.add(key)
        self._flags.append(torch.from_numpy(first))

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``inner``'s bonus ``[T, N]`` times the first-visit flags of the last ``T`` steps."""
        steps = batch.shape[0]
        if len(self._flags) < steps:
            raise RuntimeError(
                f"FirstVisit needs observe() on each of the batch's {steps} steps before "
                f"compute(); only {len(self._flags)} were observed"
            )
        flags = torch.stack(self._flags[-steps:])
        self._flags = []
        value = self.inner.compute(batch)
        return value * flags.to(value.device)

    def update(self, batch: Transitions) -> dict[str, float]:
        return self.inner.update(batch)

    def state_dict(self) -> dict[str, Any]:
        # The seen-sets are per episode: a resumed run starts new episodes, so they are not kept.
        return {"inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])

    def train(self, mode: bool = True) -> FirstVisit:
        if hasattr(self.inner, "train"):
            self.inner.train(mode)
        return self

    def eval(self) -> FirstVisit:
        return self.train(False)
