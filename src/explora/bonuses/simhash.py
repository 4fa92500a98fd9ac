"""SimHash counts (Tang et al. 2017, "#Exploration: A Study of Count-Based Exploration for Deep
Reinforcement Learning", NeurIPS; official code ``HashingBonusEvaluator``).

Each reached state ``s'`` is hashed to a k-bit code by a fixed random projection (SimHash,
Charikar 2002), the code is counted in a count-min sketch, and

    code(s') = sign(A g(s') + b),   A ~ N(0, 1)^(k x D) fixed,   bit i = 1  iff  (A g + b)_i >= 0
    r(s')    = beta / sqrt(n(code(s')))

with ``n`` the sketch's count, which includes the current visit (``observe`` runs before
``compute``; a code never observed counts as 1). Nearby states share most bits, so the code
length k sets the granularity: too small merges distinct states, too large makes every state
unique. The paper's hash has ``b = 0`` and a raw ``g``.

``g(s)`` and ``b``, the preprocessing:
    * Discrete(n): one-hot of size n; MultiDiscrete: concatenated one-hots; ``b = 0`` (the
      paper's). Each value is its own direction, so distinct values get independent codes.
    * Box and MultiBinary (deviation): the flattened observation whitened per feature,
      ``g = (s - mu) / sigma``, with the mean and std of the first ``warmup_steps`` observed
      steps (the agent's random-policy warm-up; those steps are not counted), then frozen, so
      codes never drift. A feature the warm-up never saw vary gets the smallest std among those
      that did (it is at least as rare). Hyperplane i passes through ``offset_scale * x_i``, x_i
      a whitened warm-up observation drawn at random (a different one per hyperplane):
      ``b_i = -offset_scale * a_i . x_i``.
      Why: with raw inputs and hyperplanes through the origin the code sees only the direction
      of ``s``. On MountainCar-v0 (2-d: position in [-1.2, 0.6], velocity in [-0.07, 0.07]) all
      2048 observations of a random warm-up (16 envs x 128 steps) shared ONE code, the whole
      state box (a 200 x 200 grid) fell into 124 codes, and an energy-pumping trajectory to the
      goal (122 states) into 16, so the count never grew with the car's energy. Whitening
      alone (hyperplanes through the warm-up's mean) gives 128 angular sectors around the start
      state, which the trajectory, a spiral around it, crosses again at every energy. Offsets
      cut the plane into cells: 1235 over the box with ``offset_scale`` 2. Learning, measured on
      MountainCar-v0 with PPO (16 envs x 32 steps, minibatch 128, ent_coef 0.05, intrinsic
      scale ``DiscountedReturnStd(horizon=2048)``, 150k frames; episodes that reached the goal),
      the policy seeing observations rescaled to [-1, 1] and the bonus the raw ones: this hash
      0 and 41 on seeds 0, 1; the paper's (``warmup_steps=0``) 0 and 0 (RND: 38, 38). With
      observations rescaled for the bonus too (seeds 0-3): this hash 0, 34, 5, 0, with
      ``offset_scale`` 3: 64, 0, 0, 3; the paper's 0, 0, 0, 0; plain PPO 0, 0, 0, 0. So SimHash
      now reaches the goal where the paper's hash never did in these runs, but less reliably
      than RND on this task (it finds the goal at 115-135k frames, near the budget's end).
      Offsets drawn as N(0, I) points instead of warm-up observations worked as well on
      MountainCar but merged one-hot inputs: on DeepSea-20 (uint8 one-hot 20 x 20) they left
      159 distinct codes for the 210 reachable cells; warm-up points with the rare-feature
      floor keep all 210 (the paper's hash: 210).
      MiniGrid's symbolic views are not hurt: on 2000 random DoorKey-8x8 views (453 distinct),
      k = 64, the code stayed the same when one cell turned into a key 0.8% of the time with
      this hash and 0.4% with the paper's, and the views got 451 and 446 distinct codes
      (``offset_scale`` 3: 1.9%, 446; 1: 0.4%, 453).
Unlike the official code, which takes ``np.sign`` (0 for a zero projection, a third value in
the key), sign(0) maps to bit 1 here.

Defaults:
    num_bits (k) = 64 (a choice, not the paper's single value). Tang et al. use k = 32 on the
        rllab continuous-control tasks (recalled from the paper's appendix (?), not re-checked);
        the official Atari sweep tries k from 16 to 512, and the official evaluator's
        constructor default is 128. Our main targets are MiniGrid's symbolic 7x7x3 views, where
        identical views always share a code, so the risk is merging distinct views: measured on
        MiniGrid-like views (empty/wall cells, one cell turned into a key), the code did not
        change 17% of the time at k = 32, 3% at k = 64, 0.2% at k = 128 (the paper's raw hash).
    beta = 0.01: the paper's bonus coefficient (rllab and Atari).
    moduli = six primes just below 10^6 (official code ``bucket_sizes``), see ``sketch.py``.
    seed = None: A is drawn from torch's global generator, so it follows the run's seed; pass
        an int to fix A independently of it.
    warmup_steps = 128 per env, as RND's (a random policy's rollout length); 0 is the paper's
        hash.
    offset_scale = 2 (ours; measured above): 3 did as well on MountainCar and merged more
        MiniGrid views. 1 keeps the hyperplanes within about a warm-up std of the start: in an
        earlier variant (offsets through N(0, I) points, rescaled inputs) SimHash then reached
        the MountainCar goal in 0 of 2 runs (seed 0, 200k frames, two PPO settings), against
        3 of 4 seeds with 2 and 4 of 4 with 3 (160k frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.bonuses.base import RunningMeanStd, Transitions
from explora.bonuses.sketch import TANG_PRIMES, CountMinSketch


class SimHash(nn.Module):
    """Counts of SimHash codes of ``next_obs`` in a count-min sketch; ``r = beta / sqrt(n)``.

    Args:
        num_bits: code length k.
        beta: bonus scale.
        moduli: the count-min sketch's row moduli (one table row each).
        seed: seed of the projection matrix A; None draws it from torch's global generator.
        warmup_steps: steps (per env) whose observations fix the whitening and the offsets of
            Box / MultiBinary inputs; they are not counted. 0: raw inputs and hyperplanes
            through the origin (the paper's).
        offset_scale: hyperplane i passes through ``offset_scale`` times a whitened warm-up
            observation; 0: through the warm-up's mean.

    ``projection`` ``[k, D]``, ``offsets`` ``[k]``, the whitening ``center`` and ``scale``
    ``[D]`` and the sketch's table are buffers, built by ``setup``: call ``setup`` before
    ``load_state_dict``. In eval mode ``observe`` neither counts nor calibrates.

    Example:
        >>> import gymnasium as gym
        >>> bonus = SimHash(num_bits=16, seed=0)
        >>> bonus.setup(gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Discrete(2), num_envs=2)
        >>> bonus.codes(torch.ones(3, 2, 4)).shape   # [T * N, k]
        torch.Size([6, 16])
    """

    projection: Tensor
    offsets: Tensor
    center: Tensor
    scale: Tensor

    def __init__(
        self,
        *,
        num_bits: int = 64,
        beta: float = 0.01,
        moduli: Sequence[int] = TANG_PRIMES,
        seed: int | None = None,
        warmup_steps: int = 128,
        offset_scale: float = 2.0,
    ) -> None:
        super().__init__()
        if num_bits < 1:
            raise ValueError(f"num_bits must be >= 1, got {num_bits}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if offset_scale < 0:
            raise ValueError(f"offset_scale must be >= 0, got {offset_scale}")
        self.num_bits = num_bits
        self.beta = beta
        self.moduli = tuple(int(p) for p in moduli)
        self.seed = seed
        self.warmup_steps = warmup_steps
        self.offset_scale = offset_scale
        self.episodic = False
        self._space: gym.Space | None = None
        self._whiten = False
        self._observed = 0
        self._sample_keys = torch.empty(0)
        self._sample = torch.empty(0, 0)
        self._sampler = torch.Generator()
        self.sketch: CountMinSketch | None = None
        self.obs_rms: RunningMeanStd | None = None

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Draw A ``[k, D]`` for this observation space and build an empty sketch."""
        space = observation_space
        if isinstance(space, gym.spaces.Discrete):
            dim = int(space.n)
        elif isinstance(space, gym.spaces.MultiDiscrete):
            dim = int(np.sum(space.nvec))
        elif isinstance(space, gym.spaces.Box | gym.spaces.MultiBinary):
            dim = int(np.prod(space.shape))
        else:
            raise ValueError(
                f"simhash cannot take observations from {type(space).__name__}; accepted "
                "spaces: Box, Discrete, MultiDiscrete, MultiBinary"
            )
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        projection = torch.randn(self.num_bits, dim, generator=generator)
        # Box / MultiBinary inputs are whitened with statistics fixed at the end of the warm-up;
        # the hyperplanes then get their offsets (zero until then, and for one-hot inputs).
        self._whiten = self.warmup_steps > 0 and not isinstance(
            space, gym.spaces.Discrete | gym.spaces.MultiDiscrete
        )
        self._space = space
        self.register_buffer("projection", projection)
        self.register_buffer("offsets", torch.zeros(self.num_bits))
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.obs_rms = RunningMeanStd(shape=(dim,), epsilon=0.0)
        # A uniform sample of the warm-up's observations (the num_bits with the smallest random
        # keys), whose points the hyperplanes will pass through.
        self._sample_keys = torch.empty(0)
        self._sample = torch.empty(0, dim)
        self._sampler = torch.Generator()
        self._sampler.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)))
        self._observed = 0
        self.sketch = CountMinSketch(self.num_bits, self.moduli)

    def features(self, obs: Tensor) -> Tensor:
        """``g(s)``: ``[T, N, *obs_shape]`` -> float32 ``[T * N, D]`` (see the module docstring)."""
        space = self._space
        if space is None:
            raise RuntimeError("call setup() before using SimHash")
        flat = obs.reshape(int(obs.shape[0]) * int(obs.shape[1]), -1).to(self.projection.device)
        if isinstance(space, gym.spaces.Discrete):
            values = flat[:, 0].long() - int(space.start)
            return nn.functional.one_hot(values, int(space.n)).to(torch.float32)
        if isinstance(space, gym.spaces.MultiDiscrete):
            nvec = np.asarray(space.nvec).reshape(-1)
            start = np.asarray(space.start).reshape(-1)
            values = flat.long() - torch.as_tensor(start, device=flat.device)
            parts = [
                nn.functional.one_hot(values[:, i], int(n)) for i, n in enumerate(nvec.tolist())
            ]
            return torch.cat(parts, dim=1).to(torch.float32)
        flat = flat.to(torch.float32)
        return (flat - self.center) / self.scale if self._whiten else flat

    @torch.no_grad()
    def codes(self, obs: Tensor) -> Tensor:
        """Binary codes of ``obs`` ``[T, N, *obs_shape]``: bool ``[T * N, k]``,
        bit = (A g + b >= 0)."""
        return self.features(obs) @ self.projection.T + self.offsets >= 0

    @property
    def calibrating(self) -> bool:
        """True while the warm-up's steps are still fixing the whitening of ``g``."""
        return self._whiten and self._observed < self.warmup_steps

    def observe(self, step: Transitions) -> None:
        """Count the code of each ``step.next_obs`` ``[1, N, *obs_shape]``; during the warm-up
        (the first ``warmup_steps`` steps) gather the whitening statistics instead."""
        if not self.training:
            return
        assert self.sketch is not None and self.obs_rms is not None, "call setup() first"
        if self.calibrating:
            self._calibrate(self.features(step.next_obs))
            return
        self.sketch.add(self.codes(step.next_obs))

    def _calibrate(self, rows: Tensor) -> None:
        """Fold one warm-up step's raw ``g`` rows ``[N, D]`` into the whitening statistics and
        the sample; after the last one, fix the whitening and the hyperplanes' offsets."""
        assert self.obs_rms is not None
        self.obs_rms.update(rows.to(torch.float64))
        keys = torch.cat([self._sample_keys, torch.rand(len(rows), generator=self._sampler)])
        sample = torch.cat([self._sample.to(rows.device), rows])
        kept = keys.argsort()[: self.num_bits]
        self._sample_keys, self._sample = keys[kept], sample[kept.to(rows.device)]
        self._observed += 1
        if self._observed < self.warmup_steps:
            return
        var = self.obs_rms.var.to(self.scale.dtype)
        varied = var > 1e-12
        # a feature the warm-up never saw vary counts as rare as the rarest one that did
        floor = var[varied].min() if bool(varied.any()) else torch.ones(())
        self.center.copy_(self.obs_rms.mean)
        self.scale.copy_(torch.where(varied, var, floor).sqrt())
        points = (self._sample - self.center) / self.scale  # whitened warm-up observations
        points = points[torch.arange(self.num_bits) % len(points)]
        # hyperplane i passes through offset_scale * points[i]: A g + b = A (g - that point)
        self.offsets.copy_(-self.offset_scale * (self.projection * points).sum(dim=1))
        self._sample_keys, self._sample = torch.empty(0), self._sample[:0]

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``beta / sqrt(max(n(code(next_obs)), 1))``, float32 ``[T, N]``."""
        assert self.sketch is not None, "call setup() before compute()"
        n = self.sketch.count(self.codes(batch.next_obs)).clamp_min(1).to(torch.float32)
        return (self.beta * n.rsqrt()).reshape(batch.shape)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Nothing to train. Logs the occupied buckets of the fullest sketch row, a lower bound
        on the number of distinct codes seen."""
        assert self.sketch is not None, "call setup() before update()"
        occupied = (self.sketch.table > 0).sum(dim=1).max()
        return {"bonus/occupied_buckets": float(occupied)}

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "observed": self._observed,
            "sample_keys": self._sample_keys.clone(),
            "sample": self._sample.clone(),
            "sampler": self._sampler.get_state(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._observed = int(state.get("observed", self.warmup_steps))
        if "sample" in state:
            self._sample_keys = state["sample_keys"].clone()
            self._sample = state["sample"].clone()
            self._sampler.set_state(state["sampler"])
