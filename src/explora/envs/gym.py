"""Any ``gymnasium.make``-able id, stepped by Gymnasium's synchronous vector env.

``module:EnvId`` ids reach this module as ``EnvId`` with ``module`` already imported
(``explora.envs.make``), so the env's registration has run.

Gymnasium >= 1.0 resets on the step after an episode's end by default; we ask for same-step
auto-reset and read the true last observation from ``info["final_obs"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from explora.envs.base import EnvStep, VecEnv


class GymnasiumVecEnv(VecEnv):
    """``num_envs`` copies of ``gymnasium.make(env_id)`` in one process.

    Args:
        wrappers: applied to each copy, innermost first.
        success_from_reward: success at an episode end means the last reward was positive
            (MiniGrid's convention).
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int = 0,
        wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
        success_from_reward: bool = False,
        **make_kwargs: Any,
    ) -> None:
        def make_one() -> gym.Env:
            env = gym.make(env_id, **make_kwargs)
            for wrapper in wrappers:
                env = wrapper(env)
            return env

        self.env_id = env_id
        self.num_envs = num_envs
        self._seed = seed
        try:
            self._vec = SyncVectorEnv(
                [make_one for _ in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP
            )
        except gym.error.Error as err:
            # gymnasium's own "cannot make this id" errors (a dependency not installed, a
            # deprecated version, bad make arguments) are the user's to fix: one line, no trace.
            raise ValueError(f"cannot build env {env_id!r}: {err}") from err
        self.single_observation_space = self._vec.single_observation_space
        self.single_action_space = self._vec.single_action_space
        self.has_success = success_from_reward
        self._first_reset = True

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        seed = self._seed if seed is None and self._first_reset else seed
        self._first_reset = False
        obs, info = self._vec.reset(seed=seed)
        return self._obs(obs), self._arrays(info)

    @staticmethod
    def _obs(obs: Any) -> Any:
        """A batch of observations as an array, or a dict of arrays for Dict spaces (which
        ``make`` flattens with ``explora.envs.dict_obs.FlattenDict``)."""
        if isinstance(obs, dict):
            return {key: np.asarray(value) for key, value in obs.items()}
        return np.asarray(obs)

    @staticmethod
    def _arrays(info: dict[str, Any]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key in ("agent_pos", "direction"):
            if key in info:
                out[key] = np.asarray(info[key])
        return out

    def step(self, actions: np.ndarray) -> EnvStep:
        obs, reward, terminated, truncated, info = self._vec.step(actions)
        obs = self._obs(obs)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool) & ~terminated
        ended = terminated | truncated
        reward = np.asarray(reward, dtype=np.float32)
        out_info = self._arrays(info)
        final_obs = obs
        if ended.any():
            if isinstance(obs, dict):
                final_obs = {key: value.copy() for key, value in obs.items()}
                for i in np.flatnonzero(ended):
                    for key in final_obs:
                        final_obs[key][i] = info["final_obs"][i][key]
            else:
                final_obs = obs.copy()
                for i in np.flatnonzero(ended):
                    final_obs[i] = info["final_obs"][i]
            # agent_pos in info is already the reset position; report where the episode ended.
            if "agent_pos" in out_info:
                out_info["agent_pos"] = out_info["agent_pos"].copy()
                for i in np.flatnonzero(ended):
                    out_info["agent_pos"][i] = info["final_info"]["agent_pos"][i]
        if self.has_success:
            out_info["success"] = ended & (reward > 0)
        return EnvStep(obs, reward, terminated, truncated, final_obs, out_info)

    def close(self) -> None:
        self._vec.close()
