"""Counts over VQ-VAE codes: a learned discretisation of observations as counting cells.

The cell of an observation is its code in a VQ-VAE with an EMA codebook (van den Oord, Vinyals &
Kavukcuoglu 2017, "Neural Discrete Representation Learning", NeurIPS; the model is
``explora.models.vqvae``), and the bonus is the count-based bonus of that cell (the MBIE-EB form
of Strehl & Littman 2008, "An analysis of model-based Interval Estimation for Markov Decision
Processes", as in Tang et al. 2017, "#Exploration: A Study of Count-Based Exploration for Deep
Reinforcement Learning", whose learned hash this replaces with a VQ code). LECO (Jo, Kim, Nam,
Kwon, Rho, Kim & Lee 2022, "LECO: Learnable Episodic Count for Task-Specific Intrinsic Reward",
NeurIPS) counts episodically over a small grid of VQ codes; its official repository held only a
README ("The code will be released soon") when read, so no official defaults exist for this
method, and every default below is explora's own choice or sonnet's VQ-VAE default:

    cell(s)   = (k_1, .., k_G) = nearest codebook entries of the encoder's G output vectors
    lifelong  r(s') = beta / sqrt(N(cell(s')))
    episodic  r(s') = beta / sqrt(n_ep(cell(s')))        n_ep: count in this env's episode
    both      r(s') = beta / sqrt(n_ep * N)   (combine="product")
              r(s') = beta / sqrt(n_ep) + beta / sqrt(N)   (combine="sum")

counts including the visit being rewarded (so ``>= 1``). ``N`` is a direct table when a cell
has at most ``DENSE_BITS`` = 22 bits (``num_latents * ceil(log2 num_codes)``; 6 bits at the
defaults, exact), else a count-min sketch over Tang et al.'s six primes near 10^6
(``explora.bonuses.sketch``). ``n_ep`` is kept per env copy (``EpisodicCounts``) and reset after
the step whose ``next_obs`` ends that env's episode, for that env only (and by
``start_new_episodes``).

Codes drift as the VQ-VAE trains: a count made in one cell now belongs to a view that may have
moved. ``drift`` chooses how the lifelong table follows:
    recount: keep every distinct view seen and its visit count (a table keyed by the view's
        bytes) and, after each update, rebuild the table by pushing all of them through the
        current codes: the counts are then exactly the visits of each cell *as the codes are
        now*. Needs observations that repeat exactly (categorical spaces); memory grows with
        the distinct views (DoorKey-8x8: 17,053 distinct views in 500,000 frames of PPO with
        first-visit counts, measured, ~2.5 MB of views).
    online: count each view in the cell it had when observed, never revised.
    freeze: as online, and stop training the VQ-VAE after ``freeze_after`` updates.
    auto (default): recount where it works (categorical spaces), else online.
Measured (``/tmp`` experiment with an exact shadow table, MiniGrid-Empty-16x16, 61,440 frames,
lifelong mode, ``dead_after=20``, ``freeze_after=10``, seeds 0 and 1): the share of visits
whose cell's count was off by more than 2x from the exact count of the views now in that cell
was 54% and 49% with online, 13% and 8% with freeze, 0 with recount (by construction).

Defaults and where they come from:
    beta = 1.0: PPO divides the raw bonus by the running std of its discounted return, so beta
        cancels there; scale it for DQN.
    mode = "lifelong": the count bonus of Tang et al.; "episodic" is LECO's (and NGU's)
        episodic count, "both" combines them.
    combine = "product": the episodic term scaled by a lifelong one, as NGU scales its
        episodic reward by a lifelong modulator (no measurement preferred either form).
    num_codes = 64, code_dim = 16, num_latents = 1, hidden_size = 128: chosen with
        ``benchmarks/generative/vqvae_quality.py`` (DoorKey-8x8 random-policy views, 3,000 Adam
        steps of 512): K = 64 gave 63 distinct cells on 1,417 distinct test views, perplexity
        50.6, 97% of elements reconstructed; K = 512 gave 422 cells, nearly a cell per view
        (exact view counts again). See ``explora.models.vqvae`` for the model's defaults
        (decay 0.99, commitment 0.25, Adam 3e-4: sonnet's VQ-VAE example).
    dead_after = 20 training steps (the VQ-VAE's own default is 200 steps). The bonus takes
        ``train_steps = 1`` step per rollout, so 200 would restart a dead code only after
        200 rollouts (~400,000 frames with the MiniGrid preset). Measured offline (300 steps
        of 512 views from 2,048-view rollouts of random-policy DoorKey-8x8 views, probe of
        512 views): dead_after 20 ended with 47 cells in use (perplexity 32.8, 205 restarts),
        200 with 21 cells (13.5), never restarting with 5 cells (4.0). The restarts cost drift
        early (a probe view changed cell in 19.6% of the first 50 updates against 7.2%), which
        recount absorbs; later the drift was 1.7% against 3.1%.
    batch_size = 512, train_steps = 1: one Adam step on 512 views drawn from each rollout
        (explora's; a rollout of the MiniGrid preset is 2,048 views).
    warmup_steps = 32 (random-policy steps per env the agent feeds first: one rollout of the
        MiniGrid preset) and warmup_train_steps = 100: the VQ-VAE is fitted on those views
        before the first bonus, so the first counts are not made through an untrained,
        near-constant encoder; the counts of the warm-up are then redone through the fitted
        codes and every env's episode counts start afresh (their cells came from the untrained
        model).
    freeze_after = 100 updates (drift="freeze" only), probe_size = 512 views (diagnostics:
        ``vq/probe_drift`` is the share of a fixed probe whose cell changed in an update).

Logged by ``update``: ``vq/used_codes``, ``vq/perplexity``, ``vq/dead_restarts``,
``vq/probe_drift``, ``vq/cells`` (non-empty table entries), ``vq/reconstruction``,
``vq/recount_views``; ``history`` keeps them per update for plots, ``code_usage`` and
``code_map`` draw the codebook.

Cost: one encoder pass per observed step; an update adds ``train_steps`` Adam steps and (recount)
one encoder pass over every distinct view seen so far. Rough, one run each on this shared 2-core
machine, 98,304 frames of MiniGrid-DoorKey-8x8, seed 0: plain PPO 16,470 frames/s, episodic
mode 12,569, lifelong mode 7,930 (about 2.1x slower; not profiled -- its updates also re-encode
every distinct view seen, for the recount).

Learning test (``tests/learning/test_generative_counts_learning.py``): on MiniGrid-Empty-16x16,
28,672 frames, ``VQCount(mode="episodic")`` visited 195 / 192 / 188 of 196 cells on seeds
0 / 1 / 2 against 180 / 181 / 176 for plain PPO (with ``dead_after=200``: 184 / 192 on seeds
0 / 1); with one code (no information: a bonus that decays along the episode) 184 / 188 / 190.
The test asserts seed 0; the codes' edge over one cell is small and not consistent across
seeds. The lifelong mode did not beat plain PPO there (161 / 139 cells on seeds 0 / 1 with
``dead_after=200``, 194 / 161 with 20), nor, in 61,440 frames, with online, recount or frozen
tables (189-196 cells against plain PPO's 196 / 195). On DoorKey-8x8 every run visits all 36
cells, so only success rates differ, with ``dead_after=20`` at 300,000 frames (seed 1) and
200,000 (seeds 2, 3): plain 0.20 / 0.0 / 0.30, episodic 0.23 / 1.0 / 0.33, lifelong 0.0 / - /
0.0, both (product) 0.47 / 0.17 / -, both (sum) 0.47 / 0.21 / -: too few seeds to rank modes.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.bonuses.base import Transitions
from explora.bonuses.sketch import TANG_PRIMES, CountMinSketch
from explora.bonuses.visits import EpisodicCounts, byte_keys
from explora.models.dynamics import check_space
from explora.models.vqvae import VQVAE
from explora.models.vqvae import code_map as _code_map

Mode = Literal["lifelong", "episodic", "both"]
Combine = Literal["product", "sum"]
Drift = Literal["auto", "recount", "online", "freeze"]
DENSE_BITS = 22  # cells of at most this many bits are counted exactly in a direct table
HISTORY_KEYS = (
    "update",
    "used_codes",
    "perplexity",
    "dead_restarts",
    "probe_drift",
    "reconstruction",
)


class VQCount(nn.Module):
    """Count bonus over the codes of a VQ-VAE trained on the observations (see the module
    docstring for the formula, the drift strategies and the measurements behind the defaults).

    Args:
        beta: bonus scale (1.0).
        mode: "lifelong" (default), "episodic" or "both".
        combine: how "both" joins the counts: "product" (default) or "sum".
        num_codes, code_dim, num_latents, hidden_size: the VQ-VAE's codebook size K (64),
            code size D (16), codes per observation G (1) and MLP width (128).
        decay, commitment, learning_rate: EMA decay (0.99), commitment beta (0.25) and Adam
            step size (3e-4), sonnet's.
        dead_after: training steps without use before a code is restarted (20; None: never).
        batch_size, train_steps: views per Adam step (512) and steps per ``update`` (1).
        drift: "auto" (default), "recount", "online" or "freeze".
        freeze_after: updates before training stops with drift="freeze" (100).
        warmup_steps, warmup_train_steps: random-policy steps per env observed before the first
            bonus (32), and Adam steps fitted on them (100).
        probe_size: views in the fixed probe of ``vq/probe_drift`` (512).

    ``setup`` accepts Box, Discrete, MultiDiscrete and MultiBinary observations and any action
    space, and raises ``ValueError`` naming the accepted spaces otherwise, or naming the
    strategies that work when drift="recount" meets a float observation space.

    Shapes: ``observe(step)`` reads ``step.next_obs`` ``[1, N, *obs_shape]`` and
    ``step.terminated``/``truncated`` ``[1, N]``; ``compute(batch)`` reads ``batch.next_obs``
    ``[T, N, *obs_shape]`` (episodic modes: the last T observed steps) and returns float32
    ``[T, N]`` without grad; ``update(batch)`` trains on ``batch.next_obs``.
    """

    def __init__(
        self,
        *,
        beta: float = 1.0,
        mode: Mode = "lifelong",
        combine: Combine = "product",
        num_codes: int = 64,
        code_dim: int = 16,
        num_latents: int = 1,
        hidden_size: int = 128,
        decay: float = 0.99,
        commitment: float = 0.25,
        learning_rate: float = 3e-4,
        dead_after: int | None = 20,
        batch_size: int = 512,
        train_steps: int = 1,
        drift: Drift = "auto",
        freeze_after: int = 100,
        warmup_steps: int = 32,
        warmup_train_steps: int = 100,
        probe_size: int = 512,
    ) -> None:
        super().__init__()
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if mode not in ("lifelong", "episodic", "both"):
            raise ValueError(f"unknown mode {mode!r}; choose one of: both, episodic, lifelong")
        if combine not in ("product", "sum"):
            raise ValueError(f"unknown combine {combine!r}; choose one of: product, sum")
        if drift not in ("auto", "recount", "online", "freeze"):
            raise ValueError(
                f"unknown drift {drift!r}; choose one of: auto, freeze, online, recount"
            )
        for name, value in (
            ("num_codes", num_codes),
            ("code_dim", code_dim),
            ("num_latents", num_latents),
            ("hidden_size", hidden_size),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, value in (
            ("train_steps", train_steps),
            ("warmup_steps", warmup_steps),
            ("warmup_train_steps", warmup_train_steps),
            ("probe_size", probe_size),
            ("freeze_after", freeze_after),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.beta = beta
        self.mode = mode
        self.combine = combine
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.num_latents = num_latents
        self.hidden_size = hidden_size
        self.decay = decay
        self.commitment = commitment
        self.learning_rate = learning_rate
        self.dead_after = dead_after
        self.batch_size = batch_size
        self.train_steps = train_steps
        self.drift = drift
        self.freeze_after = freeze_after
        self.warmup_steps = warmup_steps
        self.warmup_train_steps = warmup_train_steps
        self.probe_size = probe_size
        self.episodic = mode != "lifelong"
        self.strategy: str = "recount" if drift == "auto" else drift  # resolved by setup
        self.model: VQVAE | None = None
        self.sketch: CountMinSketch | None = None
        self.code_bits = max(1, math.ceil(math.log2(num_codes)))
        self.generator = torch.Generator()
        self._reset_state(num_envs=0)

    def _reset_state(self, num_envs: int) -> None:
        self._episodes = EpisodicCounts(max(num_envs, 1))
        self._pending: list[tuple[Tensor, Tensor]] = []  # per step: episodic counts, cell bits
        self._warmup: list[np.ndarray] = []  # next_obs of the warm-up steps
        self._stash: list[np.ndarray] = []  # next_obs since the last update (recount)
        self._view_keys = np.zeros(0, dtype=np.uint64)  # distinct views seen, sorted by key
        self._view_rows = np.zeros((0,), dtype=np.uint8)
        self._view_counts = np.zeros(0, dtype=np.int64)
        self._observed = 0
        self._updates = 0
        self._probe: Tensor | None = None
        self._probe_cells: Tensor | None = None
        self.history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}

    # ---- setup -----------------------------------------------------------------------------

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build the VQ-VAE for ``observation_space``, the count table and the episode state."""
        check_space(observation_space, "vqcount")
        self.model = VQVAE(
            observation_space,
            num_codes=self.num_codes,
            code_dim=self.code_dim,
            num_latents=self.num_latents,
            hidden_size=self.hidden_size,
            decay=self.decay,
            commitment=self.commitment,
            learning_rate=self.learning_rate,
            dead_after=self.dead_after,
            seed=int(torch.randint(0, 2**62, ())),
        )
        if self.drift == "recount" and not self.model.categorical:
            raise ValueError(
                f"vqcount's drift='recount' keeps every distinct observation, which only works "
                f"when observations repeat exactly (discrete or small-integer spaces), not for "
                f"{observation_space}; use drift='online' or 'freeze' (or 'auto')"
            )
        if self.drift == "auto":
            self.strategy = "recount" if self.model.categorical else "online"
        num_bits = self.num_latents * self.code_bits
        moduli = (2**num_bits,) if num_bits <= DENSE_BITS else TANG_PRIMES
        self.sketch = CountMinSketch(num_bits, moduli)
        self.obs_shape = tuple(int(d) for d in observation_space.shape or ())
        self.obs_dtype = observation_space.dtype
        self.num_envs = num_envs
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(0, 2**62, ())))
        self._reset_state(num_envs)
        self._view_rows = np.zeros((0, *self.obs_shape), dtype=self.obs_dtype)

    def _parts(self) -> tuple[VQVAE, CountMinSketch]:
        if self.model is None or self.sketch is None:
            raise RuntimeError("call setup() before using VQCount")
        return self.model, self.sketch

    # ---- cells -----------------------------------------------------------------------------

    def cells(self, obs: Tensor) -> Tensor:
        """Code tuple of each observation: ``[B, *obs_shape]`` -> int64 ``[B, num_latents]``."""
        model, _ = self._parts()
        return (
            torch.cat([model.codes(chunk) for chunk in obs.split(8192)])
            if len(obs)
            else (torch.zeros(0, self.num_latents, dtype=torch.int64))
        )

    def bits(self, cells: Tensor) -> Tensor:
        """``[B, G]`` codes -> bool ``[B, G * bits_per_code]``: the cell as the sketch's key."""
        shifts = torch.arange(self.code_bits, device=cells.device)
        return ((cells.unsqueeze(-1) >> shifts) & 1).bool().reshape(cells.shape[0], -1)

    def counts(self, obs: Tensor) -> Tensor:
        """Lifelong counts of the cells of ``obs`` ``[T, N, *obs_shape]``, int64 ``[T, N]``."""
        _, sketch = self._parts()
        flat = obs.reshape(-1, *obs.shape[2:])
        return sketch.count(self.bits(self.cells(flat))).reshape(obs.shape[0], obs.shape[1])

    def _recount(self, views: np.ndarray, weights: np.ndarray) -> None:
        """Rebuild the lifelong table from ``views`` ``[V, *obs_shape]`` seen ``weights`` times,
        through the current codes."""
        _, sketch = self._parts()
        sketch.table.zero_()
        if len(views) == 0:
            return
        idx = sketch.indices(self.bits(self.cells(torch.from_numpy(views))))  # [V, rows]
        rows = torch.arange(idx.shape[1]).expand_as(idx)
        values = torch.from_numpy(weights).to(sketch.table.dtype)
        values = values.unsqueeze(1).expand_as(idx)
        sketch.table.index_put_(
            (rows.reshape(-1), idx.reshape(-1)), values.reshape(-1), accumulate=True
        )

    def _merge_views(self, views: np.ndarray) -> None:
        """Fold ``views`` ``[B, *obs_shape]`` into the table of distinct views and their counts."""
        if len(views) == 0:
            return
        keys = byte_keys(views)
        ukeys, first, counts = np.unique(keys, return_index=True, return_counts=True)
        pos = np.searchsorted(self._view_keys, ukeys)
        held = len(self._view_keys)
        found = np.zeros(len(ukeys), dtype=bool)
        if held:
            found = (pos < held) & (self._view_keys[np.minimum(pos, held - 1)] == ukeys)
        np.add.at(self._view_counts, pos[found], counts[found])
        new = ~found
        if new.any():
            keys_all = np.concatenate([self._view_keys, ukeys[new]])
            rows_all = np.concatenate([self._view_rows, views[first[new]]])
            counts_all = np.concatenate([self._view_counts, counts[new]])
            order = np.argsort(keys_all, kind="stable")
            self._view_keys = keys_all[order]
            self._view_rows = rows_all[order]
            self._view_counts = counts_all[order]

    # ---- protocol --------------------------------------------------------------------------

    def start_new_episodes(self, envs: np.ndarray) -> None:
        """Forget the episodes of the env copies where ``envs`` ``[N]`` bool is True."""
        self._episodes.reset(np.asarray(envs, dtype=bool))

    def observe(self, step: Transitions) -> None:
        """Count the cell of each ``step.next_obs`` ``[1, N, *obs_shape]``: lifelong (not in eval
        mode) and within each env's episode; an env's episode counts are forgotten after the
        step that ends it."""
        _, sketch = self._parts()
        views = step.next_obs[0]
        cells = self.cells(views)
        bits = self.bits(cells)
        if self.training:
            sketch.add(bits)
            raw = views.detach().cpu().numpy()
            if self.strategy == "recount":
                self._stash.append(raw.copy())
            if self._observed < self.warmup_steps:
                self._warmup.append(raw.copy())
            self._observed += 1
        ep_counts = torch.from_numpy(self._episodes.add(byte_keys(cells.numpy())))
        ended = (step.terminated[0] | step.truncated[0]).cpu().numpy()
        self._episodes.reset(ended)
        if self.episodic:
            self._pending.append((ep_counts, bits))
        if self.training and self._observed == self.warmup_steps and self.warmup_steps > 0:
            self._fit_warmup()

    def _fit_warmup(self) -> None:
        """End of the random-policy warm-up: fit the model on its views, count them again
        through the fitted codes, and start the episodes afresh (their earlier cells came from
        the untrained model)."""
        model, _ = self._parts()
        views = torch.from_numpy(np.concatenate(self._warmup))
        for _ in range(self.warmup_train_steps):
            idx = torch.randint(0, len(views), (self.batch_size,), generator=self.generator)
            model.train_step(views[idx])
        if self.strategy == "recount":
            self._merge_views(np.concatenate(self._stash))
            self._stash = []
            self._recount(self._view_rows, self._view_counts)
        else:
            self._recount(views.numpy(), np.ones(len(views), dtype=np.int64))
        self._warmup = []
        self._episodes.reset(np.ones(self._episodes.num_envs, dtype=bool))

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """Bonus of each ``batch.next_obs`` ``[T, N, *obs_shape]``: ``[T, N]`` float32."""
        _, sketch = self._parts()
        steps, envs = batch.shape
        if not self.episodic:
            lifelong = self.counts(batch.next_obs).clamp_min(1).to(torch.float32)
            return self.beta * lifelong.rsqrt()
        if len(self._pending) < steps:
            raise RuntimeError(
                f"vqcount (mode={self.mode!r}) needs observe() on each of the batch's {steps} "
                f"steps before compute(); only {len(self._pending)} were observed"
            )
        recent = self._pending[-steps:]
        self._pending = []
        episodic = torch.stack([c for c, _ in recent]).to(torch.float32)  # [T, N]
        if self.mode == "episodic":
            return self.beta * episodic.rsqrt()
        bits = torch.cat([b for _, b in recent])
        lifelong = sketch.count(bits).clamp_min(1).to(torch.float32).reshape(steps, envs)
        if self.combine == "product":
            return self.beta * (episodic * lifelong).rsqrt()
        return self.beta * (episodic.rsqrt() + lifelong.rsqrt())

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train the VQ-VAE on ``batch.next_obs`` ``[T, N, *obs_shape]`` (``train_steps`` Adam
        steps on ``batch_size`` views drawn from it), then re-count if ``drift='recount'``;
        returns ``vq/*`` scalars."""
        model, sketch = self._parts()
        if not self.training:
            return {}
        views = batch.next_obs.reshape(-1, *batch.next_obs.shape[2:])
        if self._probe is None:
            rows = views.cpu().numpy()
            _, first = np.unique(byte_keys(rows), return_index=True)
            self._probe = views[torch.from_numpy(np.sort(first)[: self.probe_size])].clone()
            self._probe_cells = self.cells(self._probe)
        metrics: dict[str, float] = {}
        frozen = self.strategy == "freeze" and self._updates >= self.freeze_after
        if not frozen:
            for _ in range(self.train_steps):
                idx = torch.randint(0, len(views), (self.batch_size,), generator=self.generator)
                step_metrics = model.train_step(views[idx.to(views.device)])
                restarts = metrics.get("vq/dead_restarts", 0.0) + step_metrics["vq/dead_restarts"]
                metrics = {**step_metrics, "vq/dead_restarts": restarts}
        if self.strategy == "recount" and self._stash:
            self._merge_views(np.concatenate(self._stash))
            self._stash = []
            if not frozen:
                self._recount(self._view_rows, self._view_counts)
            metrics["vq/recount_views"] = float(len(self._view_keys))
        probe_cells = self.cells(self._probe)
        assert self._probe_cells is not None
        drift = float((probe_cells != self._probe_cells).any(dim=1).float().mean())
        self._probe_cells = probe_cells
        self._updates += 1
        if "vq/perplexity" not in metrics:  # frozen: describe the codes of this batch
            codes = self.cells(views[: self.batch_size])
            metrics["vq/perplexity"] = _perplexity(codes, self.num_codes)
            metrics["vq/used_codes"] = float(torch.unique(codes).numel())
            metrics["vq/dead_restarts"] = 0.0
        metrics["vq/probe_drift"] = drift
        metrics["vq/cells"] = float((sketch.table > 0).sum(dim=1).max())
        self.history["update"].append(float(self._updates))
        for key in HISTORY_KEYS[1:]:
            self.history[key].append(metrics.get(f"vq/{key}", float("nan")))
        return metrics

    # ---- pictures --------------------------------------------------------------------------

    def code_usage(self) -> Tensor:
        """The codebook's EMA cluster sizes N_k ``[K]`` (how much each code is used now)."""
        model, _ = self._parts()
        return model.quantizer.cluster_size.clone()

    def code_map(
        self, views: Tensor, positions: np.ndarray | Tensor, grid_shape: tuple[int, int]
    ) -> np.ndarray:
        """``[H, W, G]``: the most frequent cell of the ``views`` ``[B, *obs_shape]`` taken at
        each grid position ``positions`` ``[B, 2]`` (row, col); -1 where none was taken."""
        model, _ = self._parts()
        return _code_map(model, views, positions, grid_shape)

    # ---- state -----------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "episodes": self._episodes.state_dict(),
            "pending": [(c.clone(), b.clone()) for c, b in self._pending],
            "warmup": [w.copy() for w in self._warmup],
            "stash": [s.copy() for s in self._stash],
            "view_keys": self._view_keys.copy(),
            "view_rows": self._view_rows.copy(),
            "view_counts": self._view_counts.copy(),
            "observed": self._observed,
            "updates": self._updates,
            "probe": None if self._probe is None else self._probe.clone(),
            "probe_cells": None if self._probe_cells is None else self._probe_cells.clone(),
            "history": {k: list(v) for k, v in self.history.items()},
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._episodes.load_state_dict(state["episodes"])
        self._pending = [(c.clone(), b.clone()) for c, b in state["pending"]]
        self._warmup = [w.copy() for w in state["warmup"]]
        self._stash = [s.copy() for s in state["stash"]]
        self._view_keys = state["view_keys"].copy()
        self._view_rows = state["view_rows"].copy()
        self._view_counts = state["view_counts"].copy()
        self._observed = int(state["observed"])
        self._updates = int(state["updates"])
        self._probe = None if state["probe"] is None else state["probe"].clone()
        cells = state["probe_cells"]
        self._probe_cells = None if cells is None else cells.clone()
        self.history = {k: list(v) for k, v in state["history"].items()}


def _perplexity(codes: Tensor, num_codes: int) -> float:
    from explora.models.vqvae import perplexity

    return perplexity(codes, num_codes)
