"""DQN mechanics against hand computations: n-step targets, double-Q, masks, priors, replay."""

import copy

import numpy as np
import pytest
import torch

from explora.agents.common import NullRun
from explora.agents.dqn import (
    BootDQNConfig,
    DQNConfig,
    choose_actions,
    epsilon_at,
    greedy,
    td_loss,
    td_targets,
    train_dqn,
)
from explora.agents.replay import ReplayBuffer
from explora.envs import make
from explora.models.ensemble import EnsembleQ, as_inputs
from explora.models.optim import flush_denormals


def buffer_from(rewards, terminated, truncated, capacity=16):
    """One copy; next_obs of step t is [t] so a bootstrap observation names its step."""
    buf = ReplayBuffer(capacity, 1, (1,), np.float32)
    for t, (r, term, trunc) in enumerate(zip(rewards, terminated, truncated, strict=True)):
        buf.add(np.array([[t]]), np.array([0]), np.array([r]), np.array([term]),
                np.array([trunc]), np.array([[t + 0.5]]))  # fmt: skip
    return buf


def test_n_step_targets_stop_at_episode_ends():
    # steps:      0    1        2    3        4    5    6    7
    # reward:     1    2        3    4        5    6    7    8
    # end:        -    trunc    -    term     -    -    -    -
    buf = buffer_from(
        [1, 2, 3, 4, 5, 6, 7, 8],
        [0, 0, 0, 1, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0],
    )
    gamma = 0.5
    steps = np.array([0, 1, 2, 3, 4, 5])  # transition index; age = 7 - index
    batch = buf.gather(7 - steps, np.zeros(6, dtype=int), n_step=3, gamma=gamma)
    # By hand:
    # t=0: 1 + .5*2 (truncated at 1)   boot from step 1, discount .5^2
    # t=1: 2 (truncated)                 boot from step 1, discount .5
    # t=2: 3 + .5*4 (terminated at 3)   no bootstrap
    # t=3: 4 (terminated)                no bootstrap
    # t=4: 5 + .5*6 + .25*7             boot from step 6, discount .5^3
    # t=5: 6 + .5*7 + .25*8             boot from step 7, discount .5^3
    np.testing.assert_allclose(batch.returns, [2.0, 2.0, 5.0, 4.0, 9.75, 11.5])
    np.testing.assert_allclose(batch.discount, [0.25, 0.5, 0.0, 0.0, 0.125, 0.125])
    np.testing.assert_allclose(batch.next_obs[:, 0], [1.5, 1.5, 3.5, 3.5, 6.5, 7.5])
    np.testing.assert_allclose(batch.obs[:, 0], steps)
    # The two newest steps have no two stored successors: they cannot be sampled yet.
    with pytest.raises(ValueError, match="ages must lie"):
        buf.gather(np.array([1]), np.array([0]), n_step=3, gamma=gamma)


def test_sampled_windows_never_cross_an_episode_boundary():
    """Random episode lengths over 3 copies and a wrapped ring buffer; with reward 1 per step and
    gamma 1, an n-step return counts the steps left in its episode, capped at n."""
    rng = np.random.default_rng(0)
    num_envs, n = 3, 4
    buf = ReplayBuffer(50, num_envs, (1,), np.float32)
    left = rng.integers(1, 7, size=num_envs)  # steps left in each copy's episode
    term_kind = rng.random(num_envs) < 0.5
    for _ in range(200):
        end = left == 1
        term, trunc = end & term_kind, end & ~term_kind
        obs = left[:, None].astype(np.float32)
        buf.add(obs, np.zeros(num_envs, int), np.ones(num_envs, np.float32), term, trunc, obs)
        left = np.where(end, rng.integers(1, 7, size=num_envs), left - 1)
        term_kind = np.where(end, rng.random(num_envs) < 0.5, term_kind)
    batch = buf.sample(512, n, 1.0, rng)
    steps_left = batch.obs[:, 0].numpy().astype(int)
    np.testing.assert_array_equal(batch.returns.numpy(), np.minimum(steps_left, n))
    # discount 0 only when the window reached a termination
    ended_inside = steps_left <= n
    assert ((batch.discount == 0).numpy() <= ended_inside).all()


def test_double_q_target_against_hand_computation():
    class Fixed(torch.nn.Module):
        def __init__(self, q):
            super().__init__()
            self.q = torch.tensor(q)

        def forward(self, x):
            return self.q

    class B:
        next_obs = torch.zeros(2, 1)
        discount = torch.tensor([0.9, 0.0])

    online = Fixed([[[1.0, 5.0, 2.0], [0.0, 0.0, 9.0]]])  # [K=1, B=2, A=3]
    target = Fixed([[[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]]])
    rewards = torch.tensor([1.0, 2.0])
    # double: online picks a=1 for row 0 -> 1 + .9 * 20 = 19; row 1 terminated -> 2
    double = td_targets(online, target, B(), rewards, double_q=True)
    torch.testing.assert_close(double, torch.tensor([[19.0, 2.0]]))
    # plain: the target picks its own max, a=2 -> 1 + .9 * 30 = 28
    plain = td_targets(online, target, B(), rewards, double_q=False)
    torch.testing.assert_close(plain, torch.tensor([[28.0, 2.0]]))


def test_masked_heads_get_no_gradient_and_priors_never_move():
    torch.manual_seed(0)
    net = EnsembleQ(4, 2, heads=3, hidden=(8,), prior_scale=5.0)
    q = net(torch.randn(6, 4))
    masks = torch.tensor([[1.0, 0.0, 1.0]] * 6)  # head 1 masked out everywhere
    loss = td_loss(q, torch.zeros(6, dtype=torch.long), torch.ones(3, 6), masks, "mse")
    loss.backward()
    first = net.net[0]
    assert first.weight.grad[1].abs().sum() == 0 and first.weight.grad[0].abs().sum() > 0
    assert all(p.grad is None for p in net.prior.parameters())
    # A short bootstrapped-DQN run trains the heads but leaves every prior as it was.
    env = make("DeepSea-5", 1)
    cfg = BootDQNConfig(total_frames=400, num_heads=4, learning_starts=32, batch_size=16)
    agent = train_dqn(env, cfg)["agent"]
    torch.manual_seed(0)
    fresh = EnsembleQ(25, 2, heads=4, hidden=(50, 50), prior_scale=5.0, init=cfg.init)
    assert agent.prior is not None and fresh.prior is not None
    for a, b in zip(agent.prior.parameters(), fresh.prior.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    trained = next(iter(agent.net.parameters()))
    assert not torch.allclose(trained, next(iter(fresh.net.parameters())))


def test_td_loss_masks_average_over_the_batch_per_head():
    q = torch.tensor([[[1.0, 0.0], [3.0, 0.0]], [[2.0, 0.0], [2.0, 0.0]]])  # [K=2, B=2, A=2]
    targets = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    masks = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # [B, K]
    # head 0: (1 + 0) / 2 ... squared errors 1 and 9 with masks 1, 0 -> (1 + 0) / 2 = 0.5
    # head 1: squared errors 4 and 4 with masks 1, 1 -> 4; total 4.5
    loss = td_loss(q, torch.tensor([0, 0]), targets, masks, "mse")
    assert float(loss) == pytest.approx(4.5)


def test_one_hot_inputs_give_the_same_q_as_the_dense_matmul():
    torch.manual_seed(0)
    net = EnsembleQ(9, 2, heads=3, hidden=(8, 8), prior_scale=3.0)
    obs = torch.zeros(5, 3, 3, dtype=torch.uint8)
    for i, (r, c) in enumerate([(0, 0), (1, 2), (2, 1), (0, 2)]):
        obs[i, r, c] = 1  # row 4 stays all-zero (DeepSea's obs past the bottom)
    fast = net(as_inputs(obs))
    dense = net(obs.reshape(5, -1).float())
    torch.testing.assert_close(fast, dense)


def test_one_hot_table_gradients_match_the_dense_matmul_over_several_steps():
    """The lookup's own backward keeps one gradient buffer and re-zeroes only the rows it
    wrote; training on one-hot batches must give the weights the dense matmul gives."""
    torch.manual_seed(0)
    fast = EnsembleQ(9, 2, heads=3, hidden=(8,), init="truncated-normal")
    dense = copy.deepcopy(fast)
    opts = [torch.optim.Adam(m.parameters(), lr=0.05) for m in (fast, dense)]
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        obs = torch.zeros(7, 9, dtype=torch.uint8)
        obs[torch.arange(6), torch.randint(0, 9, (6,), generator=gen)] = 1  # repeats, a zero row
        for net, opt, x in zip((fast, dense), opts, (as_inputs(obs), obs.float()), strict=True):
            opt.zero_grad(set_to_none=step % 2 == 0)  # both ways of clearing
            net(x).square().sum().backward()
            opt.step()
    for a, b in zip(fast.parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fast.net[0].weight.grad, dense.net[0].weight.grad)


def test_greedy_breaks_ties_at_random_and_epsilon_schedule_is_linear():
    rng = np.random.default_rng(0)
    q = torch.tensor([[1.0, 1.0, 0.0]]).expand(2000, 3)
    picks = greedy(q, rng)
    assert set(picks.tolist()) == {0, 1} and abs(picks.mean() - 0.5) < 0.05
    cfg = DQNConfig(learning_starts=100, epsilon_decay_frames=1000, epsilon_end=0.1)
    assert epsilon_at(cfg, 0) == 1.0 and epsilon_at(cfg, 100) == 1.0
    assert epsilon_at(cfg, 600) == pytest.approx(0.55)
    assert epsilon_at(cfg, 5000) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(exploration="softmax"), "unknown exploration 'softmax'"),
        (dict(exploration="thompson-heads"), "needs num_heads >= 2"),
        (dict(num_heads=2, exploration="noisy"), "single head"),
        (dict(mask_prob=0.0), "mask_prob"),
        (dict(loss="l1"), "unknown loss"),
        (dict(n_step=0), "n_step must be >= 1"),
    ],
)
def test_config_errors_name_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        DQNConfig(**overrides).check()


def test_boltzmann_follows_its_temperature_and_epsilon_its_schedule():
    q = torch.tensor([[0.0, 1.0, 3.0]]).expand(6000, 3)
    rng = np.random.default_rng(0)
    cold = choose_actions(q, DQNConfig(exploration="boltzmann", temperature=0.01), 0, rng)
    assert (cold == 2).all()
    hot = choose_actions(q, DQNConfig(exploration="boltzmann", temperature=1.0), 0, rng)
    want = torch.softmax(q[0], -1).numpy()  # [0.04, 0.11, 0.84]
    np.testing.assert_allclose(np.bincount(hot, minlength=3) / len(hot), want, atol=0.015)
    cfg = DQNConfig(learning_starts=0, epsilon_start=1.0, epsilon_end=0.0, epsilon_decay_frames=100)
    half = choose_actions(q, cfg, 50, rng)  # epsilon 0.5: greedy half the time, else uniform
    np.testing.assert_allclose(np.bincount(half, minlength=3) / len(half),
                               [1 / 6, 1 / 6, 2 / 3], atol=0.02)  # fmt: skip
    assert (choose_actions(q, cfg, 100, rng) == 2).all()


def test_noisy_net_draws_independent_noise_for_online_and_target_at_each_update(monkeypatch):
    """Fortunato et al.: fresh noise per update, drawn separately for the online and the target
    network. Before the fix the target kept a copy of the online noise until its next copy."""
    import explora.agents.dqn as dqn

    seen = []
    real = dqn.td_targets

    def spy(online, target, *args):
        seen.append((online.net[0].eps_in.clone(), target.net[0].eps_in.clone()))
        return real(online, target, *args)

    monkeypatch.setattr(dqn, "td_targets", spy)
    env = make("CartPole-v1", 2, seed=0)
    cfg = DQNConfig(total_frames=400, num_envs=2, learning_starts=100, batch_size=16,
                    exploration="noisy", target_update_every=1000)  # fmt: skip
    train_dqn(env, cfg)
    assert len(seen) > 50
    for online, target in seen:
        assert not torch.equal(online, target)
    for (_, before), (_, after) in zip(seen, seen[1:], strict=False):
        assert not torch.equal(before, after)


def test_every_bonus_with_models_trains_in_dqn_episodic_or_lifelong():
    """The MiniGrid preset wraps RND in FirstVisit (episodic): its predictor must still learn."""
    from explora.bonuses import RND, FirstVisit

    for wrap in (False, True):
        torch.manual_seed(0)
        rnd = RND(hidden_size=16, feature_size=8, warmup_steps=0)
        bonus = FirstVisit(rnd) if wrap else rnd
        cfg = DQNConfig(total_frames=300, num_envs=1, learning_starts=64, batch_size=16)
        env = make("DeepSea-5", 1)
        calls: list = []

        def counted(batch, calls=calls, real_update=rnd.update):
            calls.append(batch.shape)
            return real_update(batch)

        rnd.update = counted
        train_dqn(env, cfg, bonus=bonus)
        assert len(calls) > 100, f"first_visit={wrap}: the predictor trained {len(calls)} times"
        assert calls[0] == (cfg.n_step, cfg.batch_size)


def test_a_resume_that_resets_the_envs_cuts_the_windows_that_straddle_it(tmp_path):
    """CartPole's state cannot be saved: the resumed run starts new episodes, and the step
    stored last before the resume must end its episode so no n-step window runs across."""
    import explora

    out = tmp_path / "run"
    kwargs = dict(algo="dqn", seed=0, out=out, progress=False,
                  algo_args={"learning_starts": 64, "batch_size": 16, "log_every": 64,
                             "checkpoint_every": 1, "num_envs": 2, "n_step": 3,
                             "gamma": 0.5})  # fmt: skip
    explora.train("CartPole-v1", frames=300, **kwargs)
    first = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert first["env"] is None  # gymnasium's envs cannot hand their state over
    explora.train("CartPole-v1", frames=600, resume=True, **kwargs)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    buf = ReplayBuffer(25_000, 2, (4,), np.float32)
    buf.load_state_dict(state["replay"])
    cut = buf.steps - first["replay"]["steps"]  # age of the last step before the resume
    ended = buf.terminated | buf.truncated
    assert ended[buf.pos - 1 - cut].all()
    for env in (0, 1):
        # the window starting one step before the cut: reward 1 per step, two steps, no more
        batch = buf.gather(np.array([cut + 1]), np.array([env]), n_step=3, gamma=0.5)
        if not ended[buf.pos - 2 - cut, env]:
            assert float(batch.returns[0]) == 1.5 and float(batch.discount[0]) in (0.0, 0.25)


def test_dqn_with_a_bonus_runs_and_resumes_with_its_replay(tmp_path):
    import explora

    out = tmp_path / "run"
    kwargs = dict(algo="dqn", bonus="count", seed=0, out=out, progress=False,
                  algo_args={"learning_starts": 64, "batch_size": 16, "log_every": 64,
                             "checkpoint_every": 1, "num_envs": 2})  # fmt: skip
    first = explora.train("DeepSea-6", frames=600, **kwargs)
    assert first["frames"] == 600 and "solved_at_episode" in first
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert state["replay"]["steps"] == 300
    second = explora.train("DeepSea-6", frames=1200, resume=True, **kwargs)
    assert second["frames"] == 1200
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert state["replay"]["steps"] == 600  # the replay came back and kept filling


def test_prior_table_lookup_equals_running_the_prior():
    torch.manual_seed(0)
    net = EnsembleQ(9, 2, heads=3, hidden=(8, 8), prior_scale=3.0, one_hot=True)
    obs = torch.zeros(4, 3, 3, dtype=torch.uint8)
    obs[0, 0, 0] = obs[1, 2, 2] = obs[2, 1, 0] = 1  # row 3 all zero
    x = as_inputs(obs)
    assert net.prior is not None
    torch.testing.assert_close(net._prior_of_states(x), net.prior(x))


def test_lazy_adam_trains_the_input_table_sparsely():
    env = make("DeepSea-5", 1)
    cfg = BootDQNConfig(total_frames=300, num_heads=3, learning_starts=32, batch_size=16,
                        lazy_adam=True)  # fmt: skip
    agent = train_dqn(env, cfg)["agent"]
    assert type(agent.net[0]).__name__ == "OneHotInput"
    with pytest.raises(ValueError, match="one-hot"):
        agent(torch.zeros(2, 25))


def test_a_due_checkpoint_is_written_between_the_regular_ones():
    class AlwaysDue(NullRun):
        saves = 0

        def save_checkpoint(self, state):
            AlwaysDue.saves += 1

        def checkpoint_due(self):
            return True

    cfg = DQNConfig(total_frames=500, learning_starts=64, batch_size=16, log_every=100,
                    checkpoint_every=1000, num_envs=1)  # fmt: skip
    train_dqn(make("DeepSea-6", num_envs=1), cfg, run=AlwaysDue())
    assert AlwaysDue.saves == 5  # one per metric row, not only the final one


def test_denormals_are_flushed_only_inside_the_block():
    tiny = torch.tensor([1e-40])  # below float32's smallest normal number, 1.2e-38
    with flush_denormals():
        assert float(tiny * 1.0) == 0.0
    assert float(tiny * 1.0) > 0.0  # torch's default is back
