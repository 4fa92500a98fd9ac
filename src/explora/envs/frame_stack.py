"""``FrameStack``: the policy sees the last ``k`` observations of an image env, newest last.

A memoryless policy on a partially observed grid cannot tell where it came from: in MiniGrid's
MultiRoom the 7x7 egocentric view seldom shows the door it entered by. Stacking a few views is the
cheapest memory (Mnih et al. 2015 stack 4 Atari frames for motion; EnvPool's Atari envs stack
them already); a recurrent policy is the other way, which RIDE, NovelD and E3B use.

Observations ``[H, W, C]`` become ``[H, W, k * C]``: channels ``[i * C, (i + 1) * C)`` hold the
view ``k - 1 - i`` steps back, so the newest view is the last ``C`` channels, as in EnvPool's
Atari stacks. At an episode's first step the stack holds that first view ``k`` times (Gymnasium's
``FrameStackObservation`` with ``padding_type="reset"``; zeros would be MiniGrid's "unseen" code,
also a valid view). ``final_obs`` stacks the ended episode's last views, ``obs`` the next
episode's first, per env: no stack mixes two episodes.

Bonuses see the newest view alone (``explora.bonuses.view.NewestFrame``), so counts and models
key on what the agent sees now, not on its history.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from explora.envs.base import EnvStep, VecEnv

__all__ = ["FrameStack"]


class FrameStack(VecEnv):
    """``env`` with its last ``k`` image observations stacked on the channel axis.

    Args:
        env: a ``VecEnv`` whose observation is an ``[H, W, C]`` Box.
        k: views per stack (1 leaves observations as they are, in a new array).

    Example:
        >>> from explora.envs import make
        >>> env = FrameStack(make("MiniGrid-Empty-5x5-v0", num_envs=2), k=3)
        >>> env.reset(seed=0)[0].shape
        (2, 7, 7, 9)
    """

    def __init__(self, env: VecEnv, k: int) -> None:
        space = env.single_observation_space
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"frame_stack must be an integer >= 1, got {k!r}")
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3:
            raise ValueError(
                f"frame_stack needs [H, W, C] image observations, got {space} from {env.env_id}"
            )
        self.env = env
        self.k = k
        self.channels = int(space.shape[2])
        self.env_id = env.env_id
        self.num_envs = env.num_envs
        self.single_observation_space = gym.spaces.Box(
            np.tile(space.low, (1, 1, k)), np.tile(space.high, (1, 1, k)), dtype=space.dtype
        )
        self.single_action_space = env.single_action_space
        self.grid_shape = env.grid_shape
        self.has_success = env.has_success
        self._stack = np.zeros((self.num_envs, *self.single_observation_space.shape), space.dtype)

    def _fill(self, obs: np.ndarray, envs: np.ndarray) -> None:
        self._stack[envs] = np.tile(obs, (1, 1, 1, self.k))

    def _push(self, obs: np.ndarray) -> np.ndarray:
        """The stacks after ``obs`` ``[N, H, W, C]`` arrives, as a new array."""
        return np.concatenate([self._stack[..., self.channels :], obs], axis=-1)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        obs, info = self.env.reset(seed=seed)
        self._stack = np.tile(obs, (1, 1, 1, self.k))
        return self._stack, info

    def step(self, actions: np.ndarray) -> EnvStep:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        self.env.step_async(actions)

    def step_wait(self) -> EnvStep:
        step = self.env.step_wait()
        final = self._push(step.final_obs)
        ended = np.flatnonzero(step.terminated | step.truncated)
        # Each step makes new arrays and never writes into one it has returned.
        if len(ended) == 0:
            self._stack = final
            return step._replace(obs=final, final_obs=final)
        self._stack = self._push(step.obs)  # the live envs' stacks; the ended ones refilled
        self._fill(step.obs[ended], ended)
        return step._replace(obs=self._stack, final_obs=final)

    def state_dict(self) -> dict[str, Any] | None:
        base = self.env.state_dict()
        if base is None:
            return None
        return {"env": base, "stack": self._stack.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.load_state_dict(state["env"])
        self._stack = np.array(state["stack"])

    def close(self) -> None:
        self.env.close()
