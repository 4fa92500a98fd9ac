"""explora.Curiosity: a bonus with PPO's reward normalisation, driven from any loop."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from explora import Curiosity
from explora.bonuses import Count
from explora.bonuses.base import DiscountedReturnStd

SPACE = gym.spaces.Box(0, 3, (2,), np.int64)


def test_reward_is_the_raw_bonus_over_the_std_of_its_discounted_return():
    """Count on integer positions: raw r = 1/sqrt(n); the normaliser fed the same raw stream
    by hand gives the divisor; int_coef scales."""
    curiosity = Curiosity(Count(), SPACE, gym.spaces.Discrete(2), num_envs=2, int_coef=0.5)
    reference = DiscountedReturnStd(2, 0.99)
    visits: dict[tuple, int] = {}
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs = rng.integers(0, 3, size=(2, 2))
        next_obs = rng.integers(0, 3, size=(2, 2))
        ended = rng.random(2) < 0.2
        got = curiosity.reward(obs, np.zeros(2, int), next_obs, ended, np.zeros(2, bool))
        for row in next_obs:  # a step's visits all count before its bonus
            visits[tuple(row)] = visits.get(tuple(row), 0) + 1
        raw = [1.0 / np.sqrt(visits[tuple(row)]) for row in next_obs]
        reference.update(torch.tensor([raw]))
        np.testing.assert_allclose(got, 0.5 * np.array(raw) / reference.std, rtol=1e-6)
        assert isinstance(got, np.ndarray)


def test_torch_in_torch_out_invalid_steps_pay_nothing_and_update_trains_the_bonus():
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    torch.manual_seed(0)
    curiosity = Curiosity("rnd", space, gym.spaces.Discrete(2), num_envs=4, hidden_size=16,
                          feature_size=8)  # fmt: skip
    before = [p.detach().clone() for p in curiosity.bonus.predictor.parameters()]
    for _ in range(8):
        obs, next_obs = torch.rand(4, 3), torch.rand(4, 3)
        valid = torch.tensor([True, False, True, True])
        r = curiosity.reward(obs, torch.zeros(4, dtype=torch.long), next_obs,
                             torch.zeros(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool),
                             valid=valid)  # fmt: skip
        assert isinstance(r, torch.Tensor) and r.shape == (4,) and r[1] == 0 and r[0] > 0
    metrics = curiosity.update()
    assert "losses/rnd" in metrics and curiosity.update() == {}  # the steps were used up
    after = list(curiosity.bonus.predictor.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_wrong_leading_axis_and_bonus_args_for_an_object_are_refused():
    curiosity = Curiosity(Count(), SPACE, gym.spaces.Discrete(2), num_envs=2)
    with pytest.raises(ValueError, match="num_envs = 2"):
        curiosity.reward(np.zeros((3, 2), int), np.zeros(3, int), np.zeros((3, 2), int),
                         np.zeros(3, bool), np.zeros(3, bool))  # fmt: skip
    with pytest.raises(ValueError, match="bonus_args"):
        Curiosity(Count(), SPACE, gym.spaces.Discrete(2), num_envs=2, beta=2.0)
