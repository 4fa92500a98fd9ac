"""NovelD (Zhang, Xu, Wang, Wu, Keutzer, Gonzalez & Tian 2021, "NovelD: A Simple yet Effective
Exploration Criterion", NeurIPS 2021; official code tianjunz/NovelD, ``src/algos/bebold.py``).

The bonus pays the *increase* of novelty along a transition, once per state and episode:

    n(x)     = || f_hat(x) - f(x) ||_2          RND's prediction error as an L2 norm (not squared)
    r(s, s') = max(n(s') - alpha * n(s), 0) * 1[N_episode(s') = 1]

n comes from explora's ``RND`` (composed, not copied: it owns the fixed target f, the trained
predictor f_hat, the input whitening and the predictor's training); NovelD only reads its error
as a norm on both ends of each transition. ``N_episode(s')`` counts the visits of s' in the
current episode (``explora.bonuses.visits.EpisodeVisits``) including this one, so the indicator
is 1 on a first visit only; the episode's first observation counts as visited where its key is
known (always with byte keys; see ``EpisodeVisits`` for state keys).

State keys. The official code keys the episodic count on the *full* grid (a FullyObsWrapper
frame), while the networks see the partial view. explora's env adapters attach a compact key of
the state (``Transitions.state_keys``: MiniGrid's agent cell and direction, DeepSea's cell);
``key="auto"`` counts on it where offered and on the observation's bytes elsewhere, and
``count_key`` says which was used ("state" or "observation"; None before the first step with
"auto"). MiniGrid's cell and direction are coarser than the full grid: a door opened or a key
picked up does not make the agent's cell new again, where the full-grid key does.

Defaults and where they come from:
    alpha = 0.5 (paper; official ``--scale_fac`` 0.5).
    n(s) and n(s') are both computed with the predictor *before* its update on the rollout,
        with the same input statistics (official ``learn``: the rewards are computed before
        the optimiser step; explora's ``RND.compute`` order: statistics from before the rollout).
    learning_rate = 1e-4 (official ``--predictor_learning_rate`` 1e-4, Adam; RND's default too).
    Intrinsic coefficient: the official README's command uses ``--intrinsic_reward_coef 0.05``
        while ``src/arguments.py`` defaults to 0.5. Neither is a bonus argument here: the agent
        divides the raw bonus by the running std of its discounted return and weighs it with
        its own ``int_coef`` (PPO), so the scale of r cancels.
    The predictor's schedule (update_epochs 4, num_minibatches 4, update_proportion 0.25, Adam
        eps 1e-5, max_grad_norm 0.5), the networks (hidden_size 256, feature_size 128) and the
        random warm-up (warmup_steps 128) are RND's defaults (``explora.bonuses.rnd``, from the
        RND paper and CleanRL): the official code trains the predictor inside IMPALA's learner,
        one step per 32 x 100 batch, which has no counterpart in PPO's epochs.

Deviations from the official code, kept because explora composes its RND:
    - the networks see the whitened, clipped observation (RND paper); the official predictor
      and target (MLPs 1024-1024-128-128-128 and 128-128-128-128) see a fixed random conv
      embedding of the partial view (a copy of the policy's initial conv, never trained);
    - the predictor's loss is RND's mean squared error; the official loss is the mean L2 norm
      (``losses.compute_rnd_loss``);
    - the bonus of the step that ends an episode is computed on its true final observation; the
      official (torchbeast) buffers hold the next episode's reset frame there, so the final state
      is never scored and the reset frame is counted in the ending episode's table.
      (With state keys the same holds for the reset state: see ``EpisodeVisits``.)

``observe`` fixes each step's first-visit flag (and notes the step for RND's statistics);
``compute`` expects its batch to be the last ``T`` observed steps, the protocol's rule for
bonuses with per-episode state. ``state_dict`` holds RND's state and the per-episode state.

Example:
    >>> import gymnasium as gym, numpy as np, torch
    >>> from explora.bonuses.base import Transitions
    >>> bonus = NovelD(warmup_steps=0)
    >>> bonus.setup(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 2)
    >>> obs = torch.randint(0, 10, (2, 2, 7, 7, 3), dtype=torch.uint8)
    >>> no = torch.zeros(1, 2, dtype=torch.bool)
    >>> for t in range(2):
    ...     bonus.observe(Transitions(obs[t:t+1], torch.zeros(1, 2), obs[t:t+1] + 1,
    ...                               torch.zeros(1, 2), no, no))
    >>> batch = Transitions(obs, torch.zeros(2, 2), obs + 1, torch.zeros(2, 2), no.expand(2, 2),
    ...                     no.expand(2, 2))
    >>> bonus.compute(batch).shape, bonus.count_key
    (torch.Size([2, 2]), 'observation')
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.bonuses.base import Transitions
from explora.bonuses.rnd import RND, Encoder
from explora.bonuses.visits import EpisodeVisits, KeyChoice, pending_batch


class NovelD(nn.Module):
    """NovelD on top of RND: ``r = max(n(s') - alpha * n(s), 0) * 1[N_episode(s') = 1]``.

    Args:
        alpha: weight of the novelty of the state left behind.
        key: what the episodic count keys on: "auto", "state" or "observation" (module doc).
        learning_rate, update_epochs, num_minibatches, update_proportion, warmup_steps,
        hidden_size, feature_size, obs_clip, max_grad_norm, encoder: passed to ``RND``.

    Attributes:
        rnd: the composed ``RND``.
        count_key: "state" or "observation" once known (see the module docstring).
    """

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        key: KeyChoice = "auto",
        learning_rate: float = 1e-4,
        update_epochs: int = 4,
        num_minibatches: int = 4,
        update_proportion: float = 0.25,
        warmup_steps: int = 128,
        hidden_size: int = 256,
        feature_size: int = 128,
        obs_clip: float = 5.0,
        max_grad_norm: float | None = 0.5,
        encoder: Encoder = "auto",
    ) -> None:
        super().__init__()
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        EpisodeVisits(1, key)  # checks the key choice now, not at setup
        self.alpha = alpha
        self.key = key
        self.rnd = RND(
            learning_rate=learning_rate,
            update_epochs=update_epochs,
            num_minibatches=num_minibatches,
            update_proportion=update_proportion,
            warmup_steps=warmup_steps,
            hidden_size=hidden_size,
            feature_size=feature_size,
            obs_clip=obs_clip,
            max_grad_norm=max_grad_norm,
            encoder=encoder,
        )
        self.episodic = True
        self.visits = EpisodeVisits(0, key)
        self._flags: list[Tensor] = []

    # RND's hyper-parameters, read back for the run's config (bonus_hparams)
    learning_rate = property(lambda self: self.rnd.learning_rate)
    update_epochs = property(lambda self: self.rnd.update_epochs)
    num_minibatches = property(lambda self: self.rnd.num_minibatches)
    update_proportion = property(lambda self: self.rnd.update_proportion)
    warmup_steps = property(lambda self: self.rnd.warmup_steps)
    hidden_size = property(lambda self: self.rnd.hidden_size)
    feature_size = property(lambda self: self.rnd.feature_size)
    obs_clip = property(lambda self: self.rnd.obs_clip)
    max_grad_norm = property(lambda self: self.rnd.max_grad_norm)
    encoder = property(lambda self: self.rnd.encoder)

    @property
    def count_key(self) -> str | None:
        return self.visits.count_key

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build RND for ``observation_space`` (its checks) and the per-episode counts."""
        try:
            self.rnd.setup(observation_space, action_space, num_envs)
        except ValueError as error:
            raise ValueError(str(error).replace("rnd ", "noveld ", 1)) from None
        self.visits = EpisodeVisits(num_envs, self.key)
        self._flags = []

    def start_new_episodes(self, envs: np.ndarray) -> None:
        """Forget the episodes of the env copies where ``envs`` ``[N]`` bool is True (an agent
        that reset them without an episode end): their next observed ``obs`` starts one."""
        self.visits.start_new_episodes(envs)

    def observe(self, step: Transitions) -> None:
        """Note ``step`` (``[1, N, ...]``) for RND's statistics and fix whether ``next_obs`` is
        visited for the first time in its episode."""
        self.rnd.observe(step)
        counts = self.visits.visit(step)
        self._flags.append(torch.from_numpy(counts == 1))

    @torch.no_grad()
    def novelty(self, obs: Tensor) -> Tensor:
        """n(x) = ||f_hat(x) - f(x)||_2 of each observation: ``[T, N, *obs_shape]`` -> ``[T, N]``
        (whitened with RND's statistics as they are)."""
        rnd = self.rnd
        if rnd.predictor is None or rnd.target is None:
            raise RuntimeError("call setup() before using NovelD")
        x = rnd.inputs(obs)
        error = torch.linalg.vector_norm(rnd.predictor(x) - rnd.target(x), dim=-1)
        return error.reshape(obs.shape[0], obs.shape[1]).to(torch.float32)

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``max(n(s') - alpha * n(s), 0)`` on first visits, 0 elsewhere: ``[T, N]`` float32.

        ``batch.obs`` and ``batch.next_obs`` are ``[T, N, *obs_shape]``. Where ``obs[t]`` is
        ``next_obs[t - 1]`` (the same env's episode goes on), n(s) is taken from n(s') of the
        step before instead of running the networks again."""
        steps, envs = batch.shape
        flags = pending_batch(self._flags, steps, "NovelD")
        self._flags = []
        after = self.novelty(batch.next_obs)
        before = torch.empty_like(after)
        fresh = torch.ones(steps, envs, dtype=torch.bool)
        if steps > 1:
            same = (batch.obs[1:] == batch.next_obs[:-1]).reshape(steps - 1, envs, -1).all(-1)
            fresh[1:] = ~same
            before[1:][same] = after[:-1][same]
        if fresh.any():
            before[fresh] = self.novelty(batch.obs[fresh].unsqueeze(0))[0]
        paid = (after - self.alpha * before).clamp_min(0.0)
        return paid * flags.to(paid.device)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train RND's predictor on the rollout (``RND.update``)."""
        return self.rnd.update(batch)

    def get_extra_state(self) -> dict[str, Any]:
        return {"visits": self.visits.state_dict(), "flags": [f.clone() for f in self._flags]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.visits.load_state_dict(state["visits"])
        self._flags = [torch.as_tensor(f).clone() for f in state["flags"]]
