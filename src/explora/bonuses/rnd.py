"""Random Network Distillation (Burda, Edwards, Storkey & Klimov 2018, "Exploration by Random
Network Distillation", ICLR 2019; official code openai/random-network-distillation; CleanRL
``ppo_rnd_envpool.py``).

A fixed, randomly initialised target network f embeds the state reached; a predictor f_hat is
trained to match it on visited states, so its error is large on states seen rarely:

    x     = clip((flatten(s') - mu) / sigma, -5, 5)     mu, sigma: running per-feature stats
    r(s') = || f_hat(x) - f(x) ||^2                      summed over the feature dimension

Order of the statistics, as in the paper's code and CleanRL (``ppo_rnd_envpool.py``: the
rollout's curiosity rewards are computed inside the rollout with the old ``obs_rms``; then
``obs_rms.update`` on the rollout; then the predictor trains on inputs whitened with the updated
statistics): ``observe`` only notes each step; ``compute`` whitens with the statistics as they
were before the steps observed since the last ``update``, i.e. before the rollout it scores; and
``update`` folds those steps in first, then trains. The random-policy warm-up the agent runs
before training (the first ``warmup_steps`` observed steps) is folded in as soon as its last
step is observed, so the first rollout is scored with the warm-up's statistics. (CleanRL
updates ``obs_rms`` with the rollout's ``obs``; we use its ``next_obs``, the states scored.)
Statistics are frozen in eval mode. Until 2026-11-30 ``compute`` folded the rollout in before
scoring it; ``tests/unit/test_bonuses.py`` pins the order against a hand computation.

The agent divides r by the running std of its discounted return (``DiscountedReturnStd``), so
constant factors in r cancel: CleanRL sums the squared error and halves it, the official code
averages it over features; we sum. The predictor's loss is the MSE averaged over features and
samples. On a low-dimensional input r collapses by orders of magnitude as the predictor learns
(MountainCar-v0, 2-d: 6.5 -> 0.005 within 200k frames) while the paper's std, over the whole run,
holds the early values, so the normalised bonus vanishes (~1e-4): such tasks need the
normaliser's ``horizon`` (``DiscountedReturnStd``, measurements there).

Defaults and where they come from:
    learning_rate = 1e-4 (paper, CleanRL); Adam eps = 1e-5 and max_grad_norm = 0.5 (CleanRL,
        which clips the predictor together with the agent; here the predictor alone).
    update_epochs = 4, num_minibatches = 4 (CleanRL: the predictor trains inside PPO's
        4 epochs x 4 minibatches).
    update_proportion = 0.25 (CleanRL; the RND repo's default is 1.0, METHODS.md). Samples are
        drawn *before* the forward pass: each epoch trains on a random ``update_proportion`` of
        the batch split into ``num_minibatches`` minibatches -- the minibatch size and step
        count of CleanRL's random mask, without computing and discarding the other 75%.
    obs_clip = 5 (paper, CleanRL).
    warmup_steps = 128 per env. CleanRL initialises the statistics with 50 rollouts x 128 steps
        of a random policy (6400 steps per env); with 16 envs that is ~100k frames, a tenth of
        a 1M-frame MiniGrid budget, so we warm up for one rollout's length and let the
        statistics keep adapting during training.
    Networks: the paper's conv stack (CleanRL: 32-64-64 convs with kernels 8/4/3, strides
        4/2/1, LeakyReLU; target one linear layer to 512 features, predictor three linear
        layers of 512) for large images. For flat inputs and small images (MiniGrid's 7x7x3)
        MLPs on the flattened input: target Linear(D, hidden)-LeakyReLU-Linear(hidden, feature),
        predictor one hidden layer deeper, as the paper's predictor is deeper than its target.
    hidden_size = 256, feature_size = 128 (deviation from the paper's 512): METHODS.md measured
        full-size conv RND nets, run on every sample, at ~4.5x the agent's compute on a 2-core
        CPU. Measured here (2 cores, MiniGrid 7x7x3, one 16 x 128 rollout: 128 ``observe`` +
        ``compute`` + ``update``) against the rl-starter-files agent's rollout inference and
        PPO update (303 ms): MLPs 512/512 cost 100 ms, 256/128 45 ms, 128/64 34 ms (mostly
        fixed per-step overhead). 256/128 keeps most of the capacity at under a sixth of the
        agent's cost. Both widths apply to the conv stack's heads too; pass 512 for the paper's.
    Weights: orthogonal init with gain sqrt(2), zero bias (CleanRL ``layer_init``).

On procedurally generated grids the MiniGrid preset wraps RND in ``FirstVisit``
(``explora.bonuses.episodic``), which pays it only on the first visit of a view per episode.

Inputs: observations are flattened to float32 (a Discrete observation is its integer value)
and whitened per feature. ``encoder="auto"`` picks the conv stack for 3-d observations whose
two spatial sides are >= 36 (the smallest the stack accepts; channel-last when the last axis is
<= 4 and the first is not, else channel-first) and the MLPs otherwise. The conv stack sees all
channels (CleanRL feeds only the last of 4 stacked frames; pass a single frame to match).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.bonuses.base import RunningMeanStd, Transitions
from explora.models.encoders import layer_init
from explora.models.optim import clip_grad_norm

Encoder = Literal["auto", "mlp", "conv"]
_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


class _ToImage(nn.Module):
    """``[B, H * W * C]`` (channel-last) or ``[B, C * H * W]`` -> ``[B, C, H, W]``."""

    def __init__(self, shape: tuple[int, int, int], channel_last: bool) -> None:
        super().__init__()
        self.shape = shape
        self.channel_last = channel_last

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], *self.shape)
        return x.permute(0, 3, 1, 2) if self.channel_last else x


def _conv_trunk(image: _ToImage, channels: int) -> nn.Sequential:
    return nn.Sequential(
        image,
        layer_init(nn.Conv2d(channels, 32, kernel_size=8, stride=4)),
        nn.LeakyReLU(),
        layer_init(nn.Conv2d(32, 64, kernel_size=4, stride=2)),
        nn.LeakyReLU(),
        layer_init(nn.Conv2d(64, 64, kernel_size=3, stride=1)),
        nn.LeakyReLU(),
        nn.Flatten(),
    )


def _conv_out(size: int) -> int:
    for kernel, stride in ((8, 4), (4, 2), (3, 1)):
        size = (size - kernel) // stride + 1
    return size


def _image_layout(shape: tuple[int, ...]) -> tuple[tuple[int, int, int], bool] | None:
    """``(shape, channel_last)`` when the conv stack fits ``shape``, else None."""
    if len(shape) != 3:
        return None
    channel_last = shape[-1] <= 4 < shape[0]
    height, width = (shape[0], shape[1]) if channel_last else (shape[1], shape[2])
    if _conv_out(height) < 1 or _conv_out(width) < 1:
        return None
    return (shape[0], shape[1], shape[2]), channel_last


class RND(nn.Module):
    """Random network distillation on ``next_obs``; ``r = ||f_hat(x) - f(x)||^2``.

    Args:
        learning_rate: Adam step size of the predictor.
        update_epochs: passes over the rollout per ``update``.
        num_minibatches: predictor steps per epoch.
        update_proportion: fraction of the rollout the predictor trains on in each epoch.
        warmup_steps: random-policy steps per env the agent feeds to ``observe`` first.
        hidden_size: width of the hidden layers.
        feature_size: dimension of the target's random embedding.
        obs_clip: whitened inputs are clipped to ``[-obs_clip, obs_clip]``.
        max_grad_norm: gradient-norm clip of the predictor (None: no clipping).
        encoder: "mlp", "conv" (paper's stack) or "auto" (see the module docstring).

    ``setup`` builds the networks, optimiser and statistics; ``state_dict`` holds all of them
    (the optimiser in the module's extra state): call ``setup`` before ``load_state_dict``.

    Example:
        >>> import gymnasium as gym
        >>> rnd = RND(learning_rate=1e-3)
        >>> rnd.setup(gym.spaces.Box(0, 10, (7, 7, 3), dtype=np.uint8), gym.spaces.Discrete(7), 4)
        >>> obs = torch.randint(0, 10, (8, 4, 7, 7, 3), dtype=torch.uint8)
        >>> batch = Transitions(obs, torch.zeros(8, 4), obs, torch.zeros(8, 4),
        ...     torch.zeros(8, 4, dtype=torch.bool), torch.zeros(8, 4, dtype=torch.bool))
        >>> rnd.compute(batch).shape
        torch.Size([8, 4])
        >>> sorted(rnd.update(batch))
        ['losses/rnd']
    """

    def __init__(
        self,
        *,
        learning_rate: float = 1e-4,
        update_epochs: int = 4,
        num_minibatches: int = 4,
        update_proportion: float = 0.25,
        warmup_steps: int = 128,
        hidden_size: int = 256,
        feature_size: int = 128,
        obs_clip: float = 5.0,
        max_grad_norm: float | None = 0.5,
        encoder: Encoder = "auto",
    ) -> None:
        super().__init__()
        if not 0.0 < update_proportion <= 1.0:
            raise ValueError(f"update_proportion must be in (0, 1], got {update_proportion}")
        if encoder not in ("auto", "mlp", "conv"):
            raise ValueError(f"unknown encoder {encoder!r}; choose one of: auto, conv, mlp")
        if min(update_epochs, num_minibatches, hidden_size, feature_size) < 1:
            raise ValueError(
                "update_epochs, num_minibatches, hidden_size and feature_size must be >= 1"
            )
        self.learning_rate = learning_rate
        self.update_epochs = update_epochs
        self.num_minibatches = num_minibatches
        self.update_proportion = update_proportion
        self.warmup_steps = warmup_steps
        self.hidden_size = hidden_size
        self.feature_size = feature_size
        self.obs_clip = obs_clip
        self.max_grad_norm = max_grad_norm
        self.encoder = encoder
        self.episodic = False
        self._pending: list[Tensor] = []
        self._observed = 0
        self.input_dim = 0
        self.target: nn.Module | None = None
        self.predictor: nn.Module | None = None
        self.obs_rms: RunningMeanStd | None = None
        self.staged_rms: RunningMeanStd | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build target, predictor, optimiser and observation statistics for this space."""
        space = observation_space
        if not isinstance(space, _SPACES):
            raise ValueError(
                f"rnd cannot take observations from {type(space).__name__}; accepted spaces: "
                "Box, Discrete, MultiDiscrete, MultiBinary"
            )
        shape = tuple(int(d) for d in space.shape) if space.shape is not None else ()
        self.input_dim = int(np.prod(shape)) if shape else 1
        layout = _image_layout(shape)
        if self.encoder == "conv" and layout is None:
            raise ValueError(
                f"encoder='conv' needs a 3-d image observation with spatial sides >= 36, got "
                f"shape {shape}; use encoder='mlp' or 'auto'"
            )
        hidden, features = self.hidden_size, self.feature_size
        if layout is not None and self.encoder in ("auto", "conv"):
            image_shape, channel_last = layout
            channels = image_shape[2] if channel_last else image_shape[0]
            height, width = image_shape[:2] if channel_last else image_shape[1:]
            flat = 64 * _conv_out(height) * _conv_out(width)
            image = _ToImage(image_shape, channel_last)
            self.target = nn.Sequential(
                _conv_trunk(image, channels), layer_init(nn.Linear(flat, features))
            )
            self.predictor = nn.Sequential(
                _conv_trunk(image, channels),
                layer_init(nn.Linear(flat, hidden)),
                nn.ReLU(),
                layer_init(nn.Linear(hidden, hidden)),
                nn.ReLU(),
                layer_init(nn.Linear(hidden, features)),
            )
        else:
            dim = self.input_dim
            self.target = nn.Sequential(
                layer_init(nn.Linear(dim, hidden)),
                nn.LeakyReLU(),
                layer_init(nn.Linear(hidden, features)),
            )
            self.predictor = nn.Sequential(
                layer_init(nn.Linear(dim, hidden)),
                nn.LeakyReLU(),
                layer_init(nn.Linear(hidden, hidden)),
                nn.ReLU(),
                layer_init(nn.Linear(hidden, features)),
            )
        self.target.requires_grad_(False)
        self.obs_rms = RunningMeanStd(shape=(self.input_dim,))
        # Moments of the steps observed since the last fold, not yet in obs_rms (no prior).
        self.staged_rms = RunningMeanStd(shape=(self.input_dim,), epsilon=0.0)
        self._pending = []
        self._observed = 0
        self.optimizer = torch.optim.Adam(
            self.predictor.parameters(), lr=self.learning_rate, eps=1e-5, fused=True
        )
        # Its own generator for minibatch sampling, seeded from torch's global one: ``update``
        # may run on another thread than the agent's (Bonus.update).
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(0, 2**62, ())))

    def _parts(self) -> tuple[nn.Module, nn.Module, RunningMeanStd, torch.optim.Optimizer]:
        if self.target is None or self.predictor is None or self.obs_rms is None:
            raise RuntimeError("call setup() before using RND")
        assert self.optimizer is not None
        return self.target, self.predictor, self.obs_rms, self.optimizer

    def _flat(self, obs: Tensor) -> Tensor:
        """``[T, N, *obs_shape]`` -> float32 ``[T * N, D]`` on the networks' device."""
        device = self.obs_rms.mean.device if self.obs_rms is not None else obs.device
        rows = int(obs.shape[0]) * int(obs.shape[1])
        return obs.reshape(rows, self.input_dim).to(device=device, dtype=torch.float32)

    def inputs(self, obs: Tensor) -> Tensor:
        """Whitened, clipped network inputs: ``[T, N, *obs_shape]`` -> float32 ``[T * N, D]``,
        with the statistics as they are (steps observed since the last ``flush`` are not in)."""
        _, _, obs_rms, _ = self._parts()
        return obs_rms.normalize(self._flat(obs), clip=self.obs_clip)

    def _stage(self) -> None:
        """Move the pending steps into ``staged_rms``, in one batch (per step costs more)."""
        if self._pending and self.training:  # in eval mode nothing moves (nothing is pending)
            assert self.staged_rms is not None
            self.staged_rms.update(torch.cat(self._pending))
            self._pending = []

    def flush(self) -> None:
        """Fold every step observed so far into the observation statistics. ``update`` calls
        it first, and ``observe`` at the end of the warm-up; ``compute`` does not."""
        _, _, obs_rms, _ = self._parts()
        staged = self.staged_rms
        assert staged is not None
        self._stage()
        if self.training and float(staged.count) > 0:
            obs_rms.update_from_moments(staged.mean, staged.var, float(staged.count))
            staged.mean.zero_()
            staged.var.fill_(1.0)
            staged.count.zero_()

    def observe(self, step: Transitions) -> None:
        """Note ``step.next_obs`` ``[1, N, *obs_shape]`` for the observation statistics (a no-op
        in eval mode). The steps are folded in by the next ``update``, after the ``compute``
        that scores them; the first ``warmup_steps`` steps (the agent's random warm-up) as soon
        as the last of them is observed."""
        self._parts()
        if not self.training:
            return
        self._pending.append(self._flat(step.next_obs))
        self._observed += 1
        if self._observed == self.warmup_steps:
            self.flush()
        elif len(self._pending) >= 128:
            self._stage()

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """Squared prediction error on ``batch.next_obs``, summed over features: ``[T, N]``, on
        ``batch.next_obs``'s device (whatever device RND's networks are on).

        The inputs are whitened with the statistics as they were before the steps observed
        since the last ``update`` (the rollout being scored): the paper's order."""
        target, predictor, _, _ = self._parts()
        x = self.inputs(batch.next_obs)
        error = (predictor(x) - target(x)).square().sum(dim=-1)
        return error.reshape(batch.shape).to(device=batch.next_obs.device, dtype=torch.float32)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train the predictor on ``batch.next_obs`` ``[T, N, *obs_shape]``; returns the mean loss.

        Each of ``update_epochs`` epochs draws ``round(update_proportion * T * N)`` samples
        without replacement and takes ``num_minibatches`` Adam steps on them.
        """
        target, predictor, _, optimizer = self._parts()
        self.flush()  # the rollout's steps join the statistics before the predictor sees them
        with torch.no_grad():
            x = self.inputs(batch.next_obs)
            goals = target(x)  # fixed network, fixed inputs: one pass serves every epoch
        params = list(predictor.parameters())
        total = x.shape[0]
        keep = max(1, round(self.update_proportion * total))
        losses = []
        for _ in range(self.update_epochs):
            chosen = torch.randperm(total, generator=self.generator)[:keep].to(x.device)
            for idx in chosen.chunk(self.num_minibatches):
                loss = nn.functional.mse_loss(predictor(x[idx]), goals[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.max_grad_norm is not None:
                    clip_grad_norm(params, self.max_grad_norm)
                optimizer.step()
                losses.append(loss.detach())
        return {"losses/rnd": float(torch.stack(losses).mean())}

    def get_extra_state(self) -> dict[str, Any]:
        # A checkpoint holds every observed step: the pending ones in staged_rms, still apart
        # from obs_rms, so a resumed run scores its rollout as the uninterrupted run does.
        self._stage()
        return {
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "generator": self.generator.get_state(),
            "observed": self._observed,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        # Checkpoints from before the count existed were written after the warm-up.
        self._observed = int(state.get("observed", self.warmup_steps))
        if state.get("generator") is not None:
            self.generator.set_state(state["generator"])
        if state.get("optimizer") is not None:
            _, _, _, optimizer = self._parts()
            # Optimizer.load_state_dict keeps the given moment tensors (same device and dtype):
            # copy them so two bonuses loaded from one state do not share Adam's state.
            optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
