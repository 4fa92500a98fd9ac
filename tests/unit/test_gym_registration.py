"""explora's own envs as Gymnasium ids (``explora.envs.registration``): each registered id makes
a valid single env, which transitions as the vectorised env (and DeepSea as bsuite's); and
``explora.envs.make`` still builds the native and EnvPool versions of the same ids."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import explora  # noqa: F401  - registers the ids
from explora.envs import make
from explora.envs.bandits import BanditEnv
from explora.envs.deepsea import BSUITE_MAPPING_SEED, DeepSea
from explora.envs.noisy_tv import NOISY_TV_IDS, NoisyTV
from explora.envs.registration import (
    BANDIT_ARMS,
    DEEPSEA_SIZES,
    DeepSeaEnv,
    NoisyTVEnv,
    register_env,
)

# The bandits' constant observation lives in Box(0, 0), which gymnasium's checker warns about.
pytestmark = pytest.mark.filterwarnings("ignore:.*maximum and minimum values are equal")

SOME_IDS = [
    "DeepSea-1",
    "DeepSea-5",
    "DeepSea-10",
    "DeepSea-50",
    "DeepSea-100",
    "Bandit-Bernoulli-2",
    "Bandit-Bernoulli-10",
    "Bandit-Gaussian-100",
    *NOISY_TV_IDS,
]


def test_every_id_is_registered() -> None:
    registry = gym.envs.registry
    assert all(f"DeepSea-{n}" in registry for n in range(5, 51))
    assert all(f"DeepSea-{n}" in registry for n in DEEPSEA_SIZES)
    for kind in ("Bernoulli", "Gaussian"):
        assert all(f"Bandit-{kind}-{k}" in registry for k in BANDIT_ARMS)
    assert all(env_id in registry for env_id in NOISY_TV_IDS)
    assert "DeepSea-101" not in registry and "Bandit-Bernoulli-1" not in registry


@pytest.mark.parametrize("env_id", SOME_IDS)
def test_gymnasium_make_passes_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings():
        # a wrapped env (gym.make's order enforcing) is what users get; checking it is the point
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float) and isinstance(terminated, bool)
    assert isinstance(truncated, bool) and isinstance(info, dict)
    env.close()


def test_render_rgb_array() -> None:
    env = gym.make("DeepSea-4", render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (4, 4, 3) and image[0, 0].tolist() == [255, 255, 255]
    assert image.sum() == 3 * 255


def test_register_env_other_sizes_and_bad_ids() -> None:
    register_env("DeepSea-123")
    assert gym.make("DeepSea-123").observation_space.shape == (123, 123)
    register_env("Bandit-Gaussian-500")
    assert gym.make("Bandit-Gaussian-500").action_space.n == 500
    with pytest.raises(ValueError, match="DeepSea size must be a positive integer"):
        register_env("DeepSea-x")
    with pytest.raises(ValueError, match="not one of explora's own envs"):
        register_env("CartPole-v9")


@pytest.mark.parametrize(
    ("size", "deterministic", "seed"), [(5, True, 0), (10, True, 1), (10, False, 2), (7, False, 3)]
)
def test_deepsea_single_env_matches_vectorised(size: int, deterministic: bool, seed: int) -> None:
    """Step for step with the vectorised env of one copy, the same seed and actions, across
    episode ends (the single env is reset by the caller, the vectorised one resets itself)."""
    single = gym.make(f"DeepSea-{size}", deterministic=deterministic)
    vec = DeepSea(size, 1, deterministic=deterministic)
    obs, info = single.reset(seed=seed)
    vec_obs, vec_info = vec.reset(seed=seed)
    assert np.array_equal(obs, vec_obs[0])
    assert np.array_equal(info["agent_pos"], vec_info["agent_pos"][0])
    rng = np.random.default_rng(seed)
    ends = 0
    for _ in range(8 * size):
        action = int(rng.integers(0, 2))
        obs, reward, terminated, truncated, info = single.step(action)
        step = vec.step(np.array([action]))
        assert np.array_equal(obs, step.final_obs[0])
        assert reward == pytest.approx(float(step.reward[0]), abs=0)
        assert terminated == bool(step.terminated[0]) and truncated == bool(step.truncated[0])
        for key, value in step.info.items():
            assert np.array_equal(info[key], value[0]), key
        if terminated:
            ends += 1
            obs, _ = single.reset()
            assert np.array_equal(obs, step.obs[0])
    assert ends == 8


def test_deepsea_single_env_copies_match_the_vectorised_copies() -> None:
    """Four single envs against one 4-copy vectorised env, copy by copy (deterministic)."""
    size, n = 6, 4
    singles = [DeepSeaEnv(size) for _ in range(n)]
    vec = DeepSea(size, n)
    vec.reset(seed=0)
    for env in singles:
        env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5 * size):
        actions = rng.integers(0, 2, size=n)
        step = vec.step(actions)
        for i, env in enumerate(singles):
            obs, reward, terminated, _, _ = env.step(int(actions[i]))
            assert np.array_equal(obs, step.final_obs[i]) and reward == step.reward[i]
            assert terminated == step.terminated[i]
            if terminated:
                env.reset()


def test_deepsea_single_env_matches_bsuite() -> None:
    bsuite_deep_sea = pytest.importorskip("bsuite.environments.deep_sea").DeepSea
    size = 8
    env = gym.make(f"DeepSea-{size}")
    ref = bsuite_deep_sea(size, mapping_seed=BSUITE_MAPPING_SEED)
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs, ref.reset().observation.astype(np.uint8))
    mapping = ref._action_mapping
    rng = np.random.default_rng(1)
    successes = 0
    for _ in range(20 * size):
        row, col = ref._row, ref._column
        right = int(mapping[row, col])  # the action that moves right in this cell
        action = right if rng.random() < 0.85 else 1 - right
        obs, reward, terminated, truncated, info = env.step(action)
        ts = ref.step(action)
        assert np.array_equal(obs, ts.observation.astype(np.uint8))
        assert reward == pytest.approx(ts.reward, abs=1e-6)
        assert terminated == ts.last() and not truncated
        if terminated:
            successes += bool(info["success"])
            assert bool(info["bad_episode"]) == ref._bad_episode
            obs, _ = env.reset()
            assert np.array_equal(obs, ref.reset().observation.astype(np.uint8))
    assert successes > 0  # the treasure was reached, so its reward was compared too


def test_bandit_single_env_matches_vectorised() -> None:
    env = gym.make("Bandit-Gaussian-5")
    vec = BanditEnv.from_id("Bandit-Gaussian-5", 1, seed=0)
    # the problem (arm means) is that of explora.envs.make(id, seed=0) unless problem_seed says
    assert np.array_equal(env.unwrapped.bandit.means, vec.means)
    other = gym.make("Bandit-Gaussian-5", problem_seed=1).unwrapped
    assert not np.array_equal(other.bandit.means, vec.means)
    env.reset(seed=4)
    vec.reset(seed=4)
    for arm in [0, 1, 2, 3, 4, 4, 2]:
        obs, reward, terminated, truncated, info = env.step(arm)
        step = vec.step(np.array([arm]))
        assert reward == step.reward[0] and terminated and not truncated
        assert info["regret"] == step.info["regret"][0]
        assert np.array_equal(obs, np.zeros(1, np.float32))
        env.reset()


def test_noisy_tv_single_env_matches_vectorised() -> None:
    """The single env over minigrid's Python env, against explora's vectorised NoisyTV over the
    gymnasium backend with one copy: same seed, same actions (a third of them the TV), across
    episode ends (MultiRoom-N4-S5's 80-step limit)."""
    env_id, seed = "MiniGrid-MultiRoom-N4-S5-NoisyTV-v0", 5
    single = gym.make(env_id)
    vec = make(env_id, num_envs=1, seed=seed, backend="gymnasium")
    assert isinstance(vec, NoisyTV)
    obs, info = single.reset(seed=seed)
    vec_obs, vec_info = vec.reset(seed=seed)
    assert np.array_equal(obs, vec_obs[0])
    assert np.array_equal(info["agent_pos"], vec_info["agent_pos"][0])
    rng = np.random.default_rng(0)
    ends = presses = 0
    for _ in range(250):
        action = 4 if rng.random() < 0.35 else int(rng.integers(0, 7))
        obs, reward, terminated, truncated, info = single.step(action)
        step = vec.step(np.array([action]))
        assert np.array_equal(obs, step.final_obs[0])
        assert reward == pytest.approx(float(step.reward[0]))
        assert terminated == bool(step.terminated[0]) and truncated == bool(step.truncated[0])
        assert info["on_tv"] == bool(step.info["on_tv"][0]) == (action == 4)
        assert np.array_equal(info["agent_pos"], step.info["agent_pos"][0])
        presses += action == 4
        if terminated or truncated:
            ends += 1
            obs, _ = single.reset()
            assert np.array_equal(obs, step.obs[0])
    vec.close()
    assert ends >= 2 and presses > 50
    # the TV showed noise: a ball (6) in the corner cell on a press
    tv = NoisyTVEnv(env_id)
    tv.reset(seed=0)
    assert tv.step(4)[0][0, 0, 0] == 6


def test_noisy_tv_single_env_takes_the_tv_action_off_the_base_env() -> None:
    """Drop (the TV) must not drop the key: the base env receives done (a no-op)."""
    env = NoisyTVEnv("MiniGrid-DoorKey-8x8-NoisyTV-v0")
    env.reset(seed=0)
    sent: list[int] = []
    base_step = env.env.step
    env.env.step = lambda a: (sent.append(int(a)), base_step(a))[1]  # type: ignore[method-assign]
    env.step(4)
    env.step(2)
    assert sent == [6, 2]
    with pytest.raises(ValueError, match="unknown NoisyTV env"):
        NoisyTVEnv("MiniGrid-Empty-5x5-NoisyTV-v0")


def test_explora_make_still_builds_native_and_envpool_versions() -> None:
    assert isinstance(make("DeepSea-10", num_envs=2), DeepSea)
    assert isinstance(make("Bandit-Bernoulli-4", num_envs=2), BanditEnv)
    tv = make("MiniGrid-DoorKey-8x8-NoisyTV-v0", num_envs=2)
    assert isinstance(tv, NoisyTV)
    pytest.importorskip("envpool")
    assert type(tv.env).__name__ == "EnvPoolMiniGrid"
    tv.close()


def test_sb3_make_vec_env_builds_registered_ids() -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no render-mode or checker warnings either
        venv = make_vec_env("DeepSea-10", n_envs=3, seed=0)
    obs = venv.reset()
    assert obs.shape == (3, 10, 10) and obs.dtype == np.uint8
    for _ in range(10):
        obs, rewards, dones, infos = venv.step(np.ones(3, dtype=np.int64))
    assert dones.all() and "terminal_observation" in infos[0]
    assert not infos[0]["TimeLimit.truncated"]
    venv.close()
