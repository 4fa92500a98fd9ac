"""Tiny training runs that must learn: fixed seeds, asserted thresholds, each under a minute.

Each test would fail if learning broke: the thresholds sit far above what a random or a
non-learning policy scores (CartPole random ~22; DoorKey-5x5 random success ~0.2 with return
~0.05; DeepSea-10 random success ~0.001).
"""

import pytest

import explora

pytestmark = pytest.mark.learning


def _train(tmp_path, env, **kwargs):
    return explora.train(env, out=tmp_path / "run", progress=False, **kwargs)


def test_ppo_solves_cartpole(tmp_path):
    summary = _train(tmp_path, "CartPole-v1", frames=100_000, seed=0)
    assert summary["final_return"] >= 300, summary


def test_ppo_solves_doorkey_5x5(tmp_path):
    summary = _train(tmp_path, "MiniGrid-DoorKey-5x5-v0", frames=150_000, seed=0)
    assert summary["success_rate"] >= 0.95 and summary["final_return"] >= 0.8, summary


@pytest.mark.parametrize("bonus", ["rnd", "count"])
def test_bonus_reaches_deepsea_10_treasure(tmp_path, bonus):
    for seed in range(3):
        summary = _train(tmp_path / str(seed), "DeepSea-10", bonus=bonus, frames=20_000, seed=seed)
        assert summary["success_rate"] >= 0.9, (seed, summary)


def test_plain_ppo_does_not_reach_deepsea_10_treasure_on_the_same_budget(tmp_path):
    rates = [
        _train(tmp_path / str(seed), "DeepSea-10", frames=20_000, seed=seed)["success_rate"]
        for seed in range(3)
    ]
    assert sum(rates) / len(rates) < 0.5, rates
