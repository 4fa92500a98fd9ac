"""Exact visit counts on hashable observations: the tabular count bonus.

Bonus (MBIE-EB form, Strehl & Littman 2008, "An analysis of model-based interval estimation
for Markov decision processes", JCSS 74(8)):

    r(s') = beta / sqrt(N(s'))

where ``N(s')`` counts the visits to the state reached, *including* the current one: ``observe``
runs before ``compute`` on a rollout, so ``N >= 1`` for every state the rollout reached. A state
never observed (``compute`` before ``observe``) is treated as ``N = 1`` and gets ``beta``.

Counts are lifelong (``episodic = False``) and keyed on the raw bytes of each observation, so
they are exact: two observations share a count only when they are identical element for element.
That only makes sense for discrete observations (DeepSea's one-hot grid, grid coordinates,
MiniGrid's symbolic image); a float ``Box`` is rejected in ``setup`` -- use ``simhash``.

``key="state"`` counts the env's compact state key instead (``Transitions.state_keys``: a grid's
agent cell and direction, DeepSea's cell; an error where the env offers none), as NovelD and RIDE
key their episodic counts. It is the count that a noisy TV cannot inflate (a new colour on
screen is a new observation but the same cell), measured on MultiRoom-N4-S5-NoisyTV in the
README; on a procedurally generated task it pools every layout's visits of a cell, so it is a
count of where the agent stands, not of what it has seen.

Defaults:
    beta = 1.0. MBIE-EB's beta is a confidence-interval width from the theory
    (``beta = (1 / (1 - gamma)) * sqrt(ln(2|S||A|m / delta) / 2)``), not a tuned constant; here
    the agent weighs the bonus with ``int_coef`` and divides it by the running std of its
    discounted return, so beta only sets the raw scale and 1 keeps ``r = N^(-1/2)`` readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from explora.bonuses.base import Transitions

_KEYS = ("observation", "state")
_Keys = Sequence[bytes | int]
_DISCRETE_SPACES = (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def _unique_rows(obs: Tensor) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Distinct rows of ``obs`` ``[T, N, *obs_shape]`` as byte keys.

    Returns ``(keys, inverse, counts)``: ``keys[inverse[i]]`` is row ``i`` of the ``T * N``
    flattened rows and ``counts[j]`` how often ``keys[j]`` occurs. Hashing is vectorised: each row
    is viewed as one opaque ``np.void`` scalar and ``np.unique`` sorts them, so Python only loops
    over the distinct rows.
    """
    rows = np.ascontiguousarray(obs.detach().cpu().numpy())
    rows = rows.reshape(int(obs.shape[0]) * int(obs.shape[1]), -1)
    row_type = np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))
    uniq, inverse, counts = np.unique(
        rows.view(row_type).ravel(), return_inverse=True, return_counts=True
    )
    return [u.tobytes() for u in uniq], inverse.ravel(), counts


class Count:
    """Exact lifelong counts of ``next_obs``; ``r = beta / sqrt(N(s'))``.

    Args:
        beta: bonus scale (see the module docstring for the default).
        key: what is counted: "observation" (the raw bytes of ``next_obs``, the default) or
            "state" (``Transitions.state_keys``, the env's compact state key).

    In eval mode (``eval()``) ``observe`` leaves the counts alone, as the statistics of the
    other bonuses stay frozen in eval mode.

    Example:
        >>> import gymnasium as gym
        >>> count = Count(beta=1.0)
        >>> count.setup(gym.spaces.Discrete(5), gym.spaces.Discrete(2), num_envs=2)
        >>> step = Transitions(obs=torch.zeros(1, 2, dtype=torch.int64),
        ...     actions=torch.zeros(1, 2, dtype=torch.int64),
        ...     next_obs=torch.tensor([[3, 3]]), ext_rewards=torch.zeros(1, 2),
        ...     terminated=torch.zeros(1, 2, dtype=torch.bool),
        ...     truncated=torch.zeros(1, 2, dtype=torch.bool))
        >>> count.observe(step)
        >>> count.compute(step)  # state 3 seen twice: 1 / sqrt(2)
        tensor([[0.7071, 0.7071]])
    """

    def __init__(self, *, beta: float = 1.0, key: str = "observation") -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if key not in _KEYS:
            raise ValueError(f"unknown key {key!r}; choose one of: {', '.join(_KEYS)}")
        self.beta = beta
        self.key = key
        self.episodic = False
        self.warmup_steps = 0
        self.training = True
        self._counts: dict[bytes | int, int] = {}

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Accept Discrete, MultiDiscrete, MultiBinary, or a Box with an integer/bool dtype;
        with ``key="state"`` any observations (they are not what is counted)."""
        space = observation_space
        if self.key == "state" or isinstance(space, _DISCRETE_SPACES):
            return
        if isinstance(space, gym.spaces.Box):
            dtype = np.dtype(space.dtype)
            if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
                return
            raise ValueError(
                f"count needs observations it can count exactly, but got {space} with dtype "
                f"{dtype}: continuous states almost never repeat bit for bit, so every count "
                "would stay at 1 and the bonus would carry no information. Use 'simhash' "
                "(counts of SimHash codes, which groups nearby float observations) instead."
            )
        raise ValueError(
            f"count cannot hash observations from {type(space).__name__}; accepted spaces: "
            "Discrete, MultiDiscrete, MultiBinary, Box with an integer or bool dtype"
        )

    def train(self, mode: bool = True) -> Count:
        self.training = mode
        return self

    def eval(self) -> Count:
        return self.train(False)

    @property
    def num_unique(self) -> int:
        """Number of distinct observations counted so far."""
        return len(self._counts)

    def _distinct(self, step: Transitions) -> tuple[_Keys, np.ndarray, np.ndarray]:
        """The distinct keys of ``step.next_obs`` ``[T, N, ...]`` (``_unique_rows``' triple)."""
        if self.key == "observation":
            return _unique_rows(step.next_obs)
        if step.state_keys is None:
            raise ValueError(
                "count with key='state' got a step without Transitions.state_keys: this env "
                "offers no state key; use key='observation'"
            )
        uniq, inverse, counts = np.unique(
            step.state_keys.cpu().numpy().ravel(), return_inverse=True, return_counts=True
        )
        return uniq.tolist(), inverse.ravel(), counts

    def observe(self, step: Transitions) -> None:
        """Count the key of each of ``step.next_obs`` ``[1, N, *obs_shape]`` once."""
        if not self.training:
            return
        keys, _, counts = self._distinct(step)
        table = self._counts
        for key, n in zip(keys, counts.tolist(), strict=True):
            table[key] = table.get(key, 0) + n

    def counts(self, obs: Tensor) -> Tensor:
        """Current counts of ``obs`` ``[T, N, *obs_shape]``, as int64 ``[T, N]`` (counts keyed on
        the observation only: an observation does not tell its state key)."""
        if self.key != "observation":
            raise ValueError(
                "counts(obs) reads counts keyed on observations; this count has key='state'"
            )
        keys, inverse, _ = _unique_rows(obs)
        return self._lookup(keys, inverse).reshape(obs.shape[0], obs.shape[1])

    def _lookup(self, keys: _Keys, inverse: np.ndarray) -> Tensor:
        found = np.fromiter((self._counts.get(k, 0) for k in keys), dtype=np.int64, count=len(keys))
        return torch.from_numpy(found[inverse])

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``beta / sqrt(max(N(next_obs), 1))``, float32 ``[T, N]``."""
        keys, inverse, _ = self._distinct(batch)
        n = self._lookup(keys, inverse).reshape(batch.next_obs.shape[:2])
        n = n.clamp_min(1).to(torch.float32)
        return (self.beta * n.rsqrt()).to(batch.next_obs.device)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Nothing to train; logs the number of distinct states seen."""
        return {"bonus/unique_states": float(self.num_unique)}

    def state_dict(self) -> dict[str, Any]:
        return {"counts": dict(self._counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._counts = dict(state["counts"])
