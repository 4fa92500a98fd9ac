"""The VQ-VAE with its EMA codebook (explora.models.vqvae) and the vqcount bonus."""

from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from bonus_batches import batch_of

from explora.bonuses import BONUSES, Transitions, make_bonus
from explora.bonuses.vqcount import VQCount
from explora.models.vqvae import VQVAE, VectorQuantizerEMA, code_map, perplexity

MINIGRID = gym.spaces.Box(0, 255, (7, 7, 3), dtype=np.uint8)
ACTIONS = gym.spaces.Discrete(7)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the agents run bonuses: on a busy 2-core machine a second thread
    waits more than it works (a 4-view training step measured 28 ms with one, 1 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def views(n: int, seed: int = 0) -> torch.Tensor:
    """``[n, 7, 7, 3]`` MiniGrid-like views: object, colour and state codes in range."""
    gen = torch.Generator().manual_seed(seed)
    obj = torch.randint(0, 11, (n, 7, 7, 1), generator=gen)
    colour = torch.randint(0, 6, (n, 7, 7, 1), generator=gen)
    state = torch.randint(0, 3, (n, 7, 7, 1), generator=gen)
    return torch.cat([obj, colour, state], dim=-1).to(torch.uint8)


def step_of(next_obs: torch.Tensor, ended: list[bool] | None = None) -> Transitions:
    """A ``T == 1`` batch whose ``next_obs`` is ``next_obs`` ``[N, ...]``."""
    n = int(next_obs.shape[0])
    done = torch.tensor(ended if ended is not None else [False] * n).reshape(1, n)
    return Transitions(
        obs=torch.zeros_like(next_obs).unsqueeze(0),
        actions=torch.zeros(1, n, dtype=torch.long),
        next_obs=next_obs.unsqueeze(0),
        ext_rewards=torch.zeros(1, n),
        terminated=done,
        truncated=torch.zeros(1, n, dtype=torch.bool),
    )


# --- the EMA codebook -------------------------------------------------------------------------


def test_ema_codebook_update_by_hand() -> None:
    vq = VectorQuantizerEMA(2, 2, decay=0.75, epsilon=0.1)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    vq.cluster_sum.copy_(vq.codebook)
    vq.cluster_size.fill_(1.0)
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    codes = vq.nearest(h)
    assert codes.tolist() == [0, 0, 1]
    vq.ema_update(h, codes)
    # n = (2, 1); sums (1, 1) and (9, 9); lambda = 0.75
    size = [0.75 * 1 + 0.25 * 2, 0.75 * 1 + 0.25 * 1]  # (1.25, 1.0)
    sums = [[0.75 * 0 + 0.25 * 1] * 2, [0.75 * 10 + 0.25 * 9] * 2]  # (0.25, 0.25), (9.75, 9.75)
    total = sum(size)  # 2.25
    smoothed = [(s + 0.1) / (total + 2 * 0.1) * total for s in size]  # 1.239796, 1.010204
    expected = torch.tensor([[v / smoothed[k] for v in sums[k]] for k in range(2)])
    torch.testing.assert_close(vq.cluster_size, torch.tensor(size))  # stored unsmoothed
    torch.testing.assert_close(vq.cluster_sum, torch.tensor(sums))
    torch.testing.assert_close(vq.codebook, expected)
    assert vq.codebook[0, 0].item() == pytest.approx(0.201646, rel=1e-5)
    assert vq.codebook[1, 0].item() == pytest.approx(9.651515, rel=1e-5)
    assert vq.idle.tolist() == [0, 0]
    vq.ema_update(h[:2], codes[:2])  # code 1 unused this time
    assert vq.idle.tolist() == [0, 1]


def test_codes_are_nearest_and_loss_uses_the_codebook_before_the_update() -> None:
    vq = VectorQuantizerEMA(3, 2, commitment=0.25)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
    h = torch.tensor([[0.9, 1.2], [-1.5, 0.1], [0.1, -0.1]])
    quantized, codes, loss = vq(h)
    assert codes.tolist() == [1, 2, 0]
    torch.testing.assert_close(quantized, vq.codebook[codes])
    e = vq.codebook[codes]
    assert loss.item() == pytest.approx(0.25 * (h - e).square().mean().item())


def test_straight_through_gradient_reaches_the_encoder() -> None:
    # commitment 0: the encoder's only gradient is the decoder's, passed straight through
    model = VQVAE(MINIGRID, num_codes=8, commitment=0.0, seed=0)
    loss, parts = model.loss(views(32))
    assert parts["commitment"].item() == 0.0
    loss.backward()
    grad = model.encoder[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.quantizer.codebook.grad is None  # the codebook moves by EMA only


def test_dead_code_is_restarted_on_an_encoder_output() -> None:
    vq = VectorQuantizerEMA(3, 2, dead_after=2)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [100.0, 100.0]]))
    vq.cluster_sum.copy_(vq.codebook)
    h = torch.tensor([[0.1, 0.0], [0.9, 0.1], [0.2, 0.1], [1.1, -0.1]])
    gen = torch.Generator().manual_seed(0)
    vq.ema_update(h, vq.nearest(h))
    assert vq.dead().tolist() == [False, False, False]  # idle 1 < 2
    assert vq.restart(vq.dead(), h, gen) == 0
    vq.ema_update(h, vq.nearest(h))
    assert vq.dead().tolist() == [False, False, True]
    assert vq.restart(vq.dead(), h, gen) == 1
    moved = vq.codebook[2]
    assert any(torch.equal(moved, row) for row in h)  # now on one of the batch's outputs
    assert vq.cluster_size[2].item() == 1.0 and torch.equal(vq.cluster_sum[2], moved)
    assert vq.idle[2].item() == 0


def test_train_step_restarts_dead_codes() -> None:
    model = VQVAE(MINIGRID, num_codes=16, dead_after=3, seed=0)
    obs = views(4)  # four views can keep at most four codes alive
    restarts = sum(model.train_step(obs)["vq/dead_restarts"] for _ in range(10))
    assert restarts >= 12


def test_perplexity_by_hand() -> None:
    codes = torch.tensor([0, 0, 0, 1])  # p = (3/4, 1/4)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert perplexity(codes, 4) == pytest.approx(expected)  # 1.7548
    assert perplexity(torch.arange(8), 8) == pytest.approx(8.0)
    assert perplexity(torch.zeros(5, dtype=torch.long), 8) == pytest.approx(1.0)


def test_first_step_places_codes_on_encoder_outputs() -> None:
    model = VQVAE(MINIGRID, num_codes=4, seed=0)
    obs = views(64)
    with torch.no_grad():
        h = model.encode(obs).reshape(-1, model.code_dim)
    model.quantizer.initialise(h, torch.Generator().manual_seed(0))
    for row in model.quantizer.codebook:
        assert (h == row).all(dim=1).any()


def test_model_fits_a_few_views_and_reconstructs_them() -> None:
    torch.manual_seed(0)
    model = VQVAE(MINIGRID, num_codes=8, learning_rate=3e-3, seed=0)
    obs = views(4, seed=1)
    for _ in range(300):
        metrics = model.train_step(obs)
    assert metrics["vq/reconstruction"] < 0.1
    assert torch.equal(model.reconstruct(obs), obs.long())
    quality = model.evaluate(obs)
    assert quality["view_accuracy"] == 1.0 and quality["distinct_cells"] == 4
    assert quality["dead_fraction"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Discrete(5),
        gym.spaces.MultiDiscrete([3, 4]),
        gym.spaces.MultiBinary(6),
        gym.spaces.Box(0, 1, (4, 4), dtype=np.uint8),
        gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32),
    ],
)
def test_model_takes_other_spaces(space: gym.Space) -> None:
    model = VQVAE(space, num_codes=4, num_latents=2, seed=0)
    obs = torch.stack([torch.as_tensor(space.sample()) for _ in range(16)])
    metrics = model.train_step(obs)
    assert np.isfinite(metrics["vq/reconstruction"])
    assert model.codes(obs).shape == (16, 2)


def test_model_state_dict_round_trip_with_codebook_and_optimiser() -> None:
    a = VQVAE(MINIGRID, num_codes=8, dead_after=2, seed=0)
    obs = views(64)
    for _ in range(5):
        a.train_step(obs)
    b = VQVAE(MINIGRID, num_codes=8, dead_after=2, seed=1)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=False))
    for name in ("codebook", "cluster_size", "cluster_sum", "idle"):
        assert torch.equal(getattr(a.quantizer, name), getattr(b.quantizer, name))
    for _ in range(5):  # Adam's moments, the EMAs and the restart generator all carried over
        assert a.train_step(obs[:32]) == b.train_step(obs[:32])
    assert torch.equal(a.codes(obs), b.codes(obs))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_code_map_by_hand() -> None:
    model = VQVAE(MINIGRID, num_codes=4, seed=0)
    model.codes = lambda obs: obs[:, 0, 0, :1].long()  # type: ignore[method-assign]
    v = torch.zeros(5, 7, 7, 3, dtype=torch.uint8)
    v[:, 0, 0, 0] = torch.tensor([2, 3, 3, 1, 0])
    positions = np.array([[1, 1], [1, 1], [1, 1], [0, 2], [1, 1]])
    got = code_map(model, v, positions, (2, 3))
    expected = np.full((2, 3, 1), -1)
    expected[1, 1, 0] = 3  # codes 2, 3, 3, 0 at (1, 1): 3 is the most frequent
    expected[0, 2, 0] = 1
    assert np.array_equal(got, expected)


# --- the vqcount bonus ------------------------------------------------------------------------


def make_vqcount(num_envs: int = 2, seed: int = 0, **kwargs: object) -> VQCount:
    torch.manual_seed(seed)
    bonus = VQCount(**{"warmup_steps": 0, "num_codes": 8, **kwargs})  # type: ignore[arg-type]
    bonus.setup(MINIGRID, ACTIONS, num_envs)
    return bonus


def distinct_pair(bonus: VQCount) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views the bonus's model puts in different cells (it is trained until it does)."""
    pair = views(2, seed=3)
    assert bonus.model is not None
    for _ in range(200):
        if bonus.cells(pair)[0].tolist() != bonus.cells(pair)[1].tolist():
            return pair[0], pair[1]
        bonus.model.train_step(pair)
    raise AssertionError("the model never told the two views apart")


def test_never_seen_view_gets_more_bonus_than_a_frequent_one() -> None:
    bonus = make_vqcount(beta=2.0)
    seen, unseen = distinct_pair(bonus)
    for _ in range(8):
        bonus.observe(step_of(torch.stack([seen, seen])))  # 16 visits of seen's cell
    r = bonus.compute(batch_of(torch.stack([seen, unseen])[None]))
    assert r.shape == (1, 2) and r.dtype == torch.float32
    torch.testing.assert_close(r, torch.tensor([[2.0 / 4.0, 2.0]]))  # beta / sqrt(16), beta / 1
    assert bonus.counts(torch.stack([seen, unseen])[None]).tolist() == [[16, 0]]


def test_lifelong_counts_are_shared_by_a_cell_and_frozen_in_eval() -> None:
    bonus = make_vqcount()
    a, b = distinct_pair(bonus)
    bonus.observe(step_of(torch.stack([a, b])))
    bonus.observe(step_of(torch.stack([a, a])))
    assert bonus.counts(torch.stack([a, b])[None]).tolist() == [[3, 1]]
    bonus.eval()
    bonus.observe(step_of(torch.stack([a, a])))
    assert bonus.update(batch_of(torch.stack([a, a])[None])) == {}
    bonus.train()
    assert bonus.counts(torch.stack([a, b])[None]).tolist() == [[3, 1]]


def test_episodic_counts_reset_at_one_envs_boundary_only() -> None:
    bonus = make_vqcount(num_envs=3, mode="episodic")
    assert bonus.episodic
    v = views(1, seed=5)[0]
    same = torch.stack([v, v, v])
    ends = [[False, False, False], [True, False, False], [False, False, False], [False] * 3]
    for ended in ends:
        bonus.observe(step_of(same, ended))
    r = bonus.compute(batch_of(same.unsqueeze(0).expand(4, -1, -1, -1, -1)))
    counts = torch.tensor([[1, 1, 1], [2, 2, 2], [1, 3, 3], [2, 4, 4]], dtype=torch.float32)
    torch.testing.assert_close(r, counts.rsqrt())
    bonus.start_new_episodes(np.array([False, False, True]))  # a reset without an end
    bonus.observe(step_of(same))
    torch.testing.assert_close(
        bonus.compute(batch_of(same[None])), torch.tensor([[3.0, 5.0, 1.0]]).rsqrt()
    )


def test_both_modes_combine_episodic_and_lifelong_counts() -> None:
    for combine in ("product", "sum"):
        bonus = make_vqcount(mode="both", combine=combine)
        a, b = distinct_pair(bonus)
        for _ in range(3):
            bonus.observe(batch_of(torch.stack([a, a])[None]))  # a: lifelong 6 by now
        bonus.observe(step_of(torch.stack([a, b]), ended=[False, False]))
        r = bonus.compute(batch_of(torch.stack([a, b])[None]))
        ep, life = torch.tensor([4.0, 1.0]), torch.tensor([7.0, 1.0])
        want = (ep * life).rsqrt() if combine == "product" else ep.rsqrt() + life.rsqrt()
        torch.testing.assert_close(r, want[None])


def test_compute_needs_the_steps_observed_in_episodic_modes() -> None:
    bonus = make_vqcount(mode="episodic")
    with pytest.raises(RuntimeError, match="observe"):
        bonus.compute(batch_of(views(2).reshape(1, 2, 7, 7, 3)))


def test_update_logs_codebook_usage_and_keeps_a_history() -> None:
    obs = views(64).reshape(8, 8, 7, 7, 3)
    bonus = make_vqcount(num_envs=8, num_codes=16, batch_size=64, dead_after=2)
    for _ in range(3):
        for t in range(8):
            bonus.observe(batch_of(obs[t : t + 1]))
        metrics = bonus.update(batch_of(obs))
    for key in ("vq/perplexity", "vq/used_codes", "vq/dead_restarts", "vq/probe_drift"):
        assert key in metrics and math.isfinite(metrics[key])
    # 64 distinct views share several codes: a perplexity (the effective number of codes in
    # use) above 1 and never above the count of codes actually used
    used = metrics["vq/used_codes"]
    assert 2 <= used <= 16 and 1.0 < metrics["vq/perplexity"] <= used + 1e-6, metrics
    assert 0.0 <= metrics["vq/probe_drift"] <= 1.0
    assert bonus.history["update"] == [1.0, 2.0, 3.0]
    assert len(bonus.history["used_codes"]) == 3
    assert bonus.code_usage().shape == (16,)
    positions = np.array([[1, 2]] * 32 + [[3, 3]] * 32)
    picture = bonus.code_map(views(64), positions, (5, 5))
    assert picture.shape == (5, 5, 1) and (picture >= 0).sum() == 2


def test_setup_rejects_unsupported_spaces_and_bad_arguments() -> None:
    bonus = VQCount()
    with pytest.raises(ValueError, match="vqcount cannot take observations from Dict"):
        bonus.setup(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), ACTIONS, 2)
    with pytest.raises(ValueError, match="unknown mode 'both-ways'"):
        VQCount(mode="both-ways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown combine"):
        VQCount(combine="max")  # type: ignore[arg-type]


def test_registry_builds_vqcount() -> None:
    assert BONUSES["vqcount"][0] is VQCount
    bonus = make_bonus("vqcount", mode="episodic", num_codes=32)
    assert isinstance(bonus, VQCount) and bonus.episodic and bonus.num_codes == 32
    with pytest.raises(ValueError, match="accepted"):
        make_bonus("vqcount", codes=3)


def _drive(bonus: VQCount, obs: torch.Tensor, ends: torch.Tensor) -> list[object]:
    """Observe a rollout ``[T, N, ...]`` step by step, compute, update; return the results."""
    for t in range(obs.shape[0]):
        bonus.observe(step_of(obs[t], ends[t].tolist()))
    batch = batch_of(obs)
    return [bonus.compute(batch), bonus.update(batch), bonus.counts(obs)]


@pytest.mark.parametrize("mode", ["lifelong", "both"])
def test_state_dict_round_trip_gives_identical_results(mode: str) -> None:
    kwargs = {"mode": mode, "num_codes": 16, "batch_size": 32, "dead_after": 2, "warmup_steps": 3}
    a = make_vqcount(num_envs=4, seed=0, **kwargs)
    obs = views(4 * 4 * 6, seed=7).reshape(6, 4, 4, 7, 7, 3)[:, :, :]  # 6 rollouts of 4 steps
    obs = obs[:, :, :, :, :, :].reshape(6, 4, 4, 7, 7, 3)
    ends = torch.rand(6, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.2
    for k in range(3):
        _drive(a, obs[k], ends[k])
    a.observe(step_of(obs[3, 0], ends[3, 0].tolist()))  # a step observed, not yet computed
    state = a.state_dict()
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in state.items() if torch.is_tensor(v))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    b = make_vqcount(num_envs=4, seed=1, **kwargs)
    b.load_state_dict(torch.load(buffer, weights_only=False))
    for bonus in (a, b):
        for t in range(1, 4):
            bonus.observe(step_of(obs[3, t], ends[3, t].tolist()))
    results = []
    for bonus in (a, b):
        out = [bonus.compute(batch_of(obs[3])), bonus.update(batch_of(obs[3]))]
        for k in (4, 5):
            out += _drive(bonus, obs[k], ends[k])
        results.append(out)
    for x, y in zip(*results, strict=True):
        if torch.is_tensor(x):
            assert torch.equal(x, y)
        else:
            assert x == y
    assert a.history == b.history


def test_recount_gives_exact_counts_through_the_current_codes() -> None:
    bonus = make_vqcount(num_envs=4, num_codes=16, batch_size=64, drift="recount")
    rollout = views(6, seed=11)[torch.randint(0, 6, (8, 4), generator=torch.Generator())]
    for _ in range(3):
        for t in range(8):
            bonus.observe(batch_of(rollout[t : t + 1]))
        bonus.update(batch_of(rollout))  # the codes move; the counts follow them
    flat = rollout.reshape(-1, 7, 7, 3)
    cells = [tuple(c) for c in bonus.cells(flat).tolist()]
    expected = [3 * sum(other == cell for other in cells) for cell in cells]  # 3 rollouts
    assert bonus.counts(rollout).reshape(-1).tolist() == expected


def test_online_counts_keep_the_cells_they_were_counted_in() -> None:
    bonus = make_vqcount(num_envs=4, num_codes=16, batch_size=64, drift="online")
    rollout = views(32, seed=12).reshape(8, 4, 7, 7, 3)
    before = []
    for t in range(8):
        bonus.observe(batch_of(rollout[t : t + 1]))
        before.append(bonus.cells(rollout[t]))
    total = int(bonus.sketch.table.sum()) if bonus.sketch is not None else 0
    bonus.update(batch_of(rollout))
    assert bonus.sketch is not None and int(bonus.sketch.table.sum()) == total  # not rebuilt
