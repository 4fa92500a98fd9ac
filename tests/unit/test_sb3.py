"""``explora.integrations.sb3.BonusCallback``: the rollout's rewards, returns and advantages
after the callback are SB3's own computation on the combined reward; the bonus sees terminated
and truncated apart, with the true final observation; DQN's sampled batches carry the bonus;
VecNormalize's normalisation does not reach the bonus; bad input fails before training."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3 import A2C, DQN, PPO, SAC  # noqa: E402
from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.logger import configure  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402

import explora  # noqa: E402,F401  - registers DeepSea-N
from explora.bonuses import Count  # noqa: E402
from explora.bonuses.base import Transitions  # noqa: E402
from explora.integrations.sb3 import BonusCallback, add_bonus_to_rollout  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    """SB3's small networks on a shared 2-core CPU: torch's thread pool only adds contention
    (roughly measured: a 64-step PPO run took 20 s under pytest with 2 threads, 0.5 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SpyBonus:
    """A bonus that records what it is shown; its raw reward is ``1 + row`` of the one-hot
    ``next_obs`` (DeepSea), or a running step counter when ``counter`` is set."""

    def __init__(self, episodic: bool = False, counter: bool = False) -> None:
        self.episodic = episodic
        self.warmup_steps = 0
        self.counter = counter
        self.observed: list[Transitions] = []
        self.updates = 0
        self.computed: list[np.ndarray] = []
        self.space: gym.Space | None = None

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        self.space = observation_space

    def observe(self, step: Transitions) -> None:
        self.observed.append(step)

    def compute(self, batch: Transitions) -> torch.Tensor:
        if self.counter:
            t, n = batch.shape
            value = torch.full((t, n), float(len(self.observed)))
        else:
            x = batch.next_obs.float()
            rows = (x.sum(-1) * torch.arange(x.shape[-2])).sum(-1)  # row of the 1; 0 if none
            value = 1.0 + rows
        self.computed.append(value.numpy().copy())
        return value

    def update(self, batch: Transitions) -> dict[str, float]:
        self.updates += 1
        return {"spy/updates": float(self.updates)}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class RolloutSpy(BaseCallback):
    """Copies the rollout buffer at ``on_rollout_end`` and each step's env reward."""

    def __init__(self) -> None:
        super().__init__()
        self.rewards: list[np.ndarray] = []
        self.rollouts: list[dict[str, np.ndarray]] = []

    def _on_rollout_start(self) -> None:
        self.rewards = []

    def _on_step(self) -> bool:
        self.rewards.append(np.array(self.locals["rewards"], dtype=np.float32))
        return True

    def _on_rollout_end(self) -> None:
        buf = self.model.rollout_buffer
        with torch.no_grad():
            last_obs = torch.as_tensor(self.model._last_obs)
            last_values = self.model.policy.predict_values(last_obs)
        self.rollouts.append(
            {
                "rewards": buf.rewards.copy(),
                "advantages": buf.advantages.copy(),
                "returns": buf.returns.copy(),
                "values": buf.values.copy(),
                "episode_starts": buf.episode_starts.copy(),
                "ext": np.stack(self.rewards),
                "last_values": last_values.clone(),
                "dones": np.array(self.locals["dones"]),
            }
        )


def _filled_buffer(rewards: np.ndarray, values: np.ndarray, starts: np.ndarray) -> RolloutBuffer:
    t, n = rewards.shape
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    buf = RolloutBuffer(t, space, gym.spaces.Discrete(2), n_envs=n, gamma=0.9, gae_lambda=0.8)
    for i in range(t):
        buf.add(
            np.zeros((n, 2), np.float32),
            np.zeros((n, 1)),
            rewards[i],
            starts[i],
            torch.as_tensor(values[i]).reshape(n, 1),
            torch.zeros(n),
        )
    return buf


def test_add_bonus_to_rollout_equals_sb3_on_the_combined_reward() -> None:
    rng = np.random.default_rng(0)
    t, n = 6, 2
    ext = rng.normal(size=(t, n)).astype(np.float32)
    r_int = rng.random((t, n)).astype(np.float32)
    values = rng.normal(size=(t, n)).astype(np.float32)
    starts = np.zeros((t, n), np.float32)
    starts[0] = 1
    starts[3, 0] = 1  # env 0's episode ended at step 2 ...
    boot = np.zeros((t, n), np.float32)
    boot[2, 0] = 0.9 * 1.7  # ... by a time limit: SB3 added gamma * V(final obs)
    last_values = torch.tensor([[0.3], [-0.2]])
    dones = np.array([False, True])
    # SB3's rollout: env reward + bootstrap, returns and advantages already computed
    buf = _filled_buffer(ext + boot, values, starts)
    buf.compute_returns_and_advantage(last_values, dones)
    add_bonus_to_rollout(
        buf, ext, r_int, ext_coef=0.5, int_coef=2.0, last_values=last_values, dones=dones
    )
    combined = 0.5 * ext + 2.0 * r_int + boot
    reference = _filled_buffer(combined, values, starts)
    reference.compute_returns_and_advantage(last_values, dones)
    np.testing.assert_allclose(buf.rewards, combined, rtol=1e-6)
    np.testing.assert_allclose(buf.advantages, reference.advantages, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buf.returns, reference.returns, rtol=1e-5, atol=1e-6)
    # by hand: env 1's last step ended its episode (no bootstrap), the step before continues
    g, lam = 0.9, 0.8
    a5 = combined[5, 1] - values[5, 1]
    a4 = combined[4, 1] + g * values[5, 1] - values[4, 1] + g * lam * a5
    assert buf.advantages[5, 1] == pytest.approx(a5, rel=1e-5)
    assert buf.advantages[4, 1] == pytest.approx(a4, rel=1e-5)
    # env 0's step 2 ended (episode_starts[3] = 1): its advantage is its own TD error, with
    # the time-limit bootstrap inside the reward
    a2 = 0.5 * ext[2, 0] + 2.0 * r_int[2, 0] + boot[2, 0] - values[2, 0]
    assert buf.advantages[2, 0] == pytest.approx(a2, rel=1e-5)
    assert buf.returns[5, 0] == pytest.approx(
        combined[5, 0] + g * 0.3 - values[5, 0] + values[5, 0], rel=1e-5
    )


def _cartpole_with_time_limit(n_envs: int = 2, limit: int = 6) -> Any:
    return make_vec_env(
        "CartPole-v1", n_envs=n_envs, seed=0, env_kwargs={"max_episode_steps": limit}
    )


@pytest.mark.parametrize(("ext_coef", "int_coef"), [(1.0, 0.0), (0.5, 2.0), (0.0, 1.0)])
def test_ppo_rollout_is_sb3s_computation_on_the_combined_reward(
    ext_coef: float, int_coef: float
) -> None:
    """A real PPO rollout on CartPole cut at 6 steps (SB3's timeout bootstrap on every
    truncation): the buffer before the callback is SB3's; after it, rewards are
    ``ext_coef * r_ext + int_coef * r_int + bootstrap`` and the advantages are SB3's GAE on
    them with V(last obs) and the last dones."""
    torch.manual_seed(0)
    model = PPO("MlpPolicy", _cartpole_with_time_limit(), n_steps=16, batch_size=32, seed=0)
    before, after = RolloutSpy(), RolloutSpy()
    bonus = BonusCallback("rnd", int_coef=int_coef, ext_coef=ext_coef, warmup=False)
    model.learn(64, callback=[before, bonus, after])
    assert len(after.rollouts) == 2
    for pre in before.rollouts:
        boot = pre["rewards"] - pre["ext"]
        assert (np.abs(boot) > 0.1).sum() >= 2  # truncations happened and were bootstrapped
    r_int = bonus.int_rewards  # the last rollout's
    assert r_int is not None and r_int.shape == (16, 2) and (r_int > 0).all()
    pre, post = before.rollouts[-1], after.rollouts[-1]
    boot = pre["rewards"] - pre["ext"]
    np.testing.assert_allclose(
        post["rewards"], ext_coef * pre["ext"] + int_coef * r_int + boot, rtol=1e-5, atol=1e-6
    )
    reference = _filled_buffer(post["rewards"], pre["values"], pre["episode_starts"])
    reference.gamma, reference.gae_lambda = model.gamma, model.gae_lambda
    reference.compute_returns_and_advantage(pre["last_values"], pre["dones"])
    np.testing.assert_allclose(post["advantages"], reference.advantages, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(post["returns"], reference.returns, rtol=1e-5, atol=1e-5)
    if int_coef == 0.0 and ext_coef == 1.0:  # nothing to add: SB3's rollout as SB3 made it
        np.testing.assert_allclose(post["advantages"], pre["advantages"], rtol=1e-6, atol=1e-6)


def _deepsea_ends_vec() -> DummyVecEnv:
    """Two DeepSea-4 copies: copy 0 terminates after 4 steps, copy 1 is truncated after 3."""
    return DummyVecEnv(
        [
            lambda: Monitor(gym.make("DeepSea-4")),
            lambda: Monitor(gym.make("DeepSea-4", max_episode_steps=3)),
        ]
    )


def _row(obs: torch.Tensor) -> int:
    """Row of a one-hot DeepSea observation; -1 for the all-zero one past the last row."""
    hits = torch.nonzero(obs)
    return int(hits[0, 0]) if len(hits) else -1


@pytest.mark.parametrize("normalize", [False, True])
def test_bonus_sees_terminated_and_truncated_apart_with_the_final_obs(normalize: bool) -> None:
    venv = _deepsea_ends_vec()
    if normalize:  # the bonus must see raw observations, final ones included
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True)
    spy = SpyBonus()
    model = PPO("MlpPolicy", venv, n_steps=12, batch_size=24, seed=0)
    model.learn(48, callback=BonusCallback(spy, warmup=False))
    assert spy.space == gym.spaces.Box(0, 1, (4, 4), np.uint8)
    assert len(spy.observed) == 24
    for t, step in enumerate(spy.observed):
        assert step.obs.dtype == torch.uint8 and step.next_obs.dtype == torch.uint8
        # copy 0: step t moves from row t % 4 to t % 4 + 1; past the last row, all zeros
        term, trunc = bool(step.terminated[0, 0]), bool(step.truncated[0, 0])
        assert (term, trunc) == (t % 4 == 3, False)
        assert _row(step.obs[0, 0]) == t % 4
        assert _row(step.next_obs[0, 0]) == (-1 if t % 4 == 3 else t % 4 + 1)
        # copy 1: cut by its time limit at row 3, whose one-hot is the true final obs
        term, trunc = bool(step.terminated[0, 1]), bool(step.truncated[0, 1])
        assert (term, trunc) == (False, t % 3 == 2)
        assert _row(step.obs[0, 1]) == t % 3
        assert _row(step.next_obs[0, 1]) == t % 3 + 1
        assert int(step.next_obs[0, 1].sum()) == 1  # exactly one-hot (unnormalised)


def test_count_under_vec_normalize_counts_raw_observations() -> None:
    venv = VecNormalize(make_vec_env("DeepSea-4", n_envs=2, seed=0))
    count = Count()
    PPO("MlpPolicy", venv, n_steps=16, batch_size=32, seed=0).learn(
        64, callback=BonusCallback(count)
    )
    # DeepSea-4 has 10 cells and the all-zero final view: normalised floats would never repeat
    assert 2 <= count.num_unique <= 11


def test_dqn_sampled_batches_carry_the_bonus() -> None:
    spy = SpyBonus()
    model = DQN(
        "MlpPolicy",
        make_vec_env("DeepSea-4", n_envs=2, seed=0),
        learning_starts=16,
        train_freq=4,
        batch_size=16,
        seed=0,
    )
    callback = BonusCallback(spy, ext_coef=0.5, int_coef=2.0)
    model.learn(64, callback=callback)
    assert spy.updates > 0  # DQN's own training sampled batches, and the bonus trained on them
    assert len(spy.observed) == 32  # every env step was shown to it
    buffer = model.replay_buffer
    inds = np.arange(8)
    np.random.seed(1)
    hooked = buffer._get_samples(inds)
    np.random.seed(1)
    plain = ReplayBuffer._get_samples(buffer, inds)  # SB3's own, without the bonus
    assert torch.equal(hooked.next_observations, plain.next_observations)
    raw = spy.computed[-1].reshape(-1)  # the bonus on this batch, as it is now
    expected_raw = 1.0 + np.array([max(_row(o), 0) for o in plain.next_observations])
    np.testing.assert_array_equal(raw, expected_raw)
    std = float(np.sqrt(callback.int_rms.var + 1e-8))
    expected = 0.5 * plain.rewards.numpy()[:, 0] + 2.0 * raw / std
    np.testing.assert_allclose(hooked.rewards.numpy()[:, 0], expected, rtol=1e-5)


def test_dqn_episodic_bonus_is_stored_at_insertion() -> None:
    spy = SpyBonus(episodic=True, counter=True)
    model = DQN(
        "MlpPolicy",
        make_vec_env("DeepSea-4", n_envs=2, seed=0),
        learning_starts=1000,  # no training: the stored values stay as written
        seed=0,
    )
    callback = BonusCallback(spy, ext_coef=0.0)
    model.learn(20, callback=callback)
    stored = callback._stored
    assert stored is not None
    # step k's value (k = 1..10, the spy's counter) at buffer slot k - 1, for both copies
    np.testing.assert_array_equal(stored[:10], np.repeat(np.arange(1.0, 11.0)[:, None], 2, 1))
    inds = np.array([0, 4, 9])
    np.random.seed(3)
    env_inds = np.random.randint(0, 2, size=3)
    np.random.seed(3)
    hooked = model.replay_buffer._get_samples(inds)
    std = float(np.sqrt(callback.int_rms.var + 1e-8))
    np.testing.assert_allclose(
        hooked.rewards.numpy()[:, 0], stored[inds, env_inds] / std, rtol=1e-6
    )


def test_sac_with_a_bonus_on_continuous_actions() -> None:
    model = SAC(
        "MlpPolicy",
        make_vec_env("Pendulum-v1", n_envs=1, seed=0),
        learning_starts=32,
        batch_size=16,
        seed=0,
    )
    spy = SpyBonus(counter=True)
    model.learn(40, callback=BonusCallback(spy, warmup=False))
    assert spy.updates == 8  # one per SAC gradient step
    # the bonus saw the env's actions (Pendulum's torque in [-2, 2]), not SAC's [-1, 1] ones
    sampled = spy.observed[-1].actions
    assert sampled.shape == (1, 1, 1)
    seen = torch.cat([s.actions.reshape(-1) for s in spy.observed])
    assert seen.abs().max() > 1.0 and seen.abs().max() <= 2.0
    assert "bonus/int_reward" in model.logger.name_to_value


def test_a2c_and_bonus_figures_reach_the_logger(tmp_path: Path) -> None:
    model = A2C("MlpPolicy", make_vec_env("DeepSea-5", n_envs=2, seed=0), n_steps=8, seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(64, callback=BonusCallback("rnd", warmup_steps=8), log_interval=1)
    rows = list(csv.DictReader(open(tmp_path / "progress.csv")))
    logged = [row for row in rows if row.get("bonus/losses/rnd")]
    assert logged, sorted(rows[-1])
    assert all(float(row["bonus/int_return_std"]) > 0 for row in logged)
    # the first 8 steps per env were RND's warm-up: no reward, no training on them
    assert float(logged[-1]["bonus/int_reward"]) > 0


def test_bad_input_fails_before_training() -> None:
    with pytest.raises(ValueError, match="unknown bonus 'rdn'; choose one of: .*rnd"):
        BonusCallback("rdn")
    with pytest.raises(ValueError, match="int_coef must be a finite number >= 0"):
        BonusCallback("rnd", int_coef=-1.0)
    with pytest.raises(ValueError, match="bonus_args apply to a bonus given by name"):
        BonusCallback(Count(), beta=2.0)
    model = SAC("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1, seed=0), seed=0)
    with pytest.raises(ValueError, match="dora .*needs Discrete actions"):
        model.learn(100, callback=BonusCallback("dora"))
    assert model.num_timesteps == 0  # not one env step
    cartpole = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), seed=0)
    with pytest.raises(ValueError, match="count needs observations it can count exactly"):
        cartpole.learn(100, callback=BonusCallback("count"))
    assert cartpole.num_timesteps == 0


def test_state_dict_round_trip() -> None:
    venv = make_vec_env("DeepSea-4", n_envs=2, seed=0)
    first = BonusCallback("rnd", warmup_steps=4)
    PPO("MlpPolicy", venv, n_steps=8, batch_size=16, seed=0).learn(32, callback=first)
    second = BonusCallback("rnd", warmup_steps=4)
    second.load_state_dict(first.state_dict())  # applied when learn sets it up
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, seed=0)
    model.learn(0, callback=second)
    assert second.curiosity is not None and first.curiosity is not None
    assert second._warmup_left == 0
    assert second.curiosity.scale.std == first.curiosity.scale.std
    obs = torch.rand(1, 2, 4, 4).round().to(torch.uint8)
    batch = Transitions(
        obs=obs,
        actions=torch.zeros(1, 2, dtype=torch.long),
        next_obs=obs,
        ext_rewards=torch.zeros(1, 2),
        terminated=torch.zeros(1, 2, dtype=torch.bool),
        truncated=torch.zeros(1, 2, dtype=torch.bool),
    )
    assert torch.equal(first.bonus.compute(batch), second.bonus.compute(batch))
