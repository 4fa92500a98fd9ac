"""SimHash counts (Tang et al. 2017, "#Exploration: A Study of Count-Based Exploration for Deep
Reinforcement Learning", NeurIPS; official code ``HashingBonusEvaluator``).

Each reached state ``s'`` is hashed to a k-bit code by a fixed random projection (SimHash,
Charikar 2002), the code is counted in a count-min sketch, and

    code(s') = sign(A g(s')),   A ~ N(0, 1)^(k x D) fixed,   bit i = 1  iff  (A g(s'))_i >= 0
    r(s')    = beta / sqrt(n(code(s')))

with ``n`` the sketch's count, which includes the current visit (``observe`` runs before
``compute``; a code never observed counts as 1). Nearby states (small angle between their
``g``) share most bits, so the code length k sets the granularity: too small merges distinct
states, too large makes every state unique.

``g(s)``, the preprocessing:
    * Box and MultiBinary: the observation flattened to float32, unscaled. Any positive scale
      is a no-op for ``sign(A g)``; centring would not be: centring on the declared Box bounds
      squeezes MiniGrid's symbolic image (values 0..10 declared as 0..255) into one direction,
      and centring on running statistics makes the codes drift as the statistics move.
      Because the hyperplanes pass through the origin, the code only sees the *direction* of
      ``g``: for a low-dimensional Box (e.g. integer coordinates ``[row, col]``) every point on
      a ray from the origin gets the same code -- use ``count`` there.
    * Discrete(n): one-hot of size n; MultiDiscrete: concatenated one-hots. Each value becomes
      its own direction, so distinct values get independent codes.
Unlike the official code, which takes ``np.sign`` (0 for a zero projection, a third value in
the key), sign(0) maps to bit 1 here.

Defaults:
    num_bits (k) = 64 (a choice, not the paper's single value). Tang et al. use k = 32 on the
        rllab continuous-control tasks (recalled from the paper's appendix (?), not re-checked);
        the official Atari sweep tries k from 16 to 512, and the official evaluator's
        constructor default is 128. Our main targets are MiniGrid's symbolic 7x7x3 views, where
        identical views always share a code, so the risk is merging distinct views: measured on
        MiniGrid-like views (empty/wall cells, one cell turned into a key), the code did not
        change 17% of the time at k = 32, 3% at k = 64, 0.2% at k = 128.
    beta = 0.01: the paper's bonus coefficient (rllab and Atari).
    moduli = six primes just below 10^6 (official code ``bucket_sizes``), see ``sketch.py``.
    seed = None: A is drawn from torch's global generator, so it follows the run's seed; pass
        an int to fix A independently of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.bonuses.base import Transitions
from explora.bonuses.sketch import TANG_PRIMES, CountMinSketch


class SimHash(nn.Module):
    """Counts of SimHash codes of ``next_obs`` in a count-min sketch; ``r = beta / sqrt(n)``.

    Args:
        num_bits: code length k.
        beta: bonus scale.
        moduli: the count-min sketch's row moduli (one table row each).
        seed: seed of the projection matrix A; None draws it from torch's global generator.

    ``projection`` ``[k, D]`` and the sketch's table are buffers, built by ``setup``: call
    ``setup`` before ``load_state_dict``. In eval mode ``observe`` does not count.

    Example:
        >>> import gymnasium as gym
        >>> bonus = SimHash(num_bits=16, seed=0)
        >>> bonus.setup(gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Discrete(2), num_envs=2)
        >>> bonus.codes(torch.ones(3, 2, 4)).shape   # [T * N, k]
        torch.Size([6, 16])
    """

    projection: Tensor

    def __init__(
        self,
        *,
        num_bits: int = 64,
        beta: float = 0.01,
        moduli: Sequence[int] = TANG_PRIMES,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if num_bits < 1:
            raise ValueError(f"num_bits must be >= 1, got {num_bits}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.num_bits = num_bits
        self.beta = beta
        self.moduli = tuple(int(p) for p in moduli)
        self.seed = seed
        self.episodic = False
        self.warmup_steps = 0
        self._space: gym.Space | None = None
        self.sketch: CountMinSketch | None = None

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
        self._space = space
        self.register_buffer("projection", projection)
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
        return flat.to(torch.float32)

    @torch.no_grad()
    def codes(self, obs: Tensor) -> Tensor:
        """Binary codes of ``obs`` ``[T, N, *obs_shape]``: bool ``[T * N, k]``, bit = (A g >= 0)."""
        return self.features(obs) @ self.projection.T >= 0

    def observe(self, step: Transitions) -> None:
        """Count the code of each ``step.next_obs`` ``[1, N, *obs_shape]``."""
        if not self.training:
            return
        assert self.sketch is not None, "call setup() before observe()"
        self.sketch.add(self.codes(step.next_obs))

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
