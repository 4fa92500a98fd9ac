"""A bonus on a low-dimensional continuous observation: MountainCar-v0 (2-d float Box).

Reaching the goal (position >= 0.5) terminates an episode and 200 steps truncate it, so an
episode shorter than 200 steps reached the goal. Random play never gets there, and neither does
plain PPO on this budget; RND, with an intrinsic-reward scale that forgets, drives the agent up
the hill. Measured with these settings, 150k frames, seeds 0-3 (episodes that reached the goal):
RND with ``DiscountedReturnStd(horizon=2048)`` 38, 38, 17, 57; RND with the paper's scale (no
horizon: the normalised bonus sinks to ~1e-4 as the 2-d input becomes easy to predict) 0, 0, 0,
0; plain PPO 0, 0, 0, 0. So the test fails if RND's scale stops forgetting.

The test trains as a new user would, ``explora.train("MountainCar-v0", bonus="rnd")``, with
the MountainCar preset (``explora.presets``): 16 envs x 32 steps, entropy 0.05, the intrinsic
scale's horizon 2048 samples, and the policy's inputs rescaled from the Box bounds to [-1, 1]
(``obs_rescale``: PPO's MLP has no input normalisation, and the raw velocity, |v| <= 0.07
beside |x| <= 1.2, is then too small to act on; without it not even an exact count on a
20 x 20 grid of the state box reached the goal in 200k frames, seed 0; with it, 103 times).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import explora
from explora.runs.rundir import read_episodes

pytestmark = pytest.mark.learning

FRAMES, SEED = 150_000, 1


def _goal_episodes(out: Path, bonus: str | None) -> int:
    """Episodes that reached the goal (ended before the 200-step limit) in a run."""
    explora.train("MountainCar-v0", bonus=bonus, frames=FRAMES, seed=SEED, out=out,
                  progress=False)  # fmt: skip
    return sum(length < 200 for _, _, length, _ in read_episodes(out))


def test_plain_ppo_does_not_reach_the_mountain_car_goal(tmp_path):
    assert _goal_episodes(tmp_path / "ppo", None) == 0


def test_rnd_reaches_the_mountain_car_goal(tmp_path):
    assert _goal_episodes(tmp_path / "rnd", "rnd") >= 10  # 38 measured with these settings
