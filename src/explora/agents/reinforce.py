"""REINFORCE with a choice of baselines, readable top to bottom.

Williams 1992 ("Simple statistical gradient-following algorithms for connectionist reinforcement
learning", Machine Learning 8): the gradient of the expected return is estimated from complete
episodes as ``sum_t (G_t - b_t) grad log pi(a_t | s_t)``, where ``G_t`` is the Monte-Carlo
discounted return-to-go and ``b_t`` any baseline that does not depend on ``a_t`` or later
(it lowers the variance and leaves the estimate unbiased). Baselines (``ReinforceConfig.baseline``):

- ``none``: ``b_t = 0``.
- ``whiten``: the returns standardised over the batch's steps, ``(G_t - mean) / std`` (a constant
  baseline plus a step size that adapts to the returns' scale; the mean includes the episode's
  own return, a bias of order 1/batch that implementations accept).
- ``value``: a learned state value, ``b_t = V(s_t)`` (Sutton & Barto 2018, section 13.4). V is a
  head on the policy's encoder whose input features are detached, so the policy's gradient is
  exactly REINFORCE's; it has its own Adam (``value_learning_rate``) and regresses the returns
  (MSE). Advantages use V *before* it is fitted to this batch: a V fitted to G_t first would
  depend on a_t through G_t.
- ``sampled-mean``: leave-one-out, ``b_{i,t}`` = mean of the other episodes' return-to-go at the
  same time index t (steps since their start) over the other episodes of the batch that lasted
  more than t steps; 0 where no other episode did. It uses only other episodes, so it is
  unbiased (Kool et al. 2019b, "Buy 4 REINFORCE samples, get a baseline for free!").
- ``sampled-greedy``: the return of a greedy (argmax; the mean for continuous actions) rollout of
  the current policy from the same start (Kool et al. 2019, "Attention, learn to solve routing
  problems!"; with the current policy instead of Kool's frozen best policy replaced after a
  paired t-test, this is Rennie et al. 2017's "self-critical" baseline). Before each batch
  the env is reset with the update's seed and every copy runs one greedy episode; then it is
  reset with the same seed again (after a reset with another seed: EnvPool reseeds only on a
  new seed) and the sampled episodes run. A copy whose two reset observations are equal *pairs*
  its first sampled episode with its greedy one: ``b_t`` = the greedy episode's return-to-go at
  the same time index (0 past its end). The start of a copy's later episodes cannot be replayed
  (it depends on the env's random stream after the first), nor can any start on a backend
  whose ``reset(seed)`` does not replay starts: those episodes get the time-aligned mean over
  all greedy episodes of the update instead (0 where none reached that index), an
  approximation; ``charts/greedy_paired`` logs the fraction of episodes paired (1.0 when
  ``episodes_per_update == num_envs`` on Gymnasium ids, DeepSea and EnvPool MiniGrid). Either way
  the baseline does not depend on the sampled actions, so the estimate stays unbiased. Greedy
  frames count in the budget (``frames``) but are not training episodes. A greedy policy that is
  much better than its samples (CartPole at initialisation: argmax episodes of ~100-300 steps,
  sampled ones of ~20) makes a poor baseline: measured, it *raised* the gradient variance.

Episodes. Every update the env is reset with a seed drawn from (``seed``, update number), so
no episode spans two policies and a resumed run repeats the uninterrupted one exactly. Copy n
then runs ``episodes_per_update // num_envs`` complete episodes (one more for the first
``episodes_per_update % num_envs`` copies): a fixed quota per copy, because keeping the first K
episodes to finish would favour short ones. A copy that has met its quota keeps stepping with the
others; those steps are discarded but count as frames (``charts/idle_frac``).

Episode ends. ``terminated``: the return stops. ``truncated`` (a time limit): with
``baseline == "value"`` the return bootstraps from V of the true final observation; with any
other baseline there is no value estimate, so the return is cut at the time limit as if the
episode had terminated -- the usual REINFORCE choice, biased when a time limit is not part of
the task (on CartPole-v1 it undervalues the last ~100 of the 500 steps).

Loss. ``-(1 / K) sum_i sum_t [A_{i,t} log pi(a_{i,t} | s_{i,t}) + ent_coef * H_{i,t}]`` over the
K episodes of a batch: an average over episodes of per-episode estimates (a sum over time, as in
Williams 1992), one Adam step per batch.

Gradient variance (``charts/grad_variance``): see ``policy_gradient_variance``; each update also
logs it for the same batch without a baseline (``charts/grad_variance_no_baseline``), a paired
comparison. On CartPole-v1 (defaults, 160k frames, seeds 0-1) the value baseline's runs measured
5.4e5 against 3.8e6-4.7e6 for runs without a baseline (tests/learning/test_reinforce_learning.py).

No curiosity bonus: a bonus's per-episode state would need to see the resets between batches,
and the discarded idle steps; ``train_reinforce`` rejects one before anything runs.

Example:
    >>> from explora.envs import make
    >>> from explora.agents.reinforce import ReinforceConfig, train_reinforce
    >>> env = make("CartPole-v1", num_envs=8, seed=0)
    >>> result = train_reinforce(env, ReinforceConfig(total_frames=20_000))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from explora.agents import common
from explora.agents.common import NullRun, Stateful
from explora.agents.ppo import ActorCritic, PPOConfig, _env_actions
from explora.envs.base import EnvStep, VecEnv
from explora.models.encoders import ENCODERS
from explora.runs.episodes import EpisodeTracker

BASELINES = ("none", "whiten", "value", "sampled-mean", "sampled-greedy")


@dataclass(frozen=True)
class ReinforceConfig:
    """REINFORCE hyper-parameters (tuned on CartPole-v1 where noted; the papers give none)."""

    total_frames: int = 200_000
    """environment frames to train for (idle and greedy-rollout frames count too)"""
    num_envs: int = 8
    """parallel environment copies"""
    episodes_per_update: int = 16
    """complete episodes per gradient step, split evenly over the copies (>= num_envs)"""
    baseline: str = "value"
    """none, whiten, value, sampled-mean or sampled-greedy (module docstring)"""
    gamma: float = 0.99
    """discount of the return"""
    learning_rate: float = 1e-3
    """Adam step size of the policy"""
    value_learning_rate: float = 1e-2
    """Adam step size of the value head (baseline 'value'). Returns reach ~100 on CartPole and
    Adam moves the head's output by about one step size per step: with 1e-3 x 4 steps the fit
    lagged and cut the gradient variance by only 20%, with 1e-2 x 10 steps by ~13x (measured)"""
    value_epochs: int = 10
    """full-batch Adam steps of the value head per update (baseline 'value'); see above"""
    ent_coef: float = 0.0
    """entropy bonus weight, per step (Williams 1992 has none)"""
    max_grad_norm: float | None = None
    """clip the policy gradient's global norm to this; None: no clipping (Williams 1992)"""
    encoder: str = "auto"
    """observation encoder: auto, grid-mlp, grid-cnn, pixel-cnn or mlp"""
    hidden: int = 64
    """width of the actor and value heads"""
    grad_variance_every: int = 1
    """updates between measurements of the policy-gradient variance (0: never); each costs
    about two extra backward passes over the batch"""
    max_episode_steps: int = 100_000
    """an episode longer than this stops training with an error: REINFORCE needs episodes that
    end (wrap an endless env in gymnasium's TimeLimit)"""
    torch_threads: int = 1
    """CPU threads for torch (0: torch's default); one is fastest for small networks on 2 cores"""
    checkpoint_every: int = 50
    """updates between checkpoints (a final one is always written)"""
    seed: int = 0
    """seed of torch, of action sampling and of the env resets"""

    def check(self) -> None:
        """Raise ValueError for settings that cannot work, before anything is built."""
        if self.baseline not in BASELINES:
            raise ValueError(
                f"unknown baseline {self.baseline!r}; choose one of: {', '.join(BASELINES)}"
            )
        if self.encoder not in ENCODERS:
            raise ValueError(
                f"unknown encoder {self.encoder!r}; choose one of: {', '.join(ENCODERS)}"
            )
        for name in ("num_envs", "episodes_per_update", "value_epochs", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("grad_variance_every", "torch_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.checkpoint_every < 1 or self.max_episode_steps < 1:
            raise ValueError("checkpoint_every and max_episode_steps must be >= 1")
        if self.episodes_per_update < self.num_envs:
            raise ValueError(
                f"episodes_per_update {self.episodes_per_update} is less than num_envs "
                f"{self.num_envs}: every copy must run at least one episode per update"
            )
        if self.baseline == "sampled-mean" and self.episodes_per_update < 2:
            raise ValueError("baseline 'sampled-mean' needs episodes_per_update >= 2")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.learning_rate <= 0 or self.value_learning_rate <= 0:
            raise ValueError("learning_rate and value_learning_rate must be > 0")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        if self.total_frames < 1:
            raise ValueError(f"total_frames must be >= 1, got {self.total_frames}")


# ---- the maths: pure functions on time-major tensors -------------------------------------------


def discounted_returns(
    rewards: Tensor, terminated: Tensor, truncated: Tensor, bootstrap: Tensor, gamma: float
) -> Tensor:
    """Monte-Carlo return-to-go of every step, within its episode.

    ``G_t = r_t + gamma * G_{t+1}`` inside an episode; at its last step ``G_t = r_t`` when it
    terminated, ``r_t + gamma * bootstrap_t`` when it was truncated.

    Args:
        rewards: ``[T, N]``.
        terminated: ``[T, N]`` bool; wins over ``truncated`` where both are set.
        truncated: ``[T, N]`` bool.
        bootstrap: ``[T, N]`` value of the true final observation, read only where truncated
            (zeros: cut the return at the time limit).
        gamma: discount.

    Steps after the last end in a column are treated as if the episode terminated after T - 1;
    the caller masks them.

    Returns:
        ``[T, N]`` returns.
    """
    ended = terminated | truncated
    tail = torch.where(truncated & ~terminated, bootstrap, torch.zeros_like(bootstrap))
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * torch.where(ended[t], tail[t], running)
        returns[t] = running
    return returns


def whiten(x: Tensor) -> Tensor:
    """``(x - mean) / (std + 1e-8)`` over all elements (population std)."""
    return (x - x.mean()) / (x.std(correction=0) + 1e-8)


def leave_one_out_baseline(returns: Tensor, time_index: Tensor) -> Tensor:
    """For each step, the mean return-to-go of the *other* episodes at the same time index.

    Args:
        returns: ``[B]`` return-to-go of the batch's steps (one entry per step of each episode).
        time_index: ``[B]`` long, steps since the start of the step's episode.

    Episodes are aligned by time index; an episode that ended before index t is left out of
    the mean at t (it has no step there). Where no other episode reached t the baseline is 0.

    Returns:
        ``[B]`` baselines.

    Example (three episodes; the second lasted two steps):
        >>> leave_one_out_baseline(torch.tensor([6.0, 5.0, 4.0, 1.0]), torch.tensor([0, 1, 0, 0]))
        tensor([2.5000, 0.0000, 3.5000, 5.0000])
    """
    size = int(time_index.max()) + 1 if time_index.numel() else 0
    sums = torch.zeros(size, dtype=returns.dtype).index_add_(0, time_index, returns)
    counts = torch.bincount(time_index, minlength=size).to(returns.dtype)
    others = counts[time_index] - 1
    loo = (sums[time_index] - returns) / others.clamp(min=1)
    return torch.where(others > 0, loo, torch.zeros_like(loo))


def greedy_baseline(
    greedy_returns: Tensor,
    greedy_lengths: Tensor,
    copy: Tensor,
    time_index: Tensor,
    paired: Tensor,
) -> Tensor:
    """The sampled-greedy baseline of each step (module docstring).

    Args:
        greedy_returns: ``[N, L]`` return-to-go of copy n's greedy episode at time index k
            (ignored at and past ``greedy_lengths[n]``).
        greedy_lengths: ``[N]`` long, length of each greedy episode.
        copy: ``[B]`` long, the env copy each sampled step came from.
        time_index: ``[B]`` long, steps since the start of its episode.
        paired: ``[B]`` bool, the step's episode started where its copy's greedy one did.

    Returns:
        ``[B]``: the paired greedy return-to-go at the same index (0 past the greedy episode's
        end); for unpaired steps, the mean at that index over the greedy episodes that reached it
        (0 where none did).
    """
    width = greedy_returns.shape[1]
    steps = torch.arange(width)
    reached = steps.unsqueeze(0) < greedy_lengths.unsqueeze(1)  # [N, L]
    table = torch.where(reached, greedy_returns, torch.zeros_like(greedy_returns))
    counts = reached.sum(0).to(table.dtype)
    mean = table.sum(0) / counts.clamp(min=1)  # 0 where no greedy episode reached k
    k = time_index.clamp(max=width - 1)
    inside = time_index < width
    own = torch.where(inside, table[copy, k], torch.zeros(len(copy), dtype=table.dtype))
    shared = torch.where(inside, mean[k], torch.zeros_like(own))
    return torch.where(paired, own, shared)


def policy_gradient_variance(
    agent: ActorCritic,
    obs: Tensor,
    actions: Tensor,
    advantages: Tensor,
    episode: Tensor,
) -> Tensor:
    """Variance of per-episode policy-gradient estimates, for one or more advantage choices.

    For episode i of a batch of K, ``g_i = grad_theta sum_t A_{i,t} log pi(a_{i,t} | s_{i,t})``
    over the policy's parameters theta (encoder, actor head, log-std), without the entropy term
    or clipping. The result is the trace of the sample covariance of the K vectors,
    ``sum_i ||g_i - mean_j g_j||^2 / (K - 1)``: an estimate of the expected squared distance of
    one episode's estimate from the true gradient, in squared gradient units (the batch's
    average of K episodes has 1/K of it). It scales with the square of the advantages: with
    ``whiten`` (advantages in units of the returns' std) it is not comparable to the others.

    Args:
        agent: the policy (its critic head is ignored).
        obs: ``[B, *obs_shape]`` observations of the batch's steps.
        actions: ``[B, *action_shape]`` actions taken.
        advantages: ``[B, M]``: M advantage choices to measure on the same episodes (for
            example ``G - V`` and ``G``).
        episode: ``[B]`` long, episode number of each step, 0..K-1 (K >= 2).

    Returns:
        ``[M]`` variances.
    """
    params = _policy_params(agent)
    num_episodes = int(episode.max()) + 1
    if num_episodes < 2:
        raise ValueError("the variance of per-episode gradients needs at least 2 episodes")
    num_choices = advantages.shape[1]
    grads = torch.zeros(num_episodes, num_choices, sum(p.numel() for p in params))
    for i in range(num_episodes):
        mask = episode == i
        logp, _ = agent.log_prob_entropy(agent.actor(agent.encoder(obs[mask])), actions[mask])
        for m in range(num_choices):
            objective = (advantages[mask, m] * logp).sum()
            g = torch.autograd.grad(objective, params, retain_graph=m + 1 < num_choices)
            grads[i, m] = torch.cat([x.reshape(-1) for x in g])
    deviations = grads - grads.mean(0, keepdim=True)
    return deviations.square().sum(-1).sum(0) / (num_episodes - 1)


def _policy_params(agent: ActorCritic) -> list[torch.nn.Parameter]:
    params = [*agent.encoder.parameters(), *agent.actor.parameters()]
    return [*params, agent.log_std] if agent.continuous else params


def _value(agent: ActorCritic, obs: Tensor) -> Tensor:
    """``[B]`` V(s): the critic head on the policy's features, detached (module docstring)."""
    return agent.critic(agent.encoder(obs).detach())[:, 0]


# ---- collection: complete episodes from N copies -----------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """The steps of one collection, time-major; every per-step field is ``[T, N, ...]``.

    ``active`` marks the steps of the episodes used in the batch; the rest (a copy that met its
    quota) are discarded. Episodes are numbered ``offset[n] + j`` for copy n's j-th episode.
    """

    obs: Tensor  # [T, N, *obs_shape]
    actions: Tensor  # [T, N, *action_shape]
    rewards: Tensor  # [T, N]
    terminated: Tensor  # [T, N] bool
    truncated: Tensor  # [T, N] bool
    active: Tensor  # [T, N] bool
    time_index: Tensor  # [T, N] long: steps since the start of the step's episode
    episode: Tensor  # [T, N] long: episode number, -1 where inactive
    final_obs: Tensor  # [K, *obs_shape]: true last observation of each episode
    start_obs: np.ndarray  # [N, *obs_shape]: observations of the reset

    @property
    def frames(self) -> int:
        return int(self.rewards.numel())


def episode_quotas(num_episodes: int, num_envs: int) -> np.ndarray:
    """``[N]`` episodes per copy: an even split, the remainder to the first copies."""
    quotas = np.full(num_envs, num_episodes // num_envs, dtype=np.int64)
    quotas[: num_episodes % num_envs] += 1
    return quotas


def _tracked(step: EnvStep, active: np.ndarray) -> EnvStep:
    """``step`` as the episode tracker should see it: discarded copies hidden."""
    info = dict(step.info)
    if "agent_pos" in info:
        info["agent_pos"] = info["agent_pos"][active]
    return step._replace(
        reward=step.reward * active,
        terminated=step.terminated & active,
        truncated=step.truncated & active,
        info=info,
    )


def collect(
    env: VecEnv,
    agent: ActorCritic,
    quotas: np.ndarray,
    seed: int | None,
    max_episode_steps: int,
    greedy: bool = False,
    tracker: EpisodeTracker | None = None,
    frames: int = 0,
) -> Rollout:
    """Reset ``env`` (with ``seed``, None: continue its random stream) and step it until copy
    n has finished ``quotas[n]`` episodes, sampling actions from the policy (its argmax or mean
    when ``greedy``). ``tracker`` sees the used steps; ``frames`` is the run's count before."""
    n_envs = env.num_envs
    act_space = env.single_action_space
    obs_np, info = env.reset(seed=seed)
    start_obs = obs_np.copy()
    if tracker is not None:
        tracker.returns[:] = 0.0  # episodes cut by the reset are not episodes
        tracker.lengths[:] = 0
        tracker.record_positions(info)
    offset = np.concatenate([[0], np.cumsum(quotas)[:-1]])
    done = np.zeros(n_envs, dtype=np.int64)
    steps_in_episode = np.zeros(n_envs, dtype=np.int64)
    final_obs: list[np.ndarray | None] = [None] * int(quotas.sum())
    columns: dict[str, list[Any]] = {
        key: []
        for key in ("obs", "actions", "rewards", "terminated", "truncated", "active", "t", "ep")
    }
    while (done < quotas).any():
        active = done < quotas
        obs_t = torch.from_numpy(obs_np)
        with torch.no_grad():
            policy_out = agent.actor(agent.encoder(obs_t))
            if greedy:
                action = policy_out if agent.continuous else policy_out.argmax(-1)
            else:
                action, _ = agent.sample(policy_out)
        step = env.step(_env_actions(action, act_space))
        frames += n_envs
        columns["obs"].append(obs_t)
        columns["actions"].append(action)
        columns["rewards"].append(step.reward)
        columns["terminated"].append(step.terminated)
        columns["truncated"].append(step.truncated)
        columns["active"].append(active)
        columns["t"].append(steps_in_episode.copy())
        columns["ep"].append(np.where(active, offset + done, -1))
        if tracker is not None:
            tracker.step(_tracked(step, active), frames)
        ended = (step.terminated | step.truncated) & active
        for n in np.flatnonzero(ended):
            final_obs[offset[n] + done[n]] = step.final_obs[n]
        done += ended
        steps_in_episode = np.where(step.terminated | step.truncated, 0, steps_in_episode + 1)
        if (steps_in_episode[done < quotas] >= max_episode_steps).any():
            raise ValueError(
                f"an episode of {env.env_id} ran past max_episode_steps = {max_episode_steps}; "
                "REINFORCE needs episodes that end (wrap the env in gymnasium's TimeLimit)"
            )
        obs_np = step.obs
    return Rollout(
        obs=torch.stack(columns["obs"]),
        actions=torch.stack(columns["actions"]),
        rewards=torch.from_numpy(np.stack(columns["rewards"])).float(),
        terminated=torch.from_numpy(np.stack(columns["terminated"])),
        truncated=torch.from_numpy(np.stack(columns["truncated"])),
        active=torch.from_numpy(np.stack(columns["active"])),
        time_index=torch.from_numpy(np.stack(columns["t"])),
        episode=torch.from_numpy(np.stack(columns["ep"])),
        final_obs=torch.from_numpy(np.stack(final_obs)),  # type: ignore[arg-type]
        start_obs=start_obs,
    )


def episode_returns(batch: Rollout, gamma: float, final_values: Tensor | None = None) -> Tensor:
    """``[T, N]`` return-to-go of every step of ``batch`` (``discounted_returns``).

    ``final_values``: ``[K]`` V of each episode's true final observation, the bootstrap of a
    truncated episode; None (no value estimate): a truncated return is cut at the time limit.
    A terminated episode never bootstraps.
    """
    bootstrap = torch.zeros_like(batch.rewards)
    if final_values is not None:
        ended = (batch.terminated | batch.truncated) & batch.active
        bootstrap[ended] = final_values[batch.episode[ended]].to(bootstrap.dtype)
    return discounted_returns(batch.rewards, batch.terminated, batch.truncated, bootstrap, gamma)


def _reset_seed(seed: int, update: int) -> int:
    """A fresh env seed per (run seed, update); far apart, so copies' streams do not overlap."""
    return int(np.random.default_rng([seed, update]).integers(2**31 - 2**20))


# ---- training ------------------------------------------------------------------------------------


def train_reinforce(
    env: VecEnv,
    config: ReinforceConfig,
    bonus: Any = None,
    run: Any = None,
) -> dict[str, Any]:
    """Train REINFORCE on ``env`` (which must have ``config.num_envs`` copies).

    Same contract as ``train_ppo``: ``run`` receives metrics, progress and checkpoints, and
    training resumes from its checkpoint when it holds one. Returns the run's figures (frames,
    wall_time_s, fps, final_return, success_rate, final_episodes, unique_states, visits,
    episodes, last_metrics, agent). Raises ``TrainingDiverged`` when a loss is not finite.
    """
    cfg = config
    cfg.check()
    if bonus is not None:
        raise ValueError(
            "REINFORCE takes no curiosity bonus (its batches reset the env between updates, "
            "which a bonus's per-episode state would not see); use algo 'ppo' or 'dqn'"
        )
    run = run or NullRun()
    if env.num_envs != cfg.num_envs:
        raise ValueError(f"env has {env.num_envs} copies but config.num_envs = {cfg.num_envs}")
    obs_space, act_space = env.single_observation_space, env.single_action_space
    if not isinstance(act_space, gym.spaces.Discrete | gym.spaces.Box):
        raise ValueError(f"REINFORCE supports Discrete and Box actions, got {act_space}")
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)

    # ActorCritic gives the policy (encoder + actor head) and a critic head for V(s).
    agent = ActorCritic(obs_space, act_space, PPOConfig(encoder=cfg.encoder, hidden=cfg.hidden))
    policy_params = _policy_params(agent)
    optimizer = torch.optim.Adam(policy_params, lr=cfg.learning_rate)
    value_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=cfg.value_learning_rate)
    N = cfg.num_envs
    tracker = EpisodeTracker(N, env.grid_shape)
    quotas = episode_quotas(cfg.episodes_per_update, N)
    num_episodes = cfg.episodes_per_update
    frames, update, wall_offset = 0, 0, 0.0

    parts: dict[str, Stateful | None] = {
        "agent": agent,
        "optimizer": optimizer,
        "value_optimizer": value_optimizer,
        "tracker": tracker,
    }  # what a checkpoint holds as state dicts
    state = run.load_checkpoint()
    if state is not None:
        common.load_state_dicts(state, **parts)
        wall_offset = common.restore_progress(state)
        frames, update = state["frames"], state["update"]

    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(quotas)[:-1]]))
    start_time, frames_at_start = time.perf_counter(), frames
    summary_metrics: dict[str, float] = {}
    while frames < cfg.total_frames:
        # ---- rollouts ------------------------------------------------------------------
        rollout_start = time.perf_counter()
        extra: dict[str, float] = {}
        # A seed per update makes a resumed run repeat the uninterrupted one exactly.
        seed = _reset_seed(cfg.seed, update)
        greedy: Rollout | None = None
        if cfg.baseline == "sampled-greedy":
            ones = np.ones(N, dtype=np.int64)
            greedy = collect(env, agent, ones, seed, cfg.max_episode_steps, greedy=True)
            frames += greedy.frames
            # A backend that reseeds only on a new seed (EnvPool) must see one in between to
            # replay the starts; for the others this reset is merely wasted.
            env.reset(seed=seed + 1)
        batch = collect(env, agent, quotas, seed, cfg.max_episode_steps, False, tracker, frames)
        frames += batch.frames
        rollout_time = time.perf_counter() - rollout_start

        # ---- returns and advantages ------------------------------------------------------
        update_start = time.perf_counter()
        active = batch.active
        b_obs, b_actions = batch.obs[active], batch.actions[active]
        b_episode, b_time = batch.episode[active], batch.time_index[active]
        values = final_values = None
        if cfg.baseline == "value":
            with torch.no_grad():
                values, final_values = _value(agent, b_obs), _value(agent, batch.final_obs)
        returns = episode_returns(batch, cfg.gamma, final_values)[active]
        if cfg.baseline == "none":
            advantages = returns
        elif cfg.baseline == "whiten":
            advantages = whiten(returns)
        elif cfg.baseline == "value":
            assert values is not None
            advantages = returns - values
        elif cfg.baseline == "sampled-mean":
            advantages = returns - leave_one_out_baseline(returns, b_time)
        else:
            assert greedy is not None
            g_returns = episode_returns(greedy, cfg.gamma)
            same_start = torch.tensor(
                [np.array_equal(greedy.start_obs[n], batch.start_obs[n]) for n in range(N)]
            )
            b_copy = torch.arange(N).expand_as(active)[active]
            paired = (b_episode == offsets[b_copy]) & same_start[b_copy]
            baseline = greedy_baseline(g_returns.T, greedy.active.sum(0), b_copy, b_time, paired)
            advantages = returns - baseline
            extra["charts/greedy_return"] = float(g_returns[0].mean())
            extra["charts/greedy_paired"] = float(paired[b_time == 0].float().mean())

        if cfg.grad_variance_every and update % cfg.grad_variance_every == 0:
            choices = torch.stack([advantages, returns], dim=1)
            variance = policy_gradient_variance(agent, b_obs, b_actions, choices, b_episode)
            extra["charts/grad_variance"] = float(variance[0])
            extra["charts/grad_variance_no_baseline"] = float(variance[1])

        # ---- policy step -------------------------------------------------------------------
        logp, entropy = agent.log_prob_entropy(agent.actor(agent.encoder(b_obs)), b_actions)
        pg_loss = -(advantages * logp).sum() / num_episodes
        entropy_loss = -cfg.ent_coef * entropy.sum() / num_episodes
        loss = pg_loss + entropy_loss
        at = f"update {update} ({frames} frames)"
        clip = math.inf if cfg.max_grad_norm is None else cfg.max_grad_norm  # inf: norm only
        grad_norm = common.gradient_step(
            loss,
            optimizer,
            policy_params,
            clip,
            name="REINFORCE",
            at=at,
            hint="Try a lower learning_rate.",
        )
        assert grad_norm is not None  # a clip (maybe inf) always gives the norm

        # ---- value step (after the advantages, which used V before this batch) -----------
        if cfg.baseline == "value":
            for _ in range(cfg.value_epochs):
                v_loss = 0.5 * (_value(agent, b_obs) - returns).square().mean()
                common.gradient_step(
                    v_loss,
                    value_optimizer,
                    [],
                    None,
                    name="REINFORCE value",
                    at=at,
                    hint="Try a lower value_learning_rate.",
                )
            extra["losses/value"] = float(v_loss.detach())
        update_time = time.perf_counter() - update_start

        # ---- log -------------------------------------------------------------------------
        elapsed = time.perf_counter() - start_time
        metrics = {
            **tracker.drain_charts(),
            "charts/SPS": (frames - frames_at_start) / max(elapsed, 1e-9),
            "charts/idle_frac": 1.0 - float(active.float().mean()),
            "charts/grad_norm": float(grad_norm),
            "losses/policy": float(pg_loss.detach()),
            "losses/entropy": float(entropy.detach().mean()),
            "time/rollout_s": rollout_time,
            "time/update_s": update_time,
            **extra,
        }
        common.log_row(run, tracker, frames, metrics)
        summary_metrics = metrics
        update += 1

        if update % cfg.checkpoint_every == 0 or frames >= cfg.total_frames or run.checkpoint_due():
            wall = wall_offset + time.perf_counter() - start_time
            run.save_checkpoint(
                {
                    **common.state_dicts(**parts),
                    **common.progress_state(frames, wall, cfg),
                    "update": update,
                }
            )

    wall = wall_offset + time.perf_counter() - start_time
    return {
        **tracker.result(frames, wall, env.has_success),
        "last_metrics": summary_metrics,
        "agent": agent,
    }
