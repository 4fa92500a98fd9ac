"""The shared normalisers of ``explora.bonuses.base`` against hand computations."""

from __future__ import annotations

import numpy as np
import torch

from explora.bonuses import DiscountedReturnStd, RunningMeanStd


def test_running_mean_std_matches_numpy_over_batches() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)) * [1.0, 10.0, 0.1] for n in (1, 7, 100, 33)]
    # A negligible prior count makes the running statistics those of the data alone.
    rms = RunningMeanStd(shape=(3,), epsilon=1e-12)
    for batch in batches:
        rms.update(torch.from_numpy(batch))
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(rms.var.numpy(), data.var(axis=0), rtol=1e-9)
    np.testing.assert_allclose(rms.std.numpy(), data.std(axis=0), rtol=1e-9)
    assert float(rms.count) == len(data) + 1e-12


def test_running_mean_std_default_prior_is_negligible() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(-1.0, 0.5, size=(500,))
    rms = RunningMeanStd()  # scalar statistics, prior count 1e-4
    for chunk in np.array_split(data, 5):
        rms.update(torch.from_numpy(chunk))
    np.testing.assert_allclose(float(rms.mean), data.mean(), atol=1e-5)
    np.testing.assert_allclose(float(rms.var), data.var(), atol=1e-5)


def test_running_mean_std_normalize_whitens_and_clips() -> None:
    rms = RunningMeanStd(shape=(2,), epsilon=1e-12)
    rms.update(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))  # mean [1, 20], std [1, 10]
    x = torch.tensor([[3.0, 20.0], [1.0, 100.0]], dtype=torch.float32)
    out = rms.normalize(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[2.0, 0.0], [0.0, 8.0]]))
    torch.testing.assert_close(rms.normalize(x, clip=5.0), torch.tensor([[2.0, 0.0], [0.0, 5.0]]))


def test_running_mean_std_frozen_in_eval_mode() -> None:
    rms = RunningMeanStd(shape=(4,))
    rms.update(torch.randn(50, 4))
    before = {k: v.clone() for k, v in rms.state_dict().items()}
    rms.eval()
    rms.update(torch.randn(50, 4) + 100.0)
    for key, value in rms.state_dict().items():
        assert torch.equal(value, before[key]), key
    rms.train()
    rms.update(torch.randn(50, 4) + 100.0)
    assert not torch.equal(rms.mean, before["mean"])


def test_running_mean_std_state_dict_round_trip() -> None:
    rms = RunningMeanStd(shape=(2, 3))
    for _ in range(3):
        rms.update(torch.randn(20, 2, 3) * 4.0 + 1.0)
    restored = RunningMeanStd(shape=(2, 3))
    restored.load_state_dict(rms.state_dict())
    for name in ("mean", "var", "count"):
        assert torch.equal(getattr(restored, name), getattr(rms, name))
    x = torch.randn(5, 2, 3)
    assert torch.equal(restored.normalize(x, clip=5.0), rms.normalize(x, clip=5.0))


def _hand_discounted(rewards: list[list[float]], gamma: float) -> tuple[list[float], list[float]]:
    """Discounted returns along time of one env's rollouts, carried across rollouts.

    Returns (every R_t in order, the carried return after each rollout)."""
    running, values, carried = 0.0, [], []
    for rollout in rewards:
        for r in rollout:
            running = gamma * running + r
            values.append(running)
        carried.append(running)
    return values, carried


def test_discounted_return_std_runs_along_time_per_env() -> None:
    gamma = 0.9
    # Three rollouts of T = 4 steps for N = 2 envs that see very different rewards.
    env0 = [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    env1 = [[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [2.0, 0.0, 0.0, 1.0]]
    scale = DiscountedReturnStd(num_envs=2, gamma=gamma)
    values0, carried0 = _hand_discounted(env0, gamma)
    values1, carried1 = _hand_discounted(env1, gamma)
    for k in range(3):
        rewards = torch.tensor([env0[k], env1[k]]).T  # [T, N] = [4, 2]
        scale.update(rewards)
        torch.testing.assert_close(
            scale.returns, torch.tensor([carried0[k], carried1[k]], dtype=torch.float64)
        )
    # Every discounted return of both envs enters one scalar running statistic, which starts
    # from a prior of count 1e-4, mean 0 and variance 1.
    values = np.array(values0 + values1)
    n, prior = len(values), 1e-4
    total = n + prior
    mean = values.sum() / total
    var = (prior * 1.0 + n * values.var() + values.mean() ** 2 * prior * n / total) / total
    np.testing.assert_allclose(float(scale.rms.mean), mean, rtol=1e-12)
    np.testing.assert_allclose(scale.std, np.sqrt(var), rtol=1e-12)


def test_discounted_return_std_does_not_mix_envs() -> None:
    gamma = 0.99
    a = DiscountedReturnStd(num_envs=3, gamma=gamma)
    b = DiscountedReturnStd(num_envs=3, gamma=gamma)
    rewards = torch.rand(5, 3)
    changed = rewards.clone()
    changed[:, 0] += 10.0  # only env 0 differs
    a.update(rewards)
    b.update(changed)
    assert torch.equal(a.returns[1:], b.returns[1:])
    assert not torch.equal(a.returns[0], b.returns[0])
    # The first step's return is the first reward of each env, not a sum over envs.
    first = DiscountedReturnStd(num_envs=3, gamma=gamma)
    first.update(rewards[:1])
    torch.testing.assert_close(first.returns, rewards[0].double())


def test_discounted_return_std_frozen_in_eval_and_round_trip() -> None:
    scale = DiscountedReturnStd(num_envs=2, gamma=0.99)
    scale.update(torch.rand(8, 2))
    state = {k: v.clone() for k, v in scale.state_dict().items()}
    scale.eval()
    scale.update(torch.rand(8, 2) * 100)
    assert all(torch.equal(v, state[k]) for k, v in scale.state_dict().items())
    restored = DiscountedReturnStd(num_envs=2, gamma=0.99)
    restored.load_state_dict(scale.state_dict())
    assert restored.std == scale.std
    assert torch.equal(restored.returns, scale.returns)


def _hand_forgetting(batches: list[np.ndarray], max_count: float, prior: float) -> tuple:
    """Mean and variance of every sample so far, each weighted by hand: a batch enters with
    weight 1 per sample, and whenever the total weight held exceeds ``max_count`` before a
    batch comes in, every older weight is scaled down so that they sum to ``max_count``. The
    prior is a pseudo-sample of weight ``prior``, mean 0 and variance 1."""
    values: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    prior_weight = prior
    for batch in batches:
        held = prior_weight + sum(w.sum() for w in weights)
        if held > max_count:
            factor = max_count / held
            weights = [w * factor for w in weights]
            prior_weight *= factor
        values.append(batch)
        weights.append(np.ones(len(batch)))
    x, w = np.concatenate(values), np.concatenate(weights)
    total = w.sum() + prior_weight
    mean = (w * x).sum() / total
    var = ((w * (x - mean) ** 2).sum() + prior_weight * (1.0 + mean**2)) / total
    return mean, var


def test_running_mean_std_forgets_beyond_max_count_as_a_weighted_average() -> None:
    rng = np.random.default_rng(2)
    batches = [rng.normal(loc, 1.0 + loc, size=n) for loc, n in ((5, 30), (1, 20), (0, 50), (3, 7))]
    rms = RunningMeanStd(max_count=40.0)
    for k, batch in enumerate(batches):
        rms.update(torch.from_numpy(batch))
        mean, var = _hand_forgetting(batches[: k + 1], max_count=40.0, prior=1e-4)
        np.testing.assert_allclose(float(rms.mean), mean, rtol=1e-12)
        np.testing.assert_allclose(float(rms.var), var, rtol=1e-12)
    # Once full, a batch of B samples gets weight B / (max_count + B): an exponential average.
    before = float(rms.mean)
    rms.update(torch.full((10,), 100.0, dtype=torch.float64))
    np.testing.assert_allclose(float(rms.mean), before + (100.0 - before) * 10 / 50, rtol=1e-12)


def test_running_mean_std_without_max_count_never_forgets() -> None:
    rng = np.random.default_rng(3)
    batches = [rng.normal(size=n) * 3 for n in (40, 40, 40)]
    exact, capped = RunningMeanStd(epsilon=1e-12), RunningMeanStd(epsilon=1e-12, max_count=1e9)
    for batch in batches:
        exact.update(torch.from_numpy(batch))
        capped.update(torch.from_numpy(batch))
    data = np.concatenate(batches)
    np.testing.assert_allclose(float(exact.var), data.var(), rtol=1e-12)
    np.testing.assert_allclose(float(capped.var), data.var(), rtol=1e-12)  # cap not reached


def test_discounted_return_std_forgets_with_its_horizon() -> None:
    gamma, horizon = 0.9, 12.0
    env0 = [[1.0, 2.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.1]]
    env1 = [[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.2, 0.0, 0.0, 0.1]]
    scale = DiscountedReturnStd(num_envs=2, gamma=gamma, horizon=horizon)
    values0, _ = _hand_discounted(env0, gamma)
    values1, _ = _hand_discounted(env1, gamma)
    batches = []
    for k in range(3):
        scale.update(torch.tensor([env0[k], env1[k]], dtype=torch.float64).T)  # [T, N]
        # the rollout's returns enter as one batch, time-major: t0 env0, t0 env1, t1 env0, ...
        batches.append(np.array([values0[4 * k : 4 * k + 4], values1[4 * k : 4 * k + 4]]).T.ravel())
        mean, var = _hand_forgetting(batches, max_count=horizon, prior=1e-4)
        np.testing.assert_allclose(float(scale.rms.mean), mean, rtol=1e-12)
        np.testing.assert_allclose(scale.std, np.sqrt(var), rtol=1e-12)


def test_discounted_return_std_with_a_horizon_tracks_a_falling_reward_level() -> None:
    """A bonus that becomes easy to predict (RND on a 2-d observation) falls by orders of
    magnitude. The paper's scale (over the whole run) holds on to the early values, so the
    normalised bonus vanishes; with a horizon the scale follows the current level."""
    num_envs, steps, gamma = 16, 128, 0.99

    def final_std(horizon: float | None, level_from: float, level_to: float) -> float:
        gen = torch.Generator().manual_seed(0)
        scale = DiscountedReturnStd(num_envs, gamma, horizon=horizon)
        level = level_from
        for _ in range(100):  # 100 rollouts of 2048 samples; the level falls over the first 50
            scale.update(level * (1.0 + 0.5 * torch.rand(steps, num_envs, generator=gen)))
            level = max(level * 0.87, level_to)
        return scale.std

    steady = final_std(None, 1e-3, 1e-3)  # the scale of the final level alone
    assert final_std(2048.0, 1.0, 1e-3) < 2.0 * steady
    assert final_std(None, 1.0, 1e-3) > 100.0 * steady  # the paper's: stuck at early values
