"""Forward-dynamics curiosity in a chosen feature space (Burda, Edwards, Pathak, Storkey, Darrell
& Efros 2018, "Large-Scale Study of Curiosity-Driven Learning", ICLR 2019; official code
openai/large-scale-curiosity, ``run.py``, ``auxiliary_tasks.py``, ``dynamics.py``,
``utils.py``).

A forward model f predicts the features of the next observation from the features of this one
and the action; its error is the curiosity:

    r(s, a, s') = mean over the d features of ( f(phi(s), a) - phi(s') )^2
    loss        = L_features + mean over the batch of r      (phi detached in the forward loss)

``features`` chooses phi (``explora.models.dynamics.CuriosityFeatures``):
    "raw": the observations themselves (the paper's pixel variant; on small grids the scaled
        codes of ``obs_features``), whitened.
    "random": a randomly initialised embedding, never trained (the code's default
        ``--feat_learning none``).
    "idf": inverse-dynamics features: an embedding trained only by the inverse model's loss
        (L_features); the forward loss does not reach it (the code's ``tf.stop_gradient`` on
        both the forward model's input and its target).
    "vae": the posterior mean of a variational autoencoder (``explora.models.vae.VAE``, with
        ``latent_dim = feature_size`` and ``hidden_size``; more of its settings through
        ``vae_args``, e.g. ``{"iaf_steps": 2}``), trained by its own loss (the negative ELBO
        with the annealed, thresholded KL) on the transitions' observations beside the forward
        model, by the same Adam: the code's ``auxiliary_tasks.VAE``, whose features exposed to
        the dynamics are ``tf.split(features, 2, -1)[0]``, the posterior mean, and whose loss
        joins PPO's; the forward model gets them detached (``tf.stop_gradient``), as for "idf".
        The VAE sees the observations themselves (categorical MiniGrid codes; see its module),
        not the whitened ones: the code whitens its input, which a categorical likelihood
        does not need. ``layernorm`` is refused with it, as the code asserts.
        Code drift: the features move while the VAE trains, and most while the annealed KL
        weight ramps up (or a new cycle drops it back to 0): the forward error of a
        well-learned transition was measured to jump from ~2e-4 to 0.22 mid-ramp, for every
        state at once. No strategy against it yet (the large-scale curiosity code trains its
        VAE throughout as well); freezing the VAE after the warm-up or annealing once before
        the bonus is paid are the candidates, not yet measured. Set ``vae_args={"anneal_steps":
        0}`` for a constant KL weight.
    For any other feature space, pass an encoder: ``features=<nn.Module with out_dim and
        forward(obs) -> [B, out_dim]>`` (or a callable), given the raw observations; an encoder
        with ``loss(obs, actions, next_obs)`` is trained by that loss beside the forward model
        (as the code trains the VAE with the dynamics), one without is used as it is.

Read from the official code: the bonus and the forward loss are both ``reduce_mean((f -
stop_gradient(phi'))**2, -1)`` (a mean over features, no 1/2); the features are not normalised
(``--layernorm`` defaults to 0 and ``small_convnet``'s ``batchnorm`` is never switched on; the
paper's text speaks of normalising features, but its code does not by default), so ``layernorm``
is False here too and True gives the code's ``utils.layernorm``. The observations are
normalised once, with a random agent's statistics (``utils.random_agent_ob_mean_std``: mean per
pixel, one std, the mean of the per-pixel stds, over 10,000 random steps), before every feature
extractor, raw pixels included: here ``ObsWhitening``, fitted on the ``warmup_steps`` steps of
random play the agent runs first and then fixed for the run. The forward model is the code's
(``EnsembleForwardModel`` with one member: a dense layer, ``residual_blocks`` residual blocks of
two dense layers, an output layer, the action concatenated to every layer's input, LeakyReLU
0.2). The feature loss and the forward loss are added with weight 1 each and trained by one
Adam, as the code adds both to PPO's loss.

Defaults and where they come from:
    features = "random" (``run.py --feat_learning none``).
    learning_rate = 1e-4, update_epochs = 3, num_minibatches = 8 (``run.py``: the models train
        inside PPO's 3 epochs x 8 minibatches at lr 1e-4); Adam's eps 1e-8 (TensorFlow's
        default); no gradient clipping (the code has none).
    residual_blocks = 4 (``dynamics.py``).
    warmup_steps = 128 per env: the code's 10,000 random steps of statistics (one env); 128
        steps of 64 envs are 8,192. With ``warmup_steps=0`` the observations are not whitened.
    layernorm = False (``run.py --layernorm 0``).

Deviations:
    feature_size = 128, hidden_size = 256 instead of the code's 512 and 512 (``feat_dim``,
        ``hidsize``): the forward model is 10 dense layers, and at 512 wide it would cost about
        4x as much again per sample (the agent here is a 128-wide MLP on a 2-core CPU). The
        MiniGrid preset goes smaller still (see the report).
    The feature network is ``Embedding`` (a LeakyReLU-0.01 MLP on small inputs, the Nature-DQN
        conv stack with LeakyReLU on images of side >= 36) instead of ``small_convnet`` (the
        same conv stack with LeakyReLU 0.2, then a linear layer); the raw-pixel variant's
        forward model is the same dense net, not the code's U-Net.
    Minibatches are drawn over samples, not over whole env trajectories.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> bonus = Dynamics(features="idf", feature_size=16, hidden_size=32, residual_blocks=1)
    >>> bonus.setup(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 4)
    >>> obs = torch.randint(0, 10, (8, 4, 7, 7, 3), dtype=torch.uint8)
    >>> batch = Transitions(obs, torch.randint(0, 7, (8, 4)), obs.roll(1, 0), torch.zeros(8, 4),
    ...     torch.zeros(8, 4, dtype=torch.bool), torch.zeros(8, 4, dtype=torch.bool))
    >>> bonus.compute(batch).shape
    torch.Size([8, 4])
    >>> sorted(bonus.update(batch))
    ['losses/dynamics_forward', 'losses/dynamics_inverse']
    >>> vae = Dynamics(features="vae", feature_size=8, hidden_size=32, residual_blocks=1)
    >>> vae.setup(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 4)
    >>> vae.compute(batch).shape, sorted(vae.update(batch))
    (torch.Size([8, 4]), ['losses/dynamics_features', 'losses/dynamics_forward'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor

from explora.bonuses._shared import FeatureCuriosity, Features, flat_transitions
from explora.bonuses.base import Transitions
from explora.models.dynamics import (
    CuriosityFeatures,
    EnsembleForwardModel,
    check_features,
    check_space,
)
from explora.models.vae import VAE, VAEFeatures

__all__ = ["Dynamics", "Features", "check_features"]


class Dynamics(FeatureCuriosity):
    """Curiosity as a forward model's error in a feature space: ``r = mean_d (f(phi(s), a) -
    phi(s'))^2``.

    Args:
        features: "raw", "random", "idf", "vae", or an encoder object (an ``nn.Module`` with
            ``out_dim`` and ``forward(obs) -> [B, out_dim]``, or a callable); see the module
            docstring.
        learning_rate: Adam step size of the forward model (and of trained features).
        update_epochs: passes over the rollout per ``update``.
        num_minibatches: gradient steps per epoch.
        feature_size: dimension of "random", "idf" and "vae" features.
        hidden_size: width of the feature MLP and of the forward model.
        residual_blocks: residual blocks of the forward model.
        layernorm: layer-normalise the features (not "raw").
        max_grad_norm: global gradient-norm clip (None: no clipping, as the code).
        warmup_steps: random-policy steps per env whose observations fix the whitening.
        vae_args: more keyword arguments of ``explora.models.vae.VAE`` for ``features="vae"``
            (its ``latent_dim``, ``hidden_size`` and ``learning_rate`` come from the arguments
            above); None for its defaults.

    ``setup`` builds the networks and the optimiser; ``state_dict`` holds them, the whitening
    and warm-up statistics, the optimiser's and the generator's state: call ``setup`` before
    ``load_state_dict``. For an encoder object passed as ``features``, ``self.features`` holds
    ``"<ClassName>"`` (run configs stay JSON) and ``self.phi.encoder`` the object.
    """

    def __init__(
        self,
        *,
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
        vae_args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        vae = isinstance(features, str) and features == "vae"
        if vae and layernorm:
            raise ValueError(
                "layernorm applies to random or inverse-dynamics features, not to 'vae' ones "
                "(large-scale curiosity asserts the same: the VAE's features are already scaled)"
            )
        if vae_args and not vae:
            raise ValueError(f"vae_args apply to features='vae' only, got features={features!r}")
        for name in ("latent_dim", "hidden_size", "learning_rate"):
            if name in (vae_args or {}):
                raise ValueError(
                    f"vae_args must not set {name!r}: it comes from Dynamics' "
                    f"{'feature_size' if name == 'latent_dim' else name}"
                )
        self.vae_args = dict(vae_args) if vae_args else None
        self._init_features(
            # "vae" is built in setup, once the observation space is known; until then the
            # checks of a random embedding's settings stand in for it
            features="random" if vae else features,
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
        if vae:
            self.features = "vae"
            self._given = ["vae"]
        self.forward_model: EnsembleForwardModel | None = None

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build the features, the forward model, the optimiser and the warm-up statistics."""
        if self.features == "vae":
            check_space(observation_space, "dynamics")
            self._given = [
                VAEFeatures(
                    VAE(
                        observation_space,
                        latent_dim=self.feature_size,
                        hidden_size=self.hidden_size,
                        learning_rate=self.learning_rate,
                        **(self.vae_args or {}),
                    )
                )
            ]
        phi = self._setup_features(observation_space, action_space, "dynamics")
        self.forward_model = EnsembleForwardModel(
            1, phi.out_dim, action_space, self.hidden_size, self.residual_blocks
        )
        self._finish_setup(self.forward_model)

    def _parts(self) -> tuple[CuriosityFeatures, EnsembleForwardModel, torch.optim.Optimizer]:
        if self.phi is None or self.forward_model is None or self.optimizer is None:
            raise RuntimeError("call setup() before using Dynamics")
        return self.phi, self.forward_model, self.optimizer

    def errors(self, phi: Tensor, actions: Tensor, phi_next: Tensor) -> Tensor:
        """``[B]``: the forward model's squared error averaged over features, from features
        ``phi``, ``phi_next`` ``[B, d]`` and ``actions`` ``[B, *action_shape]``."""
        _, forward_model, _ = self._parts()
        prediction = forward_model(phi, actions)[0]
        return (prediction - phi_next).square().mean(dim=-1)

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``mean_d (f(phi(s), a) - phi(s'))^2`` for each transition of ``batch`` (``obs``,
        ``next_obs`` ``[T, N, *obs_shape]``, ``actions`` ``[T, N, *action_shape]``): ``[T, N]``
        float32."""
        phi, _, _ = self._parts()
        obs, actions, next_obs = flat_transitions(batch)
        features, features_next = phi(torch.cat([obs, next_obs])).chunk(2)
        error = self.errors(features, actions, features_next)
        return error.reshape(batch.shape).to(torch.float32)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train the forward model (and "idf" features or an encoder's loss) on ``batch``
        (shapes as in ``compute``): ``update_epochs`` passes, each a random permutation split
        into ``num_minibatches`` Adam steps on ``L_features + L_forward``."""

        def forward_loss(
            features: Tensor, actions: Tensor, features_next: Tensor
        ) -> tuple[Tensor, Tensor]:
            forward = self.errors(features, actions, features_next).mean()
            return forward, forward

        return self._train(batch, forward_loss, "losses/dynamics")
