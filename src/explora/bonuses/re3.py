"""RE3: Random Encoders for Efficient Exploration (Seo, Chen, Shin, Lee, Abbeel & Lee 2021,
"State Entropy Maximization with Random Encoders for Efficient Exploration", ICML 2021; official
code younggyoseo/RE3: ``a2c_re3/torch-ac/torch_ac/algos/{base,a2c}.py`` for MiniGrid,
``rad_re3/re3.py`` and ``config.yaml`` for RAD, ``dreamer_re3/dreamer.py``).

A randomly initialised encoder f, never trained, embeds each reached state, ``y = f(s')``. The
bonus is a particle estimate of the state entropy: the distance from ``y_i`` to its k-th nearest
neighbour among the other states of the same batch,

    r_i = log(1 + ||y_i - y_i^{kNN}|| / sigma_d)

where sigma_d is the running std of those distances. The paper writes ``log(||y - y^kNN||_2 +
1)``; the official MiniGrid code divides the distance by the running std of the distances first
(``s_ent / s_ent_stats.std``, then ``log(s_ent + 1)``), as does RAD (without the log): the
random encoder's output scale is arbitrary, and inside the log the scale is not a constant
factor. ``normalize=False`` gives the paper's formula. A state repeated k or more times in the
batch (the same view seen again) gets 0; a state far from all others gets the most.

The batch is the rollout the bonus scores, ``[T * N]`` states, as in Dreamer+RE3 (``dist =
norm(rand_embed[:, None] - rand_embed[None])``, ``top_k(-dist, k)``) and RAD+RE3 (its sampled
batch against its replay buffer). The neighbours: ``torch.cdist`` then ``topk(k + 1,
largest=False)``: the smallest distance of a row is its own 0, so the (k + 1)-th smallest is
the k-th nearest among the others (ties included); the k + 1 chosen distances are recomputed
from the differences, so that equal states are exactly 0 apart. With DQN the batch is the
sampled n-step windows.

Deviation, measured: a batch of more than ``max_batch = 2048`` states is split into windows of
consecutive steps of all envs, each of at most 2048 states (near-equal), and each state's
neighbours are searched in its window: MiniGrid's 64 envs x 128 steps are four 32-step windows,
the batch RE3 saw whole with the preset's 32-step rollouts before 2026-12-01. The distance
matrix grows as the batch squared: over the whole 8,192-state rollout PPO+RE3 trained
DoorKey-8x8 at 0.43 of plain PPO's frames/s (``benchmarks/throughput.py --catalogue``, 300k
frames), over the 2x budget; in windows at 0.68-0.72 (three runs). Learning does
not suffer: on MultiRoom-N4-S5 (500k frames, seeds 0-2) the windows ended at 0.61 / 0.48 / 0.54
success, the whole batch at 0.40 / 0.38 / 0.35. Evenly spaced references drawn from the whole
batch (every 4th row) were as cheap but scored an env's states against its own neighbouring
steps only in the envs that held references, and ended seed 0 at 0.00. The official MiniGrid
code bounds the search too, against a buffer of its last 10,000 states.

Defaults and where they come from:
    k = 3 (RAD+RE3 ``config.yaml``: ``k: 3``, read as ``kthvalue(k + 1)``, i.e. the third
        neighbour besides the state itself). The MiniGrid A2C code instead averages the
        distances to the 5 nearest including the state itself (``average_entropy=True``) against
        a buffer of the last 10,000 encoded states, and Dreamer+RE3 uses k = 53 (itself
        included) in batches of 2500; we follow the paper's k-NN on the rollout.
    encoder: ``make_encoder(space, "auto")`` with torch's default init, frozen: on MiniGrid's
        7x7x3 grid that is rl-starter-files' conv 16-32-64 (2x2 kernels, one max-pool) on the
        raw codes, 64 features: the official MiniGrid ``random_encoder`` exactly. Large images:
        the Nature-DQN stack (RAD uses four 3x3 convs, a linear layer and LayerNorm to 50);
        vectors: a 64-wide tanh MLP.
    normalize = True (official MiniGrid and RAD ``normalize_state_entropy``).

The intrinsic coefficient's decay. RAD+RE3 scales the bonus by ``beta_t = beta_0 (1 -
rho)^t`` (``beta_init`` 0.05, ``beta_decay`` 1e-5 per step, ``beta_schedule: linear_decay``);
the MiniGrid A2C code and Dreamer keep beta constant (0.005 in ``run_sent.sh``; 0.1). It is
*not* implemented here: explora's PPO divides the raw bonus by the running std of its
discounted return, so a factor beta_t inside the bonus mostly cancels (entirely with the
normaliser's forgetting ``horizon``; with the whole-run std the early, large values hold the std
up and the decay survives only partly, distorted). A decay belongs on the agent's ``int_coef``
after normalisation; explora's agents have no such schedule. (The MiniGrid code's running mean
has a slip, ``new_mean = mean + delta + batch_count / tot_count``, which inflates its variance
over time and so shrinks its bonus: an unintended decay we do not copy.)

No parameters are trained, no per-episode state; ``update`` does nothing. The distance
statistics are updated in ``compute`` (before dividing, as the official code), in training mode.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import Tensor, nn

from explora.bonuses.base import RunningMeanStd, Transitions
from explora.models.dynamics import check_space
from explora.models.encoders import ENCODERS, make_encoder


class RE3(nn.Module):
    """``r = log(1 + d_k(f(s')) / sigma_d)`` with a frozen random encoder f and the k-th
    nearest-neighbour distance d_k within the batch.

    Args:
        k: which neighbour (among the batch's other states) sets the distance.
        normalize: divide distances by their running std (official code) before the log.
        encoder: ``explora.models.encoders`` kind: auto, grid-cnn, grid-mlp, pixel-cnn, mlp.
        warmup_steps: random-policy steps per env the agent feeds to ``observe`` first.
        max_batch: a larger batch is split into windows of consecutive steps (all envs) of at
            most this many states, each its own k-NN search (None: never; module doc).

    Example:
        >>> import gymnasium as gym
        >>> re3 = RE3(k=1, normalize=False)
        >>> re3.setup(gym.spaces.Box(-1.0, 1.0, (2,)), gym.spaces.Discrete(2), num_envs=1)
        >>> s = torch.tensor([[[0.0, 0.0]], [[0.0, 0.0]], [[1.0, 0.0]]])   # [T=3, N=1, 2]
        >>> batch = Transitions(s, torch.zeros(3, 1), s, torch.zeros(3, 1),
        ...     torch.zeros(3, 1, dtype=torch.bool), torch.zeros(3, 1, dtype=torch.bool))
        >>> r = re3.compute(batch)
        >>> r.shape, bool(r[0, 0] == 0), bool(r[2, 0] > 0)   # a repeated state gets 0
        (torch.Size([3, 1]), True, True)
    """

    def __init__(
        self,
        *,
        k: int = 3,
        normalize: bool = True,
        encoder: str = "auto",
        warmup_steps: int = 0,
        max_batch: int | None = 2048,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if max_batch is not None and max_batch <= k:
            raise ValueError(f"max_batch must exceed k={k}, got {max_batch}")
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; choose one of: {', '.join(ENCODERS)}")
        self.k = k
        self.normalize = normalize
        self.encoder = encoder
        self.warmup_steps = warmup_steps
        self.max_batch = max_batch
        self.episodic = False
        self.net: nn.Module | None = None
        self.dist_rms = RunningMeanStd(shape=())

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build the random encoder (from torch's global generator) and freeze it."""
        check_space(observation_space, "re3")
        if isinstance(observation_space, gym.spaces.MultiDiscrete):
            raise ValueError(
                "re3 cannot take MultiDiscrete observations; accepted spaces: Box, Discrete, "
                "MultiBinary"
            )
        self.net = make_encoder(observation_space, self.encoder).requires_grad_(False)
        self.dist_rms = RunningMeanStd(shape=())

    def embed(self, obs: Tensor) -> Tensor:
        """``[B, *obs_shape]`` -> ``[B, features]`` by the frozen random encoder."""
        if self.net is None:
            raise RuntimeError("call setup() before using RE3")
        with torch.no_grad():
            return self.net(obs).float()

    def knn_distances(self, obs: Tensor) -> Tensor:
        """``[B]``: the distance from each row's embedding to its k-th nearest neighbour among
        the other rows of ``obs`` ``[B, *obs_shape]`` (B must exceed k)."""
        y = self.embed(obs)
        if y.shape[0] <= self.k:
            raise ValueError(f"re3 needs more than k={self.k} states per batch, got {y.shape[0]}")
        # cdist by matrix product (10x faster than by differences here) picks the k + 1
        # nearest, itself included; their distances are then recomputed from the differences,
        # as the product's cancellation leaves ~1e-3 where two embeddings are equal.
        nearest = torch.cdist(y, y).topk(self.k + 1, dim=1, largest=False).indices
        return (y.unsqueeze(1) - y[nearest]).norm(dim=-1).max(dim=1).values

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``[T, N]``: ``log(1 + d_k / sigma_d)`` on ``batch.next_obs``, k-NN among the
        batch's ``T * N`` states (or within windows of consecutive steps when that exceeds
        ``max_batch``); sigma_d includes this batch's distances (training mode)."""
        steps, envs = batch.shape
        windows = 1 if self.max_batch is None else -(-steps * envs // self.max_batch)
        d = torch.cat(
            [
                self.knn_distances(obs.reshape(-1, *obs.shape[2:]))
                for obs in batch.next_obs.tensor_split(min(windows, steps))
            ]
        )
        if self.normalize:
            self.dist_rms.update(d)  # a no-op in eval mode
            d = d / self.dist_rms.std.clamp_min(1e-8).to(d.dtype)
        return torch.log1p(d).reshape(batch.shape).float()

    def observe(self, step: Transitions) -> None:
        """Nothing per step: the bonus is a function of the batch it scores."""

    def update(self, batch: Transitions) -> dict[str, float]:
        """Nothing to train: the encoder stays random."""
        return {}
