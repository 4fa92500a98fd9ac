"""PPO mechanics that do not need learning: action spaces, modes, config errors."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from explora.agents.ppo import ActorCritic, PPOConfig, train_ppo
from explora.bonuses import Count
from explora.envs import make
from explora.envs.gym import GymnasiumVecEnv

TINY = dict(num_steps=16, minibatch_size=32, update_epochs=1)


class RecordActions(gym.Wrapper):
    seen: list = []

    def step(self, action):
        RecordActions.seen.append(np.array(action))
        return super().step(action)


def test_continuous_actions_are_clipped_for_the_env_but_not_for_the_update():
    env = GymnasiumVecEnv("Pendulum-v1", 4, seed=0, wrappers=[RecordActions])
    cfg = PPOConfig(total_frames=4 * 16 * 2, num_envs=4, **TINY)
    result = train_ppo(env, cfg)
    actions = np.stack(RecordActions.seen)
    assert actions.shape[-1] == 1 and np.all(np.abs(actions) <= 2.0)
    assert result["frames"] == 128
    agent = result["agent"]
    assert agent.continuous and agent.log_std.shape == (1,)


def test_discrete_policy_outputs_one_logit_per_action():
    env = make("MiniGrid-DoorKey-5x5-v0", 2)
    agent = ActorCritic(env.single_observation_space, env.single_action_space, PPOConfig())
    obs, _ = env.reset()
    logits, values = agent(torch.from_numpy(obs))
    assert logits.shape == (2, 7) and values.shape == (2, 2)


@pytest.mark.parametrize("overrides", [dict(ext_coef=0.0), dict(int_episodic=True)])
def test_pure_curiosity_and_episodic_intrinsic_modes_run(overrides):
    env = make("DeepSea-6", 4)
    cfg = PPOConfig(total_frames=4 * 16 * 3, num_envs=4, **TINY, **overrides)
    result = train_ppo(env, cfg, bonus=Count())
    assert result["frames"] == 4 * 16 * 3
    assert np.isfinite(result["last_metrics"]["charts/int_reward"])


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="less than one rollout"):
        PPOConfig(total_frames=10).check()
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        PPOConfig(num_envs=0).check()
    with pytest.raises(ValueError, match="config.num_envs"):
        train_ppo(make("DeepSea-4", 2), PPOConfig(num_envs=4))


def test_same_seed_gives_the_same_run():
    def run():
        env = make("DeepSea-6", 4, seed=1)
        cfg = PPOConfig(total_frames=4 * 16 * 3, num_envs=4, seed=1, **TINY)
        return train_ppo(env, cfg)["last_metrics"]["losses/policy"]

    assert run() == run()


def test_minibatch_must_divide_the_batch():
    with pytest.raises(ValueError, match="must be a multiple of minibatch_size 512"):
        PPOConfig(num_envs=8, num_steps=32, minibatch_size=512).check()
    with pytest.raises(ValueError, match="must be a multiple of minibatch_size 300"):
        PPOConfig(num_envs=16, num_steps=128, minibatch_size=300).check()


@pytest.mark.parametrize("continuous", [False, True])
def test_policy_maths_matches_torch_distributions(continuous):
    """The hand-written log-probability and entropy equal torch.distributions' on random
    inputs, and sampling follows the same distribution."""
    torch.manual_seed(0)
    if continuous:
        env = GymnasiumVecEnv("Pendulum-v1", 3, seed=0)
    else:
        env = make("MiniGrid-DoorKey-5x5-v0", 3)
    agent = ActorCritic(env.single_observation_space, env.single_action_space, PPOConfig())
    if continuous:
        agent.log_std.data.fill_(-0.3)
        out = torch.randn(5, 1)
        reference = torch.distributions.Normal(out, agent.log_std.exp().expand_as(out))
        actions = torch.randn(5, 1)
        want_logp, want_ent = reference.log_prob(actions).sum(-1), reference.entropy().sum(-1)
    else:
        out = torch.randn(5, 7) * 3
        reference = torch.distributions.Categorical(logits=out)
        actions = torch.randint(0, 7, (5,))
        want_logp, want_ent = reference.log_prob(actions), reference.entropy()
    logp, ent = agent.log_prob_entropy(out, actions)
    torch.testing.assert_close(logp, want_logp)
    torch.testing.assert_close(ent, want_ent)
    # Sampling: 20k draws from one row; mean log-prob of the draws estimates minus the entropy.
    row = out[:1].expand(20_000, *out.shape[1:])
    drawn, drawn_logp = agent.sample(row)
    torch.testing.assert_close(drawn_logp, agent.log_prob_entropy(row, drawn)[0])
    assert abs(float(-drawn_logp.detach().mean()) - float(want_ent[0].detach())) < 0.03


@pytest.mark.parametrize("scale", [1e-3, 1.0, 100.0])
def test_clip_grad_norm_matches_torch(scale):
    from explora.models.optim import clip_grad_norm

    torch.manual_seed(0)
    nets = [torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)]
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        a.grad = torch.randn_like(a) * scale
        b.grad = a.grad.clone()
    want = torch.nn.utils.clip_grad_norm_(nets[0].parameters(), 0.5)
    got = clip_grad_norm(list(nets[1].parameters()), 0.5)
    torch.testing.assert_close(got, want)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_bonus_thread_changes_nothing_but_the_clock():
    """RND trained on its own thread during PPO's update gives bit-identical training to RND
    trained after it: the two share no state and no random generator."""
    from explora.bonuses import RND

    def run(bonus_thread: bool) -> list[torch.Tensor]:
        env = make("MiniGrid-DoorKey-5x5-v0", 8, seed=1)
        cfg = PPOConfig(
            total_frames=8 * 16 * 4, num_envs=8, seed=1, bonus_thread=bonus_thread, **TINY
        )
        bonus = RND(hidden_size=32, feature_size=16, warmup_steps=4)
        agent = train_ppo(env, cfg, bonus=bonus)["agent"]
        return [p.detach().clone() for p in [*agent.parameters(), *bonus.parameters()]]

    for a, b in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
