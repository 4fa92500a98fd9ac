"""MiniGrid and BabyAI on EnvPool's C++ implementation, or on the Python ``minigrid`` package.

Both backends give the same observation: the agent's egocentric 7x7x3 uint8 image
(object index, colour, state per cell), as ``[N, 7, 7, 3]``. The agent's absolute ``direction``
(0-3) and position ``agent_pos`` (row, col) come in ``info``; the mission string is dropped
(the single-task ids used here have one mission each). With ``dict_obs=True`` the observation is
MiniGrid's Dict instead: ``image``, ``direction`` (Discrete(4)) and ``mission`` (the mission's
ASCII bytes, zero-padded to 96, as EnvPool encodes it), which ``explora.envs.make`` flattens
(``explora.envs.dict_obs``) so that PPO encodes each part and a bonus reads one of them.

Success: MiniGrid pays ``1 - 0.9 * steps / max_steps`` on reaching the goal and 0 otherwise, so
an episode succeeded when its final reward is positive.

EnvPool resets an env on the step *after* its last one: that step ignores the action and returns
the first observation of the new episode with reward 0. We reset such envs at once instead, by
stepping only them (EnvPool accepts a subset of env ids), so this module hands out same-step
auto-reset like every other backend (see ``explora.envs.base``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from explora.envs.base import EnvStep, VecEnv

IMAGE_SPACE = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
MISSION_BYTES = 96  # EnvPool's mission encoding: ASCII codes, zero-padded
DICT_SPACE = gym.spaces.Dict(
    {
        "image": IMAGE_SPACE,
        "direction": gym.spaces.Discrete(4),
        "mission": gym.spaces.Box(0, 255, (MISSION_BYTES,), np.uint8),
    }
)


def _grid_shape(env_id: str) -> tuple[int, int] | None:
    """(height, width) of the grid, read from a Python minigrid instance (cheap, no stepping)."""
    try:
        import minigrid  # noqa: F401  - registers the ids

        env = gym.make(env_id)
        unwrapped: Any = env.unwrapped
        shape = (int(unwrapped.height), int(unwrapped.width))
        env.close()
        return shape
    except Exception:  # the grid size is a nicety for heatmaps, never a reason to fail
        return None


class EnvPoolMiniGrid(VecEnv):
    """MiniGrid/BabyAI via ``envpool.make(..., env_type="gymnasium")``."""

    has_success = True

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int = 0,
        num_threads: int = 0,
        dict_obs: bool = False,
        **envpool_kwargs: Any,
    ) -> None:
        """``envpool_kwargs`` go to ``envpool.make`` (e.g. ``max_episode_steps``)."""
        self._envpool_kwargs = envpool_kwargs
        self.env_id = env_id
        self.num_envs = num_envs
        self._seed = seed
        self._num_threads = num_threads
        self._dict = dict_obs
        self._env = self._make(seed)
        self.single_observation_space = DICT_SPACE if dict_obs else IMAGE_SPACE
        self.single_action_space = gym.spaces.Discrete(int(self._env.action_space.n))
        self.grid_shape = _grid_shape(env_id)
        self._all_ids = np.arange(num_envs, dtype=np.int32)

    def _make(self, seed: int) -> Any:
        import envpool

        return envpool.make(
            self.env_id,
            env_type="gymnasium",
            num_envs=self.num_envs,
            seed=seed,
            num_threads=self._num_threads,
            **self._envpool_kwargs,
        )

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if seed is not None and seed != self._seed:
            # EnvPool seeds at construction only.
            self._env.close()
            self._seed = seed
            self._env = self._make(seed)
        obs, info = self._env.reset()
        return self._pick(obs), self._info(info)

    def _pick(self, obs: dict[str, Any]) -> Any:
        """The image, or with ``dict_obs`` the three parts (copies: EnvPool reuses buffers)."""
        if not self._dict:
            return obs["image"]
        return {
            "image": np.array(obs["image"]),
            "direction": np.asarray(obs["direction"]).astype(np.int64),
            "mission": np.asarray(obs["mission"]).astype(np.uint8),
        }

    @staticmethod
    def _info(info: dict[str, Any]) -> dict[str, np.ndarray]:
        # EnvPool reports (x, y) = (col, row); heatmaps and counts use (row, col).
        pos = np.asarray(info["agent_pos"])[:, ::-1].astype(np.int64)
        return {"agent_pos": pos}

    def step(self, actions: np.ndarray) -> EnvStep:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        self._env.send(np.asarray(actions, dtype=np.int32), self._all_ids)

    def step_wait(self) -> EnvStep:
        obs, reward, terminated, truncated, info = self._env.recv()
        image = self._pick(obs)
        out_info = self._info(info)
        out_info["direction"] = np.asarray(obs["direction"])
        reward = np.asarray(reward, dtype=np.float32)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool) & ~terminated
        ended = terminated | truncated
        out_info["success"] = ended & (reward > 0)
        final_obs = image
        if ended.any():
            ids = np.flatnonzero(ended).astype(np.int32)
            # This call is EnvPool's auto-reset step for exactly the ended envs: the action is
            # ignored, the others do not move.
            reset_obs, _, _, _, reset_info = self._env.step(np.zeros(len(ids), np.int32), ids)
            order = np.asarray(reset_info["env_id"])
            if self._dict:
                image = {key: value.copy() for key, value in image.items()}
                for key, value in self._pick(reset_obs).items():
                    image[key][order] = value
            else:
                image = image.copy()
                image[order] = reset_obs["image"]
        return EnvStep(image, reward, terminated, truncated, final_obs, out_info)

    def close(self) -> None:
        self._env.close()


class _MiniGridImage(gym.ObservationWrapper):
    """One Python MiniGrid env whose observation is the image alone; position goes to info."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = IMAGE_SPACE
        from explora.envs.fast_view import install_fast_view

        install_fast_view(env)  # the same observations, ~8x cheaper (explora.envs.fast_view)

    def observation(self, observation: dict[str, Any]) -> Any:
        return observation["image"]

    def _with_pos(self, info: dict[str, Any]) -> dict[str, Any]:
        unwrapped: Any = self.env.unwrapped
        col, row = unwrapped.agent_pos
        info = dict(info)
        info["agent_pos"] = np.array([row, col], dtype=np.int64)
        info["direction"] = int(unwrapped.agent_dir)
        return info

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(**kwargs)
        return obs, self._with_pos(info)

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, self._with_pos(info)


class _MiniGridDict(_MiniGridImage):
    """As ``_MiniGridImage``, with MiniGrid's Dict observation in EnvPool's encoding."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = DICT_SPACE

    def observation(self, observation: dict[str, Any]) -> Any:
        mission = np.zeros(MISSION_BYTES, dtype=np.uint8)
        text = str(observation["mission"]).encode("ascii", "replace")[:MISSION_BYTES]
        mission[: len(text)] = np.frombuffer(text, dtype=np.uint8)
        return {
            "image": observation["image"],
            "direction": int(observation["direction"]),
            "mission": mission,
        }


def make_gymnasium_minigrid(
    env_id: str, num_envs: int, seed: int = 0, dict_obs: bool = False, **make_kwargs: Any
) -> VecEnv:
    """The Python ``minigrid`` implementation behind the same interface as EnvPool's."""
    import minigrid  # noqa: F401  - registers the ids

    from explora.envs.gym import GymnasiumVecEnv

    env = GymnasiumVecEnv(
        env_id,
        num_envs,
        seed=seed,
        wrappers=[_MiniGridDict if dict_obs else _MiniGridImage],
        success_from_reward=True,
        **make_kwargs,
    )
    env.grid_shape = _grid_shape(env_id)
    return env
