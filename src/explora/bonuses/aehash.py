"""Counts of learned hash codes: AE-SimHash (Tang et al. 2017, "#Exploration: A Study of
Count-Based Exploration for Deep Reinforcement Learning", NeurIPS, section "Learned hash codes";
official code in the ``rllab-curriculum`` sandbox, ``sandbox/rein/algos/embedding_theano_par/
trpo_plus_lsh.py`` with the autoencoder of ``sandbox/rein/dynamics_models/bnn/conv_bnn_count.py``).

An autoencoder with a binary code layer (``explora.models.autoencoder.BinaryAutoencoder``)
learns a D-bit code b(s) of each state; the rounded code is counted in a count-min sketch
(``explora.bonuses.sketch``) and

    key(s')  = round(b(s'))                                   compress_bits = None
    key(s')  = sign(A (2 round(b(s')) - 1)),  A ~ N(0, 1)^(k x D) fixed    compress_bits = k
    r(s')    = beta / sqrt(n(key(s')))

with ``n`` the sketch's count including the current visit (``observe`` runs before
``compute``; a key never observed counts as 1). The optional second step is Tang et al.'s: the
D-bit code is downsampled to k bits by SimHash (``simhash.py``; bit = 1 where the projection
is >= 0). The code is centred to +-1 before the projection so that no code is the zero vector
(the all-zero code would project to 0 in every row) and the angle between two codes depends
only on their Hamming distance.

Training schedule (the official code: a replay pool of observations, the autoencoder trained
on minibatches of it every ``train_model_freq`` = 3 or 5 TRPO iterations; for Montezuma one
launcher loads a pretrained model instead). Here:
    * warm-up: the agent's ``warmup_steps`` random-policy steps fill the replay; when the last
      one is observed the autoencoder takes ``warmup_train_steps`` Adam steps on them, and only
      then are the warm-up's views counted (with the trained model), so the first rollout's
      counts are keyed by a model that has seen the task's views;
    * after it, every ``train_every``-th ``update`` takes ``train_steps`` Adam steps on
      minibatches of ``batch_size`` drawn from the replay (the last ``replay_size`` observed
      views), until ``train_until`` trainings have been done (None: never stop).
    Each training logs ``bonus/code_drift``: the fraction of a fixed probe set (the first 1,024
    views of the warm-up) whose key the training changed.

Code drift, measured and decided. A view's key changes whenever a training step flips any of
its D rounded bits, and its count starts again under the new key (the old count stays in the
sketch under the old key). Measured with PPO (the MiniGrid preset then: 64 envs x 32 steps) on
MiniGrid-DoorKey-8x8, 300k frames, seed 0, D = 64, lambda = 0.1, lr 3e-4, one run each (the
distinct views visited counted exactly beside the run; plain PPO: 5,949 views, success 0.08):

    | schedule                                | drift / training | re-keyed | views | success |
    | frozen after the warm-up (train_every=0)| 0                | 0        | 5,898 | 0.00    |
    | 4 steps a rollout, frozen after 30      | 4.0% (max 14%)   | 69%      | 5,843 | 0.00    |
    | 4 steps every rollout (the default)     | 9.0% (max 20%)   | 99%      | 8,960 | 0.27    |

("re-keyed": probe views whose key at the end differs from the one after the warm-up; 143
trainings in the default run; on DoorKey-16x16, 200k frames: 5.4% per training, 93% re-keyed
over 94 trainings, 190 cells visited as without a bonus.)

Decision: train on every rollout and accept the drift. Freezing removes it but the frozen
code, trained on random-policy views only, keeps fewer keys apart (1,603 occupied buckets
against 9,123) and the agent explored no more than without a bonus; with continual
training the re-keyed views act as fresh ones for a while, which here explored more. Counts are
neither reset nor decayed after an update. ``train_until`` and ``train_every`` remain for runs
that need stable counts. One seed per schedule: a direction, not a significant difference.

Lifelong counts alone did not widen exploration on MiniGrid-Empty-16x16 (30k frames, seed 0:
171 cells against plain PPO's 180; the egocentric view of a big empty room is the same in most
cells, and the agent was drawn to rare views), while ``FirstVisit(AEHash(...))`` (the count
paid on a view's first visit in an episode, as the MiniGrid preset does for RND) visited all
196 cells on seeds 0 and 1 (``tests/learning/test_aehash_learning.py``).

First visits, not lifelong counts, on long sparse tasks: MiniGrid-DoorKey-16x16 (episodes of up
to 2,560 steps), PPO with the MiniGrid preset, 5M frames. With lifelong counts (the MiniGrid
preset until 2026-11-30) the final success (episodes ending in the last 10% of frames) was 0.42
/ 0.54 / 0.56 on seeds 0 / 1 / 2 (plain PPO 0.0 / 0.0 / 0.0), flat near 0.3-0.5 from 0.5M
frames on with episodes of ~2,000 steps: the drift kept the bonus alive (raw bonus ~0.002
throughout, occupied buckets still growing at 5M: 185k) and the policy wandering. Freezing
the code after 1,000 trainings (~2M frames, seed 0) let the counts grow and the bonus fall,
and success fell with it, to 0.00-0.03 per 0.5M window within 0.5M frames: the bonus was what
brought the agent to the goal, and the extrinsic reward alone did not hold it there. An
extrinsic discount of 0.999 instead of 0.99 (seed 0) ended at 0.53. With ``first_visit=True``
(now the preset) it is all or nothing: seed 0 passed 0.9 success (last 100 episodes) at 1.01M
frames and ended at 1.00 with episodes of ~120 steps; seeds 1 and 2 ended at 0.00. Their
policies had stopped using ``toggle`` (1 of ~48,000 sampled actions at 5M, against 0.8% for
seed 0; entropy down to ~0.5 by 400k frames), so the door never opened: a first-visit bonus
pays nothing for an action that changes nothing, which most toggles are, and the action died
out before the door was opened. PPO's entropy coefficient at 0.03 instead of the preset's
then 0.01 keeps it alive: seeds 0 / 1 / 2 passed 0.9 at 901k / 1.20M / 1.13M frames and ended
at 0.98 / 0.92 / 0.97 (episodes of ~400-700 steps; the extra entropy keeps some of them long). The
entropy is most of the fix, not this bonus alone: RND (first visits, its preset) with
ent_coef 0.03 passed 0.9 at 3.72M frames on seed 1 and ended at 0.96, where at 0.01 it ends
at 0.00 on all three seeds; the AE hash got there 3x sooner. The entropy coefficient is the
agent's, not this bonus's: it changed in PPO's MiniGrid preset (``explora.presets``) on
2026-12-01, with the rollout length, once measured across bonuses and tasks. The rollout
length matters as much (same task and budget): with 128-step rollouts instead of 32 and
ent_coef 0.01, seeds 0 / 1 / 2 ended at 0.00 / 1.00 / 1.00 (seeds 1 and 2 passed 0.9 at 947k
and 941k frames; seed 0 lost ``toggle`` as above); with 128 steps and ent_coef 0.03, the
preset now, all three passed 0.9, at 906k / 1.42M / 975k, ending at 1.00 / 0.97 / 0.97.

Cost (rough, on a loaded machine, not a timing): the DoorKey-8x8 runs above took 551 s with the
default schedule against 253 s without a bonus (2.2x) and 632 s frozen, whose warm-up training
(1,000 steps of 256 through a 256-wide autoencoder) is paid up front; the decoder's 980-logit
output layer (49 cells x 20 classes) is most of the work. ``hidden_size=128`` halves it.

Where the time went, and what changed (profiled with cProfile on DoorKey-8x8, 60k frames, the
bonus trained on the main thread; rough, the machine at load 13-15 on 2 cores): 69% of the run
was ``_train`` -- the 1,000 warm-up steps and the 4 steps per rollout, ~28 ms per Adam step of
256 views, 40% of which was torch's CPU log-softmax over the 3-11 classes of each element
(not vectorised over so short a last dimension) -- and each ``update`` counted the sketch's
non-empty buckets over all 6 x 999,983 entries (~36 ms, half of plain PPO's time per
rollout). Now the autoencoder's cross-entropy puts the classes on dim 1 (the same loss; its
forward and backward ~5x faster) and the sketch keeps its occupied count as it adds (the same
figure). Neither changes what is computed. What remains is the warm-up's 1,000 steps, a fixed
cost (about as much compute as 250 PPO updates of the MiniGrid preset, i.e. more than a whole
100k-frame run of plain PPO; amortised over 1M frames), and 4 Adam steps per rollout, which
run beside PPO's update on the bonus thread. Fewer warm-up steps were measured and not taken:
distinct codes among 948 distinct held-out random-policy DoorKey-8x8 views after the warm-up /
after 5 / after 20 more rollouts of 4 steps (seed 0): 1,000 steps 449 / 469 / 507; 300 steps
254 / 274 / 269; 100 steps 65 / 121 / 354; none 944 / 888 / 48 (the untrained code collapses
as it starts training); 300 steps at lr 1e-3 363 / 421 / 452. The shorter warm-ups merge views
the default keeps apart for the first ~40k frames, so the default stays. ``hidden_size=128``
kept them as well as 256 (1,000 steps: 480 / 511 / 506) at about half the cost per step: the
MiniGrid setting recommended (``presets.py`` is not this module's to edit). In one process,
100k frames of DoorKey-8x8 at load ~14 on 2 cores: plain PPO 3,987 and 2,861 frames/s (run
first and last), this bonus 863 (0.22-0.30; the lead's quieter run before the change: 0.16),
with ``hidden_size=128`` 895 (0.22-0.31); of the bonus's ~95 s, ``observe`` took 70 s, most of
it the warm-up's training, so at 100k frames the warm-up alone keeps it under 0.5.

Defaults and where they come from:
    beta = 0.01: the paper's bonus coefficient for SimHash (rllab and Atari); the agent divides
        the bonus by the running std of its discounted return, so beta only sets the raw scale.
    noise = 0.3 (official ``DiscreteEmbeddingNonlinearityLayer``); learning_rate = 3e-4 (official
        ``learning_rate=0.0003``); moduli: the official six primes below 10^6 (``sketch.py``).
    code_bits = 64, penalty = 0.1, hidden_size = 256: chosen by measurement
        (``explora.models.autoencoder``, whose docstring has the table).
    compress_bits = None: on MiniGrid the D-bit code already groups views (measured there); the
        official launchers use both a SimHash of 32-64 bits on the code and the code itself
        (``disable_rnd_proj=True``).
    batch_size, train_steps, train_every, replay_size, warmup_train_steps, train_until: the
        schedule chosen above (the official pool holds 10^6-5x10^6 Atari frames, far more than
        a 2-core run sees or a checkpoint should carry).

State: the model, its Adam state, the sketch, the replay, the probe set, the counters and the
bonus's own ``torch.Generator`` are all in ``state_dict``: call ``setup`` before
``load_state_dict``. The sketch is 6 x 999983 int32 (24 MB) as in SimHash; the replay is
``replay_size`` observations (65,536 MiniGrid views: 9.6 MB). In eval mode ``observe`` neither
counts nor stores.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.bonuses.base import Transitions
from explora.bonuses.sketch import TANG_PRIMES, CountMinSketch
from explora.models.autoencoder import BinaryAutoencoder
from explora.models.dynamics import BONUS_SPACES

PROBE_SIZE = 1024


def _torch_dtype(space: gym.Space) -> torch.dtype:
    if isinstance(space, gym.spaces.Discrete):
        return torch.int64
    return torch.from_numpy(np.zeros((), dtype=space.dtype)).dtype


class AEHash(nn.Module):
    """Counts of an autoencoder's rounded binary code of ``next_obs``; ``r = beta / sqrt(n)``.

    Args:
        code_bits: D, the autoencoder's code length.
        compress_bits: k, SimHash the D-bit code down to k bits (None: count the code itself).
        beta: bonus scale.
        noise: half-width of the uniform noise added to the code in training.
        penalty: weight of the binarising penalty min((1 - b)^2, b^2).
        hidden_size: width of the autoencoder's hidden layers.
        learning_rate: Adam step size.
        batch_size: views per Adam step.
        train_steps: Adam steps per training.
        train_every: ``update`` calls between trainings (0: train only at the end of the
            warm-up).
        train_until: number of trainings after which the model is frozen (None: never).
        replay_size: the last this many observed views are what the model trains on.
        warmup_steps: random-policy steps per env the agent feeds to ``observe`` first.
        warmup_train_steps: Adam steps at the end of the warm-up.
        moduli: the count-min sketch's row moduli.
        seed: seed of the SimHash matrix A; None draws it from torch's global generator.

    Example:
        >>> import gymnasium as gym, numpy as np
        >>> bonus = AEHash(code_bits=16, warmup_steps=2, warmup_train_steps=5)
        >>> bonus.setup(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 4)
        >>> obs = torch.randint(0, 3, (3, 4, 7, 7, 3), dtype=torch.uint8)
        >>> zeros = torch.zeros(3, 4)
        >>> batch = Transitions(obs, zeros.long(), obs, zeros, zeros.bool(), zeros.bool())
        >>> for t in range(3):
        ...     bonus.observe(Transitions(obs[t:t+1], zeros[:1].long(), obs[t:t+1],
        ...         zeros[:1], zeros[:1].bool(), zeros[:1].bool()))
        >>> bonus.compute(batch).shape
        torch.Size([3, 4])
    """

    replay: Tensor
    probe: Tensor
    projection: Tensor

    def __init__(
        self,
        *,
        code_bits: int = 64,
        compress_bits: int | None = None,
        beta: float = 0.01,
        noise: float = 0.3,
        penalty: float = 0.1,
        hidden_size: int = 256,
        learning_rate: float = 3e-4,
        batch_size: int = 256,
        train_steps: int = 4,
        train_every: int = 1,
        train_until: int | None = None,
        replay_size: int = 65536,
        warmup_steps: int = 128,
        warmup_train_steps: int = 1000,
        moduli: Sequence[int] = TANG_PRIMES,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("code_bits", code_bits),
            ("hidden_size", hidden_size),
            ("batch_size", batch_size),
            ("replay_size", replay_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, value in (
            ("train_steps", train_steps),
            ("train_every", train_every),
            ("warmup_steps", warmup_steps),
            ("warmup_train_steps", warmup_train_steps),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if compress_bits is not None and compress_bits < 1:
            raise ValueError(f"compress_bits must be >= 1 or None, got {compress_bits}")
        if train_until is not None and train_until < 0:
            raise ValueError(f"train_until must be >= 0 or None, got {train_until}")
        if beta < 0 or noise < 0 or penalty < 0 or not learning_rate > 0:
            raise ValueError(
                f"beta, noise and penalty must be >= 0 and learning_rate > 0, got beta={beta}, "
                f"noise={noise}, penalty={penalty}, learning_rate={learning_rate}"
            )
        self.code_bits = code_bits
        self.compress_bits = compress_bits
        self.beta = beta
        self.noise = noise
        self.penalty = penalty
        self.hidden_size = hidden_size
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.train_steps = train_steps
        self.train_every = train_every
        self.train_until = train_until
        self.replay_size = replay_size
        self.warmup_steps = warmup_steps
        self.warmup_train_steps = warmup_train_steps
        self.moduli = tuple(int(p) for p in moduli)
        self.seed = seed
        self.episodic = False
        self.model: BinaryAutoencoder | None = None
        self.sketch: CountMinSketch | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()
        self._observed = 0  # steps observed (each of N views)
        self._stored = 0  # views ever written to the replay
        self._updates = 0  # update calls
        self._trainings = 0  # trainings done (the warm-up's included)
        self._last: dict[str, float] = {}

    # --- setup -------------------------------------------------------------------------------

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build the autoencoder, its optimiser, the sketch and an empty replay for this space."""
        space = observation_space
        if not isinstance(space, BONUS_SPACES):
            raise ValueError(
                f"aehash cannot take observations from {type(space).__name__}; accepted spaces: "
                "Box, Discrete, MultiDiscrete, MultiBinary"
            )
        self.model = BinaryAutoencoder(
            space,
            code_bits=self.code_bits,
            hidden_size=self.hidden_size,
            noise=self.noise,
            penalty=self.penalty,
        )
        key_bits = self.code_bits
        projection = torch.zeros(0, self.code_bits)
        if self.compress_bits is not None:
            gen = None if self.seed is None else torch.Generator().manual_seed(self.seed)
            projection = torch.randn(self.compress_bits, self.code_bits, generator=gen)
            key_bits = self.compress_bits
        self.register_buffer("projection", projection)
        self.sketch = CountMinSketch(key_bits, self.moduli)
        shape = tuple(int(d) for d in space.shape or ())
        self.register_buffer(
            "replay", torch.zeros((self.replay_size, *shape), dtype=_torch_dtype(space))
        )
        self.register_buffer("probe", torch.zeros((0, *shape), dtype=_torch_dtype(space)))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.learning_rate)
        # Its own generator (noise, minibatches), seeded from torch's global one: ``update``
        # may run on another thread than the agent's (Bonus.update).
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(0, 2**62, ())))
        self._observed = self._stored = self._updates = self._trainings = 0
        self._last = {}

    def _parts(self) -> tuple[BinaryAutoencoder, CountMinSketch, torch.optim.Optimizer]:
        if self.model is None or self.sketch is None or self.optimizer is None:
            raise RuntimeError("call setup() before using AEHash")
        return self.model, self.sketch, self.optimizer

    # --- keys --------------------------------------------------------------------------------

    @torch.no_grad()
    def keys(self, obs: Tensor) -> Tensor:
        """The counted key of each view ``[B, *obs_shape]``: bool ``[B, code_bits]`` (round(b))
        or ``[B, compress_bits]`` (SimHash of it)."""
        model, _, _ = self._parts()
        code = model.hash(obs)
        if self.compress_bits is None:
            return code
        return (2.0 * code.float() - 1.0) @ self.projection.T >= 0

    def _flat(self, obs: Tensor) -> Tensor:
        """``[T, N, *obs_shape]`` -> ``[T * N, *obs_shape]``."""
        return obs.reshape(int(obs.shape[0]) * int(obs.shape[1]), *obs.shape[2:])

    # --- protocol ----------------------------------------------------------------------------

    @property
    def warming_up(self) -> bool:
        return self._observed < self.warmup_steps

    def observe(self, step: Transitions) -> None:
        """Store each ``step.next_obs`` ``[1, N, *obs_shape]`` in the replay and count its key;
        during the warm-up only store (the warm-up's views are counted when it ends)."""
        model, sketch, _ = self._parts()
        if not self.training:
            return
        views = self._flat(step.next_obs).to(self.replay.device)
        self._store(views)
        warming = self.warming_up
        self._observed += 1
        if not warming:
            sketch.add(self.keys(views))
        elif self._observed == self.warmup_steps:
            self._end_warmup()

    def _store(self, views: Tensor) -> None:
        n = int(views.shape[0])
        idx = (self._stored + torch.arange(n)) % self.replay_size
        self.replay[idx.to(self.replay.device)] = views.to(self.replay.dtype)
        self._stored += n

    def _replayed(self) -> Tensor:
        """The views in the replay ``[min(stored, replay_size), *obs_shape]`` (in no order)."""
        return self.replay[: min(self._stored, self.replay_size)]

    def _end_warmup(self) -> None:
        _, sketch, _ = self._parts()
        views = self._replayed()
        self.probe = views[:PROBE_SIZE].clone()
        self._train(self.warmup_train_steps)
        for chunk in views.split(4096):
            sketch.add(self.keys(chunk))

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``beta / sqrt(max(n(key(next_obs)), 1))``, float32 ``[T, N]``."""
        _, sketch, _ = self._parts()
        views = self._flat(batch.next_obs).to(self.replay.device)
        n = sketch.count(self.keys(views)).clamp_min(1).to(torch.float32)
        return (self.beta * n.rsqrt()).reshape(batch.shape)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train the autoencoder on the replay when the schedule says so (``batch`` is not used:
        its views are in the replay already, by ``observe``). Returns the last training's
        losses, code saturation and drift, and the sketch's occupied buckets."""
        _, sketch, _ = self._parts()
        self._updates += 1
        due = self.train_every > 0 and self._updates % self.train_every == 0
        frozen = self.train_until is not None and self._trainings >= self.train_until
        if due and not frozen and not self.warming_up and self._stored > 0:
            self._train(self.train_steps)
        occupied = sketch.occupied().max()
        return {**self._last, "bonus/occupied_buckets": float(occupied)}

    def _train(self, steps: int) -> None:
        model, _, optimizer = self._parts()
        views = self._replayed()
        if steps == 0 or views.shape[0] == 0:
            return
        if self.probe.shape[0] == 0:  # no warm-up: the first views trained on
            self.probe = views[:PROBE_SIZE].clone()
        before = self.keys(self.probe)
        recon, pen = [], []
        for _ in range(steps):
            idx = torch.randint(0, views.shape[0], (self.batch_size,), generator=self.generator)
            loss, parts = model.loss(views[idx.to(views.device)], self.generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            recon.append(parts["reconstruction"])
            pen.append(parts["penalty"])
        self._trainings += 1
        with torch.no_grad():
            b = model.code(self.probe)
            drift = float((self.keys(self.probe) != before).any(-1).float().mean())
        self._last = {
            "losses/aehash_reconstruction": float(torch.stack(recon).mean()),
            "losses/aehash_penalty": float(torch.stack(pen).mean()),
            "bonus/code_saturation": float(((b - 0.5).abs() > 0.4).float().mean()),
            "bonus/code_drift": drift,
        }

    # --- state -------------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "generator": self.generator.get_state(),
            "counters": (self._observed, self._stored, self._updates, self._trainings),
            "last": dict(self._last),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._observed, self._stored, self._updates, self._trainings = state["counters"]
        self._last = dict(state["last"])
        self.generator.set_state(state["generator"])
        if state.get("optimizer") is not None:
            _, _, optimizer = self._parts()
            # copied, so that two bonuses loaded from one state do not share Adam's moments
            optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        # The probe set's size is known only from the state (empty before the warm-up's end).
        probe = state_dict.get("probe")
        if probe is not None and probe.shape != self.probe.shape:
            self.probe = torch.zeros_like(probe)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
