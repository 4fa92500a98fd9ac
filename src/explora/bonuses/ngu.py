"""Never Give Up (Badia, Sprechmann, Vitvitskyi, Guo, Piot, Kapturowski, Tieleman, Arjovsky,
Pritzel, Bolt & Blundell 2020, "Never Give Up: Learning Directed Exploration Strategies", ICLR;
no official code: DeepMind's ``rlax.episodic_memory_intrinsic_rewards`` is the reference for the
episodic part).

An episodic novelty, a soft count of the reached state's controllable embedding among this
episode's embeddings, modulated by a lifelong novelty from RND:

    r(s')          = r_episodic(s') * clip(alpha(s'), 1, L)
    alpha(s')      = 1 + (err(s') - mu_err) / sigma_err          err: RND's squared error
    r_episodic(s') = 1 / s,  or 0 where s > s_max
    s              = sqrt(sum_{i in kNN} K(phi(s'), phi_i)) + c
    K(x, y)        = eps / (max(d^2(x, y) / d_m^2 - xi, 0) + eps)

phi is trained by inverse dynamics (``explora.models.dynamics.InverseDynamics``: phi(s), phi(s')
-> a), so that it keeps what the agent controls; the kNN run over the memory of this env's
current episode, ``{phi(s_0), ..., phi(s_{t-1})}`` (the episode's first observation included),
and phi(s') joins it after the query. d_m^2 is a running mean of the kNN squared distances,
updated before it normalises them (the paper's algorithm 1).

Defaults and where they come from (the paper's table 6 unless said otherwise):
    num_neighbors k = 10, cluster_distance xi = 0.008, pseudo_count_constant c = 0.001,
        max_similarity s_max = 8, max_multiplier L = 5, memory_capacity = 30,000 rows per env
        ("ring buffer": when full, the oldest row is overwritten, FIFO).
    kernel_epsilon = 1e-4: table 6 says 0.0001, the main text (section 2) says 10^-3; rlax and
        the reimplementations use 1e-4, so do we.
    embedding_size = 32 (the controllable-state size of the paper's ablation B.1, best on
        Montezuma), hidden_size = 128 (explora's small MLP, ``dynamics.Embedding``).
    learning_rate = 5e-4 for the inverse model, and the RND predictor's rate
        ``rnd_learning_rate`` too ("Learning rate (RND and Action prediction)": 0.0005); Adam
        eps 1e-4 and gradient clip 40 (table 6), L2 weight 1e-5 ("Action prediction network L2
        weight", as Adam weight decay). The other RND settings are explora's RND defaults.
    update_epochs = 1, num_minibatches = 4 (a choice): the inverse model takes one pass over
        each rollout in 4 minibatches (the paper trains it on the last 5 steps of each replayed
        sequence, once per learner step).
    distance_momentum = 0.997 (deviation, the estimator is not specified by the paper): d_m^2 is
        an exponential moving average with bias correction (``MovingAverage``), updated once per
        observed step with the mean of that step's kNN squared distances over all env copies.
        The paper calls it "a running average"; rlax keeps the all-time mean. phi is trained
        online, every rollout here, so the scale of its distances drifts: an all-time mean
        would normalise today's distances by yesterday's scale, while a moving average follows
        it. 0.997 is one port's momentum; per vector step it remembers ~333 steps (ten 32-step
        rollouts, two or three of 128 steps), long enough to smooth one step's batch (N envs x
        k distances).
    error_horizon = 20,000 samples (deviation): mu_err and sigma_err forget, as
        ``RunningMeanStd(max_count=20_000)`` (2.4 rollouts of 64 envs x 128 steps). The
        paper's running mean and std over the whole run (``error_horizon=None``) keep the large
        errors of RND's first updates: measured on MiniGrid-DoorKey-8x8 (PPO's MiniGrid preset
        then, 32-step rollouts; RND 128/64 wide at lr 1e-3 on every sample, seed 1, 200k
        frames), the share of states with a multiplier above 1 fell from 32% at the first
        update to 2-9% for the rest of the run (mean multiplier 1.003-1.016), an all-but-inert
        modulator; with the 20k horizon it stayed at 25-37% (mean 1.08-1.27).

The multiplier must not be stuck at 1: one library min-max scales RND's error before the cap,
which leaves the multiplier at 1 (METHODS.md). Here alpha is the standardised error, so a state
whose error is above the (recent) mean gets more than 1, up to L; the all-time statistics
nearly stick it at 1 in a short run (error_horizon above). ``tests/unit/test_memory_bonuses.py``
pins the hand computation and that unseen states are lifted.

Note on s_max: each kernel value is at most 1 (d = 0), so s <= sqrt(k) + c = 3.16 with k = 10:
the paper's cut-off at 8 only acts with k >= 64. It is kept as in the paper (and tested with a
small s_max).

Order of the statistics. ``observe`` fixes each step's r_episodic (memories and d_m^2 move per
step). ``compute`` multiplies the last T of them by clip(alpha) on ``batch.next_obs``, with RND
as it is and mu_err, sigma_err from before the batch; ``update`` then folds the batch's errors
into mu_err, sigma_err (RND's own order: score with the statistics from before the rollout),
trains RND and trains phi. Before the first ``update`` there are no statistics: the batch's own
mean and std stand in.

Memory and cost: the memories are one padded ``[N, rows, 32]`` tensor (``EpisodicMemory``) that
grows by doubling up to the capacity, and one step's kNN is one batched computation for all N
envs (``knn_sq_distances``, ranked with the squared norms stored beside the embeddings: one
``baddbmm`` per step, then the chosen neighbours' exact distances; 0.49-0.55 of plain PPO's
frames/s on DoorKey-8x8 afterwards, from 0.44). Embeddings are stored as computed when the state
was reached (the paper's actors do the same with an embedding network synced "once/episode");
they are not recomputed when phi trains. Time per step grows with the episode's length
(MiniGrid's are at most a few hundred steps). Rough in-process figures (MiniGrid-DoorKey-8x8,
PPO with the MiniGrid preset then, 64 envs x 32 steps, a 2-core machine shared with other jobs at
load 15-20, so only ratios mean anything): 2.1-2.4x plain PPO's time per frame; per 2,048 frames
the rollout took 1.0 s against 0.05 s (per step: phi of N observations, the kNN, RND's
statistics) and the update 0.9-1.1 s against 0.53 s (RND and the inverse model train on the
second thread while PPO updates, and take longer than it).

Where the time goes (cProfile, DoorKey-8x8, 30k frames, bonus on the main thread, rough):
``update`` ~70% of the bonus's time (RND's update 63% of it, the inverse model 25%, and a
second full RND pass over the rollout to fold its errors into mu_err, sigma_err, 11%),
``observe`` ~20% (kNN over memories as long as the longest episode, phi of N views),
``compute`` ~8%.
``update`` now reuses the errors ``compute`` took on the same rollout (``_rnd_errors``: the
same tensor, taken only when ``batch.next_obs`` is the object ``compute`` scored and RND has not
changed since; otherwise computed as before), which saves that pass and changes no value
(``test_ngu_update_reuses_computes_rnd_errors_only_for_the_same_rollout``). The rest is the
method's own work. On MiniGrid, RND's networks at the RND preset's sizes (``rnd_hidden_size=
128, rnd_feature_size=64``) instead of 256/128 cut ``update`` and ``compute`` ~2x: in one
process, 50k frames of DoorKey-8x8 at load ~14 on 2 cores, plain PPO 3,482 and 2,852
frames/s (run first and last), NGU 1,182 (0.34-0.41), NGU with the smaller RND 1,723
(0.49-0.60). Recommended as NGU's MiniGrid preset: exploration held in the learning test's
setting (MiniGrid-Empty-16x16, 16,384 frames, ``warmup_steps=16``; cells visited, seeds 0 / 2):
184 / 190 with 256/128, 184 / 185 with 128/64, no bonus 142 / 135.

``embedding="vae"`` (not in the paper; the generative-models ablation E3B has too) makes phi the
posterior mean of a VAE (``explora.models.vae``, latent size ``embedding_size``) trained by its
own loss on the rollout's observations, in place of the inverse model: the kNN then measures
distance in what a generative model keeps of the view, controllable or not. The paper's
controllable embedding is the default.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> ngu = NGU()
    >>> ngu.setup(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 4)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.bonuses._shared import (
    check_at_least_one,
    check_positive,
    flat_transitions,
    load_training_state,
    seeded_generator,
    train_rollout,
    training_state,
)
from explora.bonuses.base import RunningMeanStd, Transitions
from explora.bonuses.rnd import RND
from explora.bonuses.visits import pending_batch
from explora.models.dynamics import InverseDynamics, check_space
from explora.models.memory import (
    EpisodicMemory,
    MovingAverage,
    knn_sq_distances,
    ngu_episodic_reward,
)
from explora.models.vae import VAEFeatures, check_embedding, episodic_embedding


class NGU(nn.Module):
    """Episodic kNN novelty of phi(s') times RND's clipped lifelong multiplier.

    Args:
        num_neighbors: k of the kNN.
        kernel_epsilon: eps of the inverse kernel.
        cluster_distance: xi, normalised squared distances below it count as 0.
        pseudo_count_constant: c, added to the similarity.
        max_similarity: s_max, above it the episodic reward is 0.
        max_multiplier: L, the lifelong multiplier's cap.
        memory_capacity: rows per env and episode; when full the oldest is overwritten.
        distance_momentum: momentum of d_m^2's moving average, per observed step.
        error_horizon: samples mu_err and sigma_err remember (None: all).
        embedding_size: dimension of phi.
        embedding: "inverse-dynamics" (the paper's) or "vae" (a VAE's posterior mean).
        hidden_size: width of phi's and the inverse model's hidden layers.
        learning_rate: Adam step size of the inverse model.
        weight_decay: L2 weight of the inverse model (Adam's weight decay).
        update_epochs: passes over each batch for the inverse model.
        num_minibatches: inverse-model steps per epoch.
        max_grad_norm: gradient-norm clip of the inverse model (None: none).
        rnd_learning_rate, rnd_update_proportion, rnd_hidden_size, rnd_feature_size: the RND
            predictor's settings (``explora.bonuses.RND``).
        warmup_steps: random-policy steps per env before training (RND's input statistics).

    ``state_dict`` holds the networks, both optimisers, the statistics, the generator, the
    memories and the values observed but not yet computed: call ``setup`` before
    ``load_state_dict``.
    """

    def __init__(
        self,
        *,
        num_neighbors: int = 10,
        kernel_epsilon: float = 1e-4,
        cluster_distance: float = 0.008,
        pseudo_count_constant: float = 1e-3,
        max_similarity: float = 8.0,
        max_multiplier: float = 5.0,
        memory_capacity: int = 30_000,
        distance_momentum: float = 0.997,
        error_horizon: float | None = 20_000,
        embedding_size: int = 32,
        hidden_size: int = 128,
        learning_rate: float = 5e-4,
        weight_decay: float = 1e-5,
        update_epochs: int = 1,
        num_minibatches: int = 4,
        max_grad_norm: float | None = 40.0,
        rnd_learning_rate: float = 5e-4,
        rnd_update_proportion: float = 0.25,
        rnd_hidden_size: int = 256,
        rnd_feature_size: int = 128,
        warmup_steps: int = 128,
        embedding: str = "inverse-dynamics",
    ) -> None:
        super().__init__()
        check_embedding(embedding)
        check_at_least_one(
            num_neighbors=num_neighbors,
            memory_capacity=memory_capacity,
            embedding_size=embedding_size,
            hidden_size=hidden_size,
            update_epochs=update_epochs,
            num_minibatches=num_minibatches,
        )
        check_positive(
            kernel_epsilon=kernel_epsilon,
            pseudo_count_constant=pseudo_count_constant,
            max_similarity=max_similarity,
            learning_rate=learning_rate,
        )
        if cluster_distance < 0:
            raise ValueError(f"cluster_distance must be >= 0, got {cluster_distance}")
        if not max_multiplier >= 1:
            raise ValueError(f"max_multiplier must be >= 1, got {max_multiplier}")
        if not 0 <= distance_momentum < 1:
            raise ValueError(f"distance_momentum must be in [0, 1), got {distance_momentum}")
        self.num_neighbors = num_neighbors
        self.kernel_epsilon = kernel_epsilon
        self.cluster_distance = cluster_distance
        self.pseudo_count_constant = pseudo_count_constant
        self.max_similarity = max_similarity
        self.max_multiplier = max_multiplier
        self.memory_capacity = memory_capacity
        self.distance_momentum = distance_momentum
        self.error_horizon = error_horizon
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.update_epochs = update_epochs
        self.num_minibatches = num_minibatches
        self.max_grad_norm = max_grad_norm
        self.rnd_learning_rate = rnd_learning_rate
        self.rnd_update_proportion = rnd_update_proportion
        self.rnd_hidden_size = rnd_hidden_size
        self.rnd_feature_size = rnd_feature_size
        self.warmup_steps = warmup_steps
        self.embedding = embedding
        self.episodic = True
        self.rnd = RND(
            learning_rate=rnd_learning_rate,
            update_proportion=rnd_update_proportion,
            hidden_size=rnd_hidden_size,
            feature_size=rnd_feature_size,
            warmup_steps=warmup_steps,
        )
        self.idf: InverseDynamics | VAEFeatures | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.err_rms = RunningMeanStd(max_count=error_horizon)
        self.distance_mean = MovingAverage(distance_momentum)
        self.memory: EpisodicMemory | None = None
        self.generator = torch.Generator()
        self.num_envs = 0
        self._starting = torch.ones(0, dtype=torch.bool)  # [N]: the next obs begins an episode
        self._pending: list[Tensor] = []  # r_episodic of observed steps not yet computed
        # RND's errors as ``compute`` saw them, for ``update`` to reuse instead of computing
        # them again: (batch.next_obs object, self._version at compute, errors [T, N]).
        self._version = 0  # bumped by every change of RND's state (observe, update, load)
        self._errors: tuple[Tensor, int, Tensor] | None = None

    # ---- setup ---------------------------------------------------------------------------

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Check the spaces; build RND, the inverse model, its optimiser and the memories."""
        check_space(observation_space, "ngu")
        inverse = self.embedding == "inverse-dynamics"
        if inverse and not isinstance(action_space, gym.spaces.Discrete | gym.spaces.Box):
            raise ValueError(
                f"ngu trains its embedding by inverse dynamics, which needs Discrete or Box "
                f"actions, got {action_space}"
            )
        self.rnd.setup(observation_space, action_space, num_envs)
        self.idf = episodic_embedding(
            self.embedding, observation_space, action_space, self.embedding_size, self.hidden_size
        )
        self.optimizer = torch.optim.Adam(
            self.idf.parameters(),
            lr=self.learning_rate,
            eps=1e-4,
            weight_decay=self.weight_decay,
        )
        self.num_envs = num_envs
        self.memory = EpisodicMemory(
            num_envs,
            self.memory_capacity,
            {"phi": ((self.embedding_size,), torch.float32), "sq_norm": ((), torch.float32)},
            replacement="fifo",
        )
        self.err_rms = RunningMeanStd(max_count=self.error_horizon)
        self.distance_mean = MovingAverage(self.distance_momentum)
        self._starting = torch.ones(num_envs, dtype=torch.bool)
        self._pending = []
        self.generator = seeded_generator()  # for minibatches

    def _parts(
        self,
    ) -> tuple[InverseDynamics | VAEFeatures, torch.optim.Optimizer, EpisodicMemory]:
        if self.idf is None or self.optimizer is None or self.memory is None:
            raise RuntimeError("call setup() before using NGU")
        return self.idf, self.optimizer, self.memory

    # ---- per step ------------------------------------------------------------------------

    def start_new_episodes(self, envs: np.ndarray) -> None:
        """Forget the memories of the env copies where ``envs`` ``[N]`` bool is True: their next
        observed ``obs`` starts a new episode (an agent that reset them without an end)."""
        _, _, memory = self._parts()
        mask = torch.as_tensor(np.asarray(envs, dtype=bool))
        memory.reset(mask)
        self._starting = self._starting | mask

    @torch.no_grad()
    def observe(self, step: Transitions) -> None:
        """Score ``step.next_obs`` ``[1, N, *obs_shape]`` against each env's memory, then add it
        (and, at an episode's start, ``step.obs`` first); memories reset at episode ends."""
        idf, _, memory = self._parts()
        self.rnd.observe(step)
        self._version += 1
        obs, next_obs = step.obs[0], step.next_obs[0]
        ended = (step.terminated[0] | step.truncated[0]).to(torch.bool).cpu()
        starting = self._starting
        phi = idf.embed(torch.cat([obs[starting], next_obs]))
        phi_start, phi_next = phi[: int(starting.sum())], phi[int(starting.sum()) :]
        if len(phi_start):
            rows = torch.zeros(self.num_envs, self.embedding_size)
            rows[starting] = phi_start
            memory.add(starting, {"phi": rows, "sq_norm": rows.square().sum(-1)})
        distances, found = knn_sq_distances(
            phi_next,
            memory.rows("phi"),
            memory.valid(),
            self.num_neighbors,
            key_sq_norms=memory.rows("sq_norm"),
        )
        if self.training and bool(found.any()):
            self.distance_mean.update(distances[found].mean())
        reward = ngu_episodic_reward(
            distances,
            found,
            self.distance_mean.mean,
            kernel_epsilon=self.kernel_epsilon,
            cluster_distance=self.cluster_distance,
            pseudo_count_constant=self.pseudo_count_constant,
            max_similarity=self.max_similarity,
        )
        memory.add(~ended, {"phi": phi_next, "sq_norm": phi_next.square().sum(-1)})
        memory.reset(ended)  # the final obs closes its episode; nothing carries over
        self._starting = ended.clone()
        self._pending.append(reward)

    def multiplier(self, errors: Tensor) -> Tensor:
        """``clip(1 + (err - mu_err) / sigma_err, 1, L)`` for RND errors ``[T, N]``; before any
        ``update`` the batch's own mean and std stand in for the running ones."""
        errors = errors.to(torch.float64)
        if float(self.err_rms.count) < 1.0:
            mean, std = errors.mean(), errors.std(unbiased=False)
        else:
            mean, std = self.err_rms.mean, self.err_rms.std
        alpha = 1.0 + (errors - mean) / (std + 1e-8)
        return alpha.clamp(1.0, self.max_multiplier).to(torch.float32)

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``r_episodic * clip(alpha, 1, L)``: ``[T, N]`` float32 for the last ``T`` observed
        steps (``batch`` must be those steps; its ``next_obs`` feeds RND)."""
        episodic = pending_batch(self._pending, batch.shape[0], "NGU")
        self._pending = []
        errors = self.rnd.compute(batch)
        self._errors = (batch.next_obs, self._version, errors)
        return episodic * self.multiplier(errors)

    def _rnd_errors(self, batch: Transitions) -> Tensor:
        """``rnd.compute(batch)``: the errors ``compute`` got, when it scored this very
        ``batch.next_obs`` and RND has not changed since (PPO's compute-then-update of one
        rollout: a 2,048-row forward pass of both RND networks saved), else computed."""
        cached = self._errors
        self._errors = None
        if cached is not None and cached[0] is batch.next_obs and cached[1] == self._version:
            return cached[2]
        with torch.no_grad():
            return self.rnd.compute(batch)

    # ---- training ------------------------------------------------------------------------

    def update(self, batch: Transitions) -> dict[str, float]:
        """Fold the batch's RND errors into mu_err, sigma_err; train RND on ``next_obs`` and the
        inverse model on ``(obs, actions, next_obs)``, all ``[T, N, ...]``."""
        idf, optimizer, _ = self._parts()
        errors = self._rnd_errors(batch)  # as compute saw them: before RND's update
        with torch.no_grad():
            lifted = self.multiplier(errors)
        self.err_rms.update(errors.reshape(-1))
        metrics = self.rnd.update(batch)
        self._version += 1
        obs, actions, next_obs = flat_transitions(batch)

        def step(idx: Tensor) -> tuple[Tensor, dict[str, Tensor | None]]:
            loss = idf.loss(obs[idx], actions[idx], next_obs[idx])
            return loss, {f"losses/ngu_{self.embedding.split('-')[0]}": loss}

        inverse = train_rollout(self, optimizer, list(idf.parameters()), obs.shape[0], step)
        return {
            "losses/ngu_rnd": metrics["losses/rnd"],
            **inverse,
            "charts/ngu_distance_mean": float(self.distance_mean.mean),
            "charts/ngu_multiplier": float(lifted.mean()),
            "charts/ngu_lifted_fraction": float((lifted > 1.0).float().mean()),
        }

    # ---- state ---------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        return {
            **training_state(self.optimizer, self.generator),
            "memory": self.memory.state_dict() if self.memory is not None else None,
            "starting": self._starting.clone(),
            "pending": [r.clone() for r in self._pending],
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        _, optimizer, memory = self._parts()
        self._version += 1
        self._errors = None
        load_training_state(state, self.generator, optimizer)
        memory.load_state_dict(state["memory"])
        self._starting = torch.as_tensor(state["starting"], dtype=torch.bool).clone()
        self._pending = [torch.as_tensor(r).clone() for r in state["pending"]]
