"""Pieces the trained curiosity bonuses share (ICM, Dynamics, Disagreement, RIDE, E3B, NGU, EC).

- ``flat_steps`` / ``flat_transitions``: a time-major batch ``[T, N, ...]`` as ``[T * N, ...]``
  samples.
- ``check_action_space``, ``check_sizes``, ``check_at_least_one``, ``check_positive``: the
  argument and space checks several constructors and ``setup`` methods make, with the messages
  they raise.
- ``seeded_generator``: a bonus's own ``torch.Generator``, seeded from torch's global one
  (``update`` may run on another thread than the agent's: ``Bonus.update``).
- ``gradient_step`` and ``train_minibatches``: one optimiser step on a loss (zeroed gradients,
  backward, optional global-norm clip, step), and the loop of such steps over index
  minibatches with the per-step losses averaged for the metrics.
- ``training_state`` / ``load_training_state`` / ``load_optimizer_state``: the optimiser's and
  the generator's state in ``get_extra_state`` / ``set_extra_state``.
- ``FeatureCuriosity``: forward-dynamics curiosity in a chosen feature
  space (Burda et al. 2018), the common part of the ``dynamics`` and ``disagreement`` bonuses:
  argument checks, the features built in ``setup``, the warm-up whitening in ``observe``, the
  features of a batch for training and the extra state.

Nothing here changes what a bonus computes: each is the code the bonuses held in copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

import gymnasium as gym
import torch
from torch import Tensor, nn

from explora.bonuses.base import RunningMeanStd, Transitions
from explora.models.dynamics import (
    CuriosityFeatures,
    check_actions,
    check_features,
    check_space,
    input_dim,
    iter_minibatches,
    obs_features,
)
from explora.models.optim import (  # noqa: F401 - re-exported for the bonuses
    clip_grad_norm,
    load_optimizer_state,
    load_training_state,
    training_state,
)

FeatureKind = Literal["raw", "random", "idf", "vae"]
Features = FeatureKind | nn.Module | Callable[[Tensor], Tensor]


# ---- batches ------------------------------------------------------------------------------


def flat_steps(x: Tensor) -> Tensor:
    """``[T, N, *shape]`` -> ``[T * N, *shape]``."""
    return x.reshape(int(x.shape[0]) * int(x.shape[1]), *x.shape[2:])


def flat_transitions(batch: Transitions) -> tuple[Tensor, Tensor, Tensor]:
    """``(obs, actions, next_obs)`` of ``batch`` (``[T, N, ...]``) as ``[T * N, ...]``."""
    return flat_steps(batch.obs), flat_steps(batch.actions), flat_steps(batch.next_obs)


# ---- checks -------------------------------------------------------------------------------


def check_action_space(space: gym.Space, who: str) -> None:
    """Raise ``ValueError`` naming ``who`` unless ``space`` is Discrete or Box (the forward
    models' wording of ``check_actions``)."""
    check_actions(
        space,
        who,
        "its forward model takes the action one-hot or as a vector",
        "; accepted action spaces: Discrete, Box",
    )


def check_sizes(
    update_epochs: int, num_minibatches: int, feature_size: int, hidden_size: int
) -> None:
    """Raise ``ValueError`` unless the training schedule and the network sizes are >= 1."""
    if min(update_epochs, num_minibatches, feature_size, hidden_size) < 1:
        raise ValueError(
            "update_epochs, num_minibatches, feature_size and hidden_size must be >= 1"
        )


def check_at_least_one(**values: int) -> None:
    """Raise ``ValueError`` ("<name> must be >= 1, got <value>") for the first value below 1."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def check_positive(**values: float) -> None:
    """Raise ``ValueError`` ("<name> must be > 0, got <value>") for the first value not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


# ---- training -----------------------------------------------------------------------------


def seeded_generator() -> torch.Generator:
    """A new generator seeded from torch's global one (one draw from it), for a bonus whose
    ``update`` may run on another thread than the agent's (``Bonus.update``)."""
    generator = torch.Generator()
    generator.manual_seed(int(torch.randint(0, 2**62, ())))
    return generator


def gradient_step(
    optimizer: torch.optim.Optimizer,
    loss: Tensor,
    params: list[nn.Parameter],
    max_grad_norm: float | None,
) -> None:
    """One step of ``optimizer`` on ``loss``: gradients zeroed (set to None), ``loss``
    backpropagated, the gradients of ``params`` clipped to a global norm of ``max_grad_norm``
    (None: no clip)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        clip_grad_norm(params, max_grad_norm)
    optimizer.step()


def train_minibatches(
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    max_grad_norm: float | None,
    minibatches: Iterable[Tensor],
    step: Callable[[Tensor], tuple[Tensor, dict[str, Tensor | None]]],
) -> dict[str, float]:
    """For each index tensor of ``minibatches`` (drawn lazily, so a ``step`` that draws from
    the same generator keeps its order): ``loss, logged = step(idx)`` and one
    ``gradient_step`` on ``loss``. Returns, for each name ``logged`` gave a tensor (None: nothing
    this step), the mean over the steps of its detached values, in the order the names first
    came."""
    logs: dict[str, list[Tensor]] = {}
    for idx in minibatches:
        loss, logged = step(idx)
        gradient_step(optimizer, loss, params, max_grad_norm)
        for name, value in logged.items():
            if value is not None:
                logs.setdefault(name, []).append(value.detach())
    return {name: float(torch.stack(values).mean()) for name, values in logs.items()}


class Schedule(Protocol):
    """The training settings ``train_rollout`` reads from a bonus."""

    update_epochs: int
    num_minibatches: int
    max_grad_norm: float | None
    generator: torch.Generator


def train_rollout(
    bonus: Schedule,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    total: int,
    step: Callable[[Tensor], tuple[Tensor, dict[str, Tensor | None]]],
    proportion: float = 1.0,
) -> dict[str, float]:
    """``train_minibatches`` over ``total`` samples by the bonus's schedule: ``update_epochs``
    passes, each over a random ``proportion`` of the samples (a permutation drawn from
    ``bonus.generator``) split into ``num_minibatches`` steps clipped at ``max_grad_norm``."""
    minibatches = iter_minibatches(
        total, proportion, bonus.update_epochs, bonus.num_minibatches, bonus.generator
    )
    return train_minibatches(optimizer, params, bonus.max_grad_norm, minibatches, step)


# ---- state --------------------------------------------------------------------------------


# ---- forward-dynamics curiosity in a feature space (Burda et al. 2018) --------------------


class FeatureCuriosity(nn.Module):
    """What the ``dynamics`` and ``disagreement`` bonuses share: features phi
    (``CuriosityFeatures``) whose inputs are whitened with the statistics of the first
    ``warmup_steps`` observed steps, one Adam over the forward model(s) and trained features,
    a generator for minibatches, and ``update_epochs`` x ``num_minibatches`` training.

    A subclass calls ``_init_features`` in its constructor; in ``setup``, ``_setup_features``,
    then builds its forward model(s) (a module attribute), then ``_finish_setup`` with their
    parameters; and defines ``_parts() -> (phi, model, optimizer)``.
    """

    def _init_features(
        self,
        *,
        features: Features,
        learning_rate: float,
        update_epochs: int,
        num_minibatches: int,
        feature_size: int,
        hidden_size: int,
        residual_blocks: int,
        layernorm: bool,
        max_grad_norm: float | None,
        warmup_steps: int,
    ) -> None:
        """Check and keep the arguments both bonuses take."""
        self.features = check_features(features)
        # An encoder object is kept out of this module's registry until ``setup`` puts it in
        # ``self.phi`` (a plain list), so its parameters are not held twice.
        self._given = [features]
        check_sizes(update_epochs, num_minibatches, feature_size, hidden_size)
        if residual_blocks < 0 or warmup_steps < 0:
            raise ValueError("residual_blocks and warmup_steps must be >= 0")
        if layernorm and features == "raw":
            raise ValueError("layernorm applies to learned or random features, not to 'raw' ones")
        self.learning_rate = learning_rate
        self.update_epochs = update_epochs
        self.num_minibatches = num_minibatches
        self.feature_size = feature_size
        self.hidden_size = hidden_size
        self.residual_blocks = residual_blocks
        self.layernorm = layernorm
        self.max_grad_norm = max_grad_norm
        self.warmup_steps = warmup_steps
        self.episodic = False
        self._observed = 0
        self.phi: CuriosityFeatures | None = None
        self.obs_rms: RunningMeanStd | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()

    def _parts(self) -> tuple[CuriosityFeatures, nn.Module, torch.optim.Optimizer]:
        raise NotImplementedError

    def _setup_features(
        self, observation_space: gym.Space, action_space: gym.Space, who: str
    ) -> CuriosityFeatures:
        """Check the spaces (naming ``who``) and build ``self.phi``."""
        check_space(observation_space, who)
        check_action_space(action_space, who)
        self.obs_space = observation_space
        self.phi = CuriosityFeatures(
            self._given[0],
            observation_space,
            action_space,
            self.feature_size,
            self.hidden_size,
            whiten=self.warmup_steps > 0,
            layernorm=self.layernorm,
        )
        return self.phi

    def _finish_setup(self, model: nn.Module) -> None:
        """Build the warm-up statistics, the Adam over ``model``'s parameters and the trained
        features' (eps 1e-8, TensorFlow's default) and the generator."""
        assert self.phi is not None
        self.obs_rms = RunningMeanStd(shape=(input_dim(self.obs_space),), epsilon=0.0)
        self._observed = 0
        params = [*model.parameters(), *self.phi.trainable_parameters()]
        self.optimizer = torch.optim.Adam(params, lr=self.learning_rate, eps=1e-8, fused=True)
        self.generator = seeded_generator()

    def observe(self, step: Transitions) -> None:
        """Gather ``step.next_obs`` ``[1, N, *obs_shape]`` into the whitening statistics during
        the first ``warmup_steps`` observed steps (the agent's random play), then fix them. A
        no-op in eval mode and after the warm-up."""
        phi, _, _ = self._parts()
        if not self.training or self._observed >= self.warmup_steps:
            return
        assert self.obs_rms is not None
        self.obs_rms.update(obs_features(flat_steps(step.next_obs), self.obs_space))
        self._observed += 1
        if self._observed == self.warmup_steps and phi.whitening is not None:
            phi.whitening.set_statistics(self.obs_rms.mean.float(), self.obs_rms.var.float())

    def _train(
        self,
        batch: Transitions,
        forward_loss: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
        prefix: str,
    ) -> dict[str, float]:
        """Train on ``batch`` (``[T, N, ...]``): ``update_epochs`` passes, each a random
        permutation split into ``num_minibatches`` Adam steps on ``L_features + L_forward``.
        ``forward_loss(features, actions, features_next)`` gives ``(L_forward, its logged
        value)``; the metrics are ``<prefix>_forward`` and, for trained features,
        ``<prefix>_inverse`` ("idf") or ``<prefix>_features``."""
        phi, _, optimizer = self._parts()
        obs, actions, next_obs = flat_transitions(batch)
        fixed: tuple[Tensor, Tensor] | None = None
        if not phi.trains:  # fixed features: one pass serves every epoch
            with torch.no_grad():
                a, b = phi(torch.cat([obs, next_obs])).chunk(2)
            fixed = (a, b)
        feature_name = f"{prefix}_{'inverse' if phi.kind == 'idf' else 'features'}"

        def step(idx: Tensor) -> tuple[Tensor, dict[str, Tensor | None]]:
            feature_loss: Tensor | None = None
            if fixed is not None:
                features, features_next = fixed[0][idx], fixed[1][idx]
            else:
                feature_loss, features, features_next = phi.loss(
                    obs[idx], actions[idx], next_obs[idx]
                )
            forward, logged = forward_loss(features, actions[idx], features_next)
            loss = forward if feature_loss is None else forward + feature_loss
            return loss, {f"{prefix}_forward": logged, feature_name: feature_loss}

        params = [p for group in optimizer.param_groups for p in group["params"]]
        return train_rollout(self, optimizer, params, obs.shape[0], step)

    def get_extra_state(self) -> dict[str, Any]:
        return {**training_state(self.optimizer, self.generator), "observed": self._observed}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._observed = int(state["observed"])
        load_training_state(state, self.generator, lambda: self._parts()[2])
