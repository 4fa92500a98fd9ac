"""The memory-based bonuses (NGU, episodic curiosity) and their shared memory maths
(``explora.models.memory``): hand computations, per-env loops, boundaries, capacity, state."""

from __future__ import annotations

import io
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from explora.bonuses import BONUSES, EC, NGU, Transitions, make_bonus
from explora.models.memory import (
    EpisodicMemory,
    MovingAverage,
    knn_sq_distances,
    masked_percentile,
    ngu_episodic_reward,
)

ACTIONS = gym.spaces.Discrete(3)
MINIGRID = gym.spaces.Box(0, 10, (7, 7, 3), dtype=np.uint8)
POINTS = gym.spaces.Box(-100.0, 100.0, (2,), dtype=np.float32)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the agents run bonuses (``PPOConfig.torch_threads``): on a busy
    2-core machine a second thread waits more than it works."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def step_of(obs: Tensor, next_obs: Tensor, ended: list[bool] | None = None) -> Transitions:
    """A ``T == 1`` step of N envs from ``obs`` and ``next_obs`` ``[N, ...]``."""
    n = int(obs.shape[0])
    ends = torch.tensor(ended if ended is not None else [False] * n)
    return Transitions(
        obs=obs.unsqueeze(0),
        actions=torch.zeros(1, n, dtype=torch.long),
        next_obs=next_obs.unsqueeze(0),
        ext_rewards=torch.zeros(1, n),
        terminated=ends.unsqueeze(0),
        truncated=torch.zeros(1, n, dtype=torch.bool),
    )


def stack(steps: list[Transitions]) -> Transitions:
    fields = ("obs", "actions", "next_obs", "ext_rewards", "terminated", "truncated")
    return Transitions(*(torch.cat([getattr(s, f) for s in steps]) for f in fields))


def round_trip(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)  # as a checkpoint would
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


# --- the memory -------------------------------------------------------------------------------


def test_knn_over_envs_equals_a_per_env_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    n, rows, dim, k = 5, 23, 4, 6
    keys = torch.randn(n, rows, dim, generator=gen)
    queries = torch.randn(n, dim, generator=gen)
    lengths = torch.tensor([23, 0, 3, 6, 17])
    valid = torch.arange(rows) < lengths[:, None]
    distances, found = knn_sq_distances(queries, keys, valid, k, chunk_rows=7)
    assert distances.shape == found.shape == (n, k)
    for i in range(n):
        own = keys[i, : lengths[i]]
        expected = sorted(((own - queries[i]) ** 2).sum(-1).tolist())[:k]
        assert found[i].tolist() == [j < len(expected) for j in range(k)]
        torch.testing.assert_close(distances[i, : len(expected)], torch.tensor(expected))
        assert torch.isinf(distances[i, len(expected) :]).all()


def test_knn_finds_an_identical_key_at_exactly_zero() -> None:
    keys = torch.tensor([[[0.1, 0.7], [3.0, -2.0]]])
    for norms in (None, keys.square().sum(-1)):
        distances, _ = knn_sq_distances(
            torch.tensor([[3.0, -2.0]]), keys, torch.ones(1, 2).bool(), 1, key_sq_norms=norms
        )
        assert distances.tolist() == [[0.0]]


def test_knn_ranked_by_stored_norms_gives_the_exact_distances() -> None:
    gen = torch.Generator().manual_seed(1)
    n, rows, dim, k = 6, 300, 32, 10
    keys = torch.randn(n, rows, dim, generator=gen) * 3
    keys[0, 17] = 0.5  # a query's exact twin
    queries = torch.randn(n, dim, generator=gen)
    queries[0] = 0.5
    lengths = torch.tensor([300, 0, 4, 10, 150, 299])
    valid = torch.arange(rows) < lengths[:, None]
    exact, found = knn_sq_distances(queries, keys, valid, k)
    fast, fast_found = knn_sq_distances(queries, keys, valid, k, key_sq_norms=keys.square().sum(-1))
    assert torch.equal(found, fast_found)
    assert torch.equal(exact, fast)  # the same keys, their distances computed the same way
    assert exact[0, 0] == 0.0


def test_memory_fifo_overwrites_the_oldest_row_when_full() -> None:
    memory = EpisodicMemory(2, capacity=3, fields={"x": ((), torch.float32)}, initial_rows=1)
    for value in range(5):
        memory.add(torch.tensor([True, value < 2]), {"x": torch.tensor([value, 10.0 + value])})
    assert memory.lengths.tolist() == [3, 2] and memory.added.tolist() == [5, 2]
    assert memory.rows("x")[0].tolist() == [3.0, 4.0, 2.0]  # 0 and 1 overwritten, in order
    assert memory.rows("x")[1, :2].tolist() == [10.0, 11.0]
    assert memory.valid().tolist() == [[True, True, True], [True, True, False]]


def test_memory_random_replacement_overwrites_the_drawn_row() -> None:
    memory = EpisodicMemory(1, capacity=4, fields={"x": ((), torch.float32)}, replacement="random")
    for value in range(4):
        memory.add(torch.tensor([True]), {"x": torch.tensor([float(value)])})
    gen = torch.Generator().manual_seed(3)
    drawn = int(torch.randint(0, 4, (1,), generator=torch.Generator().manual_seed(3)))
    memory.add(torch.tensor([True]), {"x": torch.tensor([9.0])}, generator=gen)
    expected = [0.0, 1.0, 2.0, 3.0]
    expected[drawn] = 9.0
    assert memory.rows("x")[0].tolist() == expected and memory.lengths.tolist() == [4]


def test_memory_resets_only_the_envs_asked_and_round_trips() -> None:
    memory = EpisodicMemory(3, capacity=8, fields={"x": ((2,), torch.float32)})
    memory.add(torch.tensor([True, True, True]), {"x": torch.ones(3, 2)})
    memory.add(torch.tensor([True, False, True]), {"x": 2 * torch.ones(3, 2)})
    memory.reset(torch.tensor([False, False, True]))
    assert memory.lengths.tolist() == [2, 1, 0]
    restored = EpisodicMemory(3, capacity=8, fields={"x": ((2,), torch.float32)})
    restored.load_state_dict(round_trip(memory.state_dict()))
    assert torch.equal(restored.valid(), memory.valid())
    assert torch.equal(restored.rows("x")[memory.valid()], memory.rows("x")[memory.valid()])
    restored.add(torch.tensor([True, True, True]), {"x": 3 * torch.ones(3, 2)})
    assert restored.lengths.tolist() == [3, 2, 1]


def test_masked_percentile_matches_numpy_per_row() -> None:
    gen = torch.Generator().manual_seed(1)
    values = torch.rand(6, 9, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([9, 1, 2, 5, 0, 7])
    valid = torch.arange(9) < lengths[:, None]
    for q in (0.0, 37.5, 90.0, 100.0):
        got = masked_percentile(values, valid, q)
        for i, length in enumerate(lengths.tolist()):
            want = np.percentile(values[i, :length].numpy(), q) if length else 0.0
            assert math.isclose(float(got[i]), float(want), rel_tol=1e-12, abs_tol=1e-12)


def test_moving_average_is_bias_corrected() -> None:
    average = MovingAverage(momentum=0.9)
    average.update(torch.tensor(5.0))
    assert float(average.mean) == pytest.approx(5.0)  # not 0.5
    average.update(torch.tensor(1.0))
    assert float(average.mean) == pytest.approx((0.9 * 0.1 * 5 + 0.1 * 1) / (1 - 0.81))


# --- NGU: the episodic reward -------------------------------------------------------------------


def _hand_reward(sq: list[float], mean: float, *, eps: float, xi: float, c: float, s_max: float):
    kernel = [eps / (max(d / mean - xi, 0.0) + eps) for d in sq]
    s = math.sqrt(sum(kernel)) + c
    return 0.0 if s > s_max else 1.0 / s


def test_ngu_kernel_reward_by_hand() -> None:
    sq = torch.tensor([[0.0, 0.004, 1.0, 4.0], [0.5, 2.0, math.inf, math.inf]])
    found = torch.isfinite(sq)
    kwargs = {"kernel_epsilon": 1e-4, "cluster_distance": 0.008, "pseudo_count_constant": 1e-3}
    got = ngu_episodic_reward(sq, found, 0.5, max_similarity=8.0, **kwargs)
    # 0.004 / 0.5 = 0.008: exactly at the cluster distance, so it counts as a full visit (K = 1)
    want0 = _hand_reward([0.0, 0.004, 1.0, 4.0], 0.5, eps=1e-4, xi=0.008, c=1e-3, s_max=8)
    want1 = _hand_reward([0.5, 2.0], 0.5, eps=1e-4, xi=0.008, c=1e-3, s_max=8)
    torch.testing.assert_close(got, torch.tensor([want0, want1]))
    kernels = [1.0, 1.0, 1e-4 / (2 - 0.008 + 1e-4), 1e-4 / (8 - 0.008 + 1e-4)]
    assert want0 == pytest.approx(1 / (math.sqrt(sum(kernels)) + 1e-3))
    # the cut-off: s = sqrt(2.0...) + c > 1.2 pays nothing; the other row (s ~ 0.015) is paid
    cut = ngu_episodic_reward(sq, found, 0.5, max_similarity=1.2, **kwargs)
    assert cut[0] == 0.0 and cut[1] == pytest.approx(want1)


class _Identity(nn.Module):
    """phi(s) = s, for hand computations."""

    def forward(self, obs: Tensor) -> Tensor:
        return obs.float().reshape(obs.shape[0], -1)


def _points_ngu(**kwargs: Any) -> NGU:
    ngu = NGU(embedding_size=2, warmup_steps=0, **kwargs)
    ngu.setup(POINTS, ACTIONS, num_envs=2)
    assert ngu.idf is not None
    ngu.idf.embedding = _Identity()  # type: ignore[assignment]
    return ngu


def test_ngu_episodic_reward_against_a_hand_computation_with_the_running_distance() -> None:
    ngu = _points_ngu(num_neighbors=2, distance_momentum=0.5)
    p = torch.tensor
    # env 0 walks 0 -> 1 -> 3 -> 1; env 1 stays at its start (0, 5)
    path0 = [p([0.0, 0.0]), p([1.0, 0.0]), p([3.0, 0.0]), p([1.0, 0.0])]
    stay = p([0.0, 5.0])
    memory0: list[Tensor] = [path0[0]]
    memory1: list[Tensor] = [stay]
    total = weight = 0.0
    for t in range(3):
        ngu.observe(step_of(torch.stack([path0[t], stay]), torch.stack([path0[t + 1], stay])))
        knn = []
        for mem, query in ((memory0, path0[t + 1]), (memory1, stay)):
            knn.append(sorted(float(((m - query) ** 2).sum()) for m in mem)[:2])
        batch_mean = np.mean([d for env in knn for d in env])
        total, weight = 0.5 * total + 0.5 * batch_mean, 0.5 * weight + 0.5
        for env, sq in enumerate(knn):
            want = _hand_reward(sq, total / weight, eps=1e-4, xi=0.008, c=1e-3, s_max=8.0)
            assert float(ngu._pending[-1][env]) == pytest.approx(want, rel=1e-6), (t, env)
        memory0.append(path0[t + 1])
        memory1.append(stay)
    assert float(ngu.distance_mean.mean) == pytest.approx(total / weight)
    # the revisit of 1 at t = 2 is worth about a visit (K = 1): 1 / (1 + c); novel 3 far more
    assert float(ngu._pending[2][0]) == pytest.approx(1 / (1 + 1e-3), rel=1e-3)
    assert float(ngu._pending[1][0]) > 10 * float(ngu._pending[2][0])


def test_ngu_memory_resets_exactly_at_one_envs_boundary() -> None:
    ngu = _points_ngu(num_neighbors=3)
    a, b, c = torch.tensor([0.0, 0.0]), torch.tensor([4.0, 0.0]), torch.tensor([0.0, 4.0])
    ngu.observe(step_of(torch.stack([a, a]), torch.stack([b, b])))
    ngu.observe(step_of(torch.stack([b, b]), torch.stack([a, a]), ended=[True, False]))
    assert ngu.memory is not None
    assert ngu.memory.lengths.tolist() == [0, 3]  # env 0's final obs closed its episode
    # env 0's next episode starts at c (the obs of the following step); both envs reach b
    ngu.observe(step_of(torch.stack([c, a]), torch.stack([b, b])))
    assert ngu.memory.lengths.tolist() == [2, 4]
    rewards = ngu._pending[-1]
    # env 1 has seen b in its episode (a full visit); env 0's new episode has only seen c
    assert float(rewards[1]) == pytest.approx(1 / (1 + 1e-3), rel=1e-3)
    assert float(rewards[0]) > 20 * float(rewards[1])


def test_ngu_memory_capacity_keeps_the_newest_rows() -> None:
    ngu = _points_ngu(memory_capacity=3)
    xs = [torch.tensor([float(i), 0.0]) for i in range(6)]
    for t in range(5):
        ngu.observe(step_of(torch.stack([xs[t], xs[t]]), torch.stack([xs[t + 1], xs[t + 1]])))
    assert ngu.memory is not None
    assert ngu.memory.lengths.tolist() == [3, 3]
    assert sorted(ngu.memory.rows("phi")[0, :, 0].tolist()) == [3.0, 4.0, 5.0]  # FIFO


def test_ngu_start_new_episodes_forgets_only_those_envs() -> None:
    ngu = _points_ngu()
    a, b = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])
    ngu.observe(step_of(torch.stack([a, a]), torch.stack([b, b])))
    ngu.start_new_episodes(np.array([False, True]))
    assert ngu.memory is not None and ngu.memory.lengths.tolist() == [2, 0]
    ngu.observe(step_of(torch.stack([b, a]), torch.stack([a, b])))
    assert ngu.memory.lengths.tolist() == [3, 2]  # env 1 restarted from a, then b


# --- NGU: the lifelong multiplier ----------------------------------------------------------------


def test_ngu_multiplier_by_hand_and_clipped_to_one_and_L() -> None:
    ngu = NGU()
    ngu.setup(MINIGRID, ACTIONS, num_envs=1)
    ngu.err_rms.update(torch.tensor([-1.0, 3.0]))  # mean 1, std 2 (with the tiny prior count)
    mean, std = float(ngu.err_rms.mean), float(ngu.err_rms.std)
    errors = torch.tensor([[0.0], [1.0], [3.0], [9.0], [100.0]])
    got = ngu.multiplier(errors)
    want = [min(max(1 + (e - mean) / std, 1.0), 5.0) for e in errors.flatten().tolist()]
    torch.testing.assert_close(got.flatten(), torch.tensor(want))
    assert got.flatten().tolist() == pytest.approx([1.0, 1.0, 2.0, 5.0, 5.0], rel=1e-3)


def test_ngu_multiplier_is_not_stuck_at_one_after_training() -> None:
    # The fault to avoid: min-max scaling RND's error before clip(1 + err, 1, L) leaves the
    # multiplier at 1 for most states. Here the unseen half of a batch must be lifted above 1.
    torch.manual_seed(0)
    ngu = NGU(rnd_learning_rate=1e-3, rnd_update_proportion=1.0, warmup_steps=16)
    ngu.setup(MINIGRID, ACTIONS, num_envs=8)
    gen = torch.Generator().manual_seed(0)
    seen = torch.randint(0, 11, (16, 8, 7, 7, 3), dtype=torch.uint8, generator=gen)
    batch = stack([step_of(seen[t], seen[t]) for t in range(16)])
    for t in range(16):
        ngu.observe(step_of(seen[t], seen[t]))  # the warm-up: RND's input statistics
    for _ in range(15):
        ngu.update(batch)
    fresh = torch.randint(0, 11, (16, 8, 7, 7, 3), dtype=torch.uint8, generator=gen)
    probe = stack([step_of(seen[t], seen[t]) for t in range(16)] + [step_of(f, f) for f in fresh])
    multiplier = ngu.multiplier(ngu.rnd.compute(probe))
    assert multiplier.min() >= 1.0 and multiplier.max() <= 5.0
    assert (multiplier[16:] > 1.0).float().mean() > 0.9  # unseen states: lifted
    assert (multiplier[:16] == 1.0).float().mean() > 0.9  # trained-on states: not lifted


class _FixedErrors(nn.Module):
    """Stands in for NGU's RND: a fixed error per env, no statistics, no training."""

    def __init__(self, errors: list[float]) -> None:
        super().__init__()
        self.errors = torch.tensor(errors)

    def observe(self, step: Transitions) -> None:
        pass

    def compute(self, batch: Transitions) -> Tensor:
        return self.errors.expand(batch.shape[0], -1).clone()

    def update(self, batch: Transitions) -> dict[str, float]:
        return {"losses/rnd": 0.0}


def test_ngu_compute_is_episodic_times_multiplier_of_the_last_steps() -> None:
    ngu = _points_ngu()
    ngu.rnd = _FixedErrors([1.0, 3.0])  # type: ignore[assignment]
    ngu.err_rms.mean.fill_(2.0)  # mean 2, std 1: multipliers 1 + (1 - 2) -> 1 and 1 + 1
    ngu.err_rms.var.fill_(1.0)
    ngu.err_rms.count.fill_(10.0)
    xs = [torch.tensor([[float(i), 0.0], [0.0, float(i)]]) for i in range(4)]
    steps = [step_of(xs[t], xs[t + 1]) for t in range(3)]
    for step in steps:
        ngu.observe(step)
    episodic = torch.stack(ngu._pending[-2:])
    reward = ngu.compute(stack(steps[1:]))
    assert reward.shape == (2, 2) and reward.dtype == torch.float32
    torch.testing.assert_close(reward, episodic * torch.tensor([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="observe"):
        ngu.compute(stack(steps))  # its values were taken: nothing is pending


def test_ngu_pays_more_for_a_never_seen_state_than_for_one_seen_many_times() -> None:
    torch.manual_seed(0)
    ngu = NGU(warmup_steps=0)
    ngu.setup(MINIGRID, ACTIONS, num_envs=2)
    gen = torch.Generator().manual_seed(1)
    home, other = torch.randint(0, 11, (2, 7, 7, 3), dtype=torch.uint8, generator=gen)
    for _ in range(10):
        ngu.observe(step_of(torch.stack([home, home]), torch.stack([home, home])))
    ngu.observe(step_of(torch.stack([home, home]), torch.stack([home, other])))
    reward = ngu.compute(stack([step_of(torch.stack([home, home]), torch.stack([home, other]))]))
    assert reward.shape == (1, 2)
    assert float(reward[0, 1]) > 5 * float(reward[0, 0])


def test_ngu_setup_rejects_what_it_cannot_take() -> None:
    with pytest.raises(ValueError, match="Discrete or Box actions"):
        NGU().setup(MINIGRID, gym.spaces.MultiDiscrete([2, 2]), 2)
    with pytest.raises(ValueError, match="ngu cannot take observations from Dict"):
        NGU().setup(gym.spaces.Dict({"a": ACTIONS}), ACTIONS, 2)
    with pytest.raises(ValueError, match="max_multiplier"):
        NGU(max_multiplier=0.5)
    with pytest.raises(ValueError, match="unknown embedding 'pixels'; choose one of"):
        NGU(embedding="pixels")


def test_ngu_with_a_vae_embedding_remembers_the_vae_posterior_mean_and_trains_the_vae() -> None:
    torch.manual_seed(0)
    ngu = NGU(embedding="vae", embedding_size=4, warmup_steps=0, num_neighbors=2)
    ngu.setup(MINIGRID, ACTIONS, num_envs=2)
    views = torch.randint(0, 6, (4, 2, 7, 7, 3), dtype=torch.uint8)
    for t in range(3):
        ngu.observe(step_of(views[t], views[t + 1]))
    vae = ngu.idf.vae  # type: ignore[union-attr]
    assert ngu.memory is not None
    with torch.no_grad():  # each env's memory: its first view, then every view reached
        for env in range(2):
            want = vae.mean(views[:, env])
            torch.testing.assert_close(ngu.memory.rows("phi")[env, :4], want)
    batch = Transitions(
        obs=views[:3],
        actions=torch.zeros(3, 2, dtype=torch.long),
        next_obs=views[1:],
        ext_rewards=torch.zeros(3, 2),
        terminated=torch.zeros(3, 2, dtype=torch.bool),
        truncated=torch.zeros(3, 2, dtype=torch.bool),
    )
    ngu.compute(batch)
    before = [p.detach().clone() for p in vae.parameters()]
    metrics = ngu.update(batch)
    assert "losses/ngu_vae" in metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True))
    # no inverse model: any action space goes
    NGU(embedding="vae").setup(MINIGRID, gym.spaces.MultiDiscrete([2, 2]), 2)


# --- episodic curiosity --------------------------------------------------------------------------


class _FixedEC(EC):
    """EC whose comparator is fixed: C(x, m) = exp(-|x - m|) on 1-d observations."""

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        super().setup(observation_space, action_space, num_envs)
        self.embedding = _Identity()  # type: ignore[assignment]

    def similarities(self, embedded: Tensor) -> tuple[Tensor, Tensor]:
        assert self.memory is not None
        rows = self.memory.rows("obs").float().reshape(self.num_envs, -1)
        return torch.exp(-(rows - embedded).abs()), self.memory.valid()


LINE = gym.spaces.Box(-100.0, 100.0, (1,), dtype=np.float32)


def _fixed_ec(**kwargs: Any) -> _FixedEC:
    ec = _FixedEC(embedding_size=1, **kwargs)
    ec.setup(LINE, ACTIONS, num_envs=2)
    ec._trained = True  # pay the bonus from the first step (the fixed C needs no training)
    return ec


def test_ec_aggregation_and_memory_add_rule_by_hand() -> None:
    ec = _fixed_ec(alpha=2.0)
    col = torch.tensor  # one observation per env, as [N, 1]
    path = [[0.0, 0.0], [0.1, 3.0], [2.0, 0.2], [0.05, 3.1]]
    memories: list[list[float]] = [[0.0], [0.0]]
    for t in range(3):
        obs, nxt = col(path[t]).unsqueeze(1), col(path[t + 1]).unsqueeze(1)
        ec.observe(step_of(obs, nxt))
        for env in range(2):
            sims = np.exp(-np.abs(np.array(memories[env]) - path[t + 1][env]))
            bonus = 2.0 * (0.5 - np.percentile(sims, 90))
            assert float(ec._pending[-1][env]) == pytest.approx(bonus, rel=1e-5), (t, env)
            if bonus > 0:  # novel: joins the memory
                memories[env].append(path[t + 1][env])
        assert ec.memory is not None
        held = ec.memory.lengths.tolist()
        assert held == [len(m) for m in memories], t
    # env 0: 0.1 is close to 0 (not added), 2.0 far (added), 0.05 close again; env 1: 3.0
    # far (added), 0.2 close to 0 and 3.1 close to 3 (neither added)
    assert memories == [[0.0, 2.0], [0.0, 3.0]]


def test_ec_memory_resets_at_one_envs_boundary_and_starts_with_the_first_obs() -> None:
    ec = _fixed_ec()
    col = torch.tensor
    ec.observe(step_of(col([[0.0], [0.0]]), col([[5.0], [5.0]])))
    ec.observe(step_of(col([[5.0], [5.0]]), col([[9.0], [9.0]]), ended=[False, True]))
    assert ec.memory is not None and ec.memory.lengths.tolist() == [3, 0]
    ec.observe(step_of(col([[9.0], [7.0]]), col([[0.0], [0.0]])))
    assert ec.memory.lengths.tolist() == [3, 2]  # env 1: its first obs 7, then the new 0
    assert float(ec._pending[-1][0]) < 0 < float(ec._pending[-1][1])  # 0 seen / new in env 1
    assert ec._episode.tolist() == [0, 1]


def test_ec_memory_capacity_replaces_a_random_row() -> None:
    ec = _fixed_ec(memory_capacity=3)
    col = torch.tensor
    for t in range(6):
        ec.observe(step_of(col([[10.0 * t], [10.0 * t]]), col([[10.0 * t + 10], [10.0 * t + 10]])))
    assert ec.memory is not None and ec.memory.lengths.tolist() == [3, 3]
    assert ec.memory.added.tolist() == [7, 7]  # every far point was novel: 7 added, 3 kept


def test_ec_pairs_respect_k_gap_and_episodes() -> None:
    torch.manual_seed(0)
    ec = EC(history_steps=64, train_pairs=4000)
    ec.setup(LINE, ACTIONS, num_envs=3)
    ends = torch.zeros(80, 3, dtype=torch.bool)
    ends[30, 0] = ends[50, 1] = True
    for t in range(80):
        obs = torch.full((3, 1), float(t))
        ec.observe(step_of(obs, obs + 1, ends[t].tolist()))
    time_i, time_j, envs, labels = ec.sample_pairs(4000)
    assert len(labels) > 1000 and labels.mean() == 0.5
    gap = (time_i - time_j).abs()
    assert ((gap >= 1) & (gap <= 5))[labels == 1].all()
    assert (gap > 25)[labels == 0].all()
    assert ((time_i >= 80 - 64) & (time_j >= 80 - 64) & (time_i < 80) & (time_j < 80)).all()
    # same episode: env 0 ended at step 30, env 1 at step 50 (step t's obs is time t)
    for cut, env in ((30, 0), (50, 1)):
        mine = envs == env
        assert ((time_i[mine] <= cut) == (time_j[mine] <= cut)).all()
    # the history holds each step's obs: time t is the value t
    x_i = ec._history[time_i % 64, envs, 0]
    assert torch.equal(x_i, time_i.float())


def test_ec_bonus_is_zero_until_the_comparator_has_trained() -> None:
    torch.manual_seed(0)
    ec = EC(train_interval=4, history_steps=32)
    ec.setup(LINE, ACTIONS, num_envs=2)
    steps = [step_of(torch.full((2, 1), float(t)), torch.full((2, 1), t + 1.0)) for t in range(40)]
    for step in steps[:30]:
        ec.observe(step)
    assert torch.equal(ec.compute(stack(steps[:30])), torch.zeros(30, 2))
    metrics = ec.update(stack(steps[:30]))
    assert set(metrics) == {"losses/ec_reachability", "charts/ec_accuracy", "charts/ec_memory_size"}
    for step in steps[30:]:
        ec.observe(step)
    assert ec.compute(stack(steps[30:])).abs().sum() > 0


def test_ec_learns_reachability_on_a_line() -> None:
    # A walk along a line: nearby points are reachable, far ones are not. After training C
    # tells them apart.
    torch.manual_seed(0)
    ec = EC(history_steps=256, train_interval=1)
    space = gym.spaces.Box(0, 300, (1,), dtype=np.float32)
    ec.setup(space, ACTIONS, num_envs=4)
    for t in range(256):
        obs = torch.full((4, 1), float(t)) / 100
        ec.observe(step_of(obs, obs + 0.01))
    for _ in range(20):
        metrics = ec.train_comparator()
    assert metrics["charts/ec_accuracy"] > 0.95
    assert ec.embedding is not None and ec.comparator is not None
    with torch.no_grad():
        e = ec.embedding(torch.tensor([[1.0], [1.02], [2.0]]))
        near = float(ec.comparator(e[:1], e[1:2]))
        far = float(ec.comparator(e[:1], e[2:3]))
    assert near > 0.5 > far


def test_ec_setup_rejects_what_it_cannot_take_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="ec cannot take observations from Dict"):
        EC().setup(gym.spaces.Dict({"a": ACTIONS}), ACTIONS, 2)
    with pytest.raises(ValueError, match="history_steps must exceed"):
        EC(history_steps=20)
    with pytest.raises(ValueError, match="unknown replacement"):
        EC(replacement="lru")  # type: ignore[arg-type]


# --- both ------------------------------------------------------------------------------------


def _episodes(seed: int, t: int, n: int, end_prob: float = 0.03) -> list[Transitions]:
    """MiniGrid-like steps with episode ends; the obs after an end is another view."""
    gen = torch.Generator().manual_seed(seed)
    views = torch.randint(0, 4, (t + 1, n, 7, 7, 3), dtype=torch.uint8, generator=gen)
    ends = torch.rand(t, n, generator=gen) < end_prob
    steps = []
    for i in range(t):
        obs = views[i].clone()
        if i > 0:
            obs[ends[i - 1]] = 7  # the next episode's first obs
        steps.append(step_of(obs, views[i + 1], ends[i].tolist()))
    return steps


@pytest.mark.parametrize("name", ["ngu", "ec"])
def test_registered_with_keyword_defaults(name: str) -> None:
    assert name in BONUSES
    bonus = make_bonus(name)
    assert isinstance(bonus, NGU if name == "ngu" else EC) and bonus.episodic


@pytest.mark.parametrize("name", ["ngu", "ec"])
def test_state_dict_round_trip_mid_episode_is_bit_exact(name: str) -> None:
    """A bonus resumed from a checkpoint taken mid-rollout (memories, pending values, history
    and optimiser in it) goes on exactly as the uninterrupted one, and taking the checkpoint
    changed nothing."""
    kwargs: dict[str, Any] = {"warmup_steps": 4} if name == "ngu" else {"train_interval": 8}
    steps = _episodes(0, 80, 3)

    def fresh(seed: int) -> Any:
        torch.manual_seed(seed)  # a fresh bonus starts from other random weights
        bonus = make_bonus(name, **kwargs)
        bonus.setup(MINIGRID, ACTIONS, num_envs=3)
        return bonus

    def play(bonus: Any, part: list[Transitions]) -> tuple[Tensor, dict]:
        for step in part:
            bonus.observe(step)
        return bonus.compute(stack(part)), bonus.update(stack(part))

    reference, first = fresh(0), fresh(0)
    for bonus in (reference, first):
        play(bonus, steps[:40])
        for step in steps[40:45]:
            bonus.observe(step)
    saved = round_trip(first.state_dict())  # mid-rollout: 5 steps observed, not computed
    second = fresh(123)
    second.load_state_dict(saved)
    results = []
    for bonus in (reference, first, second):
        for step in steps[45:50]:
            bonus.observe(step)
        value = bonus.compute(stack(steps[40:50]))
        metrics = bonus.update(stack(steps[40:50]))
        results.append((value, metrics, play(bonus, steps[50:])[0]))
    assert results[0][0].abs().sum() > 0
    for value, metrics, later in results[1:]:
        assert torch.equal(value, results[0][0]) and metrics == results[0][1]
        assert torch.equal(later, results[0][2])


@pytest.mark.parametrize("name", ["ngu", "ec"])
def test_compute_returns_t_by_n_float32_without_grad(name: str) -> None:
    torch.manual_seed(0)
    bonus = make_bonus(name)
    bonus.setup(MINIGRID, ACTIONS, num_envs=3)
    steps = _episodes(1, 40, 3)
    for step in steps[:40]:
        bonus.observe(step)
    bonus.update(stack(steps[:40]))
    for step in steps[:8]:
        bonus.observe(step)
    value = bonus.compute(stack(steps[:8]))
    assert value.shape == (8, 3) and value.dtype == torch.float32 and not value.requires_grad


def test_ngu_update_reuses_computes_rnd_errors_only_for_the_same_rollout() -> None:
    """``update`` folds into mu_err, sigma_err the RND errors ``compute`` saw: taken from
    ``compute`` when it scored this very batch (one RND pass saved), computed again for any
    other batch or once RND changed -- the same statistics either way."""
    import copy

    torch.manual_seed(0)
    ngu = NGU(warmup_steps=0, rnd_update_proportion=1.0)
    ngu.setup(MINIGRID, ACTIONS, num_envs=4)
    gen = torch.Generator().manual_seed(2)
    views = torch.randint(0, 11, (3, 6, 4, 7, 7, 3), dtype=torch.uint8, generator=gen)
    rollouts = [stack([step_of(v[t], v[t + 1]) for t in range(5)]) for v in views]
    for step in [step_of(views[0, t], views[0, t + 1]) for t in range(5)]:
        ngu.observe(step)
    ngu.update(rollouts[0])  # statistics and RND off their initial state
    calls = 0
    real = ngu.rnd.compute

    def counted(batch: Transitions) -> Tensor:
        nonlocal calls
        calls += 1
        return real(batch)

    for k, other in ((1, 1), (1, 2)):  # update on the rollout computed, then on another one
        fresh = copy.deepcopy(ngu)
        for t in range(5):
            step = step_of(views[k, t], views[k, t + 1])
            ngu.observe(step)
            fresh.observe(step)
        ngu.rnd.compute = counted  # type: ignore[method-assign]
        calls = 0
        ngu.compute(rollouts[k])
        metrics = ngu.update(rollouts[other])
        assert calls == (1 if other == k else 2), (k, other, calls)
        ngu.rnd.compute = real  # type: ignore[method-assign]
        fresh._pending = []
        expected = fresh.update(rollouts[other])  # nothing cached: computed in update
        assert metrics == expected
        torch.testing.assert_close(ngu.err_rms.mean, fresh.err_rms.mean, rtol=0, atol=0)
        torch.testing.assert_close(ngu.err_rms.var, fresh.err_rms.var, rtol=0, atol=0)
