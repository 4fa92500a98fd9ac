"""PPO mechanics that do not need learning: action spaces, modes, config errors."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from explora.agents.ppo import ActorCritic, PPOConfig, train_ppo, value_loss
from explora.bonuses import Count, SimHash
from explora.envs import make
from explora.envs.gym import GymnasiumVecEnv

TINY = dict(num_steps=16, minibatch_size=32, update_epochs=1)


class RecordActions(gym.Wrapper):
    """Keeps the actions the env was given, per instance."""

    def __init__(self, env):
        super().__init__(env)
        self.seen = []

    def step(self, action):
        self.seen.append(np.array(action))
        return super().step(action)


def test_continuous_actions_are_clipped_for_the_env_but_not_for_the_update(monkeypatch):
    """The env gets actions clipped to its bounds; the PPO update scores the action the policy
    sampled, unclipped (its log-probability is the one stored at sampling time)."""
    scored = []
    real = ActorCritic.log_prob_entropy

    def spy(self, policy_out, actions):
        scored.append(actions.detach().clone())
        return real(self, policy_out, actions)

    monkeypatch.setattr(ActorCritic, "log_prob_entropy", spy)
    env = GymnasiumVecEnv("Pendulum-v1", 4, seed=0, wrappers=[RecordActions])
    cfg = PPOConfig(total_frames=4 * 16 * 2, num_envs=4, **TINY)
    result = train_ppo(env, cfg)
    given = np.concatenate([np.stack(e.seen) for e in env._vec.envs])
    assert given.shape == (128, 1) and np.all(np.abs(given) <= 2.0)
    updated = torch.cat(scored)
    assert updated.abs().max() > 2.0  # some samples left the bounds, and the update kept them
    assert result["frames"] == 128
    agent = result["agent"]
    assert agent.continuous and agent.log_std.shape == (1,)


def test_discrete_policy_outputs_one_logit_per_action():
    env = make("MiniGrid-DoorKey-5x5-v0", 2)
    agent = ActorCritic(env.single_observation_space, env.single_action_space, PPOConfig())
    obs, _ = env.reset()
    logits, values = agent(torch.from_numpy(obs))
    assert logits.shape == (2, 7) and values.shape == (2, 2)


class ScaleReward(gym.Wrapper):
    scale = 1.0

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward * ScaleReward.scale, terminated, truncated, info


@pytest.mark.parametrize("ext_coef", [0.0, 1.0])
def test_pure_curiosity_ignores_the_extrinsic_reward(ext_coef):
    """With ext_coef=0 (and no value loss, which would reach the shared encoder), the policy
    learns the same whatever the env pays; with ext_coef=1 it does not."""

    def policy_after(scale: float) -> list[torch.Tensor]:
        ScaleReward.scale = scale
        env = GymnasiumVecEnv("CartPole-v1", 4, seed=0, wrappers=[ScaleReward])
        cfg = PPOConfig(total_frames=4 * 16 * 3, num_envs=4, ext_coef=ext_coef, vf_coef=0.0,
                        **TINY)  # fmt: skip
        agent = train_ppo(env, cfg, bonus=SimHash(num_bits=16, warmup_steps=0))["agent"]
        return [p.detach().clone() for p in agent.actor.parameters()]

    same = all(
        torch.equal(a, b) for a, b in zip(policy_after(1.0), policy_after(-3.0), strict=True)
    )
    assert same == (ext_coef == 0.0)


@pytest.mark.parametrize(
    "int_end, int_episodic", [("continue", False), ("final-obs", False), ("continue", True)]
)
def test_where_the_intrinsic_return_goes_at_episode_ends(monkeypatch, int_end, int_episodic):
    """continue (default): the intrinsic GAE sees no episode end and bootstraps from the next
    observation in the rollout, the next episode's first (RND's code, CleanRL). final-obs: it
    stops at an end (a termination does not zero it) and bootstraps from V_int of the final
    observation. Episodic: it stops at ends like the extrinsic return; terminations zero it."""
    import explora.agents.ppo as ppo

    calls = []
    real = ppo.gae

    def spy(rewards, values, next_values, terminated, truncated, gamma, lam, episodic=True):
        calls.append((values, next_values, terminated, truncated, episodic))
        return real(rewards, values, next_values, terminated, truncated, gamma, lam, episodic)

    monkeypatch.setattr(ppo, "gae", spy)
    env = make("DeepSea-4", 2)  # every episode ends after 4 steps
    cfg = PPOConfig(
        total_frames=2 * 16, num_envs=2, int_end=int_end, int_episodic=int_episodic, **TINY
    )
    assert PPOConfig().int_end == "continue" and not PPOConfig().int_episodic
    train_ppo(env, cfg, bonus=Count())
    (ext_values, ext_next, ext_term, _, ext_episodic), intrinsic = calls
    values, next_values, terminated, truncated, episodic = intrinsic
    assert ext_episodic and ext_term.any()
    assert episodic == int_episodic
    continuing = int_end == "continue" and not int_episodic
    assert bool(terminated.any()) == (not continuing) and not truncated.any()
    ends = ext_term.nonzero()
    ends = ends[ends[:, 0] < 15]  # successors inside the rollout
    t, n = ends[:, 0], ends[:, 1]
    assert torch.allclose(next_values[t, n], values[t + 1, n]) == continuing
    # the extrinsic head's successor at an end is the final observation's value, never the
    # next episode's first
    assert not torch.allclose(ext_next[t, n], ext_values[t + 1, n])


class Corridor(gym.Env):
    """Six cells in a row, start at 0; reaching cell 5 ends the episode with reward 1; 30
    steps truncate it. Cell 5 is only ever a final observation."""

    observation_space = gym.spaces.Discrete(6)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self.pos, {}

    def step(self, action):
        self.pos = int(np.clip(self.pos + (1 if action == 1 else -1), 0, 5))
        return self.pos, float(self.pos == 5), self.pos == 5, False, {}


gym.register("explora-test/Corridor-v0", entry_point=Corridor, max_episode_steps=30)


@pytest.mark.parametrize("seed", [0, 1])
def test_bootstrapping_from_an_untrained_final_value_teaches_the_agent_to_avoid_the_goal(seed):
    """Why int_end="continue" is the default: with "final-obs", the goal (only ever a final
    observation) bootstraps from a V_int never trained, while staying in the episode keeps
    earning the (always positive) count bonus, and the agent learns to dawdle. Measured on seeds
    0-3: final returns 1.0 continuing, 0.0-0.06 with final-obs."""
    returns = {}
    for int_end in ("continue", "final-obs"):
        env = make("explora-test/Corridor-v0", num_envs=8, seed=seed)
        cfg = PPOConfig(
            total_frames=8 * 32 * 20, num_envs=8, num_steps=32, minibatch_size=64, seed=seed,
            int_end=int_end,
        )  # fmt: skip
        returns[int_end] = train_ppo(env, cfg, bonus=Count())["final_return"]
    assert returns["continue"] > 0.9 and returns["final-obs"] < 0.6, returns


def test_value_loss_clipping_against_hand_computation():
    values = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # [B=2, heads=2]
    old = torch.tensor([[0.0, 0.0], [2.5, 0.0]])
    returns = torch.tensor([[2.0, 1.0], [0.0, 0.0]])
    # plain: 0.5 * mean(1 + 1, 9 + 0) = 0.5 * 5.5
    assert float(value_loss(values, old, returns, None)) == pytest.approx(2.75)
    # clip 0.2: clipped values [0.2, 0], [2.7, 0]; errors max((1)^2, (1.8)^2) = 3.24, 1;
    # max(9, 7.29) = 9, 0 -> 0.5 * mean(4.24, 9) = 3.31
    assert float(value_loss(values, old, returns, 0.2)) == pytest.approx(3.31)


def test_target_kl_is_checked_once_per_epoch(monkeypatch):
    """CleanRL stops after the epoch whose last minibatch exceeds target_kl, not inside it."""
    from explora.agents import common

    steps = []
    real = common.gradient_step
    monkeypatch.setattr(common, "gradient_step", lambda *a, **k: steps.append(1) or real(*a, **k))
    env = make("DeepSea-6", 4)
    cfg = PPOConfig(total_frames=4 * 16, num_envs=4, num_steps=16, minibatch_size=16,
                    update_epochs=4, target_kl=1e-12)  # fmt: skip
    metrics = train_ppo(env, cfg)["last_metrics"]
    assert len(steps) == 4 and metrics["losses/epochs"] == 1.0  # one epoch of 4 minibatches


def test_warmup_frames_come_off_the_updates_so_the_learning_rate_anneals_to_zero():
    from explora.agents.common import NullRun
    from explora.bonuses import RND

    class Rows(NullRun):
        def __init__(self):
            self.rows = []

        def log(self, frames, metrics):
            self.rows.append((frames, metrics["charts/learning_rate"]))

    run = Rows()
    env = make("DeepSea-6", 4)
    bonus = RND(hidden_size=16, feature_size=8, warmup_steps=4)  # 16 warm-up frames
    cfg = PPOConfig(total_frames=3 * 64, num_envs=4, learning_rate=1e-3, **TINY)
    result = train_ppo(env, cfg, bonus=bonus, run=run)
    # (192 - 16) // 64 = 2 updates, annealed over 2: lr, lr / 2; never past the budget
    assert run.rows == [(80, pytest.approx(1e-3)), (144, pytest.approx(5e-4))]
    assert result["frames"] == 144


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


def test_the_bonus_sees_the_env_state_keys_of_the_states_reached():
    """DeepSea reports the agent's cell: the key of each step's next_obs decodes to the cell
    its one-hot shows (the final cell at an episode end), in observe and in the batch."""

    class Keys(Count):
        def __init__(self):
            super().__init__()
            self.seen, self.batches = [], []

        def observe(self, step):
            self.seen.append((step.next_obs, step.state_keys))
            super().observe(step)

        def compute(self, batch):
            self.batches.append(batch)
            return super().compute(batch)

    bonus = Keys()
    cfg = PPOConfig(total_frames=2 * 16 * 2, num_envs=2, **TINY)
    train_ppo(make("DeepSea-4", 2), cfg, bonus=bonus)
    for next_obs, keys in bonus.seen:
        for view, key in zip(next_obs[0], keys[0], strict=True):
            row, col = int(key) >> 23, (int(key) >> 3) & (2**20 - 1)
            if row < 4:
                assert view[row, col] == 1 and view.sum() == 1
            else:  # past the last row the one-hot is all zero
                assert view.sum() == 0
    batch = bonus.batches[-1]
    assert batch.state_keys is not None and batch.state_keys.shape == (16, 2)
    torch.testing.assert_close(batch.state_keys, torch.cat([k for _, k in bonus.seen[-16:]]))
