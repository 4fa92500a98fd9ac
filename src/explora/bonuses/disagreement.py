"""Self-supervised exploration via disagreement (Pathak, Gandhi & Gupta 2019, "Self-Supervised
Exploration via Disagreement", ICML; official code pathak22/exploration-by-disagreement,
``run.py``, ``dynamics.py``, ``rollouts.py``; built on openai/large-scale-curiosity).

An ensemble of K forward models predicts the features of the next observation; where they have
seen enough data they agree, where they have not they disagree, and the disagreement is the
curiosity. Where the next observation is random (a noisy TV) every member learns to predict its
mean, so the variance falls with training although each member's error stays high:

    r(s, a, s') = mean over the d features of Var_k [ f_k(phi(s), a) ]      (variance over the
                  K members with divisor K, ``np.var``; s' enters only through training)
    loss        = sum over members k of mean over the batch of m_k * mean_d (f_k - phi(s'))^2
    m_k         = Bernoulli(0.8) / 0.8 per sample and member

Read from the official code: ``run.py`` builds ``--num_dynamics 5`` copies of the large-scale
curiosity ``Dynamics`` net on one shared feature extractor (``--feat_learning none``: random
features) with ``--var_output`` on; ``rollouts.py`` takes ``np.var`` over the members' outputs
(population variance) and ``np.mean`` over the feature axis; each member's training loss is
``tf.nn.dropout(mean_d (f_k - stop_gradient(phi'))^2, keep_prob=0.8)``, i.e. every member sees
the same minibatches but drops a random 20% of the samples (the kept ones scaled by 1/0.8): the
"bootstrap" that keeps the members apart, besides their independent initialisations. The
members' losses are summed and trained with PPO's Adam. The features are as in the ``dynamics``
bonus (``explora.models.dynamics.CuriosityFeatures``: observations whitened with a random
agent's statistics, then a fixed random embedding; "raw", "idf" or an encoder object can be
chosen the same way).

The ensemble is one batched computation: every layer is an ``EnsembleLinear`` with weights
``[K, in, out]`` applied by ``torch.baddbmm`` (``EnsembleForwardModel``), so five members cost
five times the arithmetic of one but a single call per layer, with no Python loop over members.

Defaults and where they come from:
    num_members = 5 (``run.py --num_dynamics``; another library defaults to 4).
    keep_prob = 0.8 (``dynamics.py``, the dropout on each member's per-sample loss).
    features = "random" (``run.py --feat_learning none``), layernorm = False (``--layernorm 0``).
    learning_rate = 1e-4, update_epochs = 3, num_minibatches = 8 (``run.py``); Adam's eps 1e-8
        (TensorFlow's default); no gradient clipping.
    residual_blocks = 4 (``dynamics.py``).
    warmup_steps = 128 per env for the observation statistics (as in ``dynamics``; the code
        takes 10,000 random steps).

Deviations:
    feature_size = 128, hidden_size = 256 instead of 512 and 512: five 10-layer forward models
        at 512 wide would cost about 4x as much again per sample on a 2-core CPU; the MiniGrid
        preset goes smaller still (see the report). The feature network is ``Embedding``, as
        in the ``dynamics`` bonus. Minibatches are drawn over samples, not whole trajectories.
    The paper also optimises the policy through the disagreement by gradient (its
        "differentiable" variant); explora's agents use the bonus as a reward, the variant the
        code's PPO runs.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> bonus = Disagreement(feature_size=16, hidden_size=32, residual_blocks=1)
    >>> bonus.setup(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 4)
    >>> obs = torch.randint(0, 10, (8, 4, 7, 7, 3), dtype=torch.uint8)
    >>> batch = Transitions(obs, torch.randint(0, 7, (8, 4)), obs.roll(1, 0), torch.zeros(8, 4),
    ...     torch.zeros(8, 4, dtype=torch.bool), torch.zeros(8, 4, dtype=torch.bool))
    >>> bonus.compute(batch).shape
    torch.Size([8, 4])
    >>> sorted(bonus.update(batch))
    ['losses/disagreement_forward']
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import Tensor

from explora.bonuses._shared import FeatureCuriosity, Features, flat_steps
from explora.bonuses.base import Transitions
from explora.models.dynamics import CuriosityFeatures, EnsembleForwardModel


class Disagreement(FeatureCuriosity):
    """Curiosity as the variance of an ensemble of forward models' predictions of phi(s'),
    averaged over features.

    Args:
        num_members: forward models in the ensemble (K >= 2).
        keep_prob: probability that a member trains on a given sample of a minibatch.
        features: "random", "raw", "idf", "vae" (not yet available) or an encoder object, as in
            ``Dynamics``.
        learning_rate: Adam step size of the ensemble (and of trained features).
        update_epochs: passes over the rollout per ``update``.
        num_minibatches: gradient steps per epoch.
        feature_size: dimension of "random" and "idf" features.
        hidden_size: width of the feature MLP and of each forward model.
        residual_blocks: residual blocks of each forward model.
        layernorm: layer-normalise the features (not "raw").
        max_grad_norm: global gradient-norm clip (None: no clipping, as the code).
        warmup_steps: random-policy steps per env whose observations fix the whitening.

    ``setup`` builds the networks and the optimiser; ``state_dict`` holds them, the whitening
    and warm-up statistics, the optimiser's and the generator's state: call ``setup`` before
    ``load_state_dict``.
    """

    def __init__(
        self,
        *,
        num_members: int = 5,
        keep_prob: float = 0.8,
        features: Features = "random",
        learning_rate: float = 1e-4,
        update_epochs: int = 3,
        num_minibatches: int = 8,
        feature_size: int = 128,
        hidden_size: int = 256,
        residual_blocks: int = 4,
        layernorm: bool = False,
        max_grad_norm: float | None = None,
        warmup_steps: int = 128,
    ) -> None:
        super().__init__()
        if num_members < 2:
            raise ValueError(f"num_members must be >= 2 (a variance needs two), got {num_members}")
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
        self.num_members = num_members
        self.keep_prob = keep_prob
        self._init_features(
            features=features,
            learning_rate=learning_rate,
            update_epochs=update_epochs,
            num_minibatches=num_minibatches,
            feature_size=feature_size,
            hidden_size=hidden_size,
            residual_blocks=residual_blocks,
            layernorm=layernorm,
            max_grad_norm=max_grad_norm,
            warmup_steps=warmup_steps,
        )
        self.ensemble: EnsembleForwardModel | None = None

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build the features, the ensemble, the optimiser and the warm-up statistics."""
        phi = self._setup_features(observation_space, action_space, "disagreement")
        self.ensemble = EnsembleForwardModel(
            self.num_members, phi.out_dim, action_space, self.hidden_size, self.residual_blocks
        )
        self._finish_setup(self.ensemble)

    def _parts(self) -> tuple[CuriosityFeatures, EnsembleForwardModel, torch.optim.Optimizer]:
        if self.phi is None or self.ensemble is None or self.optimizer is None:
            raise RuntimeError("call setup() before using Disagreement")
        return self.phi, self.ensemble, self.optimizer

    def predictions(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``[K, B, d]``: every member's prediction of phi(s') for ``obs`` ``[B, *obs_shape]``
        and ``actions`` ``[B, *action_shape]`` (with gradients where the caller allows them)."""
        phi, ensemble, _ = self._parts()
        return ensemble(phi(obs), actions)

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """The members' variance (divisor K) averaged over features, for each transition of
        ``batch`` (``obs`` ``[T, N, *obs_shape]``, ``actions`` ``[T, N, *action_shape]``;
        ``next_obs`` is not needed): ``[T, N]`` float32."""
        predictions = self.predictions(flat_steps(batch.obs), flat_steps(batch.actions))
        variance = predictions.var(dim=0, unbiased=False).mean(dim=-1)
        return variance.reshape(batch.shape).to(torch.float32)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train the members on ``batch`` (shapes as in ``compute``): ``update_epochs`` passes,
        each a random permutation split into ``num_minibatches`` Adam steps on the members'
        summed losses, each member's per-sample squared errors (averaged over features)
        dropped with probability ``1 - keep_prob`` and the rest scaled by ``1 / keep_prob``."""
        _, ensemble, _ = self._parts()

        def forward_loss(
            features: Tensor, actions: Tensor, features_next: Tensor
        ) -> tuple[Tensor, Tensor]:
            errors = (ensemble(features, actions) - features_next).square().mean(-1)
            keep = torch.rand(errors.shape, generator=self.generator) < self.keep_prob
            forward = (errors * keep / self.keep_prob).mean(dim=1).sum()  # [K, B] -> sum_k
            return forward, forward / self.num_members

        return self._train(batch, forward_loss, "losses/disagreement")
