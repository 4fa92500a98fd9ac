"""Count, SimHash (with its count-min sketch), RND and the bonus registry."""

from __future__ import annotations

import io
import math
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
import torch

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


def batch_of(next_obs: torch.Tensor) -> Transitions:
    """Transitions whose ``next_obs`` is ``next_obs`` ``[T, N, ...]``; other fields are zeros."""
    t, n = int(next_obs.shape[0]), int(next_obs.shape[1])
    zeros = torch.zeros(t, n)
    return Transitions(
        obs=torch.zeros_like(next_obs),
        actions=zeros.long(),
        next_obs=next_obs,
        ext_rewards=zeros,
        terminated=zeros.bool(),
        truncated=zeros.bool(),
    )


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


def test_count_does_not_count_in_eval_mode() -> None:
    count = Count()
    count.setup(gym.spaces.Discrete(5), ACTIONS, num_envs=1)
    count.eval()
    count.observe(batch_of(torch.tensor([[3]])))
    assert count.num_unique == 0
    count.train()
    count.observe(batch_of(torch.tensor([[3]])))
    assert count.num_unique == 1


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
    bonus = SimHash(num_bits=8, seed=0)
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
    rnd = make_rnd(learning_rate=1e-3, update_proportion=1.0)
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
    restored.load_state_dict(torch.load(buffer))
    probe = torch.cat([obs, minigrid_obs(2, 4, seed=9)])
    assert torch.equal(bonus.compute(batch_of(probe)), restored.compute(batch_of(probe)))


def test_registry_names_and_errors() -> None:
    assert sorted(BONUSES) == ["count", "rnd", "simhash"]
    assert isinstance(make_bonus("count", beta=0.5), Count)
    assert isinstance(make_bonus("simhash", num_bits=16), SimHash)
    assert isinstance(make_bonus("rnd"), RND)
    with pytest.raises(ValueError) as info:
        make_bonus("rdn")
    assert str(info.value) == "unknown bonus 'rdn'; choose one of: count, rnd, simhash"
    with pytest.raises(ValueError, match="unknown argument lr for bonus 'rnd'") as info:
        make_bonus("rnd", lr=1e-3)
    assert "learning_rate" in str(info.value)


def test_first_visit_pays_rnd_once_per_view_and_episode():
    rnd = FirstVisit(RND(warmup_steps=0))
    space = gym.spaces.Box(0, 10, (3,), np.uint8)
    rnd.setup(space, gym.spaces.Discrete(2), num_envs=2)
    a, b = torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5, 6], dtype=torch.uint8)
    # env 0 sees a, a, b, then its episode ends on b and a is new again; env 1 sees b each step
    next_obs = [torch.stack([a, b]), torch.stack([a, b]), torch.stack([b, b]), torch.stack([a, b])]
    ended = [[False, False], [False, False], [True, False], [False, False]]
    steps = []
    for obs, end in zip(next_obs, ended, strict=True):
        step = Transitions(
            obs=obs[None],
            actions=torch.zeros(1, 2),
            next_obs=obs[None],
            ext_rewards=torch.zeros(1, 2),
            terminated=torch.tensor([end]),
            truncated=torch.zeros(1, 2, dtype=torch.bool),
        )
        rnd.observe(step)
        steps.append(step)
    batch = Transitions(
        *(
            torch.cat([getattr(s, f) for s in steps])
            for f in ("obs", "actions", "next_obs", "ext_rewards", "terminated", "truncated")
        )
    )
    paid = rnd.compute(batch) > 0
    expected = torch.tensor([[True, True], [False, False], [True, False], [True, False]])
    assert torch.equal(paid, expected)
    with pytest.raises(RuntimeError, match="observe"):
        rnd.compute(batch)  # the flags were used up: a second compute has none


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
