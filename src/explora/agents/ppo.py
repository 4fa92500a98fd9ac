"""PPO with an optional curiosity bonus, readable top to bottom.

Schulman et al. 2017 (PPO), with the curiosity recipe of Burda et al. 2018 (RND) as in CleanRL's
``ppo_rnd_envpool.py``:
- two value heads, extrinsic (episodic) and intrinsic (non-episodic by default);
- advantage = ``ext_coef * A_ext + int_coef * A_int``;
- the raw bonus is divided by the running std of its discounted return (per env, along time);
- the bonus's input statistics are warmed up by a random policy before training.

Episode ends are handled exactly for the extrinsic return: ``terminated`` zeroes the successor's
value, ``truncated`` bootstraps it from the true final observation, and neither lets a return or
an advantage run into the next episode. The intrinsic return is non-episodic (RND paper): it
runs on through an episode end into the next episode's first observation, as in the RND paper's
code and CleanRL (``int_end="continue"``), so ``V_int`` is only bootstrapped from observations
it is trained on, and ending an episode never cuts the stream of (always positive) bonus.
``int_end="final-obs"`` (explora before 2026-11-30) instead bootstraps from ``V_int`` of the
final observation, a value never trained as such, and stops the chain there; it was faster on
some tasks, but where the goal state is only ever a final observation it taught agents to avoid
the goal (docs/trust.md has every figure). ``int_episodic=True`` keeps the intrinsic return
inside episodes like the extrinsic one: the DeepSea preset uses it (episodes of N steps that the
agent cannot end early; 10/10 seeds solved DeepSea-10 against 6/10 continuing).

Resume: a checkpoint is written between updates and holds the networks, optimiser, normalisers,
bonus, episode bookkeeping, every random state and, where the env can hand its state over
(DeepSea, bandits), the env and its current observations: the resumed run is then the same run,
bit for bit. Otherwise (EnvPool, gymnasium) the envs start new episodes on resume.

Defaults are those of rl-starter-files / torch-ac for MiniGrid (METHODS.md), tuned where noted.
Example:
    >>> from explora.envs import make
    >>> from explora.agents.ppo import PPOConfig, train_ppo
    >>> env = make("CartPole-v1", num_envs=8, seed=0)
    >>> result = train_ppo(env, PPOConfig(total_frames=20_000, seed=0))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.agents import common
from explora.agents.common import NullRun, Stateful
from explora.agents.returns import gae
from explora.bonuses.base import Bonus, DiscountedReturnStd, Transitions, bonus_parts
from explora.bonuses.obs_key import for_env
from explora.envs.base import EnvStep, VecEnv, random_actions
from explora.models.encoders import BoundsRescale, layer_init, make_encoder
from explora.runs.episodes import EpisodeTracker
from explora.runs.pictures import PictureRecorder

INT_ENDS = ("continue", "final-obs")
LOSS_NAMES = (
    "losses/policy",
    "losses/value",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clipfrac",
)


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters. Derived sizes are properties, not flags."""

    total_frames: int = 1_000_000
    """environment frames to train for (random warm-up frames count too)"""
    num_envs: int = 16
    """parallel environment copies"""
    num_steps: int = 128
    """steps per env per rollout"""
    learning_rate: float = 7e-4
    """Adam learning rate (rl-starter-files)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over training"""
    adam_eps: float = 1e-5
    """Adam epsilon"""
    gamma: float = 0.99
    """discount of the extrinsic return"""
    int_gamma: float = 0.99
    """discount of the intrinsic return (RND paper)"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    update_epochs: int = 4
    """passes over each rollout"""
    minibatch_size: int = 256
    """samples per gradient step"""
    clip_coef: float = 0.2
    """policy ratio clip"""
    ent_coef: float = 0.01
    """entropy bonus weight"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip"""
    norm_adv: bool = True
    """whiten advantages per minibatch"""
    clip_vloss: bool = False
    """clip the value loss as CleanRL and torch-ac do: ``max((V - R)^2, (V_old + clip(V -
    V_old, -clip_coef, clip_coef) - R)^2)``. Off by default: measured on DoorKey-8x8 and
    DeepSea-20 (README, "PPO's value clipping")"""
    target_kl: float | None = None
    """stop the update after an epoch whose last minibatch's approximate KL exceeds this
    (CleanRL's check, once per epoch)"""
    ext_coef: float = 1.0
    """weight of the extrinsic advantage; 0 gives pure curiosity. CleanRL's Atari RND uses 2
    with int_coef 1; METHODS.md measured those Atari values failing on MiniGrid, and with
    per-minibatch advantage whitening only the ratio matters: 1:1 solved DoorKey-8x8 on 5/5
    seeds (README)"""
    int_coef: float = 1.0
    """weight of the intrinsic advantage (ignored without a bonus); see ext_coef"""
    int_episodic: bool = False
    """treat the intrinsic return as episodic (cut at termination) instead of lifelong"""
    int_scale_horizon: float | None = None
    """samples over which the intrinsic reward's scale (the std of its discounted return)
    forgets; None: the whole run (RND paper). Set it where the raw bonus falls by orders of
    magnitude during training, as RND's does on low-dimensional observations (MountainCar:
    0 goals in 150k frames with None, 7-48 per seed with 512-2048; ``DiscountedReturnStd``)"""
    obs_rescale: bool = False
    """feed the policy Box observations rescaled from their declared bounds to [-1, 1]
    (bonuses still see them raw): PPO's MLP cannot use MountainCar's velocity (+-0.07 beside a
    position in [-1.2, 0.6]); off where bounds are loose (MiniGrid declares 0..255 for 0..10)"""
    int_end: str = "continue"
    """where a lifelong intrinsic return goes at an episode end: "continue" into the next
    episode's first observation (RND's code, CleanRL), or "final-obs": bootstrap from V_int of
    the final observation and cut the chain (see the module docstring and docs/trust.md)"""
    encoder: str = "auto"
    """observation encoder: auto, grid-cnn, pixel-cnn or mlp"""
    frame_stack: int = 1
    """views the policy sees, stacked on the channel axis (``explora.envs.frame_stack``): a
    memory for partially observed grids; bonuses still see the newest view alone. Image
    observations only; Atari stacks its 4 frames already (``--env-args stack_num=K``)"""
    hidden: int = 64
    """width of the actor and critic heads"""
    recurrent_size: int = 0
    """width of a GRU between the encoder and the heads, a memory of the episode so far (0:
    none). The update replays each env's rollout from its saved state, so a minibatch holds
    whole env sequences: ``num_envs`` must be a multiple of the minibatch count"""
    bonus_thread: bool = True
    """train the bonus on a second thread while PPO updates: the envs are idle then, so on 2
    cores the bonus's update costs little wall time (PPO+RND on DoorKey-8x8 measured 19.3k ->
    22.1k frames/s). The bonus's ``update`` must keep to its own state and RNG (``Bonus``)"""
    torch_threads: int = 1
    """CPU threads for torch (0: torch's default). One is fastest for the small networks here on
    2 cores (PPO+RND on DoorKey-8x8 measured 15.2k frames/s with 1, 8.8k with 2), and it leaves
    the other core to EnvPool"""
    device: str = "cpu"
    """where the agent's networks run: cpu, cuda, cuda:<index> or auto (cuda when torch sees a
    GPU). RND is moved there too (alone, in FirstVisit, a view or a sum; ``device_modules``);
    rollout buffers and every other bonus stay on the CPU"""
    checkpoint_every: int = 50
    """updates between checkpoints (a final one is always written)"""
    seed: int = 0
    """seed of torch and of action sampling"""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Updates without a warm-up; ``updates_after`` takes the warm-up's frames off."""
        return self.updates_after(0)

    def updates_after(self, warmup_frames: int) -> int:
        """Rollouts that fit in ``total_frames`` once ``warmup_frames`` random-policy frames
        (the bonus's warm-up) are spent: the learning rate anneals to ~0 over exactly these."""
        return max(1, (self.total_frames - warmup_frames) // self.batch_size)

    def check(self) -> None:
        """Raise ValueError for settings that cannot work, before anything is built."""
        for name in ("num_envs", "num_steps", "update_epochs", "minibatch_size", "frame_stack"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        resolve_device(self.device)
        if self.int_end not in INT_ENDS:
            raise ValueError(
                f"unknown int_end {self.int_end!r}; choose one of: {', '.join(INT_ENDS)}"
            )
        if self.minibatch_size > self.batch_size or self.batch_size % self.minibatch_size:
            raise ValueError(
                f"the batch num_envs * num_steps = {self.batch_size} must be a multiple of "
                f"minibatch_size {self.minibatch_size}"
            )
        minibatches = self.batch_size // self.minibatch_size
        if self.recurrent_size < 0:
            raise ValueError(f"recurrent_size must be >= 0, got {self.recurrent_size}")
        if self.recurrent_size and self.num_envs % minibatches:
            raise ValueError(
                f"recurrent_size > 0 trains on whole env sequences: num_envs {self.num_envs} must "
                f"be a multiple of the {minibatches} minibatches (num_envs * num_steps / "
                f"minibatch_size)"
            )
        if self.total_frames < self.batch_size:
            raise ValueError(
                f"total_frames {self.total_frames} is less than one rollout "
                f"(num_envs * num_steps = {self.num_envs} * {self.num_steps} = "
                f"{self.batch_size}); train for at least {self.batch_size} frames or shorten "
                f"the rollout (num_envs, num_steps)"
            )


def resolve_device(name: str) -> torch.device:
    """``torch.device`` of a ``PPOConfig.device`` name; ValueError for an unknown name or a GPU
    torch cannot see.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"unknown device {name!r}; choose one of: cpu, cuda, cuda:<index>, auto")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r}: torch sees no GPU (CUDA build of torch and a driver needed; "
            f"torch {torch.__version__}); use device cpu or auto"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: torch sees {torch.cuda.device_count()} GPU(s)")
    return device


class ActorCritic(nn.Module):
    """Shared encoder; an actor head and a critic head with two outputs (V_ext, V_int)."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, cfg: PPOConfig) -> None:
        super().__init__()
        self.encoder = make_encoder(obs_space, cfg.encoder)
        if cfg.obs_rescale:
            self.encoder = BoundsRescale(self.encoder, obs_space)
        emb: int = self.encoder.out_dim  # type: ignore[assignment]
        self.recurrent_size = cfg.recurrent_size
        self.rnn: nn.GRUCell | None = None
        if cfg.recurrent_size:
            self.rnn = nn.GRUCell(emb, cfg.recurrent_size)
            for name, param in self.rnn.named_parameters():  # CleanRL's LSTM initialisation
                if "weight" in name:
                    nn.init.orthogonal_(param, 1.0)
                else:
                    nn.init.zeros_(param)
            emb = cfg.recurrent_size
        self.continuous = isinstance(action_space, gym.spaces.Box)
        if self.continuous:
            self.action_shape: tuple[int, ...] = tuple(action_space.shape or ())
            n_out = int(np.prod(self.action_shape))
            self.log_std = nn.Parameter(torch.zeros(n_out))
        elif isinstance(action_space, gym.spaces.Discrete):
            n_out = int(action_space.n)
            self.action_shape = ()
        else:
            raise ValueError(f"PPO supports Discrete and Box actions, got {action_space}")
        self.actor = nn.Sequential(
            layer_init(nn.Linear(emb, cfg.hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(cfg.hidden, n_out), gain=0.01),
        )
        self.critic = nn.Sequential(
            layer_init(nn.Linear(emb, cfg.hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(cfg.hidden, 2), gain=1.0),
        )

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(policy_out, values)``: logits (discrete) or the Gaussian mean (continuous), and
        ``[B, 2]`` extrinsic and intrinsic values. Without memory only (else ``step``)."""
        if self.rnn is not None:
            raise RuntimeError("a recurrent agent needs its memory: call step(obs, hidden, starts)")
        features = self.encoder(obs)
        return self.actor(features), self.critic(features)

    def features(self, obs: Tensor, hidden: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        """``(features, hidden')``: the heads' input for ``obs`` ``[B, ...]`` and the memory
        after it. ``hidden`` ``[B, recurrent_size]`` is the memory before ``obs``; where
        ``starts`` (``[B]`` bool) is True, ``obs`` begins an episode and the memory starts from
        zero. Without memory: the encoder's output, and ``hidden`` as it is."""
        x = self.encoder(obs)
        if self.rnn is None:
            return x, hidden
        h = self.rnn(x, hidden * (~starts).unsqueeze(-1).to(hidden.dtype))
        return h, h

    def step(self, obs: Tensor, hidden: Tensor, starts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(policy_out, values, hidden')`` for one step of every env (see ``features``)."""
        x, h = self.features(obs, hidden, starts)
        return self.actor(x), self.critic(x), h

    def sequence(self, obs: Tensor, hidden: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        """``(policy_out, values)`` ``[T * B, ...]`` (time-major) for ``T`` steps of ``B`` envs:
        ``obs`` ``[T, B, ...]``, ``starts`` ``[T, B]``, the memory ``hidden`` ``[B, H]`` from
        before the first step, carried through the steps and reset where episodes start."""
        steps, batch = int(obs.shape[0]), int(obs.shape[1])
        if self.rnn is None:
            return self(obs.reshape(steps * batch, *obs.shape[2:]))
        x = self.encoder(obs.reshape(steps * batch, *obs.shape[2:])).reshape(steps, batch, -1)
        keep = (~starts).unsqueeze(-1).to(hidden.dtype)
        out = []
        for t in range(steps):
            hidden = self.rnn(x[t], hidden * keep[t])
            out.append(hidden)
        h = torch.cat(out)
        return self.actor(h), self.critic(h)

    def values(
        self, obs: Tensor, hidden: Tensor | None = None, starts: Tensor | None = None
    ) -> Tensor:
        """``[B, 2]``: extrinsic and intrinsic value (a recurrent agent: after ``hidden``)."""
        if self.rnn is None:
            return self.critic(self.encoder(obs))
        assert hidden is not None and starts is not None
        return self.critic(self.features(obs, hidden, starts)[0])

    # The policy's distribution is written out instead of built as a torch.distributions object:
    # the object's checks and caching cost more than the maths at these sizes.

    def sample(self, policy_out: Tensor) -> tuple[Tensor, Tensor]:
        """An action per row and its log-probability."""
        if self.continuous:
            action = policy_out + self.log_std.exp() * torch.randn_like(policy_out)
            return action, self.log_prob_entropy(policy_out, action)[0]
        # As Categorical.sample: one multinomial draw per row from the softmax.
        log_probs = policy_out.log_softmax(-1)
        action = torch.multinomial(log_probs.exp(), 1, True)
        return action.squeeze(-1), log_probs.gather(-1, action).squeeze(-1)

    def log_prob_entropy(self, policy_out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probability of ``actions`` and entropy of the policy, one of each per row."""
        if self.continuous:
            log_std = self.log_std.expand_as(policy_out)
            z = (actions - policy_out) / log_std.exp()
            logp = -0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)
            entropy = 0.5 + 0.5 * math.log(2 * math.pi) + log_std
            return logp.sum(-1), entropy.sum(-1)
        log_probs = policy_out.log_softmax(-1)
        logp = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return logp, entropy


def device_modules(bonus: Any) -> list[nn.Module]:
    """The parts of ``bonus`` that run where the agent runs (``PPOConfig.device``): each RND,
    alone, inside ``FirstVisit`` or an observation view, or a term of a ``Sum``; RND moves its
    inputs to its networks itself. Every other bonus stays on the CPU, where its inputs are."""
    from explora.bonuses.rnd import RND

    return [part for part in bonus_parts(bonus) if isinstance(part, RND)]


def continuing_next_values(values: Tensor, last_values: Tensor) -> Tensor:
    """``[T, N]``: the value of the observation that follows each step in the rollout itself,
    ``values[t + 1]`` and ``last_values`` after the last step. After an episode end that is the
    next episode's first observation: the successor of a non-episodic (continuing) return."""
    return torch.cat([values[1:], last_values.unsqueeze(0)])


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, clip: float | None) -> Tensor:
    """``0.5 * mean_b sum_heads (V - R)^2`` over ``[B, heads]`` tensors; with ``clip``, the
    clipped form of PPO's reference code (CleanRL, torch-ac): each error is the larger of the
    plain one and that of ``V_old + clip(V - V_old, -clip, clip)``."""
    error = (values - returns).square()
    if clip is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        error = torch.max(error, (clipped - returns).square())
    return 0.5 * error.sum(-1).mean()


def _env_actions(actions: Tensor, space: gym.Space) -> np.ndarray:
    out = actions.numpy()
    if isinstance(space, gym.spaces.Box):
        # The policy's Gaussian is unbounded; the env gets the clipped action, the update the raw.
        return np.clip(out, space.low, space.high).astype(space.dtype)
    return out


def _in_thread(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """Start ``fn(*args)`` on a new thread; the future holds its result or its exception."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as error:  # handed to whoever asks for the result
            future.set_exception(error)

    threading.Thread(target=run, name="explora-bonus-update", daemon=True).start()
    return future


def _at_once(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """``fn(*args)`` run here, as a finished future."""
    future: Future[Any] = Future()
    future.set_result(fn(*args))
    return future


class EpisodeMemory:
    """A recurrent policy's state between steps, kept where the agent runs (no host-device copy
    per step) and in checkpoints: each env's memory ``hidden`` ``[N, H]`` and whether its next
    observation begins an episode (``starts`` ``[N]``; True where the memory starts from zero)."""

    def __init__(self, num_envs: int, size: int, device: torch.device | str = "cpu") -> None:
        self.hidden = torch.zeros(num_envs, size, device=device)
        self.starts = torch.ones(num_envs, dtype=torch.bool, device=device)

    def reset(self) -> None:
        """Every env's next observation begins an episode (fresh episodes after a resume)."""
        self.hidden.zero_()
        self.starts.fill_(True)

    def state_dict(self) -> dict[str, Tensor]:
        return {"hidden": self.hidden.clone(), "starts": self.starts.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.hidden = state["hidden"].to(self.hidden.device, copy=True)
        self.starts = state["starts"].to(self.starts.device, copy=True)


def train_ppo(
    env: VecEnv,
    config: PPOConfig,
    bonus: Bonus | None = None,
    run: Any = None,
) -> dict[str, Any]:
    """Train PPO on ``env`` (which must have ``config.num_envs`` copies).

    ``run`` receives metrics, progress and checkpoints (an ``explora.runs.RunDir``); when it
    holds a checkpoint, training resumes from it. Returns the run's figures (see
    ``summary`` keys in the README).
    """
    cfg = config
    cfg.check()
    run = run or NullRun()
    if env.num_envs != cfg.num_envs:
        raise ValueError(f"env has {env.num_envs} copies but config.num_envs = {cfg.num_envs}")
    obs_space, act_space = env.single_observation_space, env.single_action_space
    obs_shape = tuple(obs_space.shape or ())
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)  # before setup, so the bonus's random networks are seeded too
    bonus = for_env(bonus, obs_space)  # on a Dict observation: the part it reads
    if bonus is not None:
        bonus.setup(obs_space, act_space, cfg.num_envs)  # fails here, before any step
    rng = np.random.default_rng(cfg.seed)

    device = resolve_device(cfg.device)
    agent = ActorCritic(obs_space, act_space, cfg).to(device)
    if device.type != "cpu":  # RND follows the agent (PPOConfig.device)
        for module in device_modules(bonus):
            module.to(device)
    # fused: one kernel for all parameters, measured 2.5x cheaper per step than the default
    params = list(agent.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True)
    int_scale = DiscountedReturnStd(cfg.num_envs, cfg.int_gamma, horizon=cfg.int_scale_horizon)
    tracker = EpisodeTracker(cfg.num_envs, env.grid_shape)
    T, N = cfg.num_steps, cfg.num_envs
    warmup = getattr(bonus, "warmup_steps", 0) if bonus is not None else 0
    num_updates = cfg.updates_after(warmup * N)  # the warm-up's frames count toward the budget
    frames, first_update, wall_offset = 0, 0, 0.0

    memory = EpisodeMemory(N, cfg.recurrent_size, device) if cfg.recurrent_size else None
    parts: dict[str, Stateful | None] = {
        "agent": agent,
        "optimizer": optimizer,
        "int_scale": int_scale,
        "tracker": tracker,
        "bonus": bonus,
        "memory": memory,
    }  # what a checkpoint holds as state dicts
    state = run.load_checkpoint()
    if state is not None:
        common.load_state_dicts(state, **parts)
        wall_offset = common.restore_progress(state, rng)
        frames, first_update = state["frames"], state["update"]

    if state is not None and state.get("env") is not None:
        env.load_state_dict(state["env"])  # the same episodes go on
        next_obs_np = state["obs"]
    else:
        # A resumed run starts fresh episodes from a seed it has not used.
        next_obs_np, info = env.reset(seed=cfg.seed + 7919 * first_update)
        tracker.record_positions(info)
        if state is not None:
            tracker.start_new_episodes()
            common.restart_bonus_episodes(bonus, N)
            if memory is not None:
                memory.reset()
    start_time, frames_at_start = time.perf_counter(), frames

    # Random-policy warm-up of the bonus's input statistics (RND's observation whitening).
    for _ in range(warmup if state is None else 0):
        actions_np = random_actions(act_space, N, rng)
        step = env.step(actions_np)
        frames += N
        tracker.step(step, frames)
        bonus.observe(Transitions.one_step(next_obs_np, actions_np, step))  # type: ignore[union-attr]
        next_obs_np = step.obs

    obs_buf = torch.zeros((T, N, *obs_shape), dtype=torch.from_numpy(next_obs_np).dtype)
    next_obs_buf = torch.zeros_like(obs_buf)
    actions_buf = torch.zeros(
        (T, N, *agent.action_shape), dtype=torch.float32 if agent.continuous else torch.long
    )
    logp_buf = torch.zeros(T, N)
    values_buf = torch.zeros(T, N, 2)
    # memory only: whether obs_buf[t] began an episode, the memory after it, and before t = 0
    starts_buf = torch.zeros(T, N, dtype=torch.bool, device=device)
    hidden_buf = torch.zeros(T, N, cfg.recurrent_size, device=device)
    hidden_start = torch.zeros(N, cfg.recurrent_size, device=device)
    rewards_buf = torch.zeros(T, N)
    term_buf = torch.zeros(T, N, dtype=torch.bool)
    trunc_buf = torch.zeros(T, N, dtype=torch.bool)
    keys_buf = torch.zeros(T, N, dtype=torch.int64)  # the env's state keys, where it has them
    has_keys = False
    pos_buf = np.full((T, N, 2), -1, dtype=np.int64)  # grid cell reached, for the bonus map
    pictures = PictureRecorder.for_bonus(bonus, env.grid_shape, seed=cfg.seed)  # None: no model
    if agent.continuous:  # the bonus sees the actions the env took, the update the sampled ones
        assert isinstance(act_space, gym.spaces.Box)
        low, high = torch.from_numpy(act_space.low), torch.from_numpy(act_space.high)

    ended_at: list[tuple[int, np.ndarray]] = []  # (t, envs whose episode ended at step t)

    def record(t: int, obs: np.ndarray, actions: np.ndarray, step: EnvStep, at: int) -> None:
        """Store step t's outcome; show it to the tracker (``at`` frames) and the bonus."""
        nonlocal has_keys
        next_obs_buf[t] = torch.from_numpy(step.final_obs)
        rewards_buf[t] = torch.from_numpy(step.reward)
        term_buf[t] = torch.from_numpy(step.terminated)
        trunc_buf[t] = torch.from_numpy(step.truncated)
        ended = step.terminated | step.truncated
        if ended.any():
            ended_at.append((t, np.flatnonzero(ended)))
        tracker.step(step, at)
        if bonus is not None:
            cell = step.info.get("agent_pos", step.info.get("map_cell"))  # map_cell: a room
            if cell is not None:
                pos_buf[t] = cell
            one = Transitions.one_step(obs, actions, step)
            if one.state_keys is not None:
                keys_buf[t] = one.state_keys[0]
                has_keys = True
            bonus.observe(one)

    summary_metrics: dict[str, float] = {}
    for update in range(first_update, num_updates):
        if frames >= cfg.total_frames:
            break
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - update / num_updates)
        # ---- rollout -------------------------------------------------------------------
        rollout_start = time.perf_counter()
        ended_at.clear()
        # Pipelined by one step: while the envs run step t (EnvPool steps them on its own
        # threads), step t-1 is recorded. The order of everything the bonus sees is unchanged.
        previous: tuple[int, np.ndarray, np.ndarray, EnvStep, int] | None = None
        if memory is not None:
            hidden_start.copy_(memory.hidden)
        for t in range(T):
            obs_t = torch.from_numpy(next_obs_np)
            with torch.no_grad():
                if memory is None:
                    policy_out, value = agent(obs_t.to(device))
                else:
                    starts_buf[t] = memory.starts
                    policy_out, value, hidden = agent.step(
                        obs_t.to(device), memory.hidden, memory.starts
                    )
                    memory.hidden = hidden_buf[t] = hidden
                action, logp = agent.sample(policy_out)
                action, logp, value = action.cpu(), logp.cpu(), value.cpu()
            env_actions = _env_actions(action, act_space)
            env.step_async(env_actions)
            obs_buf[t] = obs_t
            actions_buf[t] = action
            logp_buf[t] = logp
            values_buf[t] = value
            if previous is not None:
                record(*previous)
            step = env.step_wait()
            previous = (t, next_obs_np, env_actions, step, frames + (t + 1) * N)
            next_obs_np = step.obs
            if memory is not None:
                memory.starts = torch.from_numpy(step.terminated | step.truncated).to(device)
        assert previous is not None
        record(*previous)
        frames += T * N
        rollout_time = time.perf_counter() - rollout_start

        # ---- values of successors --------------------------------------------------------
        def successor_values(obs: Tensor, ts: Tensor, ns: Tensor) -> Tensor:
            """``[k, 2]`` values of the true final observations ``obs`` of the episodes that
            ended at steps ``ts`` of envs ``ns`` (with the memory of those episodes)."""
            if memory is None:
                return agent.values(obs.to(device)).cpu()
            after = hidden_buf[ts.to(device), ns.to(device)]  # of the step that ended them
            begins = torch.zeros(len(ns), dtype=torch.bool, device=device)
            return agent.values(obs.to(device), after, begins).cpu()

        with torch.no_grad():
            if memory is None:
                last_values = agent.values(torch.from_numpy(next_obs_np).to(device)).cpu()
            else:
                last_values = agent.values(
                    torch.from_numpy(next_obs_np).to(device),
                    memory.hidden,
                    memory.starts,
                ).cpu()
            next_values = continuing_next_values(values_buf, last_values)
            # The extrinsic return stops at an episode end: its successor is the true final
            # observation (bootstrapped after a truncation, zeroed after a termination).
            ext_next_values = next_values[..., 0].clone()
            if ended_at:
                ts = torch.cat([torch.full((len(ids),), t) for t, ids in ended_at])
                ns = torch.cat([torch.from_numpy(ids) for _, ids in ended_at])
                ext_next_values[ts, ns] = successor_values(next_obs_buf[ts, ns], ts, ns)[:, 0]

        batch = Transitions(
            obs=obs_buf,
            actions=actions_buf.clamp(low, high) if agent.continuous else actions_buf,
            next_obs=next_obs_buf,
            ext_rewards=rewards_buf,
            terminated=term_buf,
            truncated=trunc_buf,
            state_keys=keys_buf if has_keys else None,
        )
        adv_ext, ret_ext = gae(
            rewards_buf,
            values_buf[..., 0],
            ext_next_values,
            term_buf,
            trunc_buf,
            cfg.gamma,
            cfg.gae_lambda,
            episodic=True,
        )
        advantages = cfg.ext_coef * adv_ext
        ret_int = torch.zeros_like(ret_ext)
        int_metrics: dict[str, float] = {}
        if bonus is not None:
            raw_int = bonus.compute(batch).float().cpu()
            tracker.add_bonus(pos_buf, raw_int.numpy())
            if pictures is not None:
                pictures.record(next_obs_buf, pos_buf)
            int_scale.update(raw_int)
            int_rewards = raw_int / int_scale.std
            if cfg.int_episodic or cfg.int_end == "final-obs":
                # ends as for the extrinsic return: V_int of the final obs, the chain cut
                # (with int_end="final-obs" a termination does not zero it: episodic=False)
                int_next = next_values[..., 1].clone()
                if ended_at:
                    with torch.no_grad():
                        int_next[ts, ns] = successor_values(next_obs_buf[ts, ns], ts, ns)[:, 1]
                int_ends = (term_buf, trunc_buf)
            else:  # continuing: no episode end exists for the intrinsic return
                int_next = next_values[..., 1]
                int_ends = (torch.zeros_like(term_buf), torch.zeros_like(trunc_buf))
            adv_int, ret_int = gae(
                int_rewards,
                values_buf[..., 1],
                int_next,
                *int_ends,
                cfg.int_gamma,
                cfg.gae_lambda,
                episodic=cfg.int_episodic,
            )
            advantages = advantages + cfg.int_coef * adv_int
            int_metrics = {
                "charts/int_reward_raw": float(raw_int.mean()),
                "charts/int_reward": float(int_rewards.mean()),
                "charts/int_return_std": int_scale.std,
            }

        # ---- PPO update ----------------------------------------------------------------
        update_start = time.perf_counter()
        # The bonus trains meanwhile, on its own thread (PPOConfig.bonus_thread).
        start_job = _in_thread if cfg.bonus_thread else _at_once
        bonus_job = start_job(bonus.update, batch) if bonus is not None else None
        b_obs = obs_buf.reshape(-1, *obs_shape).to(device)  # (.to: no copy on the CPU)
        b_actions = actions_buf.reshape(-1, *agent.action_shape).to(device)
        b_logp = logp_buf.reshape(-1).to(device)
        b_adv = advantages.reshape(-1).to(device)
        b_ret = torch.stack([ret_ext, ret_int], dim=-1).reshape(-1, 2).to(device)
        b_values = values_buf.reshape(-1, 2).to(device)
        stats: list[Tensor] = []
        mb = cfg.minibatch_size
        heads = 2 if bonus is not None else 1  # the intrinsic head trains only with a bonus
        envs_per_mb = N * mb // cfg.batch_size  # memory: whole env sequences per minibatch
        for _epoch in range(cfg.update_epochs):
            if memory is None:
                perm = torch.randperm(cfg.batch_size).to(device)
            else:  # the same one draw per epoch, of envs instead of samples
                perm = torch.randperm(N).to(device)
            for start in range(0, cfg.batch_size - mb + 1, mb):
                if memory is None:
                    idx = perm[start : start + mb]
                    policy_out, value = agent(b_obs[idx])
                else:
                    envs = perm[start // T : start // T + envs_per_mb]
                    idx = (torch.arange(T, device=device).unsqueeze(1) * N + envs).reshape(-1)
                    policy_out, value = agent.sequence(
                        b_obs.view(T, N, *obs_shape)[:, envs],  # already on the device
                        hidden_start[envs],
                        starts_buf[:, envs],
                    )
                new_logp, entropy = agent.log_prob_entropy(policy_out, b_actions[idx])
                log_ratio = new_logp - b_logp[idx]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()
                    clipfrac = ((ratio - 1.0).abs() > cfg.clip_coef).float().mean()
                adv = b_adv[idx]
                if cfg.norm_adv:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(
                    -adv * ratio, -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)
                ).mean()
                v_loss = value_loss(
                    value[:, :heads],
                    b_values[idx, :heads],
                    b_ret[idx, :heads],
                    cfg.clip_coef if cfg.clip_vloss else None,
                )
                entropy = entropy.mean()
                loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
                common.gradient_step(
                    loss,
                    optimizer,
                    params,
                    cfg.max_grad_norm,
                    name="PPO",
                    at=f"update {update} ({frames} frames)",
                    hint="Try a lower learning_rate or int_coef.",
                )
                # kept as tensors and read out once per update: a float() per step adds up
                stats.append(torch.stack([pg_loss, v_loss, entropy, approx_kl, clipfrac]).detach())
            # CleanRL's early stop: once per epoch, on the last minibatch's approximate KL.
            if cfg.target_kl is not None and float(stats[-1][3]) > cfg.target_kl:
                break
        bonus_metrics = bonus_job.result() if bonus_job is not None else {}
        update_time = time.perf_counter() - update_start

        # ---- log -------------------------------------------------------------------------
        elapsed = time.perf_counter() - start_time
        metrics = {
            **tracker.drain_charts(),
            "charts/SPS": (frames - frames_at_start) / max(elapsed, 1e-9),
            "charts/learning_rate": float(optimizer.param_groups[0]["lr"]),
            **dict(zip(LOSS_NAMES, torch.stack(stats).mean(0).tolist(), strict=True)),
            "losses/epochs": float(_epoch + 1),
            "time/rollout_s": rollout_time,
            "time/update_s": update_time,
            **int_metrics,
            **bonus_metrics,
        }
        common.log_row(run, tracker, frames, metrics)
        summary_metrics = metrics

        last = update + 1 >= num_updates or frames + cfg.batch_size > cfg.total_frames
        if (update + 1) % cfg.checkpoint_every == 0 or last or run.checkpoint_due():
            wall = wall_offset + time.perf_counter() - start_time
            run.save_checkpoint(
                {
                    **common.state_dicts(**parts),
                    **common.progress_state(frames, wall, cfg, rng),
                    **common.env_state(env, next_obs_np),
                    "update": update + 1,
                }
            )

    wall = wall_offset + time.perf_counter() - start_time
    return {
        **tracker.result(frames, wall, env.has_success, bonus),
        "last_metrics": summary_metrics,
        "agent": agent,
        "pictures": pictures.pictures() if pictures is not None else None,
    }
