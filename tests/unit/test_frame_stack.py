"""FrameStack (the policy's stacked views) and NewestFrame (what a bonus sees of them), checked
against a history kept by hand, per env, across episode ends."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import explora
from explora.bonuses import Count, VQCount, make_bonus
from explora.bonuses.base import Transitions
from explora.bonuses.view import NewestFrame
from explora.envs import make
from explora.envs.base import EnvStep, VecEnv
from explora.envs.frame_stack import FrameStack
from explora.models.encoders import GridMLP
from explora.runs.pictures import picture_parts


class Clock(VecEnv):
    """View of env i at its step t: channel 0 = t, channel 1 = i, channel 2 = episode number.
    Env i's episodes last ``lengths[i]`` steps; env 0 truncates, the others terminate."""

    def __init__(self, lengths: list[int]) -> None:
        self.env_id = "Clock"
        self.num_envs = len(lengths)
        self.single_observation_space = gym.spaces.Box(0, 255, (2, 2, 3), np.uint8)
        self.single_action_space = gym.spaces.Discrete(3)
        self.lengths = np.asarray(lengths)
        self.t = np.zeros(self.num_envs, np.int64)
        self.episode = np.zeros(self.num_envs, np.int64)

    def _view(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, 2, 2, 3), np.uint8)
        obs[..., 0] = self.t[:, None, None]
        obs[..., 1] = np.arange(self.num_envs)[:, None, None]
        obs[..., 2] = self.episode[:, None, None]
        return obs

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self.t[:] = 0
        return self._view(), {}

    def step(self, actions: np.ndarray) -> EnvStep:
        self.t += 1
        final = self._view()
        ended = self.t == self.lengths
        self.t[ended] = 0
        self.episode[ended] += 1
        obs = self._view() if ended.any() else final
        trunc = ended & (np.arange(self.num_envs) == 0)
        zeros = np.zeros(self.num_envs, np.float32)
        return EnvStep(obs, zeros, ended & ~trunc, trunc, final, {})

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t.copy(), "episode": self.episode.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t, self.episode = state["t"].copy(), state["episode"].copy()


def _expected(history: list[np.ndarray], k: int) -> np.ndarray:
    """The stack of one env's views of one episode so far: the last k, the first repeated."""
    views = [history[0]] * max(0, k - len(history)) + history[-k:]
    return np.concatenate(views, axis=-1)


def test_stacks_follow_each_envs_own_episodes() -> None:
    k, lengths = 3, [2, 4, 5]
    env = FrameStack(Clock(lengths), k)
    assert env.single_observation_space.shape == (2, 2, 9)
    obs, _ = env.reset()
    histories = [[obs[i, ..., -3:].copy()] for i in range(3)]
    for i in range(3):
        np.testing.assert_array_equal(obs[i], _expected(histories[i], k))
    base = env.env
    for _ in range(11):
        step = env.step(np.zeros(3, np.int64))
        for i in range(3):
            histories[i].append(step.final_obs[i, ..., -3:].copy())
            np.testing.assert_array_equal(step.final_obs[i], _expected(histories[i], k))
            if step.terminated[i] or step.truncated[i]:
                histories[i] = [step.obs[i, ..., -3:].copy()]  # the next episode's first view
                assert step.obs[i, 0, 0, 2] == base.episode[i]  # ... and only that one
            np.testing.assert_array_equal(step.obs[i], _expected(histories[i], k))
    assert base.episode.tolist() == [5, 2, 2]


def test_returned_arrays_are_not_overwritten_later() -> None:
    env = FrameStack(Clock([2, 3]), 2)
    first, _ = env.reset()
    kept = first.copy()
    steps = [env.step(np.zeros(2, np.int64)) for _ in range(4)]
    np.testing.assert_array_equal(first, kept)
    assert steps[0].obs[1, 0, 0, 3] == 1 and steps[1].obs[1, 0, 0, 3] == 2


def test_state_dict_resumes_the_same_stacks() -> None:
    env = FrameStack(Clock([3, 4]), 3)
    env.reset()
    for _ in range(5):
        env.step(np.zeros(2, np.int64))
    state = env.state_dict()
    assert state is not None
    after = [env.step(np.zeros(2, np.int64)) for _ in range(4)]
    other = FrameStack(Clock([3, 4]), 3)
    other.load_state_dict(state)
    for a in after:
        b = other.step(np.zeros(2, np.int64))
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.final_obs, b.final_obs)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="integer >= 1"):
        FrameStack(Clock([2]), 0)
    deep_sea = make("DeepSea-5", num_envs=1)
    with pytest.raises(ValueError, match=r"\[H, W, C\] image"):
        FrameStack(deep_sea, 2)


def test_newest_frame_shows_the_bonus_the_last_view_only() -> None:
    space = gym.spaces.Box(0, 255, (2, 2, 9), np.uint8)
    bonus = NewestFrame(Count(), channels=3)
    bonus.setup(space, gym.spaces.Discrete(3), 2)
    obs = torch.zeros((1, 2, 2, 2, 9), dtype=torch.uint8)
    obs[..., :6] = torch.randint(0, 9, (1, 2, 2, 2, 6))  # older views differ
    batch = Transitions(
        obs=obs,
        actions=torch.zeros(1, 2, dtype=torch.long),
        next_obs=obs.clone(),
        ext_rewards=torch.zeros(1, 2),
        terminated=torch.zeros(1, 2, dtype=torch.bool),
        truncated=torch.zeros(1, 2, dtype=torch.bool),
    )
    bonus.observe(batch)
    # Both envs show the same newest view: one key, counted twice, whatever came before
    assert bonus.num_unique == 1
    with pytest.raises(ValueError, match=r"\[H, W, k \* 3\]"):
        NewestFrame(Count(), channels=3).setup(
            gym.spaces.Box(0, 255, (2, 2, 4), np.uint8), gym.spaces.Discrete(3), 1
        )


def test_pictures_read_the_newest_view() -> None:
    bonus = NewestFrame(VQCount(), channels=3)
    bonus.setup(gym.spaces.Box(0, 10, (7, 7, 6), np.uint8), gym.spaces.Discrete(7), 2)
    (part,) = picture_parts(bonus)
    stacked = torch.randint(0, 3, (5, 7, 7, 6), dtype=torch.uint8)
    np.testing.assert_array_equal(part.view(stacked), stacked[..., 3:])


def test_grid_mlp_scales_each_stacked_view_as_one() -> None:
    assert GridMLP((7, 7, 6)).scale.tolist() == pytest.approx([0.1, 0.2, 0.5] * 2)
    assert GridMLP((7, 7, 4)).scale.tolist() == pytest.approx([1 / 255] * 4)


def test_train_with_stacked_views(tmp_path: Any) -> None:
    summary = explora.train(
        "MiniGrid-Empty-5x5-v0",
        bonus=make_bonus("count"),
        frames=4096,
        algo_args={"frame_stack": 2, "num_steps": 32},  # two 64 x 32 rollouts
        out=tmp_path / "run",
        progress=False,
    )
    assert summary["frames"] == 4096
    with pytest.raises(ValueError, match="Atari envs stack their frames already"):
        explora.train(
            "ALE/Pong-v5", frames=4096, algo_args={"frame_stack": 2}, out=tmp_path / "pong"
        )
    assert not (tmp_path / "pong").exists()
    with pytest.raises(ValueError, match=r"\[H, W, C\] image"):
        explora.train(
            "DeepSea-5", frames=4096, algo_args={"frame_stack": 2}, out=tmp_path / "deepsea"
        )
    assert not (tmp_path / "deepsea").exists()
