"""DORA's E-values as an exploration bonus (Choshen, Fox & Loewenstein 2018, "DORA The Explorer:
Directed Outreaching Reinforcement Action-Selection", ICLR 2018; official code borgr/DORA: the
tabular and linear ``linapprox/main.py`` and its Atari DQN fork borgr/atari-rl, files
``networks/dqn.py``, ``networks/loss.py``, ``agents/agent.py``, ``main.py``).

E-values are the values of a second, reward-free MDP with discount gamma_E. Learned by SARSA
from an initial value near 1 they shrink with every visit: with gamma_E = 0 and learning rate
alpha, ``E(s, a) = (1 - alpha)^n(s, a)``, so ``log_{1-alpha} E`` is a visit count; with gamma_E
> 0 a pair keeps a high E while what follows it is still unexplored ("generalised counters").
The bonus is a count-based one on that counter:

    r(s, a) = 1 / sqrt(-ln E(s, a) + 0.01)

(the Atari code's ``exploration_beta / ((-np.log(e_value) + 0.01) ** 0.5)``; the paper writes
``beta / sqrt(log_{1-alpha} E)``: the base of the log is a constant factor inside the square
root, and beta a factor outside, and explora's agents divide the bonus by a running std, so
neither is a parameter; the 0.01 bounds the bonus at 10 where E = 1).

The E-network, owned by the bonus: an MLP on ``obs_features(s)`` (``hidden_size`` wide, ReLU)
with one sigmoid output per action, ``E(s, .) = sigmoid(z(s))``. As in the Atari code (``Ehead``:
``dense(..., tf.nn.sigmoid, kernel_initializer=constant(0.0))``) the output layer's weights start
at 0, so every pair starts at the same E. Unlike there, no layer has a trainable bias: the
logit is offset by the constant ``logit(initial_e)``, so every pair starts at ``initial_e`` (the
biases' absence is as written, not compared by a measurement). ``update``
regresses E(s, a) on the SARSA target of the reward-free MDP,

    y_t = gamma_E * E(s'_t, a_{t+1})          with the action actually taken next,

squared error, Adam, ``update_epochs`` passes of ``num_minibatches`` steps over the batch. The
targets are computed once per ``update`` from the network as it is then (a target network
refreshed every update; the Atari code keeps a DQN target network). How y_t is formed from a
time-major batch ``[T, N]``:

    - step t ended the episode by termination: y_t = 0. A terminal state's E-value is 0, as in
      both official codes (``w_E += alpha_E * (0 - e_vals[a]) * ...`` at ``done``; the Atari
      heads are multiplied by ``alive``): the last pair of an episode decays like a plain
      counter, and nothing beyond the end keeps it high.
    - step t < T - 1 did not end the episode: a_{t+1} = ``actions[t + 1]`` of the same env, and
      s'_t = ``next_obs[t]`` (= ``obs[t + 1]``).
    - step t was truncated, or is the batch's last step (T - 1): the action taken in s'_t is not
      in the batch (after a truncation the env resets; after the rollout's last step the agent
      has not acted yet). Then y_t = gamma_E * mean_a E(s'_t, a): expected SARSA under a uniform
      choice of the next action. (The official codes never meet this: they update online,
      after choosing a_{t+1}, and their episodes end only by termination or by a step limit
      that they treat as termination.)

The same rules serve DQN's sampled n-step windows (``[n, B]``, one window per column): within a
window the next action is the next row's, and a window's last step uses the mean.

Defaults and where they come from:
    gamma_e = 0.99 (Atari ``main.py`` ``e_discount_rate``, ``linapprox`` ``--expgamma``, the
        PyTorch E-network code borgr/deep_exploration_with_E_network ``lib/setting.py``).
    initial_e = 0.99. A deviation from the deep codes' 0.5 (a sigmoid with zero weights and
        bias: Atari ``Ehead``, ``lib/model.py`` ``enet``), towards the tabular code's 0.999999
        (``env/algorithms.py``: ``E = np.ones((nS, nA)) * 0.999999``). Measured on DeepSea-30,
        40k frames, seed 0, table E-network (``hidden_size=0``, gamma_e 0.9, learning rate
        1e-2): 369 cells visited from 0.99 against 322 from 0.5 (plain PPO 324); seed 1, gamma_e
        0.99: 330 against 315 (plain 324). A never-seen pair's bonus is 1.19 from 0.5 and
        7.06 from 0.99; a visited pair's falls towards 0 either way.
    counter_offset = 0.01 (Atari ``agents/agent.py``).
    hidden_size = 128 (explora's small-network width for bonuses; the Atari E-head is a
        256-wide layer on the Q-network's shared conv trunk, which a bonus cannot share).
    learning_rate = 1e-3, update_epochs = 4, num_minibatches = 4, max_grad_norm = 0.5 (explora's
        bonus training, as RND's MiniGrid preset; the Atari E-loss is added to the DQN loss and
        shares its optimiser; the PyTorch E-network code uses Adam at 0.01 on its small tasks,
        1e-4 on MountainCar, ``lib/setting.py``). Not tuned: on DeepSea-30 (40k frames, PPO,
        plain 324 / 324 cells on seeds 0 / 1) these defaults visited 311 / 351 cells, 1e-2
        329 (seed 0): within seed noise. A table (``hidden_size=0``) needs 1e-2: 16 Adam steps
        per update move one entry's logit by at most ~0.016, and at 1e-3 it visited 318 (seed
        0) against 346 at 1e-2.

Where it helps (measured, PPO, 40k frames of DeepSea-30, seeds 0 / 1; plain PPO 324 / 324
cells): the table form ``DORA(hidden_size=0, gamma_e=0.9, learning_rate=1e-2)`` visited 369 /
347 (``tests/learning/test_vime_dora_learning.py``); gamma_e 0.99: 346 / 330; gamma_e 0: 370
(seed 0). With the MLP E-network every update pushes E down along features that all views
share, so never-seen views lose bonus too: on random MiniGrid views, after 20 updates on a
pair that ended its episode, the pair's bonus was 0.39 and never-seen views' 0.69-1.27
(``test_dora_frequent_pair_gets_less_bonus_than_a_never_seen_one``); the pairs that keep a high
E are those leading to views not trained on (gamma_E > 0), and a pair that leads back to itself
keeps ``E >= ~gamma_E^k E_0`` after k updates whatever its visits (DORA's generalised counter,
by design). On MiniGrid-Empty-16x16 (PPO, 30k frames) the defaults visited 189 / 183 / 145
cells on seeds 0 / 1 / 2 against plain PPO's 180 / 181 / 176 (learning rate 1e-2: 193, gamma_e
0.9 with 1e-2: 165, seed 0): no reliable gain, so no MiniGrid learning test and no MiniGrid
preset.

Needs Discrete actions (one E-value per action). Not per-episode: E-values are lifelong.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from explora.bonuses.base import Transitions
from explora.models.dynamics import check_space, input_dim, obs_features
from explora.models.encoders import layer_init
from explora.models.optim import clip_grad_norm


class DORA(nn.Module):
    """E-value bonus ``1 / sqrt(-ln E(s, a) + counter_offset)``; see the module docstring.

    Args:
        gamma_e: discount of the reward-free MDP the E-values learn.
        initial_e: E-value of every pair before training (the output bias is its logit).
        counter_offset: added to ``-ln E`` under the square root.
        hidden_size: width of the E-network's hidden layer (0: linear in the observation's
            features; on one-hot observations that is a table plus a bias per action).
        learning_rate: Adam step size.
        update_epochs: passes over the batch per ``update``.
        num_minibatches: Adam steps per pass.
        max_grad_norm: gradient-norm clip (None: none).
        warmup_steps: random-policy steps per env the agent feeds to ``observe`` first.

    Example:
        >>> import gymnasium as gym
        >>> dora = DORA()
        >>> dora.setup(gym.spaces.Discrete(5), gym.spaces.Discrete(2), num_envs=2)
        >>> obs = torch.randint(0, 5, (4, 2))
        >>> batch = Transitions(obs, torch.randint(0, 2, (4, 2)), obs, torch.zeros(4, 2),
        ...     torch.zeros(4, 2, dtype=torch.bool), torch.zeros(4, 2, dtype=torch.bool))
        >>> round(dora.compute(batch)[0, 0].item(), 4)  # E = 0.99: 1 / sqrt(-ln 0.99 + 0.01)
        7.0622
    """

    def __init__(
        self,
        *,
        gamma_e: float = 0.99,
        initial_e: float = 0.99,
        counter_offset: float = 0.01,
        hidden_size: int = 128,
        learning_rate: float = 1e-3,
        update_epochs: int = 4,
        num_minibatches: int = 4,
        max_grad_norm: float | None = 0.5,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= gamma_e <= 1.0:
            raise ValueError(f"gamma_e must be in [0, 1], got {gamma_e}")
        if not 0.0 < initial_e < 1.0:
            raise ValueError(f"initial_e must be in (0, 1) (a sigmoid's output), got {initial_e}")
        if not counter_offset > 0:
            raise ValueError(f"counter_offset must be > 0, got {counter_offset}")
        if hidden_size < 0 or min(update_epochs, num_minibatches) < 1:
            raise ValueError("hidden_size must be >= 0, update_epochs and num_minibatches >= 1")
        self.gamma_e = gamma_e
        self.initial_e = initial_e
        self.counter_offset = counter_offset
        self.hidden_size = hidden_size
        self.learning_rate = learning_rate
        self.update_epochs = update_epochs
        self.num_minibatches = num_minibatches
        self.max_grad_norm = max_grad_norm
        self.warmup_steps = warmup_steps
        self.episodic = False
        self.obs_space: gym.Space | None = None
        self.net: nn.Sequential | None = None
        self.offset = math.log(initial_e / (1.0 - initial_e))
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build the E-network and its optimiser."""
        check_space(observation_space, "dora")
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(
                f"dora learns one E-value per action and needs Discrete actions, got "
                f"{action_space}; for continuous actions use a state bonus (rnd, re3, simhash)"
            )
        self.obs_space = observation_space
        self.num_actions = int(action_space.n)
        self.action_start = int(action_space.start)
        dim = input_dim(observation_space)
        head_in = self.hidden_size or dim
        layers: list[nn.Module] = []
        if self.hidden_size:
            layers += [layer_init(nn.Linear(dim, self.hidden_size, bias=False)), nn.ReLU()]
        head = nn.Linear(head_in, self.num_actions, bias=False)
        nn.init.zeros_(head.weight)  # every pair starts at sigmoid(offset) = initial_e
        self.net = nn.Sequential(*layers, head)
        self.offset = math.log(self.initial_e / (1.0 - self.initial_e))
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate, eps=1e-5)
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(0, 2**62, ())))

    def _net(self) -> nn.Sequential:
        if self.net is None:
            raise RuntimeError("call setup() before using DORA")
        return self.net

    def logits(self, obs: Tensor) -> Tensor:
        """``[B, *obs_shape]`` -> ``[B, A]``: z with ``E(s, .) = sigmoid(z)``."""
        features = obs_features(obs, self.obs_space)  # type: ignore[arg-type]
        return self._net()(features) + self.offset

    def e_values(self, obs: Tensor) -> Tensor:
        """``[B, *obs_shape]`` -> ``[B, A]`` E-values."""
        return torch.sigmoid(self.logits(obs))

    def _flat(self, batch: Transitions) -> tuple[Tensor, Tensor, Tensor]:
        rows = batch.shape[0] * batch.shape[1]
        obs = batch.obs.reshape(rows, *batch.obs.shape[2:])
        next_obs = batch.next_obs.reshape(rows, *batch.next_obs.shape[2:])
        actions = batch.actions.reshape(rows).long() - self.action_start
        return obs, actions, next_obs

    @torch.no_grad()
    def targets(self, batch: Transitions) -> Tensor:
        """``[T, N]`` SARSA targets ``gamma_E * E(s'_t, a_{t+1})``: 0 after a termination, the
        mean over actions after a truncation and at the batch's last step (module docstring)."""
        steps, envs = batch.shape
        _, _, next_obs = self._flat(batch)
        e_next = self.e_values(next_obs).reshape(steps, envs, -1)  # [T, N, A]
        expected = e_next.mean(-1)
        taken_next = torch.zeros(steps, envs, dtype=torch.long)
        taken_next[:-1] = batch.actions[1:].long() - self.action_start
        sarsa = e_next.gather(-1, taken_next.unsqueeze(-1)).squeeze(-1)
        known = torch.ones(steps, envs, dtype=torch.bool)
        known[-1] = False
        known &= ~batch.truncated
        value = torch.where(known, sarsa, expected)
        value = value.masked_fill(batch.terminated, 0.0)
        return self.gamma_e * value

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``[T, N]``: ``1 / sqrt(-ln E(obs_t, a_t) + counter_offset)``."""
        obs, actions, _ = self._flat(batch)
        z = self.logits(obs).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        counter = nn.functional.softplus(-z)  # -ln sigmoid(z), exact for large |z|
        return (counter + self.counter_offset).rsqrt().reshape(batch.shape).float()

    def update(self, batch: Transitions) -> dict[str, float]:
        """Regress E(obs_t, a_t) on ``targets(batch)`` (fixed for the whole update)."""
        net = self._net()
        assert self.optimizer is not None
        targets = self.targets(batch).reshape(-1)
        obs, actions, _ = self._flat(batch)
        params = list(net.parameters())
        total = int(targets.shape[0])
        losses = []
        for _ in range(self.update_epochs):
            order = torch.randperm(total, generator=self.generator)
            for idx in order.chunk(self.num_minibatches):
                z = self.logits(obs[idx]).gather(-1, actions[idx].unsqueeze(-1)).squeeze(-1)
                loss = nn.functional.mse_loss(torch.sigmoid(z), targets[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.max_grad_norm is not None:
                    clip_grad_norm(params, self.max_grad_norm)
                self.optimizer.step()
                losses.append(loss.detach())
        with torch.no_grad():
            mean_e = self.e_values(obs).gather(-1, actions.unsqueeze(-1)).mean()
        return {"losses/dora_e": float(torch.stack(losses).mean()), "bonus/mean_e": float(mean_e)}

    def observe(self, step: Transitions) -> None:
        """Nothing to note per step: E-values learn from whole batches in ``update``."""

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "generator": self.generator.get_state(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        if state.get("optimizer") is not None and self.optimizer is not None:
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
