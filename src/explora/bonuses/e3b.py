"""E3B (Henaff, Raileanu, Jiang & Rocktäschel 2022, "Exploration via Elliptical Episodic
Bonuses", NeurIPS 2022; official code facebookresearch/e3b, ``minihack/torchbeast/src/utils.py``
``act`` and ``src/algos/e3b.py``, and the faster ``minihack/sample-factory`` port,
``sample_factory/algo/learning/learner.py`` ``_compute_intrinsic_rewards``).

Each env copy keeps, for its current episode, the inverse of the regularised covariance of the
embeddings it has seen, and pays a state by how far it lies outside their ellipse:

    C_0^-1 = I / lambda                                        at the episode's start
    b(s')  = phi(s')^T C^-1 phi(s')                            before the update, then
    C^-1  <- C^-1 - (C^-1 u)(C^-1 u)^T / (1 + u^T C^-1 u),  u = phi(s')   (Sherman-Morrison)

so that C^-1 is always (lambda I + sum_k u_k u_k^T)^-1 over the episode's embeddings so far,
without a d x d inversion per step. phi is an embedding trained only by inverse dynamics
(``explora.models.dynamics.InverseDynamics``: cross-entropy of g(phi(s), phi(s')) -> a).
``embedding="vae"`` (not in the paper; an ablation of what phi should ignore) takes instead the
posterior mean of a VAE (``explora.models.vae``) trained by its own loss on the rollout's
observations: a generative model's features for the elliptical count. All env copies are
updated together: C^-1 is one ``[N, d, d]`` buffer and a step is two batched matrix products,
with no loop over envs. C^-1 resets to I / lambda exactly at that env copy's episode end (after
the final observation is scored).

Alignment with the official code, checked in both versions. The official actors embed the
observation *before* each step and write its bonus to the step's reward slot, so the reward of
the transition s_t -> s_{t+1} is the novelty of s_t against s_0..s_{t-1}; the torchbeast version
zeroes the first step of each episode (the novelty of s_0 against the empty I / lambda, i.e.
|phi(s_0)|^2 / lambda) while still folding s_0 into C^-1; the sample-factory version pays it
unzeroed. Here the bonus is that of the state reached, as in the paper's algorithm: the
transition s_t -> s_{t+1} earns b(s_{t+1}) against s_0..s_t, with the episode's first
observation folded into C^-1 unpaid (the torchbeast code's zero). The values are the torchbeast
code's, one step earlier, each credited to the action that reached the state; the episode's
final observation is scored too (the official buffers hold the next reset frame there).

Defaults and where they come from:
    ridge = 0.1 (lambda; official ``--ridge`` 0.1, sample-factory ``--e3b_ridge`` 0.1).
    learning_rate = 1e-4 (official ``--predictor_learning_rate``, Adam, for the encoder and the
        inverse model).
    max_grad_norm = 40 (official ``--max_grad_norm``).
    feature_size = 64, hidden_size = 128 (deviation: the official MiniHack encoder is 1024 wide
        with an inverse head of 256; the sample-factory port's inverse head is 128 wide). The
        per-step cost of the bonus grows as N * d^2 (two [N, d, d] products per env step), and
        phi here is ``Embedding``'s MLP on MiniGrid's 7x7x3 grid, not NetHack's glyph encoder.
        Unlike the official encoder, phi's last layer is linear (no ReLU).
    Intrinsic coefficient 1.0 with the intrinsic reward divided by a running std (official
        ``--intrinsic_reward_coef``, ``--reward_norm int``): not a bonus argument here; PPO
        divides by the running std of the discounted return and weighs with its ``int_coef``.
    Training schedule: ``update_epochs`` x ``num_minibatches`` Adam steps on a random
        ``update_proportion`` of each rollout, defaults 4 x 4 on 25% as RND's CleanRL values
        (the official code takes one step per batch inside IMPALA's or APPO's learner).

Long episodes, measured (DoorKey-16x16, 2,560-step limit, PPO's MiniGrid preset, seed 1, 5M
frames; not a deviation, a limit of these defaults). phi's norm is free under inverse-dynamics
training (|phi|^2 ~ 200 by 1M frames), so the first views of an episode that leave the span of
the earlier ones earn |phi_perp|^2 / lambda ~ 10^3, and a view already in the span ~ 1/n, as a
count would (n its visits; 4 envs of a random policy with the 1M-frame phi: 1,400-2,800 on the
first steps, 4 on average over steps 50-300). PPO divides by the running std of the intrinsic
return, which these episode-start bursts set (100 at the start, 850 at 5M), so the rest of an
episode earns ~1e-4 after normalisation. Success per 0.5M-frame window stayed within 0.0-0.25
(final 0.03); feature_size=256 (0.04-0.42), unit-norm phi (bursts bounded by 1 / lambda;
0.04-0.44 over 2.4M) and int_coef=0.1 (0.0-0.41, final 0.0) did not change that. These
window figures over-count successes while most episodes run to the limit: the envs' time-outs
arrive together, so the last 100 finished episodes lean toward the short, successful ones (plain
PPO's first 500k frames read 0.22; a random policy succeeds in 4 of 384 episodes, 1.0%). Plain
PPO learns to stand still: forward is 6-7% of its sampled actions after 1M frames (64 envs)
and after 3M (256 envs), the actions that do not move it (pickup, drop, toggle, done) 64-78%;
with lr 2.5e-4 instead of the preset's 7e-4 it stays near uniform. So the bursts are not the
whole story. On MultiRoom-N4-S5 (episodes of ~100 steps) the defaults pass 0.9 success at
131k-158k frames on 3 of 3 seeds.

``observe`` computes each step's bonus (it depends on the episode so far); ``compute`` returns
the last ``T`` observed steps' bonuses (the protocol's rule for per-episode state).

Example:
    >>> import gymnasium as gym, numpy as np, torch
    >>> from explora.bonuses.base import Transitions
    >>> bonus = E3B(feature_size=8)
    >>> bonus.setup(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 2)
    >>> obs = torch.randint(0, 10, (1, 2, 7, 7, 3), dtype=torch.uint8)
    >>> no = torch.zeros(1, 2, dtype=torch.bool)
    >>> step = Transitions(obs, torch.zeros(1, 2).long(), obs + 1, torch.zeros(1, 2), no, no)
    >>> bonus.observe(step)
    >>> bonus.compute(step).shape, bonus.cov_inverse.shape
    (torch.Size([1, 2]), torch.Size([2, 8, 8]))
"""

from __future__ import annotations

from typing import Any

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
from explora.bonuses.visits import pending_batch
from explora.models.dynamics import InverseDynamics, check_actions, check_space
from explora.models.vae import VAEFeatures, check_embedding, episodic_embedding


def elliptical_update(cov_inverse: Tensor, phi: Tensor) -> Tensor:
    """Score ``phi`` ``[M, d]`` against ``cov_inverse`` ``[M, d, d]`` and fold it in, in place:
    returns ``b = phi^T C^-1 phi`` ``[M]`` (before the update) and leaves
    ``C^-1 <- C^-1 - (C^-1 phi)(C^-1 phi)^T / (1 + b)`` (Sherman-Morrison; C^-1 symmetric)."""
    u = torch.bmm(cov_inverse, phi.unsqueeze(-1))  # [M, d, 1]
    bonus = (phi.unsqueeze(1) @ u).reshape(-1)  # [M]
    cov_inverse.baddbmm_(u / (1.0 + bonus).reshape(-1, 1, 1), u.transpose(1, 2), alpha=-1.0)
    return bonus


class E3B(nn.Module):
    """Elliptical episodic bonus ``b = phi(s')^T C^-1 phi(s')`` with an inverse-dynamics phi.

    Args:
        ridge: lambda of C_0 = lambda I.
        learning_rate: Adam step size of phi and the inverse model.
        update_epochs, num_minibatches, update_proportion: the training schedule per rollout.
        feature_size: d, the size of phi.
        hidden_size: width of phi's MLP and of the inverse model.
        max_grad_norm: gradient-norm clip (None: no clip).
        embedding: "inverse-dynamics" (the paper's) or "vae": phi is the posterior mean of a
            VAE (``explora.models.vae``, latent size ``feature_size``) trained by its own
            loss on the rollout's observations instead of an inverse model (an ablation: the
            paper's point is that inverse dynamics ignores what the agent cannot control).

    Attributes:
        cov_inverse: ``[N, d, d]`` buffer, each env copy's C^-1 for its current episode.
    """

    warmup_steps = 0
    cov_inverse: Tensor

    def __init__(
        self,
        *,
        ridge: float = 0.1,
        learning_rate: float = 1e-4,
        update_epochs: int = 4,
        num_minibatches: int = 4,
        update_proportion: float = 0.25,
        feature_size: int = 64,
        hidden_size: int = 128,
        max_grad_norm: float | None = 40.0,
        embedding: str = "inverse-dynamics",
    ) -> None:
        super().__init__()
        check_embedding(embedding)
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0 (C_0 = ridge * I is inverted), got {ridge}")
        if not 0.0 < update_proportion <= 1.0:
            raise ValueError(f"update_proportion must be in (0, 1], got {update_proportion}")
        self.ridge = ridge
        self.learning_rate = learning_rate
        self.update_epochs = update_epochs
        self.num_minibatches = num_minibatches
        self.update_proportion = update_proportion
        self.feature_size = feature_size
        self.hidden_size = hidden_size
        self.max_grad_norm = max_grad_norm
        self.embedding = embedding
        self.episodic = True
        self.idm: InverseDynamics | VAEFeatures | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()
        self.register_buffer("cov_inverse", torch.zeros(0, feature_size, feature_size))
        self._starting = np.ones(0, dtype=bool)  # [N]: the next obs begins an episode
        self._bonuses: list[Tensor] = []

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Check the spaces; build phi, the inverse model, the optimiser and C^-1 = I / lambda."""
        check_space(observation_space, "e3b")
        check_actions(action_space, "e3b")
        self.idm = episodic_embedding(
            self.embedding, observation_space, action_space, self.feature_size, self.hidden_size
        )
        self.optimizer = torch.optim.Adam(
            self.idm.parameters(), lr=self.learning_rate, eps=1e-5, fused=True
        )
        self.generator = seeded_generator()
        self.cov_inverse = self._initial().expand(num_envs, -1, -1).clone()
        self._starting = np.ones(num_envs, dtype=bool)
        self._bonuses = []

    def _initial(self) -> Tensor:
        return torch.eye(self.feature_size) / self.ridge

    def _model(self) -> tuple[InverseDynamics | VAEFeatures, torch.optim.Optimizer]:
        if self.idm is None or self.optimizer is None:
            raise RuntimeError("call setup() before using E3B")
        return self.idm, self.optimizer

    def start_new_episodes(self, envs: np.ndarray) -> None:
        """Forget the episodes of the env copies where ``envs`` ``[N]`` bool is True (an agent
        that reset them without an episode end): C^-1 back to I / lambda, and their next
        observed ``obs`` starts an episode."""
        envs = np.asarray(envs, dtype=bool)
        self.cov_inverse[torch.from_numpy(envs)] = self._initial()
        self._starting = self._starting | envs

    @torch.no_grad()
    def observe(self, step: Transitions) -> None:
        """Score ``step.next_obs`` ``[1, N, ...]`` against each env's C^-1 and fold it in; an env
        whose episode starts folds its first observation (``step.obs``) in first, unpaid, and
        one whose episode ends at this step starts again from I / lambda."""
        idm, _ = self._model()
        num_envs = int(step.next_obs.shape[1])
        starting = torch.from_numpy(np.flatnonzero(self._starting))
        views = step.next_obs[0]
        if len(starting):
            views = torch.cat([views, step.obs[0][starting]])
        phi = idm.embed(views)
        if len(starting):
            cov = self.cov_inverse[starting]
            elliptical_update(cov, phi[num_envs:])
            self.cov_inverse[starting] = cov
        bonus = elliptical_update(self.cov_inverse, phi[:num_envs])
        ended = (step.terminated[0] | step.truncated[0]).cpu()
        if ended.any():
            self.cov_inverse[ended] = self._initial()
        self._starting = ended.numpy().copy()
        self._bonuses.append(bonus.to(torch.float32))

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """The bonuses ``observe`` fixed for the last ``T`` steps: ``[T, N]`` float32."""
        bonuses = pending_batch(self._bonuses, batch.shape[0], "E3B")
        self._bonuses = []
        return bonuses

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train phi and the inverse model on the rollout ``batch`` (``[T, N, ...]``)."""
        idm, optimizer = self._model()
        obs, actions, next_obs = flat_transitions(batch)

        def step(idx: Tensor) -> tuple[Tensor, dict[str, Tensor | None]]:
            loss = idm.loss(obs[idx], actions[idx], next_obs[idx])
            return loss, {f"losses/e3b_{self.embedding.split('-')[0]}": loss}

        params = list(idm.parameters())
        return train_rollout(self, optimizer, params, obs.shape[0], step, self.update_proportion)

    def get_extra_state(self) -> dict[str, Any]:
        return {
            **training_state(self.optimizer, self.generator),
            "starting": torch.from_numpy(self._starting.copy()),
            "bonuses": [b.clone() for b in self._bonuses],
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        _, optimizer = self._model()
        load_training_state(state, self.generator, optimizer)
        self._starting = torch.as_tensor(state["starting"]).numpy().astype(bool)
        self._bonuses = [torch.as_tensor(b).clone() for b in state["bonuses"]]
