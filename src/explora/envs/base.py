"""The one vectorised-environment interface every backend presents to the agents.

Auto-reset is *same-step*: when an episode ends at a step, that step already returns the first
observation of the next episode in ``obs`` and the true last observation in ``final_obs``. So
``(obs_t, action_t, final_obs_t)`` is always a real transition, and no agent ever learns from a
transition that crosses an episode boundary, whichever backend steps the environments
(EnvPool and Gymnasium >= 1.0 both reset on the step *after* the end unless told otherwise).
"""

from __future__ import annotations

import abc
import time
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np


class EnvStep(NamedTuple):
    """What ``VecEnv.step`` returns; every array has leading shape ``[N]``."""

    obs: np.ndarray  # [N, *obs_shape]: next policy input (a reset obs where an episode ended)
    reward: np.ndarray  # [N] float32
    terminated: np.ndarray  # [N] bool: the MDP reached a terminal state (no bootstrap)
    truncated: np.ndarray  # [N] bool: cut by a time limit (bootstrap from final_obs)
    final_obs: np.ndarray  # [N, *obs_shape]: true successor of the previous obs
    info: dict[str, np.ndarray]  # arrays only, e.g. "agent_pos" [N, 2], "success" [N] bool


class VecEnv(abc.ABC):
    """N copies of one environment stepped together, with same-step auto-reset.

    Attributes:
        env_id: the id ``make`` was called with.
        num_envs: N.
        single_observation_space, single_action_space: spaces of one copy.
        grid_shape: (height, width) of the grid when ``info["agent_pos"]`` holds (row, col)
            positions in it, else None.
        has_success: True when ``info["success"]`` says, at an episode end, whether the
            episode reached its goal.
    """

    env_id: str
    num_envs: int
    single_observation_space: gym.Space
    single_action_space: gym.Space
    grid_shape: tuple[int, int] | None = None
    has_success: bool = False
    _async_actions: np.ndarray

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Reset every copy; returns ``obs`` ``[N, *obs_shape]`` and an info dict of arrays."""

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> EnvStep:
        """Step every copy with ``actions`` ``[N, *action_shape]``."""

    def step_async(self, actions: np.ndarray) -> None:
        """Start ``step(actions)``; ``step_wait`` returns its result. Backends that step on
        their own threads (EnvPool) return at once, so the caller can work meanwhile; the
        default defers the whole step to ``step_wait``."""
        self._async_actions = actions

    def step_wait(self) -> EnvStep:
        """The result of the step ``step_async`` started."""
        return self.step(self._async_actions)

    def state_dict(self) -> dict[str, Any] | None:
        """Everything the copies' next steps depend on (positions, random generators), for a
        checkpoint from which a run resumes bit for bit; None when the backend cannot hand its
        state over (EnvPool's C++ envs, gymnasium's): a resumed run then starts new episodes."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what ``state_dict`` returned; afterwards ``step`` continues the episodes
        that were running, without a ``reset``."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore a saved state")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources."""

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def random_actions(space: gym.Space, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniformly random actions of ``space`` (unbounded Box sides drawn in [-1, 1])."""
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, int(space.n), size=n) + int(space.start)
    if isinstance(space, gym.spaces.Box):
        low = np.where(np.isfinite(space.low), space.low, -1.0)
        high = np.where(np.isfinite(space.high), space.high, 1.0)
        return rng.uniform(low, high, size=(n, *space.shape)).astype(space.dtype)
    raise TypeError(f"cannot sample actions of {space}")


def measure_env_fps(env: VecEnv, steps: int = 200, seed: int = 0) -> float:
    """Raw stepping rate of ``env`` in frames/s under uniformly random actions.

    Resets the env: call it before training, then reset again.
    """
    rng = np.random.default_rng(seed)
    actions = [random_actions(env.single_action_space, env.num_envs, rng) for _ in range(steps)]
    env.reset(seed=seed)
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t])
    elapsed = time.perf_counter() - start
    return steps * env.num_envs / max(elapsed, 1e-9)
