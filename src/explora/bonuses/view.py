"""``ObservationView``: the shared part of wrappers that show their inner bonus a view of each
observation (one part of a Dict observation: ``ObsKey``; the newest of stacked views:
``NewestFrame``, and Atari's ``explora.envs.atari.LastFrame``). A subclass sets the inner bonus
up on the view's space and defines ``view_obs``; everything else (observe, compute, update, episode
hooks, train/eval, the inner bonus's attributes) passes through here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from torch import Tensor

from explora.bonuses.base import Bonus, Transitions


class ObservationView:
    """``inner`` driven on ``self._view(batch)`` instead of ``batch``."""

    def __init__(self, inner: Bonus) -> None:
        self.inner = inner
        self.episodic = inner.episodic
        self.warmup_steps = inner.warmup_steps

    def view_obs(self, obs: Any) -> Any:
        """What ``inner`` sees of observations ``[..., *obs_shape]``."""
        raise NotImplementedError

    def _view(self, batch: Transitions) -> Transitions:
        return dataclasses.replace(
            batch, obs=self.view_obs(batch.obs), next_obs=self.view_obs(batch.next_obs)
        )

    def observe(self, step: Transitions) -> None:
        self.inner.observe(self._view(step))

    def compute(self, batch: Transitions) -> Tensor:
        return self.inner.compute(self._view(batch))

    def update(self, batch: Transitions) -> dict[str, float]:
        return self.inner.update(self._view(batch))

    def start_new_episodes(self, envs: np.ndarray) -> None:
        hook = getattr(self.inner, "start_new_episodes", None)
        if hook is not None:
            hook(envs)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> Any:
        return self.inner.load_state_dict(state)

    def train(self, mode: bool = True) -> ObservationView:
        if hasattr(self.inner, "train"):
            self.inner.train(mode)
        return self

    def eval(self) -> ObservationView:
        return self.train(False)

    def __getattr__(self, name: str) -> Any:  # num_unique, count_key, ... of the inner bonus
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class NewestFrame(ObservationView):
    """``inner`` seeing only the newest of stacked views: ``obs`` and ``next_obs``
    ``[T, N, H, W, k * channels]`` reach it as ``[T, N, H, W, channels]`` (the last
    ``channels`` channels, where ``explora.envs.frame_stack.FrameStack`` and EnvPool's Atari
    put the newest view), and it is set up on that space. A count or a model of the agent's
    surroundings keys on what it sees now, not on its recent history. Transparent to
    checkpoints: its ``state_dict`` is the inner bonus's.

    Example:
        >>> from explora.bonuses import Count
        >>> bonus = NewestFrame(Count(), channels=3)  # MiniGrid views stacked by FrameStack
    """

    def __init__(self, inner: Bonus, channels: int) -> None:
        super().__init__(inner)
        self.channels = channels

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        space, c = observation_space, self.channels
        shape = tuple(getattr(space, "shape", None) or ())
        if not isinstance(space, gym.spaces.Box) or len(shape) != 3 or shape[2] % c:
            raise ValueError(
                f"{type(self).__name__} needs stacked views [H, W, k * {c}] in a Box, "
                f"got {observation_space}"
            )
        view = gym.spaces.Box(space.low[..., -c:], space.high[..., -c:], dtype=space.dtype)
        self.inner.setup(view, action_space, num_envs)

    def view_obs(self, obs: Any) -> Any:
        return obs[..., -self.channels :]
