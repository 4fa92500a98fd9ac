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
    dist, values = agent(torch.from_numpy(obs))
    assert dist.logits.shape == (2, 7) and values.shape == (2, 2)


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
