"""Environment backends: same-step auto-reset, EnvPool's boundary, errors, shared layout."""

import envpool
import gymnasium as gym
import numpy as np
import pytest
import torch

from explora.agents.ppo import PPOConfig, train_ppo
from explora.bonuses.base import Transitions
from explora.envs import check_env_id, make
from explora.envs.base import EnvStep, VecEnv

DOORKEY = "MiniGrid-DoorKey-5x5-v0"


def test_envpool_stream_equals_raw_envpool_with_its_reset_steps_removed():
    """One env, same seed and actions: our same-step stream is EnvPool's own stream minus the
    extra step EnvPool spends on each reset (the one transition that is not real)."""
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 7, size=1200)
    raw = envpool.make(DOORKEY, env_type="gymnasium", num_envs=1, seed=3)
    raw_obs, _ = raw.reset()
    ours = make(DOORKEY, num_envs=1, seed=3)
    our_obs, _ = ours.reset()
    np.testing.assert_array_equal(our_obs, raw_obs["image"])
    ends = 0
    for a in actions:
        step = ours.step(np.array([a]))
        o, r, te, tr, _ = raw.step(np.array([a], dtype=np.int32))
        np.testing.assert_array_equal(step.final_obs, o["image"])
        assert step.reward[0] == pytest.approx(r[0])
        assert step.terminated[0] == te[0] and step.truncated[0] == tr[0]
        if te[0] or tr[0]:
            ends += 1
            # EnvPool's reset step: the action is ignored, reward 0, a new episode's obs.
            o2, r2, te2, tr2, info2 = raw.step(np.array([0], dtype=np.int32))
            assert r2[0] == 0 and not te2[0] and not tr2[0] and info2["elapsed_step"][0] == 0
            np.testing.assert_array_equal(step.obs, o2["image"])
        else:
            np.testing.assert_array_equal(step.obs, step.final_obs)
    assert ends >= 3  # 250-step time limit on 5x5: several episode ends were checked


def test_envpool_resets_only_the_envs_that_ended():
    env = make(DOORKEY, num_envs=6, seed=0)
    env.reset()
    rng = np.random.default_rng(1)
    seen_end = False
    for _ in range(600):
        step = env.step(rng.integers(0, 7, size=6))
        ended = step.terminated | step.truncated
        seen_end |= ended.any()
        # envs that did not end: next obs is the final obs; ended ones got a new episode
        np.testing.assert_array_equal(step.obs[~ended], step.final_obs[~ended])
        assert step.info["agent_pos"].shape == (6, 2)
        assert (step.info["success"] == (ended & (step.reward > 0))).all()
    assert seen_end


@pytest.mark.parametrize("backend", ["envpool", "gymnasium"])
def test_minigrid_backends_share_the_layout(backend):
    env = make(DOORKEY, num_envs=3, seed=0, backend=backend)
    obs, info = env.reset()
    assert obs.shape == (3, 7, 7, 3) and obs.dtype == np.uint8
    assert env.single_observation_space == gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    assert env.single_action_space == gym.spaces.Discrete(7)
    assert env.grid_shape == (5, 5) and env.has_success
    assert info["agent_pos"].shape == (3, 2)
    step = env.step(np.zeros(3, dtype=np.int64))
    assert step.obs.shape == (3, 7, 7, 3) and step.final_obs.shape == (3, 7, 7, 3)
    env.close()


def test_gymnasium_backend_final_obs_is_the_true_last_observation():
    env = make("CartPole-v1", num_envs=4, seed=0)
    env.reset()
    ends = 0
    for _ in range(200):
        step = env.step(np.ones(4, dtype=np.int64))  # always push right: ends fast
        for i in np.flatnonzero(step.terminated):
            ends += 1
            # the pole fell: the final obs is outside the termination bounds, the reset is not
            last = step.final_obs[i]
            assert abs(last[2]) > 0.2094 or abs(last[0]) > 2.4
            assert np.all(np.abs(step.obs[i]) <= 0.05)
    assert ends > 0


@pytest.mark.parametrize(
    "env_id, message",
    [
        ("Foo-v0", "unknown env 'Foo-v0'; accepted: MiniGrid-*"),
        ("MiniGrid-DoorKy-5x5-v0", "Did you mean: MiniGrid-DoorKey-5x5-v0"),
    ],
)
def test_unknown_env_names_the_choices(env_id, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        make(env_id)


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="choose one of: envpool, gymnasium"):
        make(DOORKEY, backend="jax")


class CounterEnv(VecEnv):
    """Obs = (episode id, step in episode); episodes of random length end by termination or
    truncation. Same-step auto-reset, as every backend presents it."""

    def __init__(self, num_envs: int, seed: int = 0):
        self.env_id, self.num_envs = "Counter", num_envs
        self.single_observation_space = gym.spaces.Box(0, 10_000, (2,), np.int64)
        self.single_action_space = gym.spaces.Discrete(2)
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros((num_envs, 2), dtype=np.int64)
        self.next_id = num_envs

    def reset(self, seed=None):
        self.state[:, 0] = np.arange(self.num_envs)
        self.state[:, 1] = 0
        return self.state.copy(), {}

    def step(self, actions):
        self.state[:, 1] += 1
        final = self.state.copy()
        ended = self.rng.random(self.num_envs) < 0.15
        terminated = ended & (self.rng.random(self.num_envs) < 0.5)
        truncated = ended & ~terminated
        for i in np.flatnonzero(ended):
            self.state[i] = (self.next_id, 0)
            self.next_id += 1
        reward = np.zeros(self.num_envs, dtype=np.float32)
        return EnvStep(self.state.copy(), reward, terminated, truncated, final, {})


class RecordingBonus:
    episodic = False
    warmup_steps = 3

    def __init__(self):
        self.batches: list[Transitions] = []
        self.observed: list[Transitions] = []

    def setup(self, observation_space, action_space, num_envs):
        pass

    def observe(self, step):
        self.observed.append(step)

    def compute(self, batch):
        return torch.zeros(batch.shape)

    def update(self, batch):
        self.batches.append(batch)
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _assert_real_transitions(obs, next_obs):
    same_episode = obs[..., 0] == next_obs[..., 0]
    one_step = next_obs[..., 1] == obs[..., 1] + 1
    assert bool((same_episode & one_step).all()), "a transition crossed an episode boundary"


def test_ppo_rollouts_never_hold_a_transition_across_an_episode_boundary():
    bonus = RecordingBonus()
    cfg = PPOConfig(  # three rollouts after the warm-up's frames
        total_frames=4 * (3 + 32 * 3), num_envs=4, num_steps=32, minibatch_size=64, encoder="mlp"
    )
    train_ppo(CounterEnv(4), cfg, bonus)
    assert len(bonus.batches) >= 2 and len(bonus.observed) > 3 * 32
    for batch in bonus.batches:
        _assert_real_transitions(batch.obs, batch.next_obs)
        # consecutive rows: obs[t+1] is next_obs[t] unless the episode ended at t
        ended = batch.terminated | batch.truncated
        cont = ~ended[:-1]
        assert bool((batch.obs[1:][cont] == batch.next_obs[:-1][cont]).all())
    for step in bonus.observed:  # warm-up and rollout steps alike
        _assert_real_transitions(step.obs, step.next_obs)


STEP_FIELDS = ("obs", "reward", "terminated", "truncated", "final_obs")


def _arrays(step) -> list[np.ndarray]:
    return [np.asarray(getattr(step, f)) for f in STEP_FIELDS] + list(step.info.values())


@pytest.mark.parametrize(
    "env_id, backend",
    [
        ("MiniGrid-DoorKey-5x5-v0", "envpool"),
        ("MiniGrid-DoorKey-5x5-v0", "gymnasium"),
        ("DeepSea-6", None),
        ("CartPole-v1", None),
    ],
)
def test_split_step_equals_step_and_keeps_earlier_results(env_id, backend):
    """PPO's rollout starts step t+1 (``step_async``) before it records step t: the split step
    must give what ``step`` gives, and must not overwrite step t's arrays."""
    kwargs = {"backend": backend} if backend else {}
    whole, split = (make(env_id, 6, seed=3, **kwargs) for _ in range(2))
    whole.reset(seed=3)
    split.reset(seed=3)
    rng = np.random.default_rng(0)
    earlier = None
    ends = 0
    for _ in range(300):
        actions = rng.integers(0, 2, size=6)
        expected = whole.step(actions)
        split.step_async(actions)
        got = split.step_wait()
        for a, b in zip(_arrays(expected), _arrays(got), strict=True):
            np.testing.assert_array_equal(a, b)
        if earlier is not None:
            for a, b in zip(_arrays(earlier[0]), earlier[1], strict=True):
                np.testing.assert_array_equal(a, b)
        earlier = (got, [a.copy() for a in _arrays(got)])
        ends += int((got.terminated | got.truncated).sum())
    assert ends > 0  # the check covered episode ends (EnvPool's extra reset step)


def _walls_behind_open_doors(
    env_id: str, backend: str | None, steps: int = 3000
) -> tuple[int, int]:
    """(views facing an open door, of which with a wall right behind it) under random turns,
    moves and toggles: a door that opens onto a wall makes a MultiRoom layout unsolvable."""
    env = make(env_id, num_envs=8, seed=1, backend=backend)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(0)
    facing = walled = 0
    for _ in range(steps):
        door = (obs[:, 3, 5, 0] == 4) & (obs[:, 3, 5, 2] == 0)  # the cell ahead: an open door
        facing += int(door.sum())
        walled += int((door & (obs[:, 3, 4, 0] == 2)).sum())  # and a wall behind it
        obs = env.step(rng.choice([0, 1, 2, 5], size=8, p=[0.2, 0.2, 0.3, 0.3])).obs
    env.close()
    return facing, walled


def test_multiroom_runs_where_its_layouts_are_sound():
    # explora's default for MultiRoom is minigrid's implementation: no door opens onto a wall
    assert check_env_id("MiniGrid-MultiRoom-N4-S5-v0") == "gymnasium"
    assert check_env_id("MiniGrid-MultiRoom-N4-S5-NoisyTV-v0") == "gymnasium"
    facing, walled = _walls_behind_open_doors("MiniGrid-MultiRoom-N2-S4-v0", None)
    assert facing > 200 and walled == 0
    # EnvPool's still has the defect (when this fails, EnvPool fixed it: drop ENVPOOL_DEFECTS)
    with pytest.warns(UserWarning, match="open onto its wall"):
        assert check_env_id("MiniGrid-MultiRoom-N2-S4-v0", "envpool") == "envpool"
    facing, walled = _walls_behind_open_doors("MiniGrid-MultiRoom-N2-S4-v0", "envpool")
    assert facing > 200 and walled > 0.15 * facing
