"""NovelD, RIDE and E3B: their formulas against hand computations, per-episode state that resets
exactly at one env copy's episode end, state keys against observation bytes, and state_dict
round trips that carry the episodes in progress."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import pytest
import torch

from explora.bonuses import BONUSES, E3B, RIDE, Bonus, NovelD, Transitions, make_bonus
from explora.bonuses.visits import EpisodeVisits, byte_keys

ACTIONS = gym.spaces.Discrete(3)
GRID = gym.spaces.Box(0, 10, (7, 7, 3), dtype=np.uint8)
VECTOR = gym.spaces.Box(0.0, 10.0, (2,), dtype=np.float32)


def step(
    obs: torch.Tensor,
    next_obs: torch.Tensor,
    ended: Sequence[bool] | None = None,
    keys: Sequence[int] | None = None,
    actions: torch.Tensor | None = None,
) -> Transitions:
    """One vector step ``[1, N, ...]`` from ``obs`` ``[N, ...]`` to ``next_obs``."""
    n = int(obs.shape[0])
    flags = torch.tensor([list(ended) if ended is not None else [False] * n])
    return Transitions(
        obs=obs[None],
        actions=(actions if actions is not None else torch.arange(n) % 3)[None],
        next_obs=next_obs[None],
        ext_rewards=torch.zeros(1, n),
        terminated=flags,
        truncated=torch.zeros(1, n, dtype=torch.bool),
        state_keys=None if keys is None else torch.tensor([list(keys)], dtype=torch.int64),
    )


def batch(steps: list[Transitions]) -> Transitions:
    keys = [s.state_keys for s in steps]
    return Transitions(
        *(
            torch.cat([getattr(s, f) for s in steps])
            for f in ("obs", "actions", "next_obs", "ext_rewards", "terminated", "truncated")
        ),
        state_keys=None if keys[0] is None else torch.cat(keys),  # type: ignore[arg-type]
    )


def run(bonus: Bonus, steps: list[Transitions]) -> torch.Tensor:
    for s in steps:
        bonus.observe(s)
    return bonus.compute(batch(steps))


def rollout(num_steps: int, num_envs: int, seed: int, ends: float = 0.15) -> list[Transitions]:
    """Random MiniGrid-like steps with episode ends and same-step auto-reset: after an end the
    next step's ``obs`` is a fresh view, not the final one; states repeat often."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randint(0, 11, (6, 7, 7, 3), dtype=torch.uint8, generator=gen)
    pick = torch.randint(0, 6, (num_steps + 1, num_envs), generator=gen)
    ended = torch.rand(num_steps, num_envs, generator=gen) < ends
    steps, current = [], pool[pick[0]]
    for t in range(num_steps):
        following = pool[pick[t + 1]]
        actions = torch.randint(0, 3, (num_envs,), generator=gen)
        steps.append(step(current, following, ended[t].tolist(), actions=actions))
        current = following.clone()
        current[ended[t]] = torch.randint(0, 11, (7, 7, 3), dtype=torch.uint8, generator=gen)
    return steps


def end_episode(steps: list[Transitions], t: int, env: int) -> list[Transitions]:
    """``steps`` with env ``env``'s episode ending at step ``t``; step ``t + 1`` then starts
    from a fresh view (same-step auto-reset)."""
    out = list(steps)
    ended = (steps[t].terminated[0] | steps[t].truncated[0]).clone()
    ended[env] = True
    out[t] = step(
        steps[t].obs[0], steps[t].next_obs[0], ended.tolist(), actions=steps[t].actions[0]
    )
    if t + 1 < len(steps):
        start = steps[t + 1].obs[0].clone()
        start[env] = 10 - start[env]
        nxt = steps[t + 1]
        out[t + 1] = step(
            start, nxt.next_obs[0], (nxt.terminated[0]).tolist(), actions=nxt.actions[0]
        )
    return out


def restored(bonus: torch.nn.Module, fresh: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    buffer = io.BytesIO()
    torch.save(bonus.state_dict(), buffer)  # as a checkpoint would
    buffer.seek(0)
    torch.manual_seed(1234)  # the copy starts from other random weights
    other = fresh()
    other.load_state_dict(torch.load(buffer, weights_only=False))
    return other


# --- NovelD ---------------------------------------------------------------------------------


def noveld_with_novelty(**kwargs: object) -> NovelD:
    """NovelD on 2-d float observations whose novelty n(x) is set by hand: x[0]."""
    bonus = NovelD(warmup_steps=0, **kwargs)  # type: ignore[arg-type]
    bonus.setup(VECTOR, ACTIONS, num_envs=2)
    bonus.novelty = lambda obs: obs[..., 0].float()  # type: ignore[method-assign]
    return bonus


def v(novelty: float, tag: float = 0.0) -> torch.Tensor:
    return torch.tensor([novelty, tag])


def test_noveld_formula_on_hand_set_novelty() -> None:
    bonus = noveld_with_novelty()
    # env 0: start s0 (n 1) -> a (n 3): 3 - 0.5 = 2.5 -> b (n 1): 1 - 1.5 < 0, positive part 0
    #        -> a again: not a first visit, 0 -> s0 (the episode's first obs): visited, 0
    # env 1: start c (n 2) -> d (n 2): 2 - 1 = 1 -> e (n 4), episode ends: 4 - 1 = 3;
    #        the next episode starts at f (n 1) -> d (new in this episode): 2 - 0.5 = 1.5
    #        -> f (its first obs): 0
    s0, a, b, c, d, e, f = v(1), v(3), v(1, 1), v(2), v(2, 1), v(4), v(1, 2)
    steps = [
        step(torch.stack([s0, c]), torch.stack([a, d])),
        step(torch.stack([a, d]), torch.stack([b, e]), [False, True]),
        step(torch.stack([b, f]), torch.stack([a, d])),
        step(torch.stack([a, d]), torch.stack([s0, f])),
    ]
    expected = torch.tensor([[2.5, 1.0], [0.0, 3.0], [0.0, 1.5], [0.0, 0.0]])
    torch.testing.assert_close(run(bonus, steps), expected)


def test_noveld_alpha_weighs_the_state_left_behind() -> None:
    bonus = noveld_with_novelty(alpha=0.25)
    steps = [step(torch.stack([v(4), v(8)]), torch.stack([v(3), v(1)]))]
    torch.testing.assert_close(run(bonus, steps), torch.tensor([[2.0, 0.0]]))


def test_noveld_novelty_is_rnd_error_as_a_norm_before_the_update() -> None:
    torch.manual_seed(0)
    bonus = NovelD(warmup_steps=0, learning_rate=1e-2, update_proportion=1.0)
    bonus.setup(GRID, ACTIONS, num_envs=2)
    steps = rollout(6, 2, seed=0, ends=0.0)
    data = batch(steps)
    rnd = bonus.rnd
    assert rnd.predictor is not None and rnd.target is not None
    with torch.no_grad():
        x, x_next = rnd.inputs(data.obs), rnd.inputs(data.next_obs)
        n = torch.linalg.vector_norm(rnd.predictor(x) - rnd.target(x), dim=-1).reshape(6, 2)
        n_next = (rnd.predictor(x_next) - rnd.target(x_next)).square().sum(-1).sqrt()
    firsts = torch.tensor([[c == 1 for c in counts] for counts in _byte_counts(steps)])
    expected = (n_next.reshape(6, 2) - 0.5 * n).clamp_min(0) * firsts
    torch.testing.assert_close(run(bonus, steps), expected)
    bonus.update(data)  # trains the predictor: the same states score differently afterwards
    assert not torch.allclose(bonus.novelty(data.next_obs), n_next.reshape(6, 2))


def _byte_counts(steps: list[Transitions]) -> list[list[int]]:
    """Per-episode visit counts of each step's next_obs, by a dict per env (the reference)."""
    num_envs = int(steps[0].obs.shape[1])
    seen: list[dict[bytes, int]] = [{} for _ in range(num_envs)]
    starting = [True] * num_envs
    out = []
    for s in steps:
        row = []
        for i in range(num_envs):
            if starting[i]:
                seen[i] = {s.obs[0, i].numpy().tobytes(): 1}
            key = s.next_obs[0, i].numpy().tobytes()
            seen[i][key] = seen[i].get(key, 0) + 1
            row.append(seen[i][key])
            starting[i] = bool(s.terminated[0, i] | s.truncated[0, i])
        out.append(row)
    return out


# --- RIDE -----------------------------------------------------------------------------------


def test_ride_bonus_is_embedding_distance_over_sqrt_episodic_count() -> None:
    torch.manual_seed(0)
    bonus = RIDE()
    bonus.setup(GRID, ACTIONS, num_envs=3)
    steps = rollout(12, 3, seed=1, ends=0.2)
    got = run(bonus, steps)
    data = batch(steps)
    assert bonus.idm is not None
    with torch.no_grad():
        phi = bonus.idm.embed(data.obs.reshape(-1, 7, 7, 3))
        phi_next = bonus.idm.embed(data.next_obs.reshape(-1, 7, 7, 3))
    distance = (phi_next - phi).square().sum(-1).sqrt().reshape(12, 3)
    counts = torch.tensor(_byte_counts(steps), dtype=torch.float32)
    assert counts.max() >= 3  # the rollout does revisit states
    torch.testing.assert_close(got, distance / counts.sqrt())
    assert got.dtype == torch.float32 and got.shape == (12, 3)


def test_ride_embedding_is_the_official_minigrid_conv_and_trains() -> None:
    torch.manual_seed(0)
    bonus = RIDE(update_proportion=1.0)
    bonus.setup(GRID, ACTIONS, num_envs=2)
    assert bonus.idm is not None and bonus.forward_model is not None
    assert bonus.idm.embedding.out_dim == 128 and bonus.idm.embedding.grid_conv is not None
    data = batch(rollout(8, 2, seed=2))
    before = [p.detach().clone() for p in bonus.idm.embedding.parameters()]
    metrics = bonus.update(data)
    assert set(metrics) == {"losses/ride_forward", "losses/ride_inverse"}
    after = list(bonus.idm.embedding.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    # the forward loss alone reaches phi through both of its ends (not detached, as in the
    # official code): through phi(s) by the prediction and through phi(s') by the target
    obs = data.obs.reshape(-1, 7, 7, 3)
    next_obs = data.next_obs.reshape(-1, 7, 7, 3)
    actions = data.actions.reshape(-1)
    bonus.zero_grad()
    bonus.losses(obs, actions, next_obs)[0].backward()
    through_both = [p.grad.clone() for p in bonus.idm.embedding.parameters()]  # type: ignore[union-attr]
    bonus.zero_grad()
    phi_next = bonus.idm.embed(next_obs)
    phi = bonus.idm.embed(obs)
    torch.linalg.vector_norm(
        bonus.forward_model(phi, actions) - phi_next.detach(), dim=-1
    ).mean().backward()
    through_phi = [p.grad.clone() for p in bonus.idm.embedding.parameters()]  # type: ignore[union-attr]
    assert all(bool(g.abs().sum() > 0) for g in through_phi)
    assert not all(torch.allclose(a, b) for a, b in zip(through_both, through_phi, strict=True))


# --- E3B ------------------------------------------------------------------------------------


def _explicit(ridge: float, rows: list[torch.Tensor]) -> torch.Tensor:
    d = rows[0].shape[0]
    cov = ridge * torch.eye(d, dtype=torch.float64)
    for u in rows:
        cov = cov + torch.outer(u.double(), u.double())
    return torch.linalg.inv(cov)


def test_e3b_inverse_covariance_and_bonus_match_the_explicit_inverse() -> None:
    torch.manual_seed(0)
    bonus = E3B(feature_size=8, ridge=0.1)
    bonus.setup(GRID, ACTIONS, num_envs=3)
    assert bonus.idm is not None
    steps = rollout(10, 3, seed=3, ends=0.0)
    steps[6] = step(steps[6].obs[0], steps[6].next_obs[0], [False, True, False])  # env 1 ends
    steps[7] = step(torch.randint(0, 11, (3, 7, 7, 3), dtype=torch.uint8), steps[7].next_obs[0])
    got = run(bonus, steps)
    embed = bonus.idm.embed
    with torch.no_grad():
        phi_next = [embed(s.next_obs[0]) for s in steps]
        phi_first = [embed(steps[0].obs[0]), embed(steps[7].obs[0])]
    expected = torch.zeros(10, 3, dtype=torch.float64)
    for i in range(3):
        seen = [phi_first[0][i]]  # the episode's first obs is folded in, unpaid
        for t in range(10):
            if i == 1 and t == 7:
                seen = [phi_first[1][i]]  # env 1's new episode: I / lambda, then its first obs
            u = phi_next[t][i].double()
            expected[t, i] = u @ _explicit(0.1, seen) @ u
            seen.append(phi_next[t][i])
        # C^-1 after the updates is the inverse of lambda I + sum u u^T of this episode
        torch.testing.assert_close(
            bonus.cov_inverse[i].double(), _explicit(0.1, seen), rtol=1e-4, atol=1e-5
        )
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    assert got.dtype == torch.float32 and bool((got > 0).all())


def test_e3b_resets_at_one_env_episode_end_only() -> None:
    torch.manual_seed(0)
    bonus = E3B(feature_size=4)
    bonus.setup(GRID, ACTIONS, num_envs=2)
    s = rollout(3, 2, seed=4, ends=0.0)
    for x in s[:2]:
        bonus.observe(x)
    kept = bonus.cov_inverse[1].clone()
    bonus.observe(step(s[2].obs[0], s[2].next_obs[0], [True, False]))
    torch.testing.assert_close(bonus.cov_inverse[0], torch.eye(4) / 0.1)  # env 0: fresh
    assert not torch.allclose(bonus.cov_inverse[1], kept)  # env 1 went on
    assert not torch.allclose(bonus.cov_inverse[1], torch.eye(4) / 0.1)


def test_e3b_pays_a_repeated_state_less_and_less() -> None:
    torch.manual_seed(0)
    bonus = E3B()
    bonus.setup(GRID, ACTIONS, num_envs=1)
    view = torch.randint(0, 11, (1, 7, 7, 3), dtype=torch.uint8)
    other = torch.randint(0, 11, (1, 7, 7, 3), dtype=torch.uint8)
    paid = run(bonus, [step(other, view)] + [step(view, view) for _ in range(5)])[:, 0]
    assert bool((paid[1:] < paid[:-1]).all())
    fresh = run(bonus, [step(view, torch.randint(0, 11, (1, 7, 7, 3), dtype=torch.uint8))])
    assert float(fresh) > float(paid[-1])


# --- Per-episode state, keys, round trips (all three) ----------------------------------------


def make(name: str, num_envs: int = 3, space: gym.Space = GRID, **kwargs: object) -> Bonus:
    bonus = make_bonus(name, **kwargs)
    bonus.setup(space, ACTIONS, num_envs)
    return bonus


@pytest.mark.parametrize("name", ["noveld", "ride", "e3b"])
def test_episode_end_of_one_env_leaves_the_others_alone(name: str) -> None:
    """Two bonuses see the same steps except that env 0's episode ends at step 3 in one of
    them: every value of envs 1 and 2 is the same in both. Env 0 cycles through three views,
    so without the end its later views are revisits, and with it they are new again."""
    gen = torch.Generator().manual_seed(5)
    cycle = torch.randint(0, 11, (3, 7, 7, 3), dtype=torch.uint8, generator=gen)
    others = torch.randint(0, 11, (9, 2, 7, 7, 3), dtype=torch.uint8, generator=gen)
    views = [torch.cat([cycle[t % 3][None], others[t]]) for t in range(9)]
    going_on = [step(views[t], views[t + 1]) for t in range(8)]
    cut = list(going_on)
    cut[3] = step(views[3], views[4], [True, False, False])

    def values(seq: list[Transitions]) -> torch.Tensor:
        torch.manual_seed(0)
        bonus = make(name, warmup_steps=0) if name == "noveld" else make(name)
        return run(bonus, seq)

    a, b = values(going_on), values(cut)
    # (the embedding runs on 4 rows instead of 3 where env 0 starts: float noise only)
    torch.testing.assert_close(a[:, 1:], b[:, 1:], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a[:4], b[:4], rtol=0, atol=0)
    assert bool((b[4:, 0] > a[4:, 0]).any())  # new again after the end


@pytest.mark.parametrize("name", ["noveld", "ride"])
def test_counts_key_on_state_keys_when_offered_and_on_bytes_otherwise(name: str) -> None:
    x, y = (torch.full((1, 7, 7, 3), k, dtype=torch.uint8) for k in (1, 2))

    def visits(key: str, keys: list[int] | None) -> EpisodeVisits:
        """Views x -> x -> y -> x; state keys (where given) 7, 7, 8."""
        bonus = make(name, num_envs=1, key=key)
        assert bonus.count_key == (None if key == "auto" else key)
        for t, (s, s2) in enumerate([(x, x), (x, y), (y, x)]):
            bonus.observe(step(s, s2, keys=None if keys is None else [keys[t]]))
        out = bonus.visits
        assert isinstance(out, EpisodeVisits) and bonus.count_key == out.count_key
        return out

    for key in ("auto", "state"):
        by_state = visits(key, [7, 7, 8])
        assert by_state.count_key == "state"
        assert by_state.counts.peek(np.array([7, 8], dtype=np.uint64)[:1]).tolist() == [2]
        assert by_state.counts.peek(np.array([8], dtype=np.uint64)).tolist() == [1]
    for key, keys in (("auto", None), ("observation", [7, 7, 8])):
        by_bytes = visits(key, keys)
        assert by_bytes.count_key == "observation"
        # x is the episode's first view, then seen twice more; y once
        assert by_bytes.counts.peek(byte_keys(x)).tolist() == [3]
        assert by_bytes.counts.peek(byte_keys(y)).tolist() == [1]
    with pytest.raises(ValueError, match="state_keys.*key='observation'"):
        visits("state", None)
    with pytest.raises(ValueError, match="unknown key 'cell'"):
        make_bonus(name, key="cell")


def test_ride_divides_by_counts_of_state_keys() -> None:
    torch.manual_seed(0)
    bonus = RIDE()
    bonus.setup(GRID, ACTIONS, num_envs=2)
    steps = rollout(5, 2, seed=10, ends=0.0)
    keys = [[3, 4], [3, 5], [6, 4], [3, 4], [3, 4]]  # env 0: 3 visited 4 times; env 1: 4 thrice
    steps = [step(s.obs[0], s.next_obs[0], keys=k) for s, k in zip(steps, keys, strict=True)]
    got = run(bonus, steps)
    assert bonus.idm is not None
    data = batch(steps)
    with torch.no_grad():
        phi = bonus.idm.embed(data.obs.reshape(-1, 7, 7, 3))
        phi_next = bonus.idm.embed(data.next_obs.reshape(-1, 7, 7, 3))
    distance = torch.linalg.vector_norm(phi_next - phi, dim=-1).reshape(5, 2)
    counts = torch.tensor([[1, 1], [2, 1], [1, 2], [3, 3], [4, 4]], dtype=torch.float32)
    torch.testing.assert_close(got, distance / counts.sqrt())
    assert bonus.count_key == "state"


def test_noveld_first_visits_follow_state_keys() -> None:
    bonus = noveld_with_novelty(key="auto")
    # the same novelty everywhere; env 0 sees new views on one cell (key 5), env 1 one view on
    # new cells: by state keys env 0 is paid once and env 1 every time
    views = [torch.stack([v(2, k), v(2)]) for k in range(4)]
    steps = [step(views[t], views[t + 1], keys=[5, 10 + t]) for t in range(3)]
    assert (run(bonus, steps) > 0).tolist() == [[True, True], [False, True], [False, True]]
    assert bonus.count_key == "state"


@pytest.mark.parametrize("name", ["noveld", "ride", "e3b", "e3b-vae"])
def test_state_dict_round_trip_carries_the_episodes_in_progress(name: str) -> None:
    # long episodes, with one end in the checkpoint's rollout: the counts and C^-1 that travel
    # with the checkpoint matter afterwards
    steps = end_episode(rollout(16, 3, seed=6, ends=0.0), 9, env=1)

    def fresh() -> Bonus:
        if name == "e3b-vae":
            return make("e3b", embedding="vae", feature_size=8)
        return make(name, warmup_steps=4) if name == "noveld" else make(name)

    torch.manual_seed(0)
    reference = fresh()
    expected = run(reference, steps[:8])
    reference.update(batch(steps[:8]))
    for s in steps[8:12]:
        reference.observe(s)
    before = copy.deepcopy(reference.state_dict())
    other = restored(reference, fresh)  # a checkpoint in the middle of a rollout and episodes
    after = reference.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        if isinstance(before[k], torch.Tensor):
            assert torch.equal(before[k], after[k]), k  # state_dict changes nothing
    for bonus in (reference, other):
        for s in steps[12:]:
            bonus.observe(s)
    rest = batch(steps[8:])
    torch.testing.assert_close(reference.compute(rest), other.compute(rest), rtol=0, atol=0)
    assert reference.update(rest) == other.update(rest)
    assert expected.shape == (8, 3)
    more = rollout(4, 3, seed=7)
    torch.testing.assert_close(run(reference, more), run(other, more), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["noveld", "ride", "e3b"])
def test_start_new_episodes_forgets_only_those_envs(name: str) -> None:
    steps = rollout(6, 2, seed=8, ends=0.0)

    def values(reset: bool) -> torch.Tensor:
        torch.manual_seed(0)
        bonus = make(name, num_envs=2, warmup_steps=0) if name == "noveld" else make(name, 2)
        run(bonus, steps[:3])
        if reset:
            bonus.start_new_episodes(np.array([True, False]))
        return run(bonus, steps[3:])

    a, b = values(False), values(True)
    torch.testing.assert_close(a[:, 1], b[:, 1])
    assert not torch.allclose(a[:, 0], b[:, 0])


@pytest.mark.parametrize("name", ["noveld", "ride", "e3b"])
def test_compute_needs_the_observed_steps(name: str) -> None:
    bonus = make(name)
    steps = rollout(2, 3, seed=9)
    bonus.observe(steps[0])
    with pytest.raises(RuntimeError, match="observe"):
        bonus.compute(batch(steps))


def test_setup_rejects_spaces_with_the_reason() -> None:
    dict_space = gym.spaces.Dict({"a": VECTOR})
    for name in ("noveld", "ride", "e3b"):
        with pytest.raises(ValueError, match=f"{name} cannot take observations from Dict"):
            make_bonus(name).setup(dict_space, ACTIONS, 2)
    for name in ("ride", "e3b"):
        with pytest.raises(ValueError, match=f"{name} needs Discrete or Box actions"):
            make_bonus(name).setup(GRID, gym.spaces.MultiDiscrete([2, 2]), 2)
    with pytest.raises(ValueError, match="ridge must be > 0"):
        E3B(ridge=0.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        NovelD(alpha=-1.0)
    with pytest.raises(ValueError, match="minigrid-conv"):
        make_bonus("ride", embedding="minigrid-conv").setup(VECTOR, ACTIONS, 2)


def test_registered_and_episodic() -> None:
    for name, cls in (("noveld", NovelD), ("ride", RIDE), ("e3b", E3B)):
        assert BONUSES[name][0] is cls
        bonus = make_bonus(name)
        assert isinstance(bonus, Bonus) and bonus.episodic


def test_e3b_with_a_vae_embedding_scores_the_vae_posterior_mean_and_trains_the_vae() -> None:
    torch.manual_seed(0)
    bonus = E3B(feature_size=8, embedding="vae")
    bonus.setup(GRID, ACTIONS, num_envs=3)
    steps = rollout(6, 3, seed=3, ends=0.0)
    got = run(bonus, steps)
    vae = bonus.idm.vae  # type: ignore[union-attr]
    with torch.no_grad():  # the first obs folded in unpaid, then each next_obs scored
        seen = [vae.mean(steps[0].obs[0])]
        expected = torch.zeros(6, 3, dtype=torch.float64)
        for t, s in enumerate(steps):
            u = vae.mean(s.next_obs[0])
            for i in range(3):
                rows = [x[i] for x in seen]
                expected[t, i] = u[i].double() @ _explicit(0.1, rows) @ u[i].double()
            seen.append(u)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    before = [p.detach().clone() for p in vae.parameters()]
    metrics = bonus.update(batch(steps))
    assert "losses/e3b_vae" in metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True))
    with pytest.raises(ValueError, match="unknown embedding 'pixels'; choose one of"):
        E3B(embedding="pixels")
