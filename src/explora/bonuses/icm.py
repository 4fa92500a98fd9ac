"""Intrinsic Curiosity Module (Pathak, Agrawal, Efros & Darrell 2017, "Curiosity-driven
Exploration by Self-supervised Prediction", ICML; official code pathak22/noreward-rl,
``src/model.py`` ``StateActionPredictor``, ``src/a3c.py``, ``src/constants.py``).

An embedding phi is trained by an inverse model g(phi(s), phi(s')) -> a, so that it keeps what
the agent's actions can change and drops what they cannot; a forward model f(phi(s), a) predicts
phi(s'), and its error is the curiosity:

    r(s, a, s') = eta * 0.5 * || f(phi(s), a) - phi(s') ||^2        summed over the features
    loss        = (1 - beta) * L_inverse + beta * L_forward
    L_forward   = mean over the batch of 0.5 * || f(phi(s), a) - phi(s') ||^2
    L_inverse   = cross-entropy of g's logits against a Discrete action, or half the squared
                  error summed over the dimensions of a Box action (``InverseDynamics``)

Read from the official code (``model.py``): the forward loss is ``0.5 * reduce_mean(square(f -
phi2)) * 288``, the mean over batch and features multiplied back by the feature size (288, the
universe head's output on 42x42 frames), i.e. half the squared error *summed* over the features
and averaged over the batch; explora sums over the features of any ``feature_size`` (the same
thing at 288). The bonus is the same expression on one transition, times ``PREDICTION_BETA``
(our ``eta``). Nothing stops the forward loss's gradient: it reaches phi through both phi(s)
(the forward model's input) and phi(s') (its target), as in the code; only the action is held
fixed. ``InverseDynamics`` and ``ForwardModel`` (``explora.models.dynamics``) are the two heads.

Defaults and where they come from:
    eta = 0.01 (``constants.py`` ``PREDICTION_BETA``). The agents divide the raw bonus by a
        running std (PPO: of its discounted return, ``DiscountedReturnStd``; DQN: of the bonus),
        so eta cancels there; it matters only where the raw bonus is used as it is.
    forward_weight (the paper's beta) = 0.2 (``constants.py`` ``FORWARD_LOSS_WT``).
    learning_rate = 1e-4 (``constants.py`` ``LEARNING_RATE``, Adam). The code multiplies the
        curiosity loss by ``PREDICTION_LR_SCALE`` = 10 and by the rollout length 20 before
        taking gradients; under Adam a constant factor on the loss cancels (up to eps), so the
        step size stays 1e-4 and we leave the loss unscaled.
    max_grad_norm = 0.2: the code clips the curiosity gradients at a global norm of 40
        (``GRAD_NORM_CLIP``) on that 10 x 20 = 200-times scaled loss, which is a clip at
        40 / 200 = 0.2 on the unscaled one.
    feature_size = 288 (the universe head's output), hidden_size = 256 (the code's ``size``,
        the width of g's and f's hidden layers).
    update_epochs = 3, num_minibatches = 8: the official ICM trains with A3C, one gradient step
        per 20-step rollout of one worker, which has no counterpart in a batched PPO update; we
        take the PPO schedule of the same authors' large-scale curiosity code (``run.py``:
        3 epochs x 8 minibatches of each rollout), as in the ``dynamics`` bonus.
    warmup_steps = 0: the code feeds frames scaled to [0, 1] (``envs.py``), which is what
        ``obs_features`` does; no statistics are gathered.

Deviations:
    The embedding is ``explora.models.dynamics.Embedding`` (on MiniGrid's 7x7x3 grid a
        LeakyReLU MLP, on images of side >= 36 the Nature-DQN conv stack) instead of the
        universe head (four 3x3 stride-2 convolutions of 32 with ELU on 42x42 grey frames), and
        the layers start from orthogonal weights (``layer_init``) instead of the code's
        ``normalized_columns_initializer(0.01)``.
    Box actions: the paper and code have Discrete actions only (softmax inverse model). For a Box
        action of any shape the inverse model regresses the flattened action (half squared
        error) and the forward model takes it flattened, as ``InverseDynamics`` does.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> icm = ICM(feature_size=32, hidden_size=64)
    >>> icm.setup(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 4)
    >>> obs = torch.randint(0, 10, (8, 4, 7, 7, 3), dtype=torch.uint8)
    >>> batch = Transitions(obs, torch.randint(0, 7, (8, 4)), obs.roll(1, 0), torch.zeros(8, 4),
    ...     torch.zeros(8, 4, dtype=torch.bool), torch.zeros(8, 4, dtype=torch.bool))
    >>> icm.compute(batch).shape
    torch.Size([8, 4])
    >>> sorted(icm.update(batch))
    ['losses/icm_forward', 'losses/icm_inverse']
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from explora.bonuses._shared import (
    check_action_space,
    check_sizes,
    flat_transitions,
    load_training_state,
    seeded_generator,
    train_rollout,
    training_state,
)
from explora.bonuses.base import Transitions
from explora.models.dynamics import ForwardModel, InverseDynamics, check_space


class ICM(nn.Module):
    """Intrinsic curiosity: ``r = eta * 0.5 * ||f(phi(s), a) - phi(s')||^2``.

    Args:
        eta: scale of the bonus.
        forward_weight: the paper's beta, the forward loss's weight against the inverse loss's
            ``1 - forward_weight``; in [0, 1].
        learning_rate: Adam step size of the embedding, inverse and forward models.
        update_epochs: passes over the rollout per ``update``.
        num_minibatches: gradient steps per epoch.
        feature_size: dimension of phi.
        hidden_size: width of the embedding MLP's and the two heads' hidden layers.
        max_grad_norm: global gradient-norm clip (None: no clipping).
        warmup_steps: random-policy steps per env the agent runs first (nothing is gathered).

    ``setup`` builds the networks and the optimiser; ``state_dict`` holds them, the optimiser's
    state and the generator's: call ``setup`` before ``load_state_dict``.
    """

    def __init__(
        self,
        *,
        eta: float = 0.01,
        forward_weight: float = 0.2,
        learning_rate: float = 1e-4,
        update_epochs: int = 3,
        num_minibatches: int = 8,
        feature_size: int = 288,
        hidden_size: int = 256,
        max_grad_norm: float | None = 0.2,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= forward_weight <= 1.0:
            raise ValueError(f"forward_weight must be in [0, 1], got {forward_weight}")
        if not eta > 0:
            raise ValueError(f"eta must be > 0, got {eta}")
        check_sizes(update_epochs, num_minibatches, feature_size, hidden_size)
        self.eta = eta
        self.forward_weight = forward_weight
        self.learning_rate = learning_rate
        self.update_epochs = update_epochs
        self.num_minibatches = num_minibatches
        self.feature_size = feature_size
        self.hidden_size = hidden_size
        self.max_grad_norm = max_grad_norm
        self.warmup_steps = warmup_steps
        self.episodic = False
        self.inverse_model: InverseDynamics | None = None
        self.forward_model: ForwardModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build the embedding, the inverse and forward models and the optimiser."""
        check_space(observation_space, "icm")
        check_action_space(action_space, "icm")
        self.inverse_model = InverseDynamics(
            observation_space, action_space, self.feature_size, self.hidden_size
        )
        out_dim = self.inverse_model.embedding.out_dim
        self.forward_model = ForwardModel(out_dim, action_space, self.hidden_size)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.learning_rate, fused=True)
        self.generator = seeded_generator()

    def _parts(self) -> tuple[InverseDynamics, ForwardModel, torch.optim.Optimizer]:
        if self.inverse_model is None or self.forward_model is None or self.optimizer is None:
            raise RuntimeError("call setup() before using ICM")
        return self.inverse_model, self.forward_model, self.optimizer

    def observe(self, step: Transitions) -> None:
        """Nothing to gather per step (the models train in ``update``)."""
        self._parts()

    def errors(self, obs: Tensor, actions: Tensor, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(forward error, inverse loss)``: ``[B]`` half the squared forward error summed over
        features, and the inverse loss averaged over the batch, for ``obs``, ``next_obs``
        ``[B, *obs_shape]`` and ``actions`` ``[B, *action_shape]``, with gradients."""
        inverse_model, forward_model, _ = self._parts()
        phi, phi_next = inverse_model.embed_pair(obs, next_obs)
        inverse = inverse_model.inverse_loss(phi, phi_next, actions)
        return forward_model.error(phi, actions, phi_next), inverse

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``eta * 0.5 * ||f(phi(s), a) - phi(s')||^2`` for each transition of ``batch``
        (``obs``, ``next_obs`` ``[T, N, *obs_shape]``, ``actions`` ``[T, N, *action_shape]``):
        ``[T, N]`` float32."""
        inverse_model, forward_model, _ = self._parts()
        obs, actions, next_obs = flat_transitions(batch)
        phi, phi_next = inverse_model.embed_pair(obs, next_obs)
        error = forward_model.error(phi, actions, phi_next)
        return (self.eta * error).reshape(batch.shape).to(torch.float32)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train phi, g and f on ``batch`` (shapes as in ``compute``): ``update_epochs`` passes,
        each a random permutation split into ``num_minibatches`` Adam steps on
        ``(1 - forward_weight) * L_inverse + forward_weight * L_forward``."""
        _, _, optimizer = self._parts()
        obs, actions, next_obs = flat_transitions(batch)

        def step(idx: Tensor) -> tuple[Tensor, dict[str, Tensor | None]]:
            forward, inverse = self.errors(obs[idx], actions[idx], next_obs[idx])
            forward = forward.mean()
            loss = (1.0 - self.forward_weight) * inverse + self.forward_weight * forward
            return loss, {"losses/icm_forward": forward, "losses/icm_inverse": inverse}

        return train_rollout(self, optimizer, list(self.parameters()), obs.shape[0], step)

    def get_extra_state(self) -> dict[str, Any]:
        return training_state(self.optimizer, self.generator)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        load_training_state(state, self.generator, lambda: self._parts()[2])
