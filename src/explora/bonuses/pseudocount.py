"""Pseudo-counts from a PixelCNN density model.

Bellemare, Srinivasan, Ostrovski, Schaul, Saxton & Munos 2016, "Unifying Count-Based
Exploration and Intrinsic Motivation" (NeurIPS): a density model ``rho_n`` trained on the
observations seen so far gives each observation ``x`` a pseudo-count from ``rho_n(x)`` and the
recoding probability ``rho'_n(x)``, the density after one more training step on ``x``:

    N_hat(x) = rho(x) (1 - rho'(x)) / (rho'(x) - rho(x))  =  (1 - rho'(x)) / (e^PG(x) - 1)
    PG(x)    = log rho'(x) - log rho(x)                     (the prediction gain, nats)

(their DQN bonus was ``beta (N_hat + 0.01)^(-1/2)``, beta 0.05, with a CTS density).
Ostrovski, Bellemare, van den Oord & Munos 2017, "Count-Based Exploration with Neural Density
Models" (ICML) use a small gated PixelCNN (``explora.models.pixelcnn``) on 42 x 42 frames with 8
grey levels; a network trained by SGD does not shrink its gain like ``1/n`` by itself, so the
gain is decayed, ``PG_n = c n^(-1/2) PG`` with ``c = 0.1``, and the bonus is ``N_hat^(-1/2)``
of the decayed gain. This module computes what the reimplementation by the same group
(google-research ``bonus_based_exploration/intrinsic_motivation/intrinsic_rewards.py``,
``PixelCNNIntrinsicReward.ipd_to_reward``; configs ``configs/{dqn,rainbow}_pixelcnn.gin``)
computes:

    r(s') = scale * sqrt(max(expm1(min(c * PG(s') / sqrt(n), 25)), 0))
          = scale / sqrt(N_hat)   with  N_hat = 1 / (e^PG_n - 1)

``PG(s')`` summed over all values of the observation ``s'`` (``batch.next_obs``), ``n`` the
number of observations the model has been trained on plus those of the batch being scored
(``trained + T * N``; 0 counts as 1). ``pseudo_count`` gives the exact ``N_hat`` in log space
(a MiniGrid view has ``log rho`` of -10 to -100 nats). A gain ``<= 0`` (the step did not make
``x`` likelier) pays 0: ``N_hat = +inf`` there, the limit as ``PG -> 0+`` (the reimplementation's
``max(expm1(.), 0)``; METHODS.md's "clip N_hat >= 0" would instead pay the largest bonus to a
view whose gain is rounding noise). The 25-nat cap on the decayed gain is the reimplementation's
CTS bonus's cap (``min(ipd, 25)``), kept so ``expm1`` stays finite.

Defaults and where they come from:
    learning_rate = 1e-4, momentum = 0.9, rms_eps = 1e-4: the reimplementation's RMSProp
        (``tf.train.RMSPropOptimizer`` in both gin configs); rms_alpha = 0.9: that
        optimiser's default ``decay``, which the configs leave unset.
    gain_decay c = 0.1: ``PixelCNNIntrinsicReward.ipd_scale`` in both configs, Ostrovski et al.
    hidden_size = 16, num_layers = 2: ``_network_template.hidden_units`` / ``num_layers`` in
        both configs; first_kernel = 7 and head_size = 64 are fixed in its network.
    scale = 1.0: the reimplementation has 0.001 (DQN) and 0.5 (Rainbow). PPO divides the raw
        bonus by the running std of its discounted return, so the scale cancels there; with
        DQN, pass the reimplementation's 0.001.
    minibatch_size = 256, update_epochs = 1, chunk_size = 128, gain_momentum = False:
        explora's, see the deviations.
    Frames: 42 x 42, 8 grey levels (``pixelcnn.FRAME_SIZE``/``FRAME_LEVELS``, the paper's and
        the reimplementation's). MiniGrid's symbolic 7 x 7 x 3 view is modelled as it is:
        categories (11, 6, 4) per cell (11 object types, 6 colours, 4 states: 3 door states,
        and the fully observable view puts the agent's direction 0-3 in that channel); a larger
        value (another grid env with this shape) is clamped to its channel's last category.

Deviations, and the measurement behind each (``benchmarks/generative/pixelcnn_quality.py``:
train on 100,000 random-policy DoorKey-8x8 views as 2,048-view rollouts, then score 20,000 held
out views; one seed; numbers from the run of 2026-11-30 unless said):
    * Scored, then trained, a rollout at a time. The reimplementation steps its model on every
      frame (batch of one) and takes the gain from that step. Here ``compute`` scores the whole
      ``[T, N]`` rollout with the model as it stands -- one *virtual* step per observation from
      the current parameters and optimiser state, as the reimplementation's eval-mode
      ``virtual_update`` does, batched with ``vmap(grad)`` (``prediction_gain``; neither the
      model nor the optimiser changes) -- and ``update`` then trains on the rollout with
      ``ceil(T * N / minibatch_size)`` RMSprop steps per epoch. A step per frame would be
      2,048 sequential steps per rollout of the MiniGrid preset. The price: far fewer steps
      per frame at the official lr. Measured: with the defaults the model ends at 25.7 bits per
      held-out view (the plug-in entropy is 9.1 bits), with learning_rate 1e-3 at 12.7 bits;
      but the pseudo-counts rank views by how often they were seen far better at 1e-4
      (Spearman of N_hat with the true train count 0.419 against 0.069), so the official 1e-4
      stays.
    * The virtual step leaves out RMSprop's momentum (``gain_momentum=False``); the
      reimplementation's TF optimiser applies its momentum slot in the virtual step too. The
      momentum buffer points towards the views just trained on, so with it a step on a familiar
      view can raise that view's density more than a step on a never-seen view raises its own:
      ``tests/unit/test_pseudocount.py::test_momentum_carried_over_from_training_favours_
      familiar_views`` measures exactly that (20 updates on 4 views x 16 copies: familiar views
      get the larger gain with momentum, novel ones without), and a count bonus must pay a
      never-seen view more. Against it: the benchmark at the defaults ranked views better with
      momentum (Spearman 0.519 with, 0.419 without); at learning_rate 1e-3 and minibatches of
      64 (an earlier run, before the categories became (11, 6, 4)) worse (0.358 with, 0.427
      without, and 0.2% of views with PG <= 0 against 0.0%). One seed each: unsettled.
      ``gain_momentum=True`` gives the official behaviour.
    * ``n`` counts observations trained on (plus the batch scored); the reimplementation
      passes the agent's training-step count, one per frame it trains on, the same up to the
      batch offset.
    * RMSprop's epsilon sits outside the square root (torch, ``g / (sqrt(v) + eps)``) where TF1
      puts it inside (``g / sqrt(v + eps)``); 1e-4 inside is about 1e-2 outside for small
      gradients. Not matched and not measured.
    * No ``+ 0.01`` under the square root (Bellemare et al.'s DQN bonus has it; Ostrovski et
      al.'s and the reimplementation's do not). Measured that it would not matter: over the
      first 20 rollouts of a random policy on DoorKey-8x8 the raw gain stayed below 1.4 nats,
      the decayed gain below 0.003, where the offset changes the bonus by less than 2e-5 of it.
    * Identical observations in a batch are scored once (the same model gives them the same
      gain) and trained on once with their multiplicity as weight, which is the same loss and
      gradient as scoring every copy (tested); each distinct view lands in one minibatch.
    * Gated activation, one-hot inputs and channel groups in the PixelCNN: see
      ``explora.models.pixelcnn``.

State: the model, RMSprop's state (``get_extra_state``), the minibatch generator and ``trained``
(``n``) are in ``state_dict``; there is no per-episode state (a lifelong bonus, like RND).

Code drift: none to handle. Nothing is stored per state: each view's pseudo-count is read
afresh from the current model (its density before and after one virtual step), so a view's
count moves only as the model's density of it moves, which is what a density-model count
means (Bellemare et al. 2016). What does change as the model trains is the scale of the gain;
the ``c n^(-1/2)`` decay is the papers' answer to it, kept.

Cost: per rollout, one forward and one per-sample backward per distinct view (``chunk_size``
rows per ``vmap`` call), a second forward for ``rho'``, and ``ceil(T * N / 256)`` training
steps; distinct views are the cost (random-policy DoorKey-8x8 rollouts hold 355-386 distinct
views per 2,048, measured). Rough, one run each on this shared 2-core machine, 98,304 frames
of MiniGrid-DoorKey-8x8, seed 0: plain PPO 16,470 frames/s, with this bonus 4,412 frames/s --
about 3.7x slower, over the issue's 2x budget (not yet optimised; the lead's quiet-machine
measurement decides). On MiniGrid-Empty-16x16 (few distinct views) the runs of the learning
test went at 3,811-4,001 frames/s against 5,291 for plain PPO, with other jobs running.

Where the time goes (cProfile, DoorKey-8x8, 30k frames, the bonus on the main thread, rough):
``compute`` 74% of the bonus's time, ``update`` 26%. ``compute`` is ``prediction_gain``: for
each of the ~380 distinct views of a rollout, a per-sample gradient of all ~30k parameters
(``vmap(grad)``, convolutions with per-sample weight gradients), the virtual RMSprop step on
those ~30k x 380 values (a quarter of ``compute``), and a forward pass with per-sample
parameters. The virtual step now runs in place on one temporary (5 passes instead of 9
allocations; the same arithmetic, ``test_batched_rho_prime_equals_one_step_at_a_time``). The
rest is what the exact gain needs (a first-order gain ``g . dtheta`` would skip the second
forward, but it is another quantity); at ~4M multiply-adds per distinct view it stays over
the 2x budget: in one process, 50k frames at load ~14 on 2 cores, plain PPO 3,482 and 2,852
frames/s (run first and last), this bonus 987 (0.28-0.35; the lead's quieter run before the
change: 0.26). Tried and not kept:
convolutions as unfold + matmul (the same values to 1e-6; 10-30% faster ``prediction_gain``
in two noisy runs, not clearly worth a second code path).

Learning test (``tests/learning/test_generative_counts_learning.py``): on MiniGrid-Empty-16x16,
28,672 frames, seed 1, PPO with this bonus (the defaults, not wrapped in ``FirstVisit``)
visited all 196 cells against 181 without a bonus (seeds 0 and 2: 188 against 180, 190
against 176). Controls: the same bonus with a model that never learns (learning_rate 1e-9)
184, a constant bonus 161, so the cells come from the counts, not from paying something.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from explora.bonuses.base import Transitions
from explora.models.dynamics import _is_small_grid
from explora.models.pixelcnn import FRAME_LEVELS, FRAME_SIZE, GatedPixelCNN, downsample_frames

#: MiniGrid's symbolic view: 11 object types, 6 colours, 4 states per cell (3 door states; the
#: fully observable view puts the agent's direction 0-3 there). Larger values (another grid env
#: with this shape) share each channel's last category.
MINIGRID_CATEGORIES = (11, 6, 4)
_MINIGRID_MAX = torch.tensor(MINIGRID_CATEGORIES) - 1
#: The largest decayed prediction gain turned into a reward (the reimplementation's CTS bonus
#: clips its gain at 25 as well), so that expm1 stays finite.
MAX_GAIN = 25.0


def pseudo_count(log_rho: Tensor, log_rho_prime: Tensor) -> Tensor:
    """Bellemare et al.'s pseudo-count ``N_hat = rho (1 - rho') / (rho' - rho)``, in log space.

    With the prediction gain ``PG = log rho' - log rho`` it is ``(1 - rho') / (e^PG - 1)``,
    computed as ``-expm1(log rho') / expm1(PG)``: exact, and never forms ``rho`` itself (a
    147-dimensional MiniGrid view has ``log rho`` around -10 to -100 nats). Where ``PG <= 0``
    (training on ``x`` did not make ``x`` more likely) the count is ``+inf``: the limit as
    ``PG -> 0+``, so that the bonus ``~ N_hat^(-1/2)`` goes continuously to 0 there rather than
    jumping to its largest value (see ``reward_from_gain``).

    Example:
        >>> pseudo_count(torch.tensor([math.log(3 / 10)]), torch.tensor([math.log(4 / 11)]))
        tensor([3.0000])
    """
    gain = log_rho_prime - log_rho
    count = -torch.expm1(log_rho_prime) / torch.expm1(gain)
    return torch.where(gain > 0, count, torch.full_like(count, math.inf))


def reward_from_gain(gain: Tensor, trained: int, gain_decay: float, scale: float) -> Tensor:
    """The reimplementation's bonus from prediction gains ``gain`` (nats, any shape):
    ``scale * sqrt(max(expm1(gain_decay * gain / sqrt(n)), 0))`` with ``n = max(trained, 1)``,
    i.e. ``scale / sqrt(N_hat)`` for ``N_hat = 1 / (e^PG_n - 1)`` and the decayed gain
    ``PG_n = c n^(-1/2) PG``. A gain <= 0 gives 0 (``N_hat = inf``, see ``pseudo_count``).

    Example:
        >>> reward_from_gain(torch.tensor([-1.0, 0.0, 10.0]), 100, 0.1, 1.0)
        tensor([0.0000, 0.0000, 0.3243], dtype=torch.float64)
    """
    decayed = gain.double() * (gain_decay / math.sqrt(max(int(trained), 1)))
    inverse_count = torch.expm1(decayed.clamp(max=MAX_GAIN)).clamp_min(0.0)
    return scale * inverse_count.sqrt()


def _grid_layout(space: gym.Space) -> tuple[Callable[[Tensor], Tensor], int, int, tuple[int, ...]]:
    """``(to_grid, height, width, categories)`` for the density model on ``space``: ``to_grid``
    turns ``[B, *obs_shape]`` observations into int64 ``[B, H, W, C]`` values."""
    accepted = (
        "accepted: Discrete, MultiDiscrete, MultiBinary, integer Box of rank 1-3 with values "
        "in 0..255 (MiniGrid's symbolic view among them), uint8 images with sides >= 36"
    )
    if isinstance(space, gym.spaces.Discrete):
        start, n = int(space.start), int(space.n)
        return (lambda o: (o.long() - start).reshape(-1, 1, 1, 1)), 1, 1, (n,)
    if isinstance(space, gym.spaces.MultiDiscrete):
        if len(space.nvec.shape) != 1:
            raise ValueError(f"pseudocount takes 1-d MultiDiscrete spaces, got {space}; {accepted}")
        start_t = torch.as_tensor(np.asarray(space.start).reshape(-1), dtype=torch.long)
        width = int(space.nvec.shape[0])
        return (
            (lambda o: (o.long() - start_t).reshape(-1, 1, width, 1)),
            1,
            width,
            (int(np.max(space.nvec)),),
        )
    if isinstance(space, gym.spaces.MultiBinary):
        width = int(np.prod(space.shape))
        return (lambda o: o.long().reshape(-1, 1, width, 1)), 1, width, (2,)
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(
            f"pseudocount cannot take observations from {type(space).__name__}; {accepted}"
        )
    shape = tuple(int(d) for d in space.shape)
    dtype = np.dtype(space.dtype)
    if not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise ValueError(
            f"pseudocount models observations as categorical values, but got {space} with dtype "
            f"{dtype}: a float Box has no finite set of values to count. Use 'simhash' or "
            f"'rnd' instead; {accepted}"
        )
    if _is_small_grid(space):
        height, width = shape[0], shape[1]
        return (
            (lambda o: torch.minimum(o.long(), _MINIGRID_MAX)),
            height,
            width,
            MINIGRID_CATEGORIES,
        )
    if dtype == np.uint8 and len(shape) in (2, 3):
        channel_last = len(shape) == 3 and shape[-1] <= 4 < shape[0]
        sides = shape[:2] if channel_last or len(shape) == 2 else shape[1:]
        if min(sides) >= 36:
            return (
                lambda o: downsample_frames(o, FRAME_SIZE, FRAME_LEVELS, channel_last),
                FRAME_SIZE,
                FRAME_SIZE,
                (FRAME_LEVELS,),
            )
    low, high = np.asarray(space.low), np.asarray(space.high)
    if len(shape) not in (1, 2, 3) or np.min(low) < 0 or np.max(high) > 255:
        raise ValueError(f"pseudocount cannot model {space}; {accepted}")
    if len(shape) == 3:
        kinds = tuple(int(k) + 1 for k in high.reshape(-1, shape[-1]).max(axis=0))
        return (lambda o: o.long()), shape[0], shape[1], kinds
    height, width = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])
    return (lambda o: o.long().reshape(-1, height, width, 1)), height, width, (int(high.max()) + 1,)


class PseudoCount(nn.Module):
    """Lifelong bonus ``scale * N_hat(s')^(-1/2)`` from a gated PixelCNN's decayed prediction
    gain (see the module docstring for the formula, the sources and the deviations).

    Args (defaults from the reimplementation's gin configs unless said):
        learning_rate: RMSprop step size of the density model (1e-4).
        momentum: RMSprop momentum of training steps (0.9).
        rms_alpha: RMSprop's decay of the squared-gradient average (0.9, TF1's default).
        rms_eps: RMSprop's epsilon (1e-4; torch adds it outside the square root).
        minibatch_size: views per training step (256, explora's: the reimplementation trains
            on one frame per step).
        update_epochs: passes over each rollout in ``update`` (1: every frame seen once).
        hidden_size: feature maps of the masked stack (16).
        num_layers: gated residual layers (2).
        first_kernel: side of the first masked convolution (7; odd).
        head_size: width of the 1x1 layer before the logits (64).
        gain_decay: ``c`` of ``PG_n = c n^(-1/2) PG`` (0.1).
        scale: multiplies the bonus (1.0; PPO's normalisation cancels it; 0.001 for DQN).
        chunk_size: views per ``vmap`` call when computing gains (128; memory only, the
            result does not depend on it).
        gain_momentum: include RMSprop's momentum buffer in the virtual step (False; the
            reimplementation's behaviour is True).

    ``setup`` accepts Discrete, MultiDiscrete (1-d), MultiBinary and integer Box observations
    (MiniGrid's symbolic view, DeepSea's grid, small integer vectors) and uint8 images with
    sides >= 36 (downsampled to 42 x 42 x 8 levels); it raises ``ValueError`` naming what is
    accepted for anything else (float Boxes: use ``simhash`` or ``rnd``). Any action space.

    Shapes: ``compute(batch)`` reads ``batch.next_obs`` ``[T, N, *obs_shape]`` and returns
    float32 ``[T, N]`` without grad; ``update(batch)`` trains on the same field; ``observe``
    does nothing (the bonus is lifelong and scored on whole rollouts).
    """

    trained: Tensor

    def __init__(
        self,
        *,
        learning_rate: float = 1e-4,
        momentum: float = 0.9,
        rms_alpha: float = 0.9,
        rms_eps: float = 1e-4,
        minibatch_size: int = 256,
        update_epochs: int = 1,
        hidden_size: int = 16,
        num_layers: int = 2,
        first_kernel: int = 7,
        head_size: int = 64,
        gain_decay: float = 0.1,
        scale: float = 1.0,
        chunk_size: int = 128,
        gain_momentum: bool = False,
    ) -> None:
        super().__init__()
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if not 0.0 <= momentum < 1.0 or not 0.0 <= rms_alpha < 1.0:
            raise ValueError(
                f"momentum and rms_alpha must be in [0, 1), got {momentum}, {rms_alpha}"
            )
        if rms_eps <= 0 or gain_decay <= 0 or scale < 0:
            raise ValueError(
                f"rms_eps and gain_decay must be > 0 and scale >= 0, got {rms_eps}, "
                f"{gain_decay}, {scale}"
            )
        if min(minibatch_size, update_epochs, hidden_size, head_size, chunk_size) < 1:
            raise ValueError(
                "minibatch_size, update_epochs, hidden_size, head_size and chunk_size must be >= 1"
            )
        if num_layers < 0 or first_kernel < 1 or first_kernel % 2 == 0:
            raise ValueError(
                f"num_layers must be >= 0 and first_kernel odd, got {num_layers}, {first_kernel}"
            )
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.rms_alpha = rms_alpha
        self.rms_eps = rms_eps
        self.minibatch_size = minibatch_size
        self.update_epochs = update_epochs
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.first_kernel = first_kernel
        self.head_size = head_size
        self.gain_decay = gain_decay
        self.scale = scale
        self.chunk_size = chunk_size
        self.gain_momentum = gain_momentum
        self.episodic = False
        self.warmup_steps = 0
        self.model: GatedPixelCNN | None = None
        self.optimizer: torch.optim.RMSprop | None = None
        self.generator = torch.Generator()
        self._to_grid: Callable[[Tensor], Tensor] | None = None
        self._last_gain = math.nan
        self.register_buffer("trained", torch.zeros((), dtype=torch.int64))

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build the density model and its optimiser for ``observation_space`` (see
        ``_grid_layout`` for the spaces accepted)."""
        to_grid, height, width, categories = _grid_layout(observation_space)
        self._to_grid = to_grid
        self.model = GatedPixelCNN(
            height,
            width,
            categories,
            hidden_size=max(self.hidden_size, len(categories)),
            num_layers=self.num_layers,
            first_kernel=self.first_kernel,
            head_size=max(self.head_size, len(categories)),
        )
        self.optimizer = torch.optim.RMSprop(
            self.model.parameters(),
            lr=self.learning_rate,
            alpha=self.rms_alpha,
            eps=self.rms_eps,
            momentum=self.momentum,
        )
        self.trained.zero_()
        # Its own generator for minibatch order, seeded from torch's global one: ``update`` may
        # run on another thread than the agent's (Bonus.update).
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(0, 2**62, ())))

    def _parts(self) -> tuple[GatedPixelCNN, torch.optim.RMSprop, Callable[[Tensor], Tensor]]:
        if self.model is None or self.optimizer is None or self._to_grid is None:
            raise RuntimeError("call setup() before using PseudoCount")
        return self.model, self.optimizer, self._to_grid

    def grid(self, obs: Tensor) -> Tensor:
        """``[T, N, *obs_shape]`` observations -> int64 ``[T * N, H, W, C]`` model values."""
        _, _, to_grid = self._parts()
        rows = int(obs.shape[0]) * int(obs.shape[1])
        return to_grid(obs.reshape(rows, *obs.shape[2:]))

    def _virtual_step(
        self, params: dict[str, Tensor], grads: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Parameters after one step of the model's RMSprop on per-sample gradients ``grads``
        (``[B, *shape]`` each) from the shared ``params`` and optimiser state: torch's RMSprop
        update, without touching the optimiser."""
        model, optimizer, _ = self._parts()
        group = optimizer.param_groups[0]
        lr, alpha, eps, momentum = group["lr"], group["alpha"], group["eps"], group["momentum"]
        new = {}
        # The same arithmetic as before, with in-place ops on the one [B, *shape] temporary
        # (5 passes over the per-sample tensors instead of 9 allocations): this step is
        # elementwise work on every parameter of every distinct view (~30k x ~380 per
        # MiniGrid rollout).
        for name, p in model.named_parameters():
            g = grads[name]
            state = optimizer.state.get(p, {})
            square_avg = state.get("square_avg")
            base = alpha * square_avg if square_avg is not None else torch.zeros_like(p)
            v = torch.addcmul(base, g, g, value=1 - alpha)  # alpha s + (1 - alpha) g^2
            direction = torch.div(g, v.sqrt_().add_(eps), out=v)
            if momentum > 0 and self.gain_momentum:
                buf = state.get("momentum_buffer")
                if buf is not None:
                    direction.add_(buf, alpha=momentum)
            new[name] = torch.add(params[name], direction, alpha=-lr)
        return new

    def prediction_gain(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(log rho(x), PG(x))``, float64 ``[B]`` each, for ``x`` int64 ``[B, H, W, C]``:
        ``PG = log rho'(x) - log rho(x)``, ``rho'`` the density after one optimiser step on
        ``x`` alone from the current parameters and optimiser state (neither is changed), for
        every row independently, ``chunk_size`` rows at a time: per-sample gradients by
        ``vmap(grad)``, the step applied to a functional copy of the parameters, ``log rho'`` by
        ``vmap(functional_call)``. The gain is summed cell by cell from the differences, which
        keeps float32 rounding in ``log rho' - log rho`` near 1e-6 nats."""
        model, _, _ = self._parts()
        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = {k: v.detach() for k, v in model.named_buffers()}
        dims = float(model.dims)

        def cells(p: dict[str, Tensor], onehot: Tensor) -> Tensor:
            return functional_call(model, (p, buffers), (onehot.unsqueeze(0),)).squeeze(0)

        def loss(p: dict[str, Tensor], onehot: Tensor) -> tuple[Tensor, Tensor]:
            terms = cells(p, onehot)
            return -terms.sum() / dims, terms  # the loss ``update`` minimises, for one row

        per_sample_grads = vmap(grad(loss, has_aux=True), in_dims=(None, 0))
        per_sample_cells = vmap(cells)
        log_rho, gain = [], []
        with torch.no_grad():
            for chunk in x.split(self.chunk_size):
                onehot = model.one_hot(chunk)
                grads, before = per_sample_grads(params, onehot)
                after = per_sample_cells(self._virtual_step(params, grads), onehot)
                log_rho.append(before.sum(dim=(1, 2, 3), dtype=torch.float64))
                gain.append((after - before).sum(dim=(1, 2, 3), dtype=torch.float64))
        return torch.cat(log_rho), torch.cat(gain)

    def observe(self, step: Transitions) -> None:
        """Nothing to note per step: the model is scored and trained on whole rollouts."""

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``scale * sqrt(max(expm1(c PG(s') / sqrt(n)), 0))`` for ``batch.next_obs``
        ``[T, N, *obs_shape]``: float32 ``[T, N]``. Identical observations share one gain
        (the same model scores them all), so each distinct one is scored once."""
        x = self.grid(batch.next_obs)
        unique, inverse = torch.unique(x.flatten(1), dim=0, return_inverse=True)
        _, gain = self.prediction_gain(unique.view(-1, *x.shape[1:]))
        self._last_gain = float(gain.mean())
        seen = int(self.trained) + int(x.shape[0])  # n counts the batch scored, as online
        reward = reward_from_gain(gain, seen, self.gain_decay, self.scale)
        return reward[inverse].reshape(batch.shape).to(torch.float32)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train the density model on ``batch.next_obs`` ``[T, N, *obs_shape]``: each of
        ``update_epochs`` passes takes ``ceil(T * N / minibatch_size)`` RMSprop steps on the
        mean negative log-likelihood per value. Identical observations are scored once with
        their multiplicity as weight (the same loss and gradient as scoring every copy), each
        distinct observation in one minibatch. Returns the mean loss in bits per observation."""
        model, optimizer, _ = self._parts()
        x = self.grid(batch.next_obs)
        unique, counts = torch.unique(x.flatten(1), dim=0, return_counts=True)
        unique = unique.view(-1, *x.shape[1:])
        weights = counts.to(torch.float32)
        steps = max(1, math.ceil(x.shape[0] / self.minibatch_size))
        losses = []
        for _ in range(self.update_epochs):
            order = torch.randperm(len(unique), generator=self.generator)
            for idx in order.chunk(min(steps, len(unique))):
                w = weights[idx]
                log_rho = model.log_prob(unique[idx])
                loss = -(w * log_rho).sum() / (w.sum() * model.dims)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(-(w * log_rho.detach()).sum() / w.sum())
        self.trained += int(x.shape[0])
        bits = float(torch.stack(losses).mean()) / math.log(2)
        return {"losses/pseudocount_bits": bits, "bonus/prediction_gain": self._last_gain}

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "generator": self.generator.get_state(),
            "last_gain": self._last_gain,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._last_gain = float(state.get("last_gain", math.nan))
        if state.get("optimizer") is not None:
            _, optimizer, _ = self._parts()
            # Optimizer.load_state_dict keeps the given tensors: copy them so two bonuses loaded
            # from one state do not share RMSprop's state.
            optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
