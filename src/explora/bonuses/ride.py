"""RIDE (Raileanu & Rocktäschel 2020, "RIDE: Rewarding Impact-Driven Exploration for
Procedurally-Generated Environments", ICLR 2020; official code
facebookresearch/impact-driven-exploration, ``src/algos/ride.py``).

The bonus pays how much an action changes the learned embedding of the state, discounted by how
often the state reached was already visited in the episode:

    r(s, a, s') = || phi(s') - phi(s) ||_2 / sqrt(N_episode(s'))

phi is trained, as in ICM (Pathak et al. 2017), by an inverse model g(phi(s), phi(s')) -> a and
a forward model f(phi(s), a) -> phi(s') (``explora.models.dynamics``):

    loss = forward_loss_coef * mean ||f(phi(s), a) - phi(s')||_2 + inverse_loss_coef * mean CE

with the forward loss's gradient reaching phi through both of its ends (the official code does
not detach phi(s')). ``N_episode(s')`` counts the visits of s' in the current episode including
this one (``explora.bonuses.visits.EpisodeVisits``) and resets at that env copy's episode end.

State keys. The official code keys the episodic count on the *full* grid (FullyObsWrapper
frames) while phi sees the partial view. ``key="auto"`` counts on the env's compact state key
(``Transitions.state_keys``: MiniGrid's agent cell and direction, DeepSea's cell) where offered
and on the observation's bytes elsewhere; ``count_key`` says which ("state" / "observation").

Defaults and where they come from (official ``src/arguments.py``, ``src/models.py``):
    forward_loss_coef = 10, inverse_loss_coef = 0.1 (``--forward_loss_coef``,
        ``--inverse_loss_coef``). The forward loss is the L2 norm (not squared) of the error and
        the inverse loss the cross-entropy, both averaged over samples (``src/losses.py`` sums
        the batch means over the 100 time steps: a constant factor Adam's step does not see).
    learning_rate = 1e-4 (``--learning_rate``; the official optimiser is RMSprop with alpha 0.99,
        eps 1e-5; here Adam with eps 1e-5, as the other bonuses).
    max_grad_norm = 40 (``--max_grad_norm``, applied to each of the three networks; here to
        their parameters together).
    Networks for MiniGrid (``embedding="auto"`` on a small integer grid): phi is the official
        ``MinigridStateEmbeddingNet``, three 3x3 convolutions of stride 2 with 32, 32 and 128
        channels and ELU (7x7 -> 1x1, feature_size = 128); forward model Linear(128 + |A|, 256)
        -ReLU-Linear(256, 128), inverse model Linear(256, 256)-ReLU-Linear(256, |A|) (hidden_size
        = 256). Elsewhere ``Embedding``'s MLP (or its conv stack for large images).
    Intrinsic coefficient: 0.1 or 0.5 per env in the README's commands (0.5 in the code). Not a
        bonus argument: the agent divides the raw bonus by the running std of its discounted
        return and weighs it with its own ``int_coef``.
    Training schedule: ``update_epochs`` x ``num_minibatches`` Adam steps on a random
        ``update_proportion`` of each rollout (the shape of ``RND``'s schedule). Default one
        step on the whole rollout (1 x 1 on 100%), the official rate: its learner takes one step
        per 32 x 100 batch, i.e. per 3,200 frames; here one per rollout (2,048 frames with the
        MiniGrid preset). Measured: with RND's CleanRL schedule (4 x 4 on 25%, ~16 steps per
        2,048 frames) phi collapsed on DoorKey-8x8 (seed 1): the forward loss, which a smaller
        phi lowers, fell from 2.6 to 0.04 while the inverse loss *rose* from 1.24 to 1.7 (chance:
        ln 7 = 1.95) within 500k frames; with one step per rollout the inverse loss fell from
        1.96 to 1.13 and the forward loss from 2.9 to 0.8.

Deviations: the embedding's inputs are ``obs_features`` (MiniGrid codes divided by each
channel's largest value; the official code divides them by 255, leaving inputs below 0.04); the
step that ends an episode is scored on its true final observation (the official torchbeast
buffers hold the next episode's reset frame there).

``observe`` fixes each step's count; ``compute`` computes the embeddings on the whole batch and
expects it to be the last ``T`` observed steps (the protocol's rule for per-episode state).

Example:
    >>> import gymnasium as gym, numpy as np, torch
    >>> from explora.bonuses.base import Transitions
    >>> bonus = RIDE()
    >>> bonus.setup(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 2)
    >>> obs = torch.randint(0, 10, (1, 2, 7, 7, 3), dtype=torch.uint8)
    >>> no = torch.zeros(1, 2, dtype=torch.bool)
    >>> step = Transitions(obs, torch.zeros(1, 2).long(), obs + 1, torch.zeros(1, 2), no, no)
    >>> bonus.observe(step)
    >>> bonus.compute(step).shape, sorted(bonus.update(step))
    (torch.Size([1, 2]), ['losses/ride_forward', 'losses/ride_inverse'])
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.bonuses._shared import (
    flat_transitions,
    load_training_state,
    seeded_generator,
    train_rollout,
    training_state,
)
from explora.bonuses.base import Transitions
from explora.bonuses.visits import EpisodeVisits, KeyChoice, pending_batch
from explora.models.dynamics import (
    ForwardModel,
    InverseDynamics,
    check_actions,
    check_space,
    is_small_grid,
)

EmbeddingChoice = Literal["auto", "mlp", "minigrid-conv"]


class RIDE(nn.Module):
    """``r = ||phi(s') - phi(s)||_2 / sqrt(N_episode(s'))`` with phi from forward and inverse
    dynamics.

    Args:
        key: what the episodic count keys on: "auto", "state" or "observation".
        forward_loss_coef, inverse_loss_coef: weights of the two losses that train phi.
        learning_rate: Adam step size of phi and both models.
        update_epochs, num_minibatches, update_proportion: the training schedule per rollout.
        feature_size: size of phi.
        hidden_size: width of the forward and inverse models (and of the MLP embedding).
        embedding: "auto" (RIDE's conv on MiniGrid's grid, else ``Embedding``'s default),
            "mlp" or "minigrid-conv".
        max_grad_norm: gradient-norm clip of all three networks together (None: no clip).

    Attributes:
        count_key: "state" or "observation" once known.
    """

    warmup_steps = 0

    def __init__(
        self,
        *,
        key: KeyChoice = "auto",
        forward_loss_coef: float = 10.0,
        inverse_loss_coef: float = 0.1,
        learning_rate: float = 1e-4,
        update_epochs: int = 1,
        num_minibatches: int = 1,
        update_proportion: float = 1.0,
        feature_size: int = 128,
        hidden_size: int = 256,
        embedding: EmbeddingChoice = "auto",
        max_grad_norm: float | None = 40.0,
    ) -> None:
        super().__init__()
        EpisodeVisits(1, key)  # checks the key choice now
        if embedding not in ("auto", "mlp", "minigrid-conv"):
            raise ValueError(
                f"unknown embedding {embedding!r}; choose one of: auto, minigrid-conv, mlp"
            )
        if not 0.0 < update_proportion <= 1.0:
            raise ValueError(f"update_proportion must be in (0, 1], got {update_proportion}")
        if min(forward_loss_coef, inverse_loss_coef) < 0:
            raise ValueError("forward_loss_coef and inverse_loss_coef must be >= 0")
        self.key = key
        self.forward_loss_coef = forward_loss_coef
        self.inverse_loss_coef = inverse_loss_coef
        self.learning_rate = learning_rate
        self.update_epochs = update_epochs
        self.num_minibatches = num_minibatches
        self.update_proportion = update_proportion
        self.feature_size = feature_size
        self.hidden_size = hidden_size
        self.embedding = embedding
        self.max_grad_norm = max_grad_norm
        self.episodic = True
        self.idm: InverseDynamics | None = None
        self.forward_model: ForwardModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()
        self.visits = EpisodeVisits(0, key)
        self._counts: list[Tensor] = []

    @property
    def count_key(self) -> str | None:
        return self.visits.count_key

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Check the spaces; build phi, the two models, the optimiser and the counts."""
        check_space(observation_space, "ride")
        check_actions(action_space, "ride")
        arch = self.embedding
        if arch == "auto":
            arch = "minigrid-conv" if is_small_grid(observation_space) else "auto"
        self.idm = InverseDynamics(
            observation_space, action_space, self.feature_size, self.hidden_size, arch=arch
        )
        self.forward_model = ForwardModel(
            self.idm.embedding.out_dim, action_space, self.hidden_size
        )
        self.optimizer = torch.optim.Adam(
            self.parameters(), lr=self.learning_rate, eps=1e-5, fused=True
        )
        self.generator = seeded_generator()
        self.visits = EpisodeVisits(num_envs, self.key)
        self._counts = []

    def _models(self) -> tuple[InverseDynamics, ForwardModel, torch.optim.Optimizer]:
        if self.idm is None or self.forward_model is None or self.optimizer is None:
            raise RuntimeError("call setup() before using RIDE")
        return self.idm, self.forward_model, self.optimizer

    def start_new_episodes(self, envs: np.ndarray) -> None:
        """Forget the episodes of the env copies where ``envs`` ``[N]`` bool is True."""
        self.visits.start_new_episodes(envs)

    def observe(self, step: Transitions) -> None:
        """Count the visit of ``step.next_obs`` ``[1, N, ...]`` in each env's episode."""
        self._models()
        self._counts.append(torch.from_numpy(self.visits.visit(step)))

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``||phi(s') - phi(s)|| / sqrt(N_episode(s'))``: ``[T, N]`` float32, from ``batch.obs``
        and ``batch.next_obs`` ``[T, N, *obs_shape]`` and the counts fixed in ``observe``."""
        idm, _, _ = self._models()
        steps, envs = batch.shape
        counts = pending_batch(self._counts, steps, "RIDE")
        self._counts = []
        obs, _, next_obs = flat_transitions(batch)
        before, after = idm.embed_pair(obs, next_obs)
        impact = torch.linalg.vector_norm(after - before, dim=-1).reshape(steps, envs)
        return (impact / counts.to(impact).sqrt()).to(torch.float32)

    def losses(self, obs: Tensor, actions: Tensor, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        """(forward, inverse) losses, each a mean over the ``[B, ...]`` samples."""
        idm, forward_model, _ = self._models()
        phi, phi_next = idm.embed_pair(obs, next_obs)
        forward = torch.linalg.vector_norm(forward_model(phi, actions) - phi_next, dim=-1).mean()
        return forward, idm.inverse_loss(phi, phi_next, actions)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train phi and both models on the rollout ``batch`` (``[T, N, ...]``)."""
        _, _, optimizer = self._models()
        obs, actions, next_obs = flat_transitions(batch)

        def step(idx: Tensor) -> tuple[Tensor, dict[str, Tensor | None]]:
            forward, inverse = self.losses(obs[idx], actions[idx], next_obs[idx])
            loss = self.forward_loss_coef * forward + self.inverse_loss_coef * inverse
            return loss, {"losses/ride_forward": forward, "losses/ride_inverse": inverse}

        params = list(self.parameters())
        return train_rollout(self, optimizer, params, obs.shape[0], step, self.update_proportion)

    def get_extra_state(self) -> dict[str, Any]:
        return {
            **training_state(self.optimizer, self.generator),
            "visits": self.visits.state_dict(),
            "counts": [c.clone() for c in self._counts],
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        _, _, optimizer = self._models()
        load_training_state(state, self.generator, optimizer)
        self.visits.load_state_dict(state["visits"])
        self._counts = [torch.as_tensor(c).clone() for c in state["counts"]]
