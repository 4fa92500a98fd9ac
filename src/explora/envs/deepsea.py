"""bsuite's DeepSea, vectorised natively in numpy.

DeepSea is the "deep exploration" chain of Osband et al.: introduced in *Randomized Prior
Functions for Deep Reinforcement Learning* (Osband, Aslanides & Cassirer, NeurIPS 2018,
arXiv:1806.03335; also *Deep Exploration via Randomized Value Functions*, arXiv:1703.07608) and
made a standard benchmark by *Behaviour Suite for Reinforcement Learning* (Osband et al., 2019,
arXiv:1908.03568). This module re-implements ``bsuite.environments.deep_sea.DeepSea`` (bsuite
0.3.6) transition for transition; the unit tests step both side by side.

Semantics (all from bsuite's source):

* An N x N grid; the agent starts at (row 0, col 0) and every step moves one row down, so every
  episode lasts exactly N steps and ends with ``terminated`` (never ``truncated``).
* Each cell maps the actions {0, 1} to {left, right} at random: "right" when
  ``action == mapping[row, col]`` with ``mapping = RandomState(mapping_seed).binomial(1, 0.5,
  [N, N])``. The mapping is part of the MDP, so all copies share it. bsuite's constructor
  defaults to ``mapping_seed=None`` (a fresh random mapping per instance), but its sweep
  (``bsuite/experiments/deep_sea/sweep.py``, i.e. ``bsuite.load_from_id("deep_sea/k")``) uses
  ``mapping_seed=42``; we default to 42 so ``DeepSea-N`` is one fixed, reproducible MDP equal to
  bsuite's scored one. ``mapping_seed=None`` keeps bsuite's unseeded behaviour.
* Trying to move right costs ``0.01 / N`` (bsuite's ``unscaled_move_cost / size``), charged on
  the attempt, even where the move fails or is clipped at the right wall. Left is free.
* +1 is paid when the agent, already in the last column, chooses right. The column never exceeds
  the row, so this can only happen on the last step (row N-1); that step pays ``1 - 0.01 / N``
  and the always-right episode returns ``1 - 0.01 = 0.99``.
* Columns are clipped to [0, N-1].
* After the last step the row is N: the one-hot observation is all zeros (bsuite's "null"
  observation) and coords read (N, col).
* Stochastic ("windy", ``deterministic=False``): a right move fails (the agent stays in its
  column) with probability 1/N, and a N(0, 1) noise is added to the reward of any step taken
  from the two bottom corners (row N-1, col 0 or N-1). Our noise comes from a per-instance numpy
  ``Generator`` seeded by ``reset(seed)``, so it matches bsuite in distribution, not draw by draw.
* A *bad episode* (bsuite's ``total_bad_episodes``, which its analysis scores) is one in which the
  agent chose left while on the diagonal (row == col), i.e. left the only path to the treasure
  by its own choice. In the windy variant a failed right also leaves the diagonal, and later lefts
  do not count: such an episode is not bad.

Every episode lasts N steps and all copies reset together, so the row is one shared scalar and
all copies end on the same step; only the columns differ between copies.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from explora.envs.base import EnvStep, VecEnv

__all__ = [
    "BSUITE_MAPPING_SEED",
    "BSUITE_NUM_EPISODES",
    "OBS_TYPES",
    "DeepSea",
    "bsuite_deep_sea_solved_at",
]

# The mapping seed of every setting in bsuite's deep_sea sweep.
BSUITE_MAPPING_SEED = 42
# Episodes bsuite runs (and scores) per deep_sea setting.
BSUITE_NUM_EPISODES = 10_000
# bsuite's default: the always-right episode pays 1 - 0.01.
UNSCALED_MOVE_COST = 0.01
OBS_TYPES = ("onehot", "coords")


class DeepSea(VecEnv):
    """``num_envs`` copies of bsuite's DeepSea of side ``size``, with same-step auto-reset.

    Args:
        size: N, the side of the grid and the length of every episode.
        num_envs: copies stepped together.
        obs_type: ``"onehot"``: uint8 ``[N_envs, size, size]`` with a single 1 at the agent (uint8
            so count-based bonuses can hash it exactly; all zeros after the last step, as in
            bsuite); ``"coords"``: int64 ``[N_envs, 2]`` (row, col), row == size after the last
            step.
        mapping_seed: seeds the shared per-cell action mapping the way bsuite does; 42 is the
            bsuite sweep's value, None a fresh random mapping.
        deterministic: False for bsuite's windy variant.
        seed: seeds the windy variant's randomness until ``reset(seed=...)`` reseeds it.

    ``step`` returns in ``info`` (arrays with leading ``[num_envs]``):
        agent_pos: int64 ``[N, 2]`` (row, col) where the agent is *before* any auto-reset, i.e.
            the position ``final_obs`` shows; at an episode end its row is ``size``, one past
            the grid.
        success: bool, True at an episode end that collected the +1.
        bad_episode: bool, True at an episode end when the agent chose left on the diagonal
            during that episode (bsuite's bad episode); False on every other step, so summing
            it over steps counts bad episodes.
        episode_return, episode_length: the running totals, including this step; at an
            episode end, those of the episode that ended.
    """

    has_success = True

    def __init__(
        self,
        size: int,
        num_envs: int,
        *,
        obs_type: str = "onehot",
        mapping_seed: int | None = BSUITE_MAPPING_SEED,
        deterministic: bool = True,
        seed: int = 0,
    ) -> None:
        if int(size) != size or size < 1:
            raise ValueError(f"DeepSea size must be an integer >= 1, got {size!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if obs_type not in OBS_TYPES:
            raise ValueError(
                f"unknown obs_type {obs_type!r}; choose one of: {', '.join(OBS_TYPES)}"
            )
        size = int(size)
        self.size = size
        self.num_envs = num_envs
        self.env_id = f"DeepSea-{size}"
        self.grid_shape = (size, size)
        self.obs_type = obs_type
        self.deterministic = deterministic
        self.mapping_seed = mapping_seed
        # Same generator, same call as bsuite, so the same seed gives the same MDP.
        mapping = np.random.RandomState(mapping_seed).binomial(1, 0.5, [size, size])
        self.action_mapping: np.ndarray = mapping.astype(np.int64)
        self.action_mapping.flags.writeable = False
        self.move_cost = UNSCALED_MOVE_COST / size
        # bsuite's definition (``DeepSea._optimal_return``); in the windy variant it is the return
        # of always-right, slightly below that of the true optimum, which stops paying for right
        # once the treasure is out of reach.
        no_cost = 1.0 if deterministic else (1.0 - 1.0 / size) ** (size - 1)
        self.optimal_return = no_cost - UNSCALED_MOVE_COST

        self.single_action_space = gym.spaces.Discrete(2)
        if obs_type == "onehot":
            self.single_observation_space = gym.spaces.Box(0, 1, (size, size), np.uint8)
        else:
            self.single_observation_space = gym.spaces.Box(0, size, (2,), np.int64)

        self._rng = np.random.default_rng(seed)
        self._env_index = np.arange(num_envs)
        self._neg_move_cost = np.float32(-self.move_cost)
        self._row = 0
        self._col = np.zeros(num_envs, dtype=np.int64)
        self._bad = np.zeros(num_envs, dtype=bool)
        self._return = np.zeros(num_envs, dtype=np.float32)
        self._needs_reset = True

    def _observe(self, row: int, col: np.ndarray) -> np.ndarray:
        if self.obs_type == "onehot":
            obs = np.zeros((self.num_envs, self.size, self.size), dtype=np.uint8)
            if row < self.size:  # past the last row bsuite shows an all-zero grid
                obs[self._env_index, row, col] = 1
            return obs
        obs = np.empty((self.num_envs, 2), dtype=np.int64)
        obs[:, 0] = row
        obs[:, 1] = col
        return obs

    def _positions(self, row: int, col: np.ndarray) -> np.ndarray:
        pos = np.empty((self.num_envs, 2), dtype=np.int64)
        pos[:, 0] = row
        pos[:, 1] = col
        return pos

    def _start_episodes(self) -> None:
        self._row = 0
        self._col = np.zeros(self.num_envs, dtype=np.int64)
        self._bad = np.zeros(self.num_envs, dtype=bool)
        self._return = np.zeros(self.num_envs, dtype=np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "num_envs": self.num_envs,
            "row": self._row,
            "col": self._col.copy(),
            "bad": self._bad.copy(),
            "return": self._return.copy(),
            "needs_reset": self._needs_reset,
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["size"], state["num_envs"]) != (self.size, self.num_envs):
            raise ValueError(
                f"saved DeepSea state is for size {state['size']} x {state['num_envs']} copies, "
                f"not {self.size} x {self.num_envs}"
            )
        self._row = int(state["row"])
        self._col = np.array(state["col"], dtype=np.int64)
        self._bad = np.array(state["bad"], dtype=bool)
        self._return = np.array(state["return"], dtype=np.float32)
        self._needs_reset = bool(state["needs_reset"])
        self._rng.bit_generator.state = state["rng"]

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._start_episodes()
        self._needs_reset = False
        return self._observe(0, self._col), {"agent_pos": self._positions(0, self._col)}

    def step(self, actions: np.ndarray) -> EnvStep:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"expected actions of shape ({self.num_envs},), got {actions.shape}")
        # bsuite would read any action other than the cell's "right" as left; here an action
        # outside {0, 1} is a caller's bug, worth the microsecond this check costs.
        if actions.min() < 0 or actions.max() > 1:
            raise ValueError(f"DeepSea actions must be 0 or 1, got {np.unique(actions)}")
        size, row, col = self.size, self._row, self._col

        go_right = actions == self.action_mapping[row, col]
        # The column never exceeds the row, so this can only fire on the last step.
        treasure = go_right & (col == size - 1)
        reward = go_right * self._neg_move_cost
        reward += treasure
        if self.deterministic:
            moved_right = go_right
        else:
            if row == size - 1:
                noisy = (col == 0) | (col == size - 1)
                reward[noisy] += self._rng.standard_normal(int(noisy.sum()), dtype=np.float32)
            # bsuite: the move succeeds when uniform() > 1/N (strictly).
            moved_right = go_right & (self._rng.random(self.num_envs) > 1.0 / size)
        went_left = ~go_right
        self._bad |= went_left & (col == row)
        # +1, -1 or 0 (a failed right); clipping matters at both walls.
        new_col = col + moved_right - went_left
        np.clip(new_col, 0, size - 1, out=new_col)
        new_row = row + 1
        self._return += reward

        info: dict[str, np.ndarray] = {"agent_pos": self._positions(new_row, new_col)}
        final_obs = self._observe(new_row, new_col)
        if new_row < size:
            self._row, self._col = new_row, new_col
            obs = final_obs
            ended = False
            info["success"] = np.zeros(self.num_envs, dtype=bool)
            info["bad_episode"] = np.zeros(self.num_envs, dtype=bool)
            info["episode_return"] = self._return.copy()
        else:
            ended = True
            info["success"] = treasure
            info["bad_episode"] = self._bad
            info["episode_return"] = self._return
            self._start_episodes()  # fresh arrays, so the info above stays valid
            obs = self._observe(0, self._col)
        info["episode_length"] = np.full(self.num_envs, new_row, dtype=np.int64)
        terminated = np.full(self.num_envs, ended, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        return EnvStep(obs, reward, terminated, truncated, final_obs, info)


def bsuite_deep_sea_solved_at(
    bad_episode_flags: np.ndarray,
    threshold: float = 0.9,
    *,
    num_episodes: int | None = BSUITE_NUM_EPISODES,
) -> int | None:
    """First episode at which DeepSea counts as solved, as bsuite's analysis defines it.

    Mirrors ``bsuite.experiments.deep_sea.analysis.find_solution``: the solution episode is the
    first (1-based) episode ``k`` with ``total_bad_episodes_k / k < threshold``, among episodes
    ``k <= num_episodes`` (bsuite scores its first 10,000; None uses all of them). bsuite's score
    then counts a size N as solved when that episode is below ``2**N + 100``.

    Args:
        bad_episode_flags: ``[num_episodes]`` bool, ``info["bad_episode"]`` of each ended episode
            in the order they ended (with several copies: step by step, then copy by copy).
        threshold: the average-bad-episode level to fall below (bsuite: 0.9).
        num_episodes: ignore episodes after this many.

    Returns:
        The 1-based episode number, or None if the average never falls below ``threshold``.

    bsuite's logger records ``total_bad_episodes`` only at log-spaced episodes (1-10, 12, 14, 17,
    20, 25, ...) unless ``log_every=True``; this function sees every episode, so it matches
    bsuite run with ``log_every=True`` and can report an earlier episode than bsuite's default
    logs would.
    """
    flags = np.asarray(bad_episode_flags, dtype=bool).reshape(-1)
    if num_episodes is not None:
        flags = flags[:num_episodes]
    episodes = np.arange(1, flags.size + 1)
    below = np.cumsum(flags) / episodes < threshold
    if not below.any():
        return None
    return int(np.argmax(below)) + 1
