"""Dict observations: flattened with a layout, encoded per part by PPO, read by key by a bonus."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import explora
from explora.agents.ppo import PPOConfig, train_ppo
from explora.bonuses import Count, ObsKey
from explora.envs import make
from explora.envs.dict_obs import FlatDictBox, ObsLayout


class TwoPartEnv(gym.Env):
    """A corridor of 6 cells: obs {"pos": Discrete(6), "noise": Box(3)}; reward at the end."""

    observation_space = gym.spaces.Dict(
        {"pos": gym.spaces.Discrete(6), "noise": gym.spaces.Box(-1, 1, (3,), np.float32)}
    )
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def _obs(self):
        return {"pos": self.pos, "noise": self.np_random.uniform(-1, 1, 3).astype(np.float32)}

    def step(self, action):
        self.pos = int(np.clip(self.pos + (1 if action == 1 else -1), 0, 5))
        done = self.pos == 5
        return self._obs(), float(done), done, False, {}


gym.register("explora-test/TwoPart-v0", entry_point=TwoPartEnv, max_episode_steps=30)


def test_layout_round_trips_every_part_in_its_own_shape_and_dtype():
    space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 10, (2, 2, 3), np.uint8),
            "direction": gym.spaces.Discrete(4),
            "mission": gym.spaces.Box(0, 255, (5,), np.uint8),
        }
    )
    layout = ObsLayout.of(space)
    obs = {key: np.stack([sub.sample() for _ in range(3)]) for key, sub in space.spaces.items()}
    flat = layout.flatten(obs)
    assert flat.shape == (3, 12 + 1 + 5) and isinstance(layout.flat_space(), FlatDictBox)
    for key, value in obs.items():
        np.testing.assert_array_equal(layout.view(flat, key), value)
        back = layout.view(torch.from_numpy(flat), key)
        assert back.dtype == torch.from_numpy(np.asarray(value)).dtype
    with pytest.raises(ValueError, match="no observation part 'missing'; .*direction, image"):
        layout.view(flat, "missing")
    with pytest.raises(ValueError, match="'t' is a Tuple"):
        ObsLayout.of(gym.spaces.Dict({"t": gym.spaces.Tuple([gym.spaces.Discrete(2)])}))


def test_ppo_trains_on_a_dict_env_with_a_bonus_reading_a_named_part():
    """PPO encodes each part (a DictEncoder); the count bonus reads "pos" only: it counts 6
    states, where counting the whole observation (with its noise part) would count every
    step as new. The agent learns the corridor."""
    env = make("explora-test/TwoPart-v0", num_envs=8, seed=0)
    assert isinstance(env.single_observation_space, FlatDictBox)
    bonus = ObsKey(Count(), "pos")
    cfg = PPOConfig(total_frames=8 * 32 * 20, num_envs=8, num_steps=32, minibatch_size=64, seed=0)
    result = train_ppo(env, cfg, bonus=bonus)
    assert type(result["agent"].encoder).__name__ == "DictEncoder"
    assert bonus.inner.num_unique == 6
    assert result["final_return"] > 0.9


def test_minigrid_dict_observation_gives_image_direction_and_mission(tmp_path):
    env = make("MiniGrid-DoorKey-5x5-v0", num_envs=2, seed=0, dict_obs=True)
    layout = env.single_observation_space.layout
    assert sorted(layout.parts) == ["direction", "image", "mission"]
    obs, _ = env.reset()
    mission = bytes(layout.view(obs, "mission")[0]).rstrip(b"\0").decode()
    assert mission == "use the key to open the door and then get to the goal"
    assert layout.view(obs, "image").shape == (2, 7, 7, 3)
    env.close()
    summary = explora.train(
        "MiniGrid-DoorKey-5x5-v0",
        bonus="rnd",
        frames=64 * 128,  # one rollout of the MiniGrid preset
        progress=False,
        out=tmp_path / "run",
        env_kwargs={"dict_obs": True},
        bonus_args={"obs_key": "image"},
    )
    assert summary["frames"] > 0


def test_dqn_takes_a_dict_observation_flattened(tmp_path):
    """DQN sees the flattened Dict (an MLP over all parts) and learns the corridor."""
    summary = explora.train(
        "explora-test/TwoPart-v0",
        algo="dqn",
        frames=6_000,
        seed=0,
        progress=False,
        out=tmp_path / "dqn",
        algo_args={"learning_starts": 500, "epsilon_decay_frames": 3_000},
    )
    assert summary["final_return"] > 0.9, summary
