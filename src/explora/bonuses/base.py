"""The Bonus protocol every intrinsic reward implements, and the normalisers they share.

Data flows one way (DESIGN.md): env -> rollout -> ``bonus.observe`` per step -> ``bonus.compute``
per rollout -> the agent combines and normalises rewards -> agent update -> ``bonus.update``.

A bonus owns its networks, optimiser and statistics. Statistics live in registered buffers of
``torch.nn.Module`` objects, so ``state_dict`` holds them and a checkpoint restores them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Transitions:
    """A time-major batch of transitions; every field has leading shape ``[T, N]``.

    ``next_obs`` is the true successor of ``obs``: at an episode end it is the final observation
    of that episode, never the first observation of the next one.

    ``state_keys`` is an optional compact key of the state ``next_obs`` shows, attached where
    the env offers one (``state_keys_from_info``: a grid's agent cell and direction, DeepSea's
    cell): bonuses that count or remember states within an episode key on it, and on the
    observation's bytes where it is None.
    """

    obs: Tensor  # [T, N, *obs_shape]
    actions: Tensor  # [T, N, *action_shape]
    next_obs: Tensor  # [T, N, *obs_shape]
    ext_rewards: Tensor  # [T, N] float
    terminated: Tensor  # [T, N] bool
    truncated: Tensor  # [T, N] bool
    state_keys: Tensor | None = None  # [T, N] int64, or None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.ext_rewards.shape[0]), int(self.ext_rewards.shape[1])

    @classmethod
    def one_step(cls, obs: np.ndarray, actions: np.ndarray, step: Any) -> Transitions:
        """A ``T == 1`` batch from one vector step (an ``EnvStep``) taken from ``obs``."""
        keys = state_keys_from_info(step.info)
        return cls(
            obs=torch.from_numpy(obs).unsqueeze(0),
            actions=torch.as_tensor(actions).unsqueeze(0),
            next_obs=torch.from_numpy(step.final_obs).unsqueeze(0),
            ext_rewards=torch.from_numpy(step.reward).unsqueeze(0),
            terminated=torch.from_numpy(step.terminated).unsqueeze(0),
            truncated=torch.from_numpy(step.truncated).unsqueeze(0),
            state_keys=None if keys is None else torch.from_numpy(keys).unsqueeze(0),
        )


def state_keys_from_info(info: dict[str, np.ndarray]) -> np.ndarray | None:
    """``[N]`` int64 key of the state each env copy reached, from what its adapter reports:
    ``agent_pos`` (row, col) and, where present, ``direction`` (MiniGrid: the agent's cell and
    heading, of the episode's last state at an end; DeepSea: the cell). None when the env
    reports no position (then a bonus keys on the observation's bytes).

    Example:
        >>> state_keys_from_info({"agent_pos": np.array([[2, 3]]), "direction": np.array([1])})
        array([16777241])
    """
    pos = info.get("agent_pos")
    if pos is None:
        return None
    pos = np.asarray(pos, dtype=np.int64)
    direction = info.get("direction")
    heading = np.zeros(len(pos), np.int64) if direction is None else np.asarray(direction, np.int64)
    # row and column below 2^20 each, heading below 8: distinct states get distinct keys
    return (pos[:, 0] << 23) | (pos[:, 1] << 3) | (heading & 7)


@runtime_checkable
class Bonus(Protocol):
    """An intrinsic reward. See DESIGN.md for the data flow.

    Attributes:
        episodic: True when the bonus resets per episode (episodic counts, NGU memory, E3B),
            False when it is lifelong (RND).
        warmup_steps: env steps per env of a random policy the agent feeds to ``observe`` before
            training, so that observation statistics are meaningful from the first update
            (0 when the bonus needs none).
    """

    episodic: bool
    warmup_steps: int

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Check the spaces and build the models; the agent calls it once before training.

        Raises ``ValueError`` naming the reason when the bonus cannot take these spaces (an
        exact count on a float Box, say), so a mismatch fails before any env step.
        The constructor itself touches no environment: users build a bonus with its
        hyper-parameters only, e.g. ``RND(learning_rate=1e-3)``.
        """

    def observe(self, step: Transitions) -> None:
        """See one env step (``T == 1``): update counts or input statistics."""

    def compute(self, batch: Transitions) -> Tensor:
        """Raw bonus for each transition, ``[T, N]`` float, computed without gradients.

        A bonus with per-episode state (episodic counts, first-visit flags, NGU's memory) fixes
        each step's value in ``observe``; its ``compute`` then expects ``batch`` to be the last
        ``T`` observed steps, which is how every agent here calls it.
        """

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train the bonus's own models on a rollout; returns scalars for the log.

        PPO runs it on a second thread while the agent updates (``PPOConfig.bonus_thread``):
        touch only the bonus's own state, and draw random numbers from the bonus's own
        ``torch.Generator``, not torch's global one, so that runs stay reproducible."""

    def state_dict(self) -> dict[str, Any]:
        """Everything the bonus's next values depend on, per-episode state included (first-
        visit sets), so that a run resumed with its episodes going on is bit-exact. A bonus
        with per-episode state also has ``start_new_episodes(envs)`` (``[N]`` bool), which an
        agent calls when it resets env copies without an episode end (a resume whose envs
        could not be restored); the agents look it up with ``getattr``, so others omit it."""

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def wrapper_chain(bonus: Any) -> Iterator[Any]:
    """``bonus`` and each bonus it wraps through ``inner`` (``FirstVisit``, the observation
    views ``ObsKey`` / ``NewestFrame``), outermost first; a ``Sum``'s terms are not followed.

    Example:
        >>> from explora.bonuses import RND, FirstVisit
        >>> [type(b).__name__ for b in wrapper_chain(FirstVisit(RND()))]
        ['FirstVisit', 'RND']
    """
    while bonus is not None:
        yield bonus
        bonus = vars(bonus).get("inner")


def bonus_parts(bonus: Any) -> Iterator[Any]:
    """Every bonus inside ``bonus``: its ``wrapper_chain`` and, for a ``Sum``, each term's parts
    in turn (depth first, ``bonus`` itself first).

    Example:
        >>> from explora.bonuses import RND, Count, FirstVisit, Sum
        >>> bonus = FirstVisit(Sum({"rnd": RND(), "count": Count()}))
        >>> [type(b).__name__ for b in bonus_parts(bonus)]
        ['FirstVisit', 'Sum', 'RND', 'Count']
    """
    for part in wrapper_chain(bonus):
        yield part
        terms = vars(part).get("terms")  # a Sum's named terms
        if isinstance(terms, dict):
            for term in terms.values():
                yield from bonus_parts(term)


class RunningMeanStd(nn.Module):
    """Running mean and variance over a stream of batches (parallel Welford / Chan et al.).

    With ``max_count`` set, the past weighs at most ``max_count`` samples: the estimate is
    exact (over all samples) until ``max_count`` samples have been seen, and from then on an
    exponential moving estimate in which a batch of ``B`` samples gets weight
    ``B / (max_count + B)`` and everything before it ``max_count / (max_count + B)``. It is the
    exact weighted mean and variance of all samples, the older ones down-weighted; the
    between-batch spread of the means counts towards the variance as in the exact merge.

    The statistics are buffers: they travel with ``state_dict`` and do not move in eval mode
    (``update`` is a no-op when ``self.training`` is False).

    Example:
        >>> rms = RunningMeanStd(shape=(3,))
        >>> rms.update(torch.randn(100, 3))
        >>> rms.normalize(torch.zeros(5, 3)).shape
        torch.Size([5, 3])
    """

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(
        self, shape: tuple[int, ...] = (), epsilon: float = 1e-4, max_count: float | None = None
    ) -> None:
        super().__init__()
        if max_count is not None and not max_count > 0:
            raise ValueError(f"max_count must be > 0 or None, got {max_count}")
        self.max_count = max_count
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        # A tiny prior count keeps the first update from dividing by zero (as in baselines).
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Fold in a batch ``x`` of shape ``[B, *shape]``."""
        if not self.training or x.shape[0] == 0:
            return
        x = x.to(torch.float64)
        self.update_from_moments(x.mean(dim=0), x.var(dim=0, unbiased=False), x.shape[0])

    @torch.no_grad()
    def update_from_moments(
        self, batch_mean: Tensor, batch_var: Tensor, batch_count: float
    ) -> None:
        """Fold in a batch given by its mean, (biased) variance and size ``batch_count``."""
        if not self.training or float(batch_count) <= 0:
            return
        batch_mean = torch.as_tensor(batch_mean, dtype=torch.float64, device=self.mean.device)
        batch_var = torch.as_tensor(batch_var, dtype=torch.float64, device=self.mean.device)
        count = self.count
        if self.max_count is not None:
            count = count.clamp(max=self.max_count)
        delta = batch_mean - self.mean
        total = count + batch_count
        new_mean = self.mean + delta * batch_count / total
        m2 = self.var * count + batch_var * batch_count
        m2 = m2 + delta.square() * count * batch_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def std(self) -> Tensor:
        return self.var.sqrt()

    def normalize(self, x: Tensor, clip: float | None = None, eps: float = 1e-8) -> Tensor:
        """``(x - mean) / std``, optionally clipped to ``[-clip, clip]``; keeps ``x``'s dtype."""
        mean = self.mean.to(x.dtype)
        std = (self.var + eps).sqrt().to(x.dtype)
        out = (x - mean) / std
        return out.clamp(-clip, clip) if clip is not None else out


class DiscountedReturnStd(nn.Module):
    """Scale of a reward stream: the running std of its discounted return, per env along time.

    RND (Burda et al. 2018) divides the intrinsic reward by this std; the mean is not
    subtracted. The return ``R_t = gamma * R_{t-1} + r_t`` runs along the time axis of each env
    separately (one reference script runs it over the env axis; that is a bug we do not copy),
    and it is never reset at episode ends because the intrinsic return is non-episodic.

    ``horizon`` (samples; default None, the paper's std over the whole run) makes the std forget:
    ``RunningMeanStd(max_count=horizon)``, an exponential moving estimate in which a rollout of
    B samples weighs ``B / (horizon + B)``, so the scale tracks the current reward level. Why it
    exists: on a low-dimensional observation RND's raw reward collapses as the predictor learns
    (MountainCar-v0, 2-d: 6.5 -> 0.005 in 200k frames) while the paper's std holds the early
    values (342 -> 85), so the normalised bonus sinks to ~1e-4 and PPO's whitened advantages are
    left to the extrinsic value's noise. Measured on MountainCar-v0 (observations rescaled to
    [-1, 1], PPO 16 envs x 32 steps, minibatch 128, ent_coef 0.05, 150k frames, seeds 0-3;
    episodes that reached the goal): RND with horizon 2048: 29, 37, 7, 12; with 512: 45, 17, 48,
    23; with None: 0, 0, 0, 0; plain PPO: 0, 0, 0, 0. With ent_coef 0.01 (seed 0, 200k): horizon
    512: 335, 2048: 205, 8192: 133, None: 0.
    Why the default stays the paper's: on MiniGrid-DoorKey-8x8 (RND, MiniGrid preset, 600k
    frames) a forgetting scale made PPO slower to solve: frames to 90% success on seeds 1-4 with
    horizon 2048: 249k, 462k, unsolved (0.77), 428k; with 8192: 218k, unsolved, 329k, 424k;
    with None: 216k, unsolved, 322k, 194k. The paper's scale keeps the large errors of the
    untrained predictor, which shrinks the bonus's weight as training goes on; the MiniGrid
    preset's ``int_coef`` is tuned with that. So a task whose bonus collapses (low-dimensional
    inputs) asks for a horizon explicitly (a preset), and nothing else changes.

    Example:
        >>> scale = DiscountedReturnStd(num_envs=4, gamma=0.99)
        >>> r = torch.rand(128, 4)            # [T, N]
        >>> scale.update(r)
        >>> (r / scale.std).shape
        torch.Size([128, 4])
    """

    returns: Tensor

    def __init__(self, num_envs: int, gamma: float, horizon: float | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.horizon = horizon
        self.register_buffer("returns", torch.zeros(num_envs, dtype=torch.float64))
        self.rms = RunningMeanStd(shape=(), max_count=horizon)

    @torch.no_grad()
    def update(self, rewards: Tensor) -> None:
        """Fold in a rollout of rewards ``[T, N]``."""
        if not self.training:
            return
        rewards = rewards.to(torch.float64)
        discounted = torch.empty_like(rewards)
        running = self.returns.clone()
        for t in range(rewards.shape[0]):
            running = running * self.gamma + rewards[t]
            discounted[t] = running
        self.returns.copy_(running)
        self.rms.update(discounted.reshape(-1))

    @property
    def std(self) -> float:
        return float(self.rms.var.sqrt().clamp_min(1e-8))
