"""REINFORCE mechanics against hand computations: returns, baselines, episode bookkeeping,
gradient variance, config errors, checkpoint/resume and divergence."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from explora.agents.common import NullRun, TrainingDiverged
from explora.agents.ppo import ActorCritic, PPOConfig
from explora.agents.reinforce import (
    ReinforceConfig,
    Rollout,
    collect,
    discounted_returns,
    episode_quotas,
    episode_returns,
    greedy_baseline,
    leave_one_out_baseline,
    policy_gradient_variance,
    train_reinforce,
    whiten,
)
from explora.bonuses import Count
from explora.envs import make
from explora.envs.gym import GymnasiumVecEnv

G = 0.9
T_, F_ = True, False


def _bools(*rows):
    return torch.tensor(rows, dtype=torch.bool)


# ---- returns ---------------------------------------------------------------------------------


def test_return_to_go_by_hand_with_a_termination_and_a_truncation():
    # Column 0: an episode of 2 steps that terminates, then one of 2 steps truncated (bootstrap
    # V = 10). Column 1: one 4-step episode that is truncated (bootstrap V = 5).
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 2.0]])
    terminated = _bools([F_, F_], [T_, F_], [F_, F_], [F_, F_])
    truncated = _bools([F_, F_], [F_, F_], [F_, F_], [T_, T_])
    bootstrap = torch.tensor([[99.0, 99.0], [99.0, 99.0], [99.0, 99.0], [10.0, 5.0]])
    got = discounted_returns(rewards, terminated, truncated, bootstrap, G)
    # col 0: t1 = 2 (terminated: the 99 is never read); t0 = 1 + .9*2 = 2.8
    #        t3 = 4 + .9*10 = 13; t2 = 3 + .9*13 = 14.7
    # col 1: t3 = 2 + .9*5 = 6.5; t2 = 1 + 5.85 = 6.85; t1 = 1 + 6.165 = 7.165;
    #        t0 = 1 + 6.4485 = 7.4485
    expected = torch.tensor([[2.8, 7.4485], [2.0, 7.165], [14.7, 6.85], [13.0, 6.5]])
    torch.testing.assert_close(got, expected)
    # Without a value estimate the truncated returns are cut at the time limit.
    cut = discounted_returns(rewards, terminated, truncated, torch.zeros_like(bootstrap), G)
    torch.testing.assert_close(cut[:, 0], torch.tensor([2.8, 2.0, 3 + 0.9 * 4, 4.0]))


def test_termination_wins_over_truncation():
    rewards = torch.tensor([[1.0], [1.0]])
    both = _bools([F_], [T_])
    got = discounted_returns(rewards, both, both, torch.full((2, 1), 100.0), G)
    torch.testing.assert_close(got, torch.tensor([[1.9], [1.0]]))


def _hand_rollout() -> Rollout:
    """Copy 0: episode 0 (2 steps, terminated; a bootstrap must not be read), then episode 1
    (1 step, truncated). Copy 1: episode 2 (2 steps, truncated), then an idle step."""
    return Rollout(
        obs=torch.zeros(3, 2, 1),
        actions=torch.zeros(3, 2, dtype=torch.long),
        rewards=torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 7.0]]),
        terminated=_bools([F_, F_], [T_, F_], [F_, F_]),
        truncated=_bools([F_, F_], [F_, T_], [T_, F_]),
        active=_bools([T_, T_], [T_, T_], [T_, F_]),
        time_index=torch.tensor([[0, 0], [1, 1], [0, 0]]),
        episode=torch.tensor([[0, 2], [0, 2], [1, -1]]),
        final_obs=torch.zeros(3, 1),
        start_obs=np.zeros((2, 1)),
    )


def test_value_baseline_bootstraps_truncated_episodes_only():
    batch = _hand_rollout()
    final_values = torch.tensor([50.0, 10.0, 20.0])  # V(final obs) of episodes 0, 1, 2
    got = episode_returns(batch, G, final_values)
    # episode 0 terminated: 1 + .9 * 1 = 1.9, then 1 (its 50 is never read);
    # episode 1 truncated: 1 + .9 * 10 = 10; episode 2 truncated: t1 = 1 + 18 = 19, t0 = 18.1
    torch.testing.assert_close(got[batch.active], torch.tensor([1.9, 18.1, 1.0, 19.0, 10.0]))
    no_value = episode_returns(batch, G)
    torch.testing.assert_close(no_value[batch.active], torch.tensor([1.9, 1.9, 1.0, 1.0, 1.0]))


def test_whitening():
    got = whiten(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    # mean 3, population std sqrt((4 + 1 + 0 + 9) / 4) = sqrt(3.5)
    expected = torch.tensor([-2.0, -1.0, 0.0, 3.0]) / 3.5**0.5
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(whiten(torch.tensor([4.0])), torch.tensor([0.0]))


# ---- sampled baselines -----------------------------------------------------------------------


def test_leave_one_out_baseline_on_three_episodes_of_different_lengths():
    # Episode A: returns-to-go 6, 5, 3 (3 steps); B: 4, 2 (2 steps); C: 1 (1 step).
    returns = torch.tensor([6.0, 5.0, 3.0, 4.0, 2.0, 1.0])
    time_index = torch.tensor([0, 1, 2, 0, 1, 0])
    got = leave_one_out_baseline(returns, time_index)
    expected = torch.tensor(
        [
            (4 + 1) / 2,  # A at t=0: mean of B and C at t=0
            2.0,  # A at t=1: only B reached t=1
            0.0,  # A at t=2: no other episode did
            (6 + 1) / 2,  # B at t=0
            5.0,  # B at t=1: A
            (6 + 4) / 2,  # C at t=0
        ]
    )
    torch.testing.assert_close(got, expected)


def test_greedy_baseline_pairs_by_copy_and_falls_back_to_the_mean():
    # Greedy episodes: copy 0 lasted 3 steps (rtg 9, 8, 7), copy 1 lasted 1 step (rtg 5).
    table = torch.tensor([[9.0, 8.0, 7.0], [5.0, -1.0, -1.0]])  # -1: past the end, ignored
    lengths = torch.tensor([3, 1])
    copy = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    time_index = torch.tensor([0, 2, 3, 1, 0, 1, 0, 1])
    paired = torch.tensor([T_, T_, T_, F_, T_, T_, F_, F_])
    got = greedy_baseline(table, lengths, copy, time_index, paired)
    expected = torch.tensor(
        [
            9.0,  # paired with copy 0 at t=0
            7.0,  # at t=2
            0.0,  # past the end of every greedy episode
            8.0,  # unpaired at t=1: mean over greedy episodes that reached t=1 (copy 0 only)
            5.0,  # paired with copy 1 at t=0
            0.0,  # paired, past the end of copy 1's greedy episode
            7.0,  # unpaired at t=0: mean of 9 and 5
            8.0,  # unpaired at t=1
        ]
    )
    torch.testing.assert_close(got, expected)


# ---- collection ------------------------------------------------------------------------------


def test_episode_quotas_split_evenly_with_the_remainder_first():
    assert episode_quotas(10, 4).tolist() == [3, 3, 2, 2]
    assert episode_quotas(8, 8).tolist() == [1] * 8


def test_collect_runs_each_quota_of_complete_episodes_and_keeps_the_true_final_obs():
    env = GymnasiumVecEnv("CartPole-v1", 3, seed=0, max_episode_steps=6)
    agent = _agent(env)
    quotas = np.array([2, 1, 1])
    batch = collect(env, agent, quotas, seed=5, max_episode_steps=100)
    active = batch.active
    assert sorted(torch.unique(batch.episode[active]).tolist()) == [0, 1, 2, 3]
    ends = (batch.terminated | batch.truncated) & active
    assert int(ends.sum()) == 4
    for n, quota in enumerate(quotas):
        assert int(ends[:, n].sum()) == quota
        # once a copy met its quota every later step is discarded
        last = int(torch.nonzero(ends[:, n]).max())
        assert not active[last + 1 :, n].any() and active[: last + 1, n].all()
    # 6-step time limit, no termination that early under CartPole's start states
    assert batch.truncated[active].sum() == 4 and not batch.terminated[active].any()
    assert batch.time_index[active].max() == 5
    # The final observation is the successor of the episode's last step, not the reset state
    # that copy 1 moved on to (it idles while copy 0 runs its second episode).
    t = int(torch.nonzero(ends[:, 1])[0])
    final = batch.final_obs[int(batch.episode[t, 1])]
    assert t + 1 < len(batch.obs) and not torch.equal(final, batch.obs[t + 1, 1])
    assert abs(float(final[0] - batch.obs[t, 1, 0])) < 0.1  # one small physics step away


def test_too_long_episodes_stop_with_an_error():
    env = GymnasiumVecEnv("CartPole-v1", 2, seed=0)
    with pytest.raises(ValueError, match="max_episode_steps = 3"):
        collect(env, _agent(env), np.array([1, 1]), seed=0, max_episode_steps=3)


def test_greedy_rollout_replays_the_starts_of_the_same_seed():
    env = make("CartPole-v1", 4, seed=0)
    agent = _agent(env)
    ones = np.ones(4, dtype=np.int64)
    greedy = collect(env, agent, ones, seed=11, max_episode_steps=1000, greedy=True)
    env.reset(seed=12)
    sampled = collect(env, agent, ones, seed=11, max_episode_steps=1000)
    np.testing.assert_array_equal(greedy.start_obs, sampled.start_obs)
    # and the greedy episode is deterministic: the same seed gives the same episode
    again = collect(env, agent, ones, seed=11, max_episode_steps=1000, greedy=True)
    torch.testing.assert_close(again.obs, greedy.obs)


# ---- gradient variance -----------------------------------------------------------------------


def _agent(env):
    torch.manual_seed(0)
    return ActorCritic(env.single_observation_space, env.single_action_space, PPOConfig())


def test_policy_gradient_variance_is_the_trace_of_the_covariance_of_episode_gradients():
    env = make("CartPole-v1", 2, seed=0)
    agent = _agent(env)
    torch.manual_seed(1)
    obs = torch.randn(9, 4)
    actions = torch.randint(0, 2, (9,))
    episode = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    adv = torch.randn(9)
    got = policy_gradient_variance(agent, obs, actions, torch.stack([adv, 3 * adv], 1), episode)
    # Independent: one backward per episode through the whole network; the trace of the
    # covariance is the sum of the per-coordinate sample variances.
    params = [*agent.encoder.parameters(), *agent.actor.parameters()]
    rows = []
    for i in range(3):
        agent.zero_grad()
        logp, _ = agent.log_prob_entropy(agent(obs)[0], actions)
        (adv * logp * (episode == i)).sum().backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in params]).numpy().copy())
    want = float(np.var(np.stack(rows), axis=0, ddof=1).sum())
    assert float(got[0]) == pytest.approx(want, rel=1e-4)
    assert float(got[1]) == pytest.approx(9 * want, rel=1e-4)  # scales with A^2


# ---- training: contract, errors, resume, divergence ------------------------------------------

TINY = dict(num_envs=4, episodes_per_update=4, checkpoint_every=1)


class MemoryRun(NullRun):
    """A run that keeps its metrics and last checkpoint in memory."""

    def __init__(self):
        self.rows, self.state = [], None

    def log(self, frames, metrics):
        self.rows.append((frames, metrics))

    def progress(self, frames, metrics):
        pass

    def save_checkpoint(self, state):
        self.state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in state.items()}
        self.state["agent"] = {k: v.clone() for k, v in state["agent"].items()}

    def load_checkpoint(self):
        return self.state


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown baseline 'mean'; choose one of: none, whiten"):
        ReinforceConfig(baseline="mean").check()
    with pytest.raises(ValueError, match="episodes_per_update 4 is less than num_envs 8"):
        ReinforceConfig(num_envs=8, episodes_per_update=4).check()
    with pytest.raises(ValueError, match="'sampled-mean' needs episodes_per_update >= 2"):
        ReinforceConfig(num_envs=1, episodes_per_update=1, baseline="sampled-mean").check()
    with pytest.raises(ValueError, match="gamma must be in"):
        ReinforceConfig(gamma=1.5).check()
    with pytest.raises(ValueError, match="unknown encoder 'cnn'"):
        ReinforceConfig(encoder="cnn").check()
    with pytest.raises(ValueError, match="max_grad_norm must be > 0"):
        ReinforceConfig(max_grad_norm=0.0).check()
    with pytest.raises(ValueError, match="config.num_envs"):
        train_reinforce(make("DeepSea-4", 2), ReinforceConfig(num_envs=4))
    with pytest.raises(ValueError, match="REINFORCE takes no curiosity bonus"):
        train_reinforce(make("DeepSea-4", 4), ReinforceConfig(num_envs=4), bonus=Count())


@pytest.mark.parametrize("baseline", ["none", "whiten", "value", "sampled-mean", "sampled-greedy"])
def test_every_baseline_trains_and_returns_the_agent_contract(baseline):
    env = make("DeepSea-5", 4, seed=0)
    cfg = ReinforceConfig(total_frames=200, baseline=baseline, **TINY)
    run = MemoryRun()
    result = train_reinforce(env, cfg, run=run)
    for key in ("frames", "wall_time_s", "fps", "final_return", "success_rate", "final_episodes"):
        assert key in result
    assert result["frames"] >= 200
    assert 0 < result["unique_states"] <= 15  # DeepSea-5: the cells with col <= row
    assert isinstance(result["agent"], ActorCritic)
    metrics = result["last_metrics"]
    for key in ("charts/episodic_return", "losses/policy", "charts/grad_variance"):
        assert np.isfinite(metrics[key]), key
    assert ("losses/value" in metrics) == (baseline == "value")
    # only the batch's episodes are recorded: 4 per update, each DeepSea-5 episode 5 steps
    assert len(result["episodes"]) == 4 * len(run.rows)
    assert all(row[2] == 5 for row in result["episodes"])
    if baseline == "sampled-greedy":
        assert metrics["charts/greedy_paired"] == 1.0  # one episode per copy: all paired


def test_sampled_greedy_pairs_only_the_first_episode_of_each_copy():
    env = make("CartPole-v1", 4, seed=0)
    cfg = ReinforceConfig(
        total_frames=300, num_envs=4, episodes_per_update=8, baseline="sampled-greedy"
    )
    result = train_reinforce(env, cfg)
    assert result["last_metrics"]["charts/greedy_paired"] == 0.5


def test_checkpoint_resume_repeats_the_uninterrupted_run():
    def fresh_env():
        return make("CartPole-v1", 4, seed=3)

    cfg = ReinforceConfig(total_frames=600, seed=3, **TINY)
    straight = train_reinforce(fresh_env(), cfg, run=MemoryRun())

    run = MemoryRun()
    first = train_reinforce(fresh_env(), ReinforceConfig(total_frames=300, seed=3, **TINY), run=run)
    assert 300 <= first["frames"] < straight["frames"]
    assert run.state["frames"] == first["frames"]
    resumed = train_reinforce(fresh_env(), cfg, run=run)
    assert resumed["frames"] == straight["frames"]
    np.testing.assert_array_equal(np.array(resumed["episodes"]), np.array(straight["episodes"]))
    for a, b in zip(
        straight["agent"].state_dict().values(),
        resumed["agent"].state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a finished run resumed with the same budget does nothing more
    again = train_reinforce(fresh_env(), cfg, run=run)
    assert again["frames"] == straight["frames"]


class NaNRewardAfter(gym.Wrapper):
    """Rewards become NaN after ``limit`` steps of this copy."""

    limit = 60

    def __init__(self, env):
        super().__init__(env)
        self.steps = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self.steps += 1
        return obs, float("nan") if self.steps > self.limit else reward, terminated, truncated, info


def test_nan_loss_raises_and_keeps_the_last_good_checkpoint():
    env = GymnasiumVecEnv("CartPole-v1", 4, seed=0, wrappers=[NaNRewardAfter])
    run = MemoryRun()
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        train_reinforce(env, ReinforceConfig(total_frames=10_000, baseline="none", **TINY), run=run)
    assert run.state is not None and run.state["update"] >= 1
    assert all(torch.isfinite(v).all() for v in run.state["agent"].values())


def test_resume_through_a_run_directory(tmp_path):
    from explora.runs.rundir import RunDir, read_metrics

    cfg = ReinforceConfig(total_frames=600, seed=3, **TINY)
    straight = train_reinforce(make("CartPole-v1", 4, seed=3), cfg)

    short = ReinforceConfig(total_frames=300, seed=3, **TINY)
    run = RunDir(tmp_path / "run", {"algo": "reinforce"}, progress=False)
    train_reinforce(make("CartPole-v1", 4, seed=3), short, run=run)
    run.close()
    run = RunDir(tmp_path / "run", {"algo": "reinforce"}, resume=True, progress=False)
    resumed = train_reinforce(make("CartPole-v1", 4, seed=3), cfg, run=run)
    run.close()
    assert resumed["frames"] == straight["frames"]
    for a, b in zip(
        straight["agent"].state_dict().values(),
        resumed["agent"].state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    frames = read_metrics(tmp_path / "run" / "metrics.csv")["frames"]
    assert frames[-1] == straight["frames"] and np.all(np.diff(frames) > 0)
