"""Dict observations as one flat array with a layout, so every agent and bonus takes them.

A Gymnasium ``Dict`` of Box / Discrete / MultiBinary / MultiDiscrete parts (MiniGrid's
``image``, ``direction`` and ``mission``) becomes one ``[N, D]`` array: each part flattened, in
the Dict's key order, cast to one dtype that holds them all (integers stay integers). The flat
space is a ``FlatDictBox``, a Box that carries the ``ObsLayout``: PPO's encoder splits it back
into parts and encodes each with an encoder of its own (``explora.models.encoders``), and a
bonus reads one named part (``explora.bonuses.ObsKey``; the image by default).

Keeping the rollout, the replay and every bonus on plain tensors costs one flatten per step and
one view per bonus, and no agent grows a second code path for dicts.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
    ...                          "direction": gym.spaces.Discrete(4)})
    >>> layout = ObsLayout.of(space)
    >>> flat = layout.flatten({"image": np.zeros((2, 7, 7, 3), np.uint8),
    ...                        "direction": np.array([1, 3])})
    >>> flat.shape, layout.view(flat, "direction").tolist()
    ((2, 148), [1, 3])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from explora.envs.base import EnvStep, VecEnv

PART_SPACES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiBinary,
    gym.spaces.MultiDiscrete,
)


@dataclass(frozen=True)
class Part:
    """One key of the Dict: where it sits in the flat array and what it was."""

    key: str
    start: int
    stop: int
    shape: tuple[int, ...]
    space: gym.Space


class ObsLayout:
    """The parts of a flattened Dict observation, in key order."""

    def __init__(self, parts: list[Part], dtype: np.dtype) -> None:
        self.parts = {p.key: p for p in parts}
        self.dtype = dtype
        self.size = parts[-1].stop if parts else 0

    @classmethod
    def of(cls, space: gym.spaces.Dict) -> ObsLayout:
        """The layout of ``space``; ``ValueError`` for a part no agent can take (nested Dict,
        Tuple, Text, ...), naming the key."""
        parts, start = [], 0
        for key, sub in space.spaces.items():
            if not isinstance(sub, PART_SPACES):
                raise ValueError(
                    f"Dict observation part {key!r} is a {type(sub).__name__}; explora takes "
                    "Dict parts that are Box, Discrete, MultiBinary or MultiDiscrete"
                )
            shape = tuple(int(d) for d in sub.shape or ())
            size = int(np.prod(shape)) if shape else 1
            parts.append(Part(str(key), start, start + size, shape, sub))
            start += size
        if not parts:
            raise ValueError("a Dict observation space with no parts")
        dtypes = [np.dtype(p.space.dtype or np.int64) for p in parts]
        dtype = np.result_type(*dtypes)
        if dtype.kind == "f":
            dtype = np.dtype(np.float32)
        elif dtype.kind == "b":
            dtype = np.dtype(np.uint8)
        return cls(parts, dtype)

    def flat_space(self) -> FlatDictBox:
        lows, highs = [], []
        for part in self.parts.values():
            low, high = _bounds(part.space)
            lows.append(np.broadcast_to(low, part.shape or (1,)).reshape(-1))
            highs.append(np.broadcast_to(high, part.shape or (1,)).reshape(-1))
        low, high = np.concatenate(lows), np.concatenate(highs)
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            low, high = np.clip(low, info.min, info.max), np.clip(high, info.min, info.max)
        return FlatDictBox(low.astype(self.dtype), high.astype(self.dtype), self)

    def flatten(self, obs: Any) -> np.ndarray:
        """``{key: [N, *shape]}`` -> ``[N, D]`` in the layout's dtype."""
        first = np.asarray(obs[next(iter(self.parts))])
        out = np.empty((first.shape[0], self.size), dtype=self.dtype)
        for part in self.parts.values():
            value = np.asarray(obs[part.key])
            out[:, part.start : part.stop] = value.reshape(value.shape[0], -1)
        return out

    def view(self, flat: Tensor | np.ndarray, key: str) -> Any:
        """Part ``key`` of ``flat`` ``[..., D]`` as ``[..., *shape]`` in the part's own dtype."""
        part = self.part(key)
        piece = flat[..., part.start : part.stop]
        shape = (*flat.shape[:-1], *part.shape)
        dtype = part.space.dtype
        if isinstance(piece, Tensor):
            target = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
            return piece.reshape(shape).to(target)
        return piece.reshape(shape).astype(dtype)

    def part(self, key: str) -> Part:
        if key not in self.parts:
            raise ValueError(
                f"no observation part {key!r}; this Dict observation has: {', '.join(self.parts)}"
            )
        return self.parts[key]

    def default_key(self) -> str:
        """What a bonus reads unless told otherwise: the image, else the largest part."""
        if "image" in self.parts:
            return "image"
        return max(self.parts.values(), key=lambda p: p.stop - p.start).key


def _bounds(space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(space, gym.spaces.Box):
        return np.asarray(space.low), np.asarray(space.high)
    if isinstance(space, gym.spaces.Discrete):
        return np.asarray(space.start), np.asarray(space.start + space.n - 1)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return np.asarray(space.start), np.asarray(space.start + space.nvec - 1)
    return np.zeros(1), np.ones(1)  # MultiBinary


class FlatDictBox(gym.spaces.Box):
    """The Box of a flattened Dict observation; ``layout`` tells its parts apart."""

    def __init__(self, low: np.ndarray, high: np.ndarray, layout: ObsLayout) -> None:
        super().__init__(low, high, dtype=layout.dtype)
        self.layout = layout


class FlattenDict(VecEnv):
    """A ``VecEnv`` with Dict observations seen through ``ObsLayout.flatten``."""

    def __init__(self, env: VecEnv) -> None:
        space = env.single_observation_space
        if not isinstance(space, gym.spaces.Dict):
            raise ValueError(f"FlattenDict needs Dict observations, got {space}")
        self.env = env
        self.layout = ObsLayout.of(space)
        self.env_id, self.num_envs = env.env_id, env.num_envs
        self.single_observation_space = self.layout.flat_space()
        self.single_action_space = env.single_action_space
        self.grid_shape, self.has_success = env.grid_shape, env.has_success

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        obs, info = self.env.reset(seed=seed)
        return self.layout.flatten(obs), info

    def _flat(self, step: EnvStep) -> EnvStep:
        return step._replace(
            obs=self.layout.flatten(step.obs), final_obs=self.layout.flatten(step.final_obs)
        )

    def step(self, actions: np.ndarray) -> EnvStep:
        return self._flat(self.env.step(actions))

    def step_async(self, actions: np.ndarray) -> None:
        self.env.step_async(actions)

    def step_wait(self) -> EnvStep:
        return self._flat(self.env.step_wait())

    def state_dict(self) -> dict[str, Any] | None:
        return self.env.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.load_state_dict(state)

    def close(self) -> None:
        self.env.close()
