"""Episodic restriction of any bonus: pay it only on the first visit of a view in an episode.

NovelD (Zhang et al. 2021, "NovelD: A Simple yet Effective Exploration Criterion") multiplies
its lifelong novelty by ``1[N_e(s') = 1]``, the indicator that ``s'`` is visited for the first
time in the current episode. ``FirstVisit(bonus)`` applies that factor to any bonus:

    r(s') = bonus(s') * 1[s' not seen earlier in this episode]

As in NovelD, the episode's first observation (the reset observation) counts as visited: an
agent that comes back to its starting view is not paid for it. With same-step auto-reset
(``explora.envs.base``) a step's ``next_obs`` is the true successor and the first observation
of the next episode arrives as the ``obs`` of the *following* step, so the wrapper marks as
seen the ``obs`` of the first step it observes (the run's first observation) and the ``obs`` of
the first step after each episode end. ``state_dict`` holds this per-episode state, so a run
resumed with its episodes going on (an env that can hand its state over) is bit-exact; an agent
that had to reset its envs instead calls ``start_new_episodes``.

Why explora has it: on procedurally generated grids a lifelong bonus stays high on rare views,
and an agent was measured to camp on them. On MiniGrid-DoorKey-8x8 with RND, actions that leave
the view unchanged (pickup, drop, toggle, done on nothing) earned 2.4x the bonus of moving, and
the agent stayed in the first room for 600k frames. Paying first visits only removes that
incentive; the MiniGrid preset (``explora.presets``) wraps RND in it.

Views are keyed by a 64-bit multiplicative hash of their raw bytes, whatever the dtype (so
0.3 and 0.7 are different views; -0.0 and 0.0 too): ``key = sum_j w_j * byte_j mod 2^64`` with
fixed random odd ``w_j``. Two distinct views differ in some byte by at most 255, so they collide
with probability at most 2^-56 over the draw of ``w``. Keys are kept per env and forgotten at
each episode end. The flags are fixed in ``observe``, so ``compute`` expects its batch to be the
last ``T`` observed steps (the protocol's rule for bonuses with per-episode state).

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

_KEY_SEED = 0x5EED


class FirstVisit:
    """``inner``'s bonus, zeroed where ``next_obs`` was already seen in the same episode
    (the episode's first observation included)."""

    episodic = True

    def __init__(self, inner: Bonus) -> None:
        self.inner = inner
        self.warmup_steps = inner.warmup_steps
        self._seen: list[set[int]] = []
        self._flags: list[Tensor] = []
        self._starting = np.ones(0, dtype=bool)  # [N]: the next obs begins an episode
        self._key_weights: dict[int, np.ndarray] = {}

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        self.inner.setup(observation_space, action_space, num_envs)
        self._seen = [set() for _ in range(num_envs)]
        self._flags = []
        self._starting = np.ones(num_envs, dtype=bool)

    def start_new_episodes(self, envs: np.ndarray) -> None:
        """Forget the episodes of the env copies where ``envs`` ``[N]`` bool is True: their
        next observed ``obs`` starts a new one (an agent that reset them without an episode
        end, e.g. on resuming a run whose envs could not be restored)."""
        envs = np.asarray(envs, dtype=bool)
        for i in np.flatnonzero(envs).tolist():
            self._seen[i] = set()
        self._starting = self._starting | envs

    def keys(self, views: Tensor) -> np.ndarray:
        """uint64 key of each row of ``views`` ``[N, *obs_shape]``, from its raw bytes."""
        rows = np.ascontiguousarray(views.detach().cpu().numpy()).reshape(views.shape[0], -1)
        data = rows.view(np.uint8)  # [N, bytes per view]
        width = data.shape[1]
        weights = self._key_weights.get(width)
        if weights is None:
            # Random odd multipliers, a function of the width only (nothing to save).
            rng = np.random.default_rng(_KEY_SEED)
            weights = rng.integers(0, 2**63, size=width, dtype=np.uint64) * np.uint64(2) + 1
            self._key_weights[width] = weights
        return data @ weights  # uint64 arithmetic wraps: the sum is taken mod 2^64

    def observe(self, step: Transitions) -> None:
        """Pass ``step`` on, and note which envs see ``next_obs`` for the first time this
        episode; ``[1, N, *obs_shape]``."""
        self.inner.observe(step)
        next_keys = self.keys(step.next_obs[0])
        ended = (step.terminated[0] | step.truncated[0]).cpu().numpy()
        seen = self._seen
        starting = np.flatnonzero(self._starting)
        if len(starting):
            start_keys = self.keys(step.obs[0][torch.from_numpy(starting)]).tolist()
            for i, key in zip(starting.tolist(), start_keys, strict=True):
                seen[i] = {key}  # the episode's first view counts as visited
        first = []
        for key, keys_seen in zip(next_keys.tolist(), seen, strict=True):
            first.append(key not in keys_seen)
            keys_seen.add(key)
        for i in np.flatnonzero(ended).tolist():
            seen[i] = set()  # the final obs closes its episode; nothing carries over
        self._starting = ended.copy()
        self._flags.append(torch.tensor(first, dtype=torch.bool))

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
        """The inner bonus's state and the per-episode state: each env's seen keys, whether its
        next obs starts an episode, and the flags observed but not yet used by ``compute``."""
        return {
            "inner": self.inner.state_dict(),
            "seen": [sorted(s) for s in self._seen],
            "starting": torch.from_numpy(self._starting.copy()),
            "flags": [f.clone() for f in self._flags],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        if "seen" not in state:  # a checkpoint from before the state was kept: new episodes
            self._flags = []
            self.start_new_episodes(np.ones(len(self._seen), dtype=bool))
            return
        self._seen = [set(s) for s in state["seen"]]
        self._starting = torch.as_tensor(state["starting"]).numpy().astype(bool)
        self._flags = [torch.as_tensor(f).clone() for f in state["flags"]]

    def train(self, mode: bool = True) -> FirstVisit:
        if hasattr(self.inner, "train"):
            self.inner.train(mode)
        return self

    def eval(self) -> FirstVisit:
        return self.train(False)
