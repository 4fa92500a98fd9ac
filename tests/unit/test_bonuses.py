"""Count, SimHash (with its count-min sketch), RND and the bonus registry."""

from __future__ import annotations

import io
import math
from collections import Counter
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from bonus_batches import batch_of

from explora.bonuses import (
    BONUSES,
    RND,
    Bonus,
    Count,
    CountMinSketch,
    FirstVisit,
    SimHash,
    Transitions,
    make_bonus,
)
from explora.bonuses.sketch import TANG_PRIMES

ACTIONS = gym.spaces.Discrete(4)
MINIGRID = gym.spaces.Box(0, 255, (7, 7, 3), dtype=np.uint8)


def observe_rollout(bonus: Bonus, next_obs: torch.Tensor) -> None:
    """Feed ``next_obs`` ``[T, N, ...]`` to ``bonus.observe`` one step at a time."""
    for t in range(next_obs.shape[0]):
        bonus.observe(batch_of(next_obs[t : t + 1]))


def minigrid_obs(t: int, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 11, (t, n, 7, 7, 3), dtype=torch.uint8, generator=gen)


# --- Count ---------------------------------------------------------------------------------


def test_count_exact_values_by_hand() -> None:
    count = Count(beta=2.0)
    count.setup(gym.spaces.Discrete(10), ACTIONS, num_envs=2)
    observe_rollout(count, torch.tensor([[1, 2], [1, 1], [4, 1]]))  # N(1)=4, N(2)=1, N(4)=1
    assert count.num_unique == 3
    r = count.compute(batch_of(torch.tensor([[1, 2], [4, 7]])))
    expected = torch.tensor([[2.0 / math.sqrt(4), 2.0], [2.0, 2.0]])  # 7 unseen: treated as N=1
    assert r.dtype == torch.float32 and r.shape == (2, 2)
    torch.testing.assert_close(r, expected)
    assert count.update(batch_of(torch.tensor([[1, 2]]))) == {"bonus/unique_states": 3.0}


def test_count_keys_on_whole_rows() -> None:
    count = Count()
    count.setup(gym.spaces.Box(0, 1, (3, 3), dtype=np.uint8), ACTIONS, num_envs=3)
    a = torch.zeros(3, 3, dtype=torch.uint8)
    a[0, 0] = 1
    b = torch.zeros(3, 3, dtype=torch.uint8)
    b[1, 2] = 1  # same number of ones as a, another cell: another state
    count.observe(batch_of(torch.stack([a, a, b])[None]))  # [1, 3, 3, 3]
    count.observe(batch_of(torch.stack([a, b, b])[None]))
    n = count.counts(torch.stack([a, b, torch.zeros_like(a)])[None])
    assert n.tolist() == [[3, 3, 0]]
    torch.testing.assert_close(
        count.compute(batch_of(torch.stack([a, b])[None])), torch.full((1, 2), 1 / math.sqrt(3))
    )


def test_count_accepts_discrete_spaces_and_rejects_float_box() -> None:
    for space in (
        gym.spaces.Discrete(3),
        gym.spaces.MultiDiscrete([4, 4]),
        gym.spaces.MultiBinary(5),
        gym.spaces.Box(0, 9, (2,), dtype=np.int64),
        MINIGRID,
    ):
        Count().setup(space, ACTIONS, num_envs=1)
    with pytest.raises(ValueError, match="simhash") as info:
        Count().setup(gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32), ACTIONS, num_envs=1)
    assert "float32" in str(info.value)
    with pytest.raises(ValueError, match="Dict"):
        Count().setup(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), ACTIONS, num_envs=1)
    # counted by the env's state key, the observations themselves are never hashed
    Count(key="state").setup(gym.spaces.Box(-1.0, 1.0, (4,), np.float32), ACTIONS, num_envs=1)


def test_count_does_not_count_in_eval_mode() -> None:
    count = Count()
    count.setup(gym.spaces.Discrete(5), ACTIONS, num_envs=1)
    count.eval()
    count.observe(batch_of(torch.tensor([[3]])))
    assert count.num_unique == 0
    count.train()
    count.observe(batch_of(torch.tensor([[3]])))
    assert count.num_unique == 1


def test_count_keyed_on_the_state_ignores_what_changes_on_screen() -> None:
    """A noisy TV: the same cell (state key 5) shown with fresh noise each step. Counted by the
    observation every view is new (bonus stays beta); counted by the state it is one state."""
    noise = minigrid_obs(3, 2, seed=1)  # [3, 2, 7, 7, 3]: six distinct views
    keys = torch.tensor([[5, 9], [5, 9], [5, 5]])
    by_obs, by_state = Count(), Count(key="state")
    for count in (by_obs, by_state):
        count.setup(MINIGRID, ACTIONS, num_envs=2)
        for t in range(3):
            count.observe(replace(batch_of(noise[t : t + 1]), state_keys=keys[t : t + 1]))
    assert (by_obs.num_unique, by_state.num_unique) == (6, 2)  # key 5 seen 4 times, 9 twice
    fresh = replace(batch_of(minigrid_obs(1, 2, seed=2)), state_keys=torch.tensor([[5, 9]]))
    torch.testing.assert_close(by_obs.compute(fresh), torch.ones(1, 2))
    torch.testing.assert_close(by_state.compute(fresh), torch.tensor([[0.5, 2**-0.5]]))
    clone = Count(key="state")
    clone.load_state_dict(by_state.state_dict())
    torch.testing.assert_close(clone.compute(fresh), by_state.compute(fresh))
    with pytest.raises(ValueError, match="key='observation'"):
        by_state.observe(batch_of(noise[:1]))  # an env without state keys
    with pytest.raises(ValueError, match="key='state'"):
        by_state.counts(noise[:1])  # an observation alone does not give its state key
    with pytest.raises(ValueError, match="observation, state"):
        Count(key="cell")


# --- Count-min sketch ------------------------------------------------------------------------


def _true_counts(codes: torch.Tensor) -> list[int]:
    seen = Counter(tuple(row) for row in codes.tolist())
    return [seen[tuple(row)] for row in codes.tolist()]


def test_sketch_exact_without_collisions() -> None:
    # 16-bit codes have integer values below 2^16 < every default prime: no bucket is shared.
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 2, (300, 16), generator=gen)
    codes[150:] = codes[:150]  # every code at least twice
    sketch = CountMinSketch(num_bits=16)
    sketch.add(codes[:100])
    sketch.add(codes[100:])
    assert sketch.count(codes).tolist() == _true_counts(codes)
    assert (
        sketch.count(torch.ones(1, 16, dtype=torch.bool)).item()
        == _true_counts(torch.cat([codes, torch.ones(1, 16, dtype=torch.long)]))[-1] - 1
    )


def test_sketch_never_undercounts_with_collisions() -> None:
    gen = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 2, (400, 8), generator=gen)
    sketch = CountMinSketch(num_bits=8, moduli=(3, 5))  # 15 joint buckets for 256 codes
    for chunk in codes.split(37):
        sketch.add(chunk)
    estimate = sketch.count(codes)
    truth = torch.tensor(_true_counts(codes))
    assert bool((estimate >= truth).all())
    assert bool((estimate > truth).any())  # collisions did happen


def test_sketch_indices_exact_for_long_codes() -> None:
    gen = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 2, (20, 200), generator=gen)  # values up to 2^200
    sketch = CountMinSketch(num_bits=200)
    idx = sketch.indices(codes)
    for row, code in zip(idx.tolist(), codes.tolist(), strict=True):
        value = sum(bit << i for i, bit in enumerate(code))
        assert row == [value % p for p in TANG_PRIMES]


# --- SimHash -------------------------------------------------------------------------------


def test_simhash_sign_zero_maps_to_bit_one() -> None:
    bonus = SimHash(num_bits=8, seed=0, warmup_steps=0)  # raw g, hyperplanes through 0
    bonus.setup(gym.spaces.Box(-1.0, 1.0, (2,)), ACTIONS, num_envs=1)
    assert bool(bonus.codes(torch.zeros(1, 1, 2)).all())  # A @ 0 = 0 everywhere
    bonus.projection[0] = torch.tensor([1.0, -1.0])  # orthogonal to [1, 1]
    code_pos = bonus.codes(torch.tensor([[[1.0, 1.0]]]))
    code_neg = bonus.codes(torch.tensor([[[-1.0, -1.0]]]))
    assert bool(code_pos[0, 0]) and bool(code_neg[0, 0])  # both land on the 1 side


def test_simhash_identical_obs_identical_codes_and_locality() -> None:
    bonus = SimHash(num_bits=64, seed=0)
    bonus.setup(gym.spaces.Box(-10.0, 10.0, (100,)), ACTIONS, num_envs=4)
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(32, 1, 100, generator=gen)
    same = bonus.codes(torch.cat([base, base], dim=1)).reshape(32, 2, 64)
    assert torch.equal(same[:, 0], same[:, 1])
    near = base + 0.05 * torch.randn(32, 1, 100, generator=gen)
    far = torch.randn(32, 1, 100, generator=gen)
    code = bonus.codes(base)
    near_distance = (code != bonus.codes(near)).float().sum(dim=1)
    far_distance = (code != bonus.codes(far)).float().sum(dim=1)
    assert near_distance.mean() < 0.25 * far_distance.mean()
    assert 20 < far_distance.mean() < 44  # independent directions: ~k/2 bits differ


def test_simhash_counts_and_bonus() -> None:
    bonus = SimHash(num_bits=32, beta=0.01, seed=0)
    bonus.setup(gym.spaces.Discrete(20), ACTIONS, num_envs=2)  # one-hot g(s)
    observe_rollout(bonus, torch.tensor([[3, 3], [3, 5]]))
    r = bonus.compute(batch_of(torch.tensor([[3, 5, 7]])))
    expected = torch.tensor([[0.01 / math.sqrt(3), 0.01, 0.01]])
    assert r.dtype == torch.float32
    torch.testing.assert_close(r, expected)
    codes = bonus.codes(torch.arange(20).reshape(1, 20))
    assert len({tuple(c) for c in codes.tolist()}) == 20  # one-hot states get distinct codes
    bonus.eval()
    observe_rollout(bonus, torch.tensor([[7, 7]]))
    assert bonus.compute(batch_of(torch.tensor([[7]]))).item() == pytest.approx(0.01)


def test_simhash_takes_multidiscrete_and_uint8_images() -> None:
    bonus = SimHash(seed=0)
    bonus.setup(gym.spaces.MultiDiscrete([5, 5]), ACTIONS, num_envs=1)
    coords = torch.tensor([[[1, 1], [2, 2], [1, 2]]])  # same direction as ints, not as one-hots
    assert len({tuple(c) for c in bonus.codes(coords).tolist()}) == 3
    bonus = SimHash(seed=0)
    bonus.setup(MINIGRID, ACTIONS, num_envs=2)
    obs = minigrid_obs(3, 2)
    observe_rollout(bonus, obs)
    assert bonus.compute(batch_of(obs)).shape == (3, 2)


def test_simhash_whitens_box_inputs_with_the_warmup_and_offsets_its_hyperplanes() -> None:
    bonus = SimHash(num_bits=8, seed=0, warmup_steps=3, offset_scale=2.0)
    bonus.setup(gym.spaces.Box(-10.0, 10.0, (3,)), ACTIONS, num_envs=2)
    gen = torch.Generator().manual_seed(0)
    warmup = torch.randn(3, 2, 3, generator=gen) * torch.tensor([1.0, 0.01, 0.0]) + 5.0
    observe_rollout(bonus, warmup)
    assert bonus.sketch is not None and int(bonus.sketch.table.sum()) == 0  # not counted
    rows = warmup.reshape(-1, 3).double()
    mean, std = rows.mean(0), rows.std(0, unbiased=False)
    std[2] = std[1]  # feature 2 never varied: as rare as the rarest that did
    torch.testing.assert_close(bonus.center, mean.float())
    torch.testing.assert_close(bonus.scale, std.float())
    # each hyperplane passes through offset_scale times one whitened warm-up observation
    whitened = (rows.float() - bonus.center) / bonus.scale
    through = -2.0 * bonus.projection @ whitened.T  # [k, 6]: b_i for each candidate point
    assert all(
        torch.isclose(through[i], bonus.offsets[i], rtol=1e-5, atol=1e-5).any() for i in range(8)
    )
    probe = torch.randn(4, 1, 3, generator=gen) + 5.0
    g = (probe.reshape(-1, 3) - bonus.center) / bonus.scale
    assert torch.equal(bonus.codes(probe), g @ bonus.projection.T + bonus.offsets >= 0)
    frozen = (bonus.center.clone(), bonus.scale.clone(), bonus.offsets.clone())
    observe_rollout(bonus, probe * 100)  # counted now; the whitening stays as it was
    assert int(bonus.sketch.table.sum()) == 4 * len(TANG_PRIMES)
    assert all(
        torch.equal(a, b)
        for a, b in zip(frozen, (bonus.center, bonus.scale, bonus.offsets), strict=True)
    )


def _mountain_car_like(n: int, gen: torch.Generator) -> torch.Tensor:
    """``[n, 1, 2]`` states near the bottom of MountainCar's valley, as a random policy sees
    them: position ~ -0.5 +- 0.06, velocity ~ 0 +- 0.005."""
    spread, bottom = torch.tensor([0.06, 0.005]), torch.tensor([-0.5, 0.0])
    return torch.randn(n, 1, 2, generator=gen) * spread + bottom


def test_simhash_separates_states_of_a_low_dimensional_box() -> None:
    """MountainCar's 2-d observation: with raw inputs and hyperplanes through the origin every
    state near the start shared one code; with hyperplanes through the warm-up's mean, every
    state on a ray from it (more energy, same phase) shared one code."""
    low, high = np.array([-1.2, -0.07], np.float32), np.array([0.6, 0.07], np.float32)
    space = gym.spaces.Box(low, high, dtype=np.float32)
    mean = torch.tensor([-0.5, 0.0])
    ray = mean + torch.linspace(0.05, 0.9, 12)[:, None] * torch.tensor([[1.0, 0.07]])
    distinct = {}
    for offset_scale in (2.0, 0.0):  # the default, and hyperplanes through the mean
        gen = torch.Generator().manual_seed(0)
        bonus = SimHash(seed=0, offset_scale=offset_scale)
        bonus.setup(space, ACTIONS, num_envs=1)
        observe_rollout(bonus, _mountain_car_like(bonus.warmup_steps, gen))
        near_start = bonus.codes(_mountain_car_like(2048, gen))
        assert len({tuple(c) for c in near_start.int().tolist()}) > 100
        distinct[offset_scale] = len({tuple(c) for c in bonus.codes(ray[:, None]).int().tolist()})
    assert distinct[2.0] >= 6 and distinct[0.0] <= 2, distinct


def test_simhash_keeps_one_hot_boxes_apart() -> None:
    """DeepSea's uint8 one-hot grid: cells the warm-up never reached must not merge."""
    n = 20
    space = gym.spaces.Box(0, 1, (n, n), dtype=np.uint8)
    bonus = SimHash(seed=0, warmup_steps=8)
    bonus.setup(space, ACTIONS, num_envs=4)
    gen = torch.Generator().manual_seed(0)
    warmup = torch.zeros(8, 4, n, n, dtype=torch.uint8)
    for t in range(8):  # a random walk down the first rows, as DeepSea's warm-up
        cols = torch.randint(0, t + 1, (4,), generator=gen)
        warmup[t, torch.arange(4), t, cols] = 1
    observe_rollout(bonus, warmup)
    cells = torch.zeros(n * (n + 1) // 2, n, n, dtype=torch.uint8)
    k = 0
    for row in range(n):
        for col in range(row + 1):
            cells[k, row, col] = 1
            k += 1
    codes = bonus.codes(cells[:, None])
    assert len({tuple(c) for c in codes.int().tolist()}) == len(cells)


def test_simhash_state_dict_round_trip_across_the_warmup() -> None:
    space = gym.spaces.Box(-1.0, 1.0, (3,))
    gen = torch.Generator().manual_seed(0)
    steps = torch.randn(6, 2, 3, generator=gen)
    bonus = SimHash(seed=0, warmup_steps=4)
    bonus.setup(space, ACTIONS, num_envs=2)
    observe_rollout(bonus, steps[:2])  # half-way through the warm-up
    buffer = io.BytesIO()
    torch.save(bonus.state_dict(), buffer)
    buffer.seek(0)
    restored = SimHash(seed=0, warmup_steps=4)
    restored.setup(space, ACTIONS, num_envs=2)
    restored.load_state_dict(torch.load(buffer))
    for b in (bonus, restored):
        observe_rollout(b, steps[2:])
    assert torch.equal(bonus.offsets, restored.offsets)
    assert torch.equal(bonus.compute(batch_of(steps)), restored.compute(batch_of(steps)))


# --- RND -----------------------------------------------------------------------------------


def make_rnd(**kwargs: object) -> RND:
    rnd = RND(**kwargs)  # type: ignore[arg-type]
    rnd.setup(MINIGRID, ACTIONS, num_envs=4)
    return rnd


def test_rnd_target_frozen_and_predictor_trained() -> None:
    torch.manual_seed(0)
    rnd = make_rnd()
    assert rnd.target is not None and rnd.predictor is not None
    assert all(not p.requires_grad for p in rnd.target.parameters())
    target_before = [p.clone() for p in rnd.target.parameters()]
    predictor_before = [p.clone() for p in rnd.predictor.parameters()]
    obs = minigrid_obs(16, 4)
    observe_rollout(rnd, obs)
    logs = rnd.update(batch_of(obs))
    assert set(logs) == {"losses/rnd"} and logs["losses/rnd"] > 0
    target_after = list(rnd.target.parameters())
    predictor_after = list(rnd.predictor.parameters())
    assert all(torch.equal(a, b) for a, b in zip(target_before, target_after, strict=True))
    assert all(p.grad is None for p in target_after)
    assert any(
        not torch.equal(a, b) for a, b in zip(predictor_before, predictor_after, strict=True)
    )


def test_rnd_bonus_falls_on_trained_obs_not_on_unseen() -> None:
    torch.manual_seed(0)
    rnd = make_rnd(learning_rate=1e-3, update_proportion=1.0, warmup_steps=32)
    observe_rollout(rnd, minigrid_obs(32, 4, seed=1))  # warm-up statistics
    seen = minigrid_obs(1, 1, seed=2).expand(16, 4, 7, 7, 3)
    unseen = minigrid_obs(1, 1, seed=3)
    start_seen = rnd.compute(batch_of(seen[:1, :1])).item()
    start_unseen = rnd.compute(batch_of(unseen)).item()
    for _ in range(10):
        rnd.update(batch_of(seen))
    end_seen = rnd.compute(batch_of(seen[:1, :1])).item()
    end_unseen = rnd.compute(batch_of(unseen)).item()
    assert end_seen < 0.05 * start_seen
    assert end_seen < 0.1 * end_unseen
    assert end_unseen > 0.2 * start_unseen


def test_rnd_obs_statistics_frozen_in_eval() -> None:
    rnd = make_rnd()
    assert rnd.obs_rms is not None
    observe_rollout(rnd, minigrid_obs(4, 4))
    rnd.flush()
    before = {k: v.clone() for k, v in rnd.obs_rms.state_dict().items()}
    rnd.eval()
    observe_rollout(rnd, minigrid_obs(4, 4, seed=5) * 2)
    rnd.flush()
    assert all(torch.equal(v, before[k]) for k, v in rnd.obs_rms.state_dict().items())
    rnd.train()
    observe_rollout(rnd, minigrid_obs(4, 4, seed=5) * 2)
    rnd.flush()
    assert not torch.equal(rnd.obs_rms.mean, before["mean"])


def _hand_rms(data: torch.Tensor, prior: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``data`` ``[B, D]`` merged with RunningMeanStd's prior (count
    ``prior``, mean 0, variance 1), written out."""
    data = data.double()
    n = data.shape[0]
    total = n + prior
    mean = data.sum(0) / total
    var = (prior + n * data.var(0, unbiased=False) + data.mean(0) ** 2 * prior * n / total) / total
    return mean, var


def test_rnd_scores_a_rollout_with_the_statistics_from_before_it() -> None:
    """The paper's (and CleanRL's) order: reward with the old statistics, then fold the
    rollout in, then train the predictor on inputs whitened with the new ones."""
    torch.manual_seed(0)
    rnd = RND(warmup_steps=3)
    rnd.setup(gym.spaces.Box(-10.0, 10.0, (4,), np.float32), ACTIONS, num_envs=2)
    assert rnd.predictor is not None and rnd.target is not None and rnd.obs_rms is not None
    gen = torch.Generator().manual_seed(0)
    warmup = torch.randn(3, 2, 4, generator=gen)
    rollout = torch.randn(5, 2, 4, generator=gen) * 3.0 + 2.0  # far from the warm-up's stats
    observe_rollout(rnd, warmup)
    observe_rollout(rnd, rollout)
    # the rollout is scored with the statistics of the warm-up alone
    mean, var = _hand_rms(warmup.reshape(-1, 4))
    x = ((rollout.reshape(-1, 4).double() - mean) / (var + 1e-8).sqrt()).clamp(-5, 5).float()
    with torch.no_grad():
        expected = (rnd.predictor(x) - rnd.target(x)).square().sum(-1).reshape(5, 2)
    torch.testing.assert_close(rnd.compute(batch_of(rollout)), expected)
    # compute leaves the statistics alone; update folds the rollout in before training on it
    torch.testing.assert_close(rnd.obs_rms.mean, mean)
    torch.testing.assert_close(rnd.obs_rms.var, var)
    seen: list[torch.Tensor] = []
    rnd.target.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    rnd.update(batch_of(rollout))
    mean, var = _hand_rms(torch.cat([warmup, rollout]).reshape(-1, 4))
    torch.testing.assert_close(rnd.obs_rms.mean, mean)
    torch.testing.assert_close(rnd.obs_rms.var, var)
    x = ((rollout.reshape(-1, 4).double() - mean) / (var + 1e-8).sqrt()).clamp(-5, 5).float()
    torch.testing.assert_close(seen[0], x)


def test_rnd_pending_steps_survive_a_checkpoint_apart_from_the_statistics() -> None:
    torch.manual_seed(0)
    rnd = make_rnd(warmup_steps=4)
    observe_rollout(rnd, minigrid_obs(4, 4))  # warm-up
    rollout = minigrid_obs(6, 4, seed=1)
    observe_rollout(rnd, rollout[:3])
    buffer = io.BytesIO()
    torch.save(rnd.state_dict(), buffer)  # a checkpoint in the middle of a rollout
    buffer.seek(0)
    restored = make_rnd(warmup_steps=4)
    restored.load_state_dict(torch.load(buffer))
    for bonus in (rnd, restored):
        observe_rollout(bonus, rollout[3:])
    assert torch.equal(rnd.compute(batch_of(rollout)), restored.compute(batch_of(rollout)))
    for bonus in (rnd, restored):
        torch.manual_seed(1)
        bonus.update(batch_of(rollout))
    assert rnd.obs_rms is not None and restored.obs_rms is not None
    torch.testing.assert_close(rnd.obs_rms.mean, restored.obs_rms.mean, rtol=1e-12, atol=0)
    assert torch.equal(rnd.compute(batch_of(rollout)), restored.compute(batch_of(rollout)))


def test_rnd_update_subsamples_before_the_forward_pass() -> None:
    rnd = make_rnd(update_epochs=3, num_minibatches=4, update_proportion=0.25)
    assert rnd.predictor is not None and rnd.target is not None
    sizes: dict[str, list[int]] = {"predictor": [], "target": []}
    for name, net in (("predictor", rnd.predictor), ("target", rnd.target)):
        net.register_forward_pre_hook(
            lambda _m, args, name=name: sizes[name].append(int(args[0].shape[0]))
        )
    rnd.update(batch_of(minigrid_obs(64, 4)))  # 256 samples -> 64 per epoch -> 4 x 16
    assert sizes["predictor"] == [16] * 12
    assert sizes["target"] == [256]  # the fixed target embeds the batch once for all epochs


def test_rnd_picks_conv_stack_for_large_images_only() -> None:
    rnd = RND()
    rnd.setup(gym.spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8), ACTIONS, num_envs=2)
    assert any(isinstance(m, torch.nn.Conv2d) for m in rnd.modules())
    r = rnd.compute(batch_of(torch.randint(0, 255, (2, 2, 4, 84, 84), dtype=torch.uint8)))
    assert r.shape == (2, 2)
    rnd = RND()
    rnd.setup(gym.spaces.Box(0, 255, (84, 84, 1), dtype=np.uint8), ACTIONS, num_envs=2)
    assert rnd.compute(batch_of(torch.zeros(1, 2, 84, 84, 1, dtype=torch.uint8))).shape == (1, 2)
    assert not any(isinstance(m, torch.nn.Conv2d) for m in make_rnd().modules())  # 7x7x3: MLP
    with pytest.raises(ValueError, match="encoder='conv'"):
        RND(encoder="conv").setup(MINIGRID, ACTIONS, num_envs=1)


def test_rnd_optimiser_survives_round_trip() -> None:
    torch.manual_seed(0)
    rnd = make_rnd(learning_rate=1e-3)
    obs = minigrid_obs(8, 4)
    observe_rollout(rnd, obs)
    rnd.update(batch_of(obs))
    restored = make_rnd(learning_rate=1e-3)
    restored.load_state_dict(rnd.state_dict())
    for bonus in (rnd, restored):  # identical Adam moments -> identical next step
        torch.manual_seed(1)
        bonus.update(batch_of(obs))
    assert torch.equal(rnd.compute(batch_of(obs)), restored.compute(batch_of(obs)))


# --- All bonuses -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BONUSES))
def test_state_dict_round_trip_gives_identical_compute(name: str) -> None:
    torch.manual_seed(0)
    bonus = make_bonus(name)
    assert isinstance(bonus, Bonus)
    bonus.setup(MINIGRID, ACTIONS, num_envs=4)
    obs = minigrid_obs(8, 4)
    observe_rollout(bonus, obs)
    bonus.update(batch_of(obs))
    buffer = io.BytesIO()
    torch.save(bonus.state_dict(), buffer)  # as a checkpoint would
    buffer.seek(0)
    torch.manual_seed(123)  # a fresh bonus starts from other random weights
    restored = make_bonus(name)
    restored.setup(MINIGRID, ACTIONS, num_envs=4)
    restored.load_state_dict(torch.load(buffer, weights_only=False))  # as RunDir loads it
    # both see the same new steps, and compute scores the last ones observed (the protocol's
    # rule for bonuses with per-episode state)
    probe = minigrid_obs(3, 4, seed=9)
    for b in (bonus, restored):
        observe_rollout(b, probe)
    assert torch.equal(bonus.compute(batch_of(probe)), restored.compute(batch_of(probe)))


def test_registry_names_and_errors() -> None:
    assert {"count", "rnd", "simhash"} <= set(BONUSES)
    assert isinstance(make_bonus("count", beta=0.5), Count)
    assert isinstance(make_bonus("simhash", num_bits=16), SimHash)
    assert isinstance(make_bonus("rnd"), RND)
    with pytest.raises(ValueError) as info:
        make_bonus("rdn")
    names = ", ".join(sorted(BONUSES))
    assert str(info.value) == f"unknown bonus 'rdn'; choose one of: {names}"
    with pytest.raises(ValueError, match="unknown argument lr for bonus 'rnd'") as info:
        make_bonus("rnd", lr=1e-3)
    assert "learning_rate" in str(info.value)


def test_first_visit_pays_rnd_once_per_view_and_episode():
    rnd = FirstVisit(RND(warmup_steps=0))
    space = gym.spaces.Box(0, 10, (3,), np.uint8)
    rnd.setup(space, gym.spaces.Discrete(2), num_envs=2)
    a, b = torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5, 6], dtype=torch.uint8)
    start0, start1, reset0 = (torch.full((3,), k, dtype=torch.uint8) for k in (7, 8, 9))
    # env 0 sees a, a, b, then its episode ends on b (the next starts at reset0) and a is new
    # again; env 1 sees b each step
    obs = [(start0, start1), (a, b), (a, b), (reset0, b)]
    next_obs = [(a, b), (a, b), (b, b), (a, b)]
    ended = [[False, False], [False, False], [True, False], [False, False]]
    steps = [
        _step(torch.stack(o), torch.stack(n), end)
        for o, n, end in zip(obs, next_obs, ended, strict=True)
    ]
    for step in steps:
        rnd.observe(step)
    batch = steps_batch(steps)
    paid = rnd.compute(batch) > 0
    expected = torch.tensor([[True, True], [False, False], [True, False], [True, False]])
    assert torch.equal(paid, expected)
    with pytest.raises(RuntimeError, match="observe"):
        rnd.compute(batch)  # the flags were used up: a second compute has none


def _step(obs: torch.Tensor, next_obs: torch.Tensor, ended: list[bool]) -> Transitions:
    """One vector step ``[1, N, ...]`` from ``obs`` ``[N, ...]`` to ``next_obs``."""
    n = int(obs.shape[0])
    return Transitions(
        obs=obs[None],
        actions=torch.zeros(1, n),
        next_obs=next_obs[None],
        ext_rewards=torch.zeros(1, n),
        terminated=torch.tensor([ended]),
        truncated=torch.zeros(1, n, dtype=torch.bool),
    )


class _Ones:
    """A bonus of 1 everywhere, to read FirstVisit's flags."""

    episodic = False
    warmup_steps = 0

    def setup(self, *_: object) -> None: ...

    def observe(self, step: Transitions) -> None: ...

    def compute(self, batch: Transitions) -> torch.Tensor:
        return torch.ones(batch.shape)

    def update(self, batch: Transitions) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, object]:
        return {}

    def load_state_dict(self, state: dict[str, object]) -> None: ...


def _paid(bonus: FirstVisit, steps: list[Transitions]) -> list[list[bool]]:
    for step in steps:
        bonus.observe(step)
    return (bonus.compute(steps_batch(steps)) > 0).tolist()


def test_first_visit_tells_float_views_apart() -> None:
    bonus = FirstVisit(_Ones())
    bonus.setup(gym.spaces.Box(0.0, 1.0, (1,), np.float32), ACTIONS, num_envs=1)
    views = [torch.tensor([[x]]) for x in (0.1, 0.3, 0.7, 0.3, 0.7)]
    steps = [_step(views[t], views[t + 1], [False]) for t in range(4)]
    assert _paid(bonus, steps) == [[True], [True], [False], [False]]


def test_first_visit_counts_each_episode_start_as_visited() -> None:
    bonus = FirstVisit(_Ones())
    bonus.setup(gym.spaces.Box(0, 9, (2,), np.int64), ACTIONS, num_envs=2)
    a, b, c, d, e = (torch.tensor([k, k]) for k in range(5))
    # env 0: the run starts at a; a -> b -> a (back to the start: not paid) -> c, which ends
    # the episode; same-step auto-reset hands d, the next episode's start, as the next obs;
    # d -> e -> d (back to that start: not paid).
    # env 1: starts at e; e -> e (the start itself: not paid) -> a -> a -> ...
    obs = [(a, e), (b, e), (a, a), (d, a), (e, a)]
    next_obs = [(b, e), (a, a), (c, a), (e, a), (d, b)]
    ended = [[False, False], [False, False], [True, False], [False, False], [False, False]]
    steps = [
        _step(torch.stack(o), torch.stack(n), end)
        for o, n, end in zip(obs, next_obs, ended, strict=True)
    ]
    expected = [[True, False], [False, True], [True, False], [True, False], [False, True]]
    assert _paid(bonus, steps) == expected


def test_first_visit_state_dict_resumes_bit_exact() -> None:
    space = gym.spaces.Box(0, 3, (2,), np.uint8)
    gen = torch.Generator().manual_seed(0)
    views = torch.randint(0, 3, (13, 3, 2), dtype=torch.uint8, generator=gen)
    ends = torch.rand(12, 3, generator=gen) < 0.15
    ends[5, 1] = True  # the checkpoint falls right after an episode end of env 1
    steps = []
    for t in range(12):
        obs = views[t].clone()
        if t > 0:
            obs[ends[t - 1]] = 3  # the next episode's first obs (same-step auto-reset)
        steps.append(_step(obs, views[t + 1], ends[t].tolist()))

    def fresh() -> FirstVisit:
        bonus = FirstVisit(_Ones())
        bonus.setup(space, ACTIONS, num_envs=3)
        return bonus

    def resumed(bonus: FirstVisit) -> FirstVisit:
        buffer = io.BytesIO()
        torch.save(bonus.state_dict(), buffer)  # as a checkpoint would
        buffer.seek(0)
        restored = fresh()
        restored.load_state_dict(torch.load(buffer))  # weights_only: tensors, ints and lists
        return restored

    reference = _paid(fresh(), steps)
    # a checkpoint between two rollouts of 6 steps
    first = fresh()
    assert _paid(first, steps[:6]) == reference[:6]
    assert _paid(resumed(first), steps[6:]) == reference[6:]
    # a checkpoint in the middle of a rollout: the flags observed so far travel with it
    first = fresh()
    for step in steps[:6]:
        first.observe(step)
    second = resumed(first)
    for step in steps[6:]:
        second.observe(step)
    assert (second.compute(steps_batch(steps)) > 0).tolist() == reference


def steps_batch(steps: list[Transitions]) -> Transitions:
    return Transitions(
        *(
            torch.cat([getattr(s, f) for s in steps])
            for f in ("obs", "actions", "next_obs", "ext_rewards", "terminated", "truncated")
        )
    )


def test_first_visit_starts_new_episodes_when_told() -> None:
    space = gym.spaces.Box(0, 9, (1,), np.int64)
    bonus = FirstVisit(_Ones())
    bonus.setup(space, ACTIONS, num_envs=2)
    v = [torch.tensor([k, k]) for k in range(4)]
    _paid(bonus, [_step(v[0], v[1], [False, False]), _step(v[1], v[2], [False, False])])
    restored = FirstVisit(_Ones())
    restored.setup(space, ACTIONS, num_envs=2)
    restored.load_state_dict(bonus.state_dict())
    # the episodes go on: 0, 1 and 2 were seen in them
    assert _paid(restored, [_step(v[2], v[1], [False, False])]) == [[False, False]]
    # env 0 is reset without an episode end (a resumed run that could not restore its envs):
    # its new episode starts at 3, and 1 is new in it; env 1 goes on
    restored.load_state_dict(bonus.state_dict())
    restored.start_new_episodes(np.array([True, False]))
    reset = torch.tensor([3, 2])
    assert _paid(restored, [_step(reset, v[1], [False, False])]) == [[True, False]]


def test_make_bonus_wraps_in_first_visit_and_round_trips_its_state():
    bonus = make_bonus("rnd", first_visit=True, learning_rate=1e-3)
    assert isinstance(bonus, FirstVisit) and isinstance(bonus.inner, RND)
    assert bonus.warmup_steps == bonus.inner.warmup_steps
    space = gym.spaces.Box(0, 10, (3,), np.uint8)
    bonus.setup(space, gym.spaces.Discrete(2), num_envs=2)
    other = make_bonus("rnd", first_visit=True)
    other.setup(space, gym.spaces.Discrete(2), num_envs=2)
    other.load_state_dict(bonus.state_dict())
    x = torch.randint(0, 10, (1, 2, 3), dtype=torch.uint8)
    flags = torch.zeros(1, 2, dtype=torch.bool)
    step = Transitions(x, torch.zeros(1, 2), x, torch.zeros(1, 2), flags, flags)
    bonus.observe(step)
    other.observe(step)
    assert torch.equal(bonus.compute(step), other.compute(step))
    with pytest.raises(ValueError, match="first_visit"):
        make_bonus("count", first_vist=True)
