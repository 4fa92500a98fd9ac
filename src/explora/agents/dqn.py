"""DQN and bootstrapped DQN with randomized prior functions, readable top to bottom.

DQN (Mnih et al. 2015, "Human-level control through deep RL"): experience replay, a target
network copied every ``target_update_every`` gradient steps, epsilon-greedy exploration with a
linear schedule, Huber loss. Options: Boltzmann exploration, the Double-DQN target (van Hasselt
et al. 2016), n-step returns, NoisyNet layers (Fortunato et al. 2018) in place of epsilon.

Bootstrapped DQN (Osband et al. 2016) with randomized prior functions (Osband et al. 2018), as in
bsuite's ``boot_dqn`` reference agent: K heads ``Q_k = f_k + beta * p_k`` (p_k fixed), each
transition stored with a Bernoulli(``mask_prob``) mask per head, head k trained only where its
mask is 1, and one head sampled per episode (per env copy) and followed greedily: deep
exploration by Thompson sampling over the ensemble. ``BootDQNConfig`` holds bsuite's defaults.

Both are one loop over vector steps of N env copies: act, step, store, and every
``train_every`` vector steps take ``gradient_steps`` Adam steps on sampled batches. Targets use
n-step returns that stop at episode ends (``explora.agents.replay``): a termination does not
bootstrap; a truncation bootstraps from the true final observation.

A bonus adds ``int_coef * r_int / std(r_int)`` to the reward (std: running std of the raw bonus):
an episodic bonus (``bonus.episodic``, e.g. ``FirstVisit``) is observed and computed as each
step happens and stored; a lifelong one (RND, counts) is computed on each sampled batch, so it
reflects the bonus's current state. Every bonus, episodic or lifelong, trains its models on the
transitions of each sampled batch's n-step windows (``bonus.update``).

NoisyNet: the online and target networks draw independent noise at every gradient step (three
draws with the Double-DQN target: the online net choosing the next action, the target net
valuing it, the online net being trained), as Fortunato et al. 2018 write the loss.

Resume: a checkpoint holds the networks, optimiser, replay, normalisers, every random state and,
where the env can hand its state over (DeepSea, bandits: ``VecEnv.state_dict``), the env, the
current observations and the heads being followed, so the resumed run continues bit for bit.
Where it cannot (EnvPool, gymnasium), the envs restart their episodes, and the newest stored
step of each copy is marked truncated (``ReplayBuffer.cut_episodes``) so that no n-step window
adds rewards or a bootstrap from across the restart.

Example:
    >>> from explora.envs import make
    >>> env = make("CartPole-v1", num_envs=4, seed=0)
    >>> result = train_dqn(env, DQNConfig(total_frames=50_000))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.agents import common
from explora.agents.common import NullRun, Stateful
from explora.agents.replay import Batch, ReplayBuffer
from explora.bonuses.base import Bonus, RunningMeanStd, Transitions
from explora.bonuses.obs_key import for_env
from explora.envs.base import VecEnv
from explora.models.ensemble import INITS, EnsembleQ, as_inputs
from explora.models.optim import copy_weights, flush_denormals
from explora.runs.episodes import EpisodeTracker
from explora.runs.pictures import PictureRecorder

EXPLORATION = ("epsilon-greedy", "boltzmann", "noisy", "thompson-heads")
LOSSES = ("huber", "mse")


@dataclass(frozen=True)
class DQNConfig:
    """DQN hyper-parameters. Defaults are tuned on CartPole-v1 from CleanRL's classic-control
    DQN (which trains 500k frames): a shorter warm-up and schedule, lr 1e-3, 3-step returns and
    a target copy every 100 steps solve it in 60k frames (3 of 3 seeds)."""

    total_frames: int = 60_000
    """environment frames to train for"""
    num_envs: int = 4
    """parallel environment copies; each vector step adds num_envs transitions"""
    buffer_size: int = 50_000
    """replay capacity in transitions (rounded down to whole vector steps)"""
    batch_size: int = 128
    """transitions per gradient step"""
    learning_rate: float = 1e-3
    """Adam step size"""
    adam_eps: float = 1e-8
    """Adam epsilon"""
    gamma: float = 0.99
    """discount"""
    n_step: int = 3
    """steps of real reward before bootstrapping (1: the one-step target of Mnih et al.)"""
    double_q: bool = True
    """Double-DQN target: the online network picks the next action, the target net values it"""
    target_update_every: int = 100
    """gradient steps between copies of the online network into the target network"""
    train_every: int = 1
    """vector steps between training phases"""
    gradient_steps: int = 1
    """Adam steps per training phase"""
    learning_starts: int = 1_000
    """frames of random actions before training (and before the schedule starts)"""
    exploration: str = "epsilon-greedy"
    """epsilon-greedy, boltzmann, noisy (NoisyNet layers, no epsilon) or thompson-heads
    (one ensemble head per episode, greedy; bootstrapped DQN)"""
    epsilon_start: float = 1.0
    """epsilon at learning_starts"""
    epsilon_end: float = 0.01
    """epsilon after the decay"""
    epsilon_decay_frames: int = 15_000
    """frames over which epsilon falls linearly from start to end"""
    temperature: float = 1.0
    """Boltzmann temperature: actions drawn from softmax(Q / temperature)"""
    loss: str = "huber"
    """TD loss: huber (Mnih et al.'s error clipping) or mse"""
    max_grad_norm: float | None = 10.0
    """global gradient-norm clip (None: off)"""
    hidden: tuple[int, ...] = (120, 84)
    """hidden layer widths of each Q-network head"""
    init: str = "uniform"
    """weight init of the Q-networks and priors: uniform (torch's nn.Linear) or
    truncated-normal (haiku's, as bsuite's agents; ``explora.models.ensemble``)"""
    num_heads: int = 1
    """ensemble heads (1: DQN)"""
    prior_scale: float = 0.0
    """beta of the randomized prior functions (0: none)"""
    mask_prob: float = 1.0
    """probability that a head trains on a transition (bootstrap mask)"""
    ext_coef: float = 1.0
    """weight of the extrinsic reward"""
    int_coef: float = 1.0
    """weight of the normalised bonus (ignored without one)"""
    episode_snapshot: bool = False
    """thompson-heads: act through each episode with the sampled head's parameters as they
    were when it was sampled, not with the still-training ones (bsuite's JAX boot_dqn keeps the
    head's immutable parameters; its TF agent acts with the live ones)"""
    stop_when_solved: bool = False
    """end the run at the first episode where DeepSea counts as solved (bsuite's rule): the
    DeepSea sweep needs the episode, not the rest of the budget"""
    solved_threshold: float = 0.9
    """DeepSea is solved at the first episode where the fraction of bad episodes so far falls
    below this: 0.9 is ``find_solution``'s threshold in the installed bsuite 0.3.6, newer
    bsuite code uses 0.8 (METHODS.md)"""
    lazy_adam: bool = False
    """with one-hot observations (DeepSea), train the first layer as an embedding with
    SparseAdam: a step costs the batch's rows instead of the whole N*N-row table (DeepSea-100:
    10M parameters with 20 heads), but unvisited rows stop drifting with Adam's momentum, which
    changes learning (bootdqn on DeepSea-20 with 4 copies: solved at episode 664, against 464
    with dense Adam); off by default"""
    torch_threads: int = 1
    """CPU threads for torch (one is fastest for these small networks on 2 cores)"""
    log_every: int = 2_000
    """frames between metric rows"""
    checkpoint_every: int = 50
    """metric rows between checkpoints (replay included; a final one is always written)"""
    seed: int = 0
    """seed of torch, numpy and the env copies"""

    @property
    def vector_steps(self) -> int:
        return max(1, self.total_frames // self.num_envs)

    def check(self) -> None:
        """Raise ValueError for settings that cannot work, before anything is built."""
        for name in ("num_envs", "batch_size", "n_step", "target_update_every", "train_every",
                     "gradient_steps", "num_heads", "log_every"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.exploration not in EXPLORATION:
            raise ValueError(
                f"unknown exploration {self.exploration!r}; choose one of: {', '.join(EXPLORATION)}"
            )
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of: {', '.join(INITS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        if self.exploration == "thompson-heads" and self.num_heads < 2:
            raise ValueError("exploration='thompson-heads' needs num_heads >= 2")
        if self.exploration == "noisy" and self.num_heads != 1:
            raise ValueError("NoisyNet exploration is for a single head (num_heads=1)")
        if self.episode_snapshot and self.exploration != "thompson-heads":
            raise ValueError("episode_snapshot=True needs exploration='thompson-heads'")
        if not 0.0 < self.solved_threshold <= 1.0:
            raise ValueError(f"solved_threshold must be in (0, 1], got {self.solved_threshold}")
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.buffer_size // self.num_envs < self.n_step:
            raise ValueError(
                f"buffer_size {self.buffer_size} holds fewer than n_step={self.n_step} vector "
                f"steps of {self.num_envs} envs"
            )
        if self.total_frames < self.num_envs:
            raise ValueError(f"total_frames {self.total_frames} < num_envs {self.num_envs}")


@dataclass(frozen=True)
class BootDQNConfig(DQNConfig):
    """Bootstrapped DQN with randomized priors; defaults of bsuite's ``boot_dqn`` agent
    (``bsuite/baselines/jax/boot_dqn/agent.py``: 20 heads of MLP [50, 50] initialised as haiku
    does, prior scale 5, Adam 1e-3, batch 128, replay 10,000, training from 128 stored
    transitions, one SGD step per step, target copy every 4 SGD steps, mask_prob 1.0, no epsilon,
    MSE loss, one-step Q-learning target). Deviation: with N env copies an SGD step follows every
    vector step of N transitions (bsuite: every transition, N = 1 there)."""

    num_envs: int = 1
    buffer_size: int = 10_000
    batch_size: int = 128
    learning_rate: float = 1e-3
    double_q: bool = False
    target_update_every: int = 4
    learning_starts: int = 128
    exploration: str = "thompson-heads"
    epsilon_start: float = 0.0
    epsilon_end: float = 0.0
    loss: str = "mse"
    max_grad_norm: float | None = None
    hidden: tuple[int, ...] = (50, 50)
    init: str = "truncated-normal"
    num_heads: int = 20
    prior_scale: float = 5.0
    mask_prob: float = 1.0
    n_step: int = 1


def _one_hot_space(space: gym.Space) -> bool:
    """A uint8/bool Box whose values are 0 or 1 (DeepSea's one-hot grid)."""
    return (
        isinstance(space, gym.spaces.Box)
        and space.dtype in (np.uint8, np.bool_)
        and float(np.max(space.high)) <= 1
    )


class _Optimizers:
    """Adam for the dense parameters and, if any, SparseAdam for a one-hot input table."""

    def __init__(self, dense: torch.optim.Optimizer, sparse: torch.optim.Optimizer | None):
        self.parts = [dense] if sparse is None else [dense, sparse]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def state_dict(self) -> list[dict[str, Any]]:
        return [part.state_dict() for part in self.parts]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        for part, saved in zip(self.parts, state, strict=True):
            part.load_state_dict(saved)


def epsilon_at(cfg: DQNConfig, frames: int) -> float:
    """The linear epsilon schedule: start at learning_starts, end after the decay."""
    if cfg.exploration != "epsilon-greedy":
        return cfg.epsilon_end if cfg.exploration == "thompson-heads" else 0.0
    progress = (frames - cfg.learning_starts) / max(1, cfg.epsilon_decay_frames)
    progress = min(max(progress, 0.0), 1.0)
    return cfg.epsilon_start + progress * (cfg.epsilon_end - cfg.epsilon_start)


def greedy(q: Tensor, rng: np.random.Generator) -> np.ndarray:
    """Argmax per row of ``q`` ``[B, A]``, ties broken uniformly at random."""
    noise = torch.from_numpy(rng.random(q.shape, dtype=np.float32))
    best = q == q.max(dim=-1, keepdim=True).values
    return torch.where(best, noise, -1.0).argmax(-1).numpy()


def choose_actions(q: Tensor, cfg: DQNConfig, frames: int, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``q`` ``[N, A]``: drawn from ``softmax(q / temperature)`` with
    Boltzmann exploration, else greedy (ties at random) and, with probability
    ``epsilon_at(cfg, frames)``, uniform instead (epsilon is 0 for noisy and thompson-heads
    after their schedule; their exploration is in ``q`` itself)."""
    if cfg.exploration == "boltzmann":
        probs = torch.softmax(q / cfg.temperature, dim=-1)
        return torch.multinomial(probs, 1).squeeze(-1).numpy()
    actions = greedy(q, rng)
    explore = rng.random(len(actions)) < epsilon_at(cfg, frames)
    return np.where(explore, rng.integers(0, q.shape[-1], size=len(actions)), actions)


def td_targets(online: nn.Module, target: nn.Module, batch: Batch, rewards: Tensor,
               double_q: bool) -> Tensor:  # fmt: skip
    """``[K, B]``: ``rewards + discount * Q_target_k(s', a*)``, where a* is the target head's
    argmax, or the online head's with double_q."""
    with torch.no_grad():
        x = as_inputs(batch.next_obs)
        q_next = target(x)  # [K, B, A]
        chooser = online(x) if double_q else q_next
        best = chooser.argmax(-1, keepdim=True)
        next_value = q_next.gather(-1, best).squeeze(-1)
        return rewards.unsqueeze(0) + batch.discount.unsqueeze(0) * next_value


def td_loss(q: Tensor, actions: Tensor, targets: Tensor, masks: Tensor | None, kind: str) -> Tensor:
    """Mean over the batch of each head's masked TD loss, summed over heads (each head's
    gradient is its own loss's, as if trained alone)."""
    taken = q.gather(-1, actions.view(1, -1, 1).expand(q.shape[0], -1, 1)).squeeze(-1)
    if kind == "huber":
        per = nn.functional.smooth_l1_loss(taken, targets, reduction="none")
    else:
        per = (taken - targets).square()
    if masks is not None:
        per = per * masks.T  # masks [B, K]
    return per.mean(dim=1).sum()


def train_dqn(
    env: VecEnv, config: DQNConfig, bonus: Bonus | None = None, run: Any = None
) -> dict[str, Any]:
    """Train (bootstrapped) DQN on ``env`` (``config.num_envs`` copies, discrete actions).

    ``run`` receives metrics, progress and checkpoints (an ``explora.runs.RunDir``); when it
    holds a checkpoint, training resumes from it, replay included. Returns the same figures as
    ``train_ppo`` plus ``bad_episodes`` where the env reports them (DeepSea).
    Denormal floats count as zero while it runs (``flush_denormals``: exact up to 1e-38, and
    twice as fast on DeepSea).
    """
    with flush_denormals():
        return _train_dqn(env, config, bonus, run)


def _train_dqn(env: VecEnv, config: DQNConfig, bonus: Bonus | None, run: Any) -> dict[str, Any]:
    cfg = config
    cfg.check()
    run = run or NullRun()
    if env.num_envs != cfg.num_envs:
        raise ValueError(f"env has {env.num_envs} copies but config.num_envs = {cfg.num_envs}")
    obs_space, act_space = env.single_observation_space, env.single_action_space
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ValueError(f"DQN needs Discrete actions, got {act_space}; use --algo ppo")
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    bonus = for_env(bonus, obs_space)  # on a Dict observation: the part it reads
    if bonus is not None:
        bonus.setup(obs_space, act_space, cfg.num_envs)
    rng = np.random.default_rng(cfg.seed)
    N, K, A = cfg.num_envs, cfg.num_heads, int(act_space.n)
    obs_shape = tuple(obs_space.shape or ())
    in_dim = int(np.prod(obs_shape)) if obs_shape else 1

    noisy = cfg.exploration == "noisy"
    one_hot = cfg.lazy_adam and _one_hot_space(obs_space) and not noisy
    net = EnsembleQ(in_dim, A, K, cfg.hidden, cfg.prior_scale, noisy, one_hot, cfg.init)
    target = copy.deepcopy(net).requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    # lazy_adam with one-hot inputs: the first layer's table gets sparse gradients and
    # SparseAdam (rows of states absent from a batch keep still; dense Adam also moves them by
    # their momentum, at the cost of the whole table per step). Everything else: Adam.
    table: list[nn.Parameter] = [p for n, p in net.named_parameters() if n == "net.0.weight"]
    table = table if one_hot else []
    dense = [p for p in params if all(p is not t for t in table)]
    optimizer = _Optimizers(
        torch.optim.Adam(dense, lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True),
        torch.optim.SparseAdam(table, lr=cfg.learning_rate, eps=cfg.adam_eps) if table else None,
    )
    replay = ReplayBuffer(
        max(cfg.n_step, cfg.buffer_size // N),
        N,
        obs_shape,
        obs_space.dtype,
        num_heads=K if K > 1 else 0,
    )
    int_rms = RunningMeanStd(shape=())
    tracker = EpisodeTracker(N, env.grid_shape, solved_threshold=cfg.solved_threshold)
    # With episode_snapshot, copy i acts with its own frozen copy of its head: slot i of this
    # N-head ensemble (the fixed priors are read from ``net``, whose priors never change).
    acting = (
        EnsembleQ(in_dim, A, N, cfg.hidden, 0.0, False, one_hot, cfg.init).requires_grad_(False)
        if cfg.episode_snapshot
        else None
    )
    frames, grad_steps, first_step, wall_offset = 0, 0, 0, 0.0

    parts: dict[str, Stateful | None] = {
        "net": net,
        "target": target,
        "optimizer": optimizer,
        "replay": replay,
        "int_rms": int_rms,
        "tracker": tracker,
        "bonus": bonus,
        "acting": acting,
    }  # what a checkpoint holds as state dicts
    state = run.load_checkpoint()
    if state is not None:
        common.load_state_dicts(state, **parts)
        wall_offset = common.restore_progress(state, rng)
        frames, grad_steps, first_step = state["frames"], state["grad_steps"], state["step"]

    if state is not None and state.get("env") is not None:
        # The env's own state came back: continue its episodes exactly where they were.
        env.load_state_dict(state["env"])
        obs, heads = state["obs"], state["heads"]
    else:
        obs, info = env.reset(seed=cfg.seed + 7919 * first_step)
        tracker.record_positions(info)
        heads = rng.integers(0, K, size=N)  # the head each copy follows this episode
        if acting is not None:
            acting.copy_heads_(torch.arange(N), net, torch.from_numpy(heads))
        if state is not None:  # fresh episodes: nothing may run on from the interrupted ones
            replay.cut_episodes()
            tracker.start_new_episodes()
            common.restart_bonus_episodes(bonus, N)
    start_time, frames_at_start = time.perf_counter(), frames
    log_every_steps = max(1, cfg.log_every // N)
    pictures = PictureRecorder.for_bonus(bonus, env.grid_shape, seed=cfg.seed)  # None: no model
    losses: list[Tensor] = []
    summary_metrics: dict[str, float] = {}

    def act(obs_t: Tensor) -> Tensor:
        """``[N, A]``: each copy's Q-values, from the head it follows this episode."""
        x = as_inputs(obs_t)
        copies = torch.arange(N)
        if acting is None:
            return net(x)[torch.from_numpy(heads), copies]
        q = acting(x)[copies, copies]  # copy i's frozen head on copy i's observation
        prior = net.prior_q(x)
        return q if prior is None else q + prior[torch.from_numpy(heads), copies]

    def learn() -> None:
        nonlocal grad_steps
        batch = replay.sample(cfg.batch_size, cfg.n_step, cfg.gamma, rng)
        rewards = cfg.ext_coef * batch.returns
        if bonus is not None:
            window = Transitions(
                obs=batch.window_obs,
                actions=batch.window_actions,
                next_obs=batch.window_next_obs,
                ext_rewards=torch.zeros_like(batch.window_weights),
                terminated=batch.window_terminated,
                truncated=batch.window_truncated,
            )
            if bonus.episodic:
                raw = batch.int_returns  # stored as the steps happened
            else:  # lifelong: the bonus as it is now, on every step of each window
                r_int = bonus.compute(window).float()
                int_rms.update(r_int[0].reshape(-1))
                raw = (batch.window_weights * r_int).sum(0)
            rewards = rewards + cfg.int_coef * raw / math.sqrt(float(int_rms.var) + 1e-8)
            bonus.update(window)  # every bonus with models trains, episodic or lifelong
        if noisy:  # independent noise for the target net and for the online net's two uses
            net.reset_noise()
            target.reset_noise()
        targets = td_targets(net, target, batch, rewards, cfg.double_q)
        if noisy:
            net.reset_noise()
        q = net(as_inputs(batch.obs))
        loss = td_loss(q, batch.actions, targets, batch.masks, cfg.loss)
        common.gradient_step(
            loss,
            optimizer,
            params,
            cfg.max_grad_norm,
            name="DQN",
            at=f"{frames} frames",
            hint="Try a lower learning_rate or int_coef.",
        )
        losses.append(loss.detach())
        grad_steps += 1
        if grad_steps % cfg.target_update_every == 0:
            copy_weights(target, net)

    for step_index in range(first_step, cfg.vector_steps):
        # ---- act ---------------------------------------------------------------------
        if frames < cfg.learning_starts and cfg.exploration != "thompson-heads":
            actions = rng.integers(0, A, size=N)
        else:
            with torch.no_grad():
                if cfg.exploration == "noisy":
                    net.reset_noise()
                q = act(torch.from_numpy(obs))
            actions = choose_actions(q, cfg, frames, rng)
        # ---- step and store ----------------------------------------------------------
        step = env.step(actions)
        frames += N
        tracker.step(step, frames)
        ended = step.terminated | step.truncated
        int_rewards = None
        if bonus is not None:
            one = Transitions.one_step(obs, actions, step)
            bonus.observe(one)
            if bonus.episodic:
                r = bonus.compute(one).float()[0]
                int_rms.update(r)
                int_rewards = r.numpy()
                if "agent_pos" in step.info:
                    tracker.add_bonus(step.info["agent_pos"], int_rewards)
            if pictures is not None:
                pictures.record_step(step.final_obs, step.info.get("agent_pos"))
        masks = rng.binomial(1, cfg.mask_prob, size=(N, K)).astype(np.float32) if K > 1 else None
        replay.add(obs, actions, step.reward, step.terminated, step.truncated, step.final_obs,
                   int_rewards, masks)  # fmt: skip
        if ended.any():  # a new head per episode
            heads[ended] = rng.integers(0, K, size=int(ended.sum()))
            if acting is not None:
                copies = torch.from_numpy(np.flatnonzero(ended))
                acting.copy_heads_(copies, net, torch.from_numpy(heads[ended]))
        obs = step.obs
        # ---- learn -------------------------------------------------------------------
        if (
            frames >= cfg.learning_starts
            and replay.can_sample(cfg.n_step)
            and step_index % cfg.train_every == 0
        ):
            for _ in range(cfg.gradient_steps):
                learn()
        # ---- log and checkpoint ------------------------------------------------------
        solved = cfg.stop_when_solved and tracker.deep_sea_solved_at is not None
        last = step_index + 1 >= cfg.vector_steps or solved
        if (step_index + 1) % log_every_steps == 0 or last:
            elapsed = time.perf_counter() - start_time
            metrics = {
                **tracker.drain_charts(),
                "charts/SPS": (frames - frames_at_start) / max(elapsed, 1e-9),
                "charts/epsilon": epsilon_at(cfg, frames),
                "losses/td": float(torch.stack(losses).mean()) if losses else math.nan,
                "losses/gradient_steps": float(grad_steps),
            }
            losses.clear()
            common.log_row(run, tracker, frames, metrics)
            summary_metrics = metrics
            rows = (step_index + 1) // log_every_steps
            if rows % cfg.checkpoint_every == 0 or last or run.checkpoint_due():
                wall = wall_offset + time.perf_counter() - start_time
                run.save_checkpoint(
                    {
                        **common.state_dicts(**parts),
                        **common.progress_state(frames, wall, cfg, rng),
                        **common.env_state(env, obs),
                        "heads": heads.copy(),
                        "grad_steps": grad_steps,
                        "step": step_index + 1,
                    }
                )
        if solved:
            break
    wall = wall_offset + time.perf_counter() - start_time
    return {
        **tracker.result(frames, wall, env.has_success, bonus),
        "last_metrics": summary_metrics,
        "agent": net,
        "pictures": pictures.pictures() if pictures is not None else None,
    }
