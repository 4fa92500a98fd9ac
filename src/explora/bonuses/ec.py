"""Episodic curiosity through reachability (Savinov, Raichuk, Marinier, Vincent, Pollefeys,
Lillicrap & Gelly 2019, "Episodic Curiosity through Reachability", ICLR; official code
google-research/episodic-curiosity).

A siamese reachability network, an embedding E and a comparator C(E(s_i), E(s_j)) in [0, 1],
estimates whether s_j is reachable from s_i within k steps. A state is novel when it is not
reachable from what this episode's memory M holds:

    r(s')  = alpha * (beta - A(s'))
    A(s')  = percentile_90 { C(E(s'), m) : m in M }            (0 when M is empty)
    s' joins M when r(s') > novelty_threshold

M is per env copy and per episode: it starts with the episode's first observation and resets
at the episode's end. C is trained online on the agent's own trajectories (the paper's "online
training" variant): pairs at most k steps apart in the same episode are positives (label 1),
pairs more than gamma * k steps apart negatives (label 0), with binary cross-entropy.

Defaults and where they come from (official code; ``scripts/launcher_script.py`` gives the
``ppo_plus_eco`` settings with online training):
    reachable_steps k = 5 (``max_action_distance``), negative_gap_multiplier gamma = 5
        (``Const.NEGATIVE_SAMPLE_MULTIPLIER``): negatives are more than 25 steps apart.
    beta = 0.5 and the add rule: the official wrapper pays ``0.5 - A`` and adds s' when
        ``A < similarity_threshold = 0.5``, i.e. when the bonus is positive: novelty_threshold
        = 0 with beta = 0.5.
    percentile = 90 (``similarity_aggregation='percentile'``, numpy's percentile).
    memory_capacity = 200 rows per env, replacement "random" when full (``EpisodicMemory``
        ``capacity=200``, ``replacement='random'``: the rows' ages then follow a geometric
        distribution, fresh ones favoured).
    learning_rate = 1e-3: the online R-network is compiled with Keras' default Adam (the 1e-4
        of ``Const.ADAM_PARAMS`` is the offline trainer's).
    alpha = 1 (deviation): the official scale 0.0302 weighs the bonus against an unnormalised
        task reward; explora's agents divide the bonus by the running std of its return, in
        which a constant factor cancels.

Deviations, each a matter of cost on a 2-core CPU next to the agent:
    Networks. Official: a ResNet-18 embedding to 512 features and a comparator of four 512-wide
        batch-normalised layers. Here E is explora's small MLP (``dynamics.Embedding``,
        hidden_size 128 -> embedding_size 64) and C an MLP on the concatenated embeddings
        (Linear(2 * 64, 64) - ReLU - Linear(64, 64) - ReLU - Linear(64, 1) - sigmoid).
    Training schedule. Official: every 60,000 vector steps, 10 epochs on a 60,000-step history
        in minibatches of 64 (about 2 pair evaluations per frame), with the bonus switched off
        for the first 60,000 steps. Here: every ``train_interval`` observed steps (32: once per
        rollout of explora's MiniGrid preset), ``train_pairs`` = 2,048 pairs (half positive,
        half negative: one per frame of such a rollout) drawn from a history of the last
        ``history_steps`` = 256 steps of every env, in minibatches of ``minibatch_size`` = 256
        (8 Adam steps; 64-pair minibatches would take 32); the bonus is 0 until C has trained
        once. A 1,024-step history was tried on Empty-16x16 (16 envs): no better (learning test
        module doc).
    Memory refresh. The memory keeps observations, and after each training their embeddings
        (and C's first-layer projection of them) are recomputed, so a query and the memory
        always come from the same networks (the official trainer changes them so rarely that
        it does not).
    Episode ends. The official wrapper pays 0 on the step that ends an episode (its vector env
        already returns the next episode's first observation there); explora's ``next_obs`` is
        the true final observation, so it is scored like any other.

Cost: each step compares every env's query with its whole memory through C (N x |M| pairs, one
batched product per layer; C's first layer on the memory side is cached per row), so a step
costs O(N * |M| * 64^2), and each training re-embeds the memories. Rough in-process figures
(PPO with the MiniGrid preset then, 64 envs x 32 steps, on a 2-core machine shared with other jobs,
load 15-20, so only the ratios mean anything): DoorKey-8x8, memories of ~46 rows, 1.6x plain
PPO's time per frame (rollout 0.77 s against 0.05 s per 2,048 frames: the per-step comparisons;
update 0.59 s against 0.53 s: C trains on the second thread while PPO updates); Empty-8x8 in
another period, 3.2x. Above the 2x budget when memories grow, by design: reachability to every
row of the memory is the method.

Measured limitation: on MiniGrid's 7x7 egocentric views, where an empty room's interior looks
the same everywhere, C stays at 56-73% accuracy (also offline, on 512 random-policy steps of
DoorKey-8x8 after 200 trainings, and with 4x wider networks: 74%), identical views are labelled
both reachable and unreachable, and the agent was seen camping in the middle of
MiniGrid-Empty-16x16, which stays "novel". It did not visit more cells than PPO without a bonus
there (``tests/learning/test_memory_learning.py``); the method was designed for first-person 3D
views (DMLab, VizDoom), where nearby frames overlap.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> ec = EC()
    >>> ec.setup(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 4)
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.bonuses._shared import (
    check_at_least_one,
    check_positive,
    load_training_state,
    seeded_generator,
    train_minibatches,
    training_state,
)
from explora.bonuses.base import Transitions
from explora.bonuses.visits import pending_batch
from explora.models.dynamics import Embedding, check_space
from explora.models.encoders import layer_init
from explora.models.memory import EpisodicMemory, masked_percentile


class Comparator(nn.Module):
    """C(e_i, e_j) = sigmoid(MLP([e_i, e_j])), split so that a memory's side of the first
    layer can be cached: ``logit(first(e_i) + second(e_j))``.

    ``first(e)``: ``[..., D] -> [..., H]`` (with the bias); ``second(e)``: ``[..., D] -> [...,
    H]``; ``logit(h)``: ``[..., H]`` pre-activations -> ``[...]`` logits.
    """

    def __init__(self, embedding_size: int, hidden_size: int) -> None:
        super().__init__()
        self.first = layer_init(nn.Linear(embedding_size, hidden_size))
        self.second = layer_init(nn.Linear(embedding_size, hidden_size, bias=False))
        self.hidden = layer_init(nn.Linear(hidden_size, hidden_size))
        self.out = layer_init(nn.Linear(hidden_size, 1), gain=1.0)

    def logit(self, pre: Tensor, inplace: bool = False) -> Tensor:
        """``inplace`` reuses ``pre``'s storage (no gradients then): the memory's side is
        ``[N, rows, H]`` per step."""
        h = pre.relu_() if inplace else pre.relu()
        h = self.hidden(h)
        h = h.relu_() if inplace else h.relu()
        return self.out(h).squeeze(-1)

    def forward(self, e_i: Tensor, e_j: Tensor) -> Tensor:
        """Reachability probability of each pair, ``[B, D] x [B, D] -> [B]``."""
        return torch.sigmoid(self.logit(self.first(e_i) + self.second(e_j)))


class EC(nn.Module):
    """Episodic curiosity: ``r = alpha * (beta - percentile_90 C(E(s'), M))``.

    Args:
        reachable_steps: k, positive pairs are at most k steps apart.
        negative_gap_multiplier: gamma, negative pairs are more than gamma * k steps apart.
        alpha: bonus scale.
        beta: the similarity at which the bonus is 0.
        novelty_threshold: s' joins the memory when its bonus exceeds this.
        percentile: the aggregate of the similarities to the memory (0..100).
        memory_capacity: rows per env and episode.
        replacement: what a full memory overwrites: "random" (official) or "fifo".
        embedding_size, hidden_size: E's output and hidden widths.
        comparator_size: C's hidden width.
        learning_rate: Adam step size of E and C.
        history_steps: steps per env kept to draw training pairs from.
        train_interval: observed steps between two trainings of C (``update`` skips otherwise).
        train_pairs: pairs per training (half positive, half negative).
        minibatch_size: pairs per Adam step.
        max_grad_norm: gradient-norm clip (None: none).
        warmup_steps: random-policy steps per env the agent feeds first (none needed).

    ``state_dict`` holds the networks, the optimiser, both generators, the memories, the
    training history and the values observed but not yet computed: call ``setup`` before
    ``load_state_dict``.
    """

    def __init__(
        self,
        *,
        reachable_steps: int = 5,
        negative_gap_multiplier: int = 5,
        alpha: float = 1.0,
        beta: float = 0.5,
        novelty_threshold: float = 0.0,
        percentile: float = 90.0,
        memory_capacity: int = 200,
        replacement: Literal["random", "fifo"] = "random",
        embedding_size: int = 64,
        hidden_size: int = 128,
        comparator_size: int = 64,
        learning_rate: float = 1e-3,
        history_steps: int = 256,
        train_interval: int = 32,
        train_pairs: int = 2048,
        minibatch_size: int = 256,
        max_grad_norm: float | None = None,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        check_at_least_one(
            reachable_steps=reachable_steps,
            negative_gap_multiplier=negative_gap_multiplier,
            memory_capacity=memory_capacity,
            embedding_size=embedding_size,
            hidden_size=hidden_size,
            comparator_size=comparator_size,
            train_interval=train_interval,
            train_pairs=train_pairs,
            minibatch_size=minibatch_size,
        )
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        if replacement not in ("random", "fifo"):
            raise ValueError(f"unknown replacement {replacement!r}; choose one of: fifo, random")
        check_positive(learning_rate=learning_rate)
        gap = negative_gap_multiplier * reachable_steps
        if history_steps <= gap + 1:
            raise ValueError(
                f"history_steps must exceed negative_gap_multiplier * reachable_steps + 1 = "
                f"{gap + 1} so that negative pairs exist, got {history_steps}"
            )
        self.reachable_steps = reachable_steps
        self.negative_gap_multiplier = negative_gap_multiplier
        self.alpha = alpha
        self.beta = beta
        self.novelty_threshold = novelty_threshold
        self.percentile = percentile
        self.memory_capacity = memory_capacity
        self.replacement = replacement
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.comparator_size = comparator_size
        self.learning_rate = learning_rate
        self.history_steps = history_steps
        self.train_interval = train_interval
        self.train_pairs = train_pairs
        self.minibatch_size = minibatch_size
        self.max_grad_norm = max_grad_norm
        self.warmup_steps = warmup_steps
        self.episodic = True
        self.embedding: Embedding | None = None
        self.comparator: Comparator | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.memory: EpisodicMemory | None = None
        self.generator = torch.Generator()  # pair sampling, in ``update``
        self.memory_generator = torch.Generator()  # random replacement, in ``observe``
        self.num_envs = 0
        self._obs_space: gym.Space | None = None
        self._history: Tensor = torch.zeros(0)  # [H, N, *obs_shape], a ring over time
        self._history_episode = torch.zeros(0, dtype=torch.int64)  # [H, N] episode ids
        self._episode = torch.zeros(0, dtype=torch.int64)  # [N] current episode id per env
        self._steps = 0  # steps observed (the history's write position is _steps % H)
        self._since_training = 0
        self._trained = False
        self._starting = torch.ones(0, dtype=torch.bool)
        self._pending: list[Tensor] = []
        self._last_metrics: dict[str, float] = {}

    # ---- setup ---------------------------------------------------------------------------

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Check the observation space; build E, C, the optimiser, the memories and history."""
        check_space(observation_space, "ec")
        self._obs_space = observation_space
        self.num_envs = num_envs
        self.embedding = Embedding(observation_space, self.embedding_size, self.hidden_size)
        self.comparator = Comparator(self.embedding_size, self.comparator_size)
        self.optimizer = torch.optim.Adam(
            [*self.embedding.parameters(), *self.comparator.parameters()], lr=self.learning_rate
        )
        obs_shape = tuple(int(d) for d in observation_space.shape or ())
        dtype = torch.from_numpy(np.zeros(1, dtype=observation_space.dtype)).dtype
        self.memory = EpisodicMemory(
            num_envs,
            self.memory_capacity,
            {"obs": (obs_shape, dtype), "proj": ((self.comparator_size,), torch.float32)},
            replacement=self.replacement,
        )
        self._history = torch.zeros((self.history_steps, num_envs, *obs_shape), dtype=dtype)
        self._history_episode = torch.full((self.history_steps, num_envs), -1, dtype=torch.int64)
        self._episode = torch.zeros(num_envs, dtype=torch.int64)
        self._steps = 0
        self._since_training = 0
        self._trained = False
        self._starting = torch.ones(num_envs, dtype=torch.bool)
        self._pending = []
        self._last_metrics = {}
        self.generator = seeded_generator()
        self.memory_generator = seeded_generator()

    def _parts(self) -> tuple[Embedding, Comparator, torch.optim.Optimizer, EpisodicMemory]:
        if (
            self.embedding is None
            or self.comparator is None
            or self.optimizer is None
            or self.memory is None
        ):
            raise RuntimeError("call setup() before using EC")
        return self.embedding, self.comparator, self.optimizer, self.memory

    # ---- per step ------------------------------------------------------------------------

    def start_new_episodes(self, envs: np.ndarray) -> None:
        """Forget the memories of the env copies where ``envs`` ``[N]`` bool is True: their next
        observed ``obs`` starts a new episode (an agent that reset them without an end)."""
        _, _, _, memory = self._parts()
        mask = torch.as_tensor(np.asarray(envs, dtype=bool))
        memory.reset(mask)
        self._episode = self._episode + mask.to(torch.int64)
        self._starting = self._starting | mask

    def similarities(self, embedded: Tensor) -> tuple[Tensor, Tensor]:
        """``(C(e_i, m) for every row m of env i's memory, valid)``: ``[N, rows]`` each, for
        embedded queries ``embedded`` ``[N, embedding_size]``."""
        _, comparator, _, memory = self._parts()
        first = comparator.first(embedded)  # [N, H]
        pre = first.unsqueeze(1) + memory.rows("proj")  # [N, rows, H]
        return torch.sigmoid(comparator.logit(pre, inplace=True)), memory.valid()

    def aggregate(self, similarities: Tensor, valid: Tensor) -> Tensor:
        """The ``percentile`` of each env's similarities to its memory, ``[N]`` (0 if empty)."""
        return masked_percentile(similarities, valid, self.percentile)

    @torch.no_grad()
    def observe(self, step: Transitions) -> None:
        """Score ``step.next_obs`` ``[1, N, *obs_shape]`` against each env's memory and add it
        where it is novel (an episode's first ``step.obs`` always); keep ``step.obs`` for
        training; memories reset at episode ends."""
        embedding, comparator, _, memory = self._parts()
        obs, next_obs = step.obs[0], step.next_obs[0]
        ended = (step.terminated[0] | step.truncated[0]).to(torch.bool).cpu()
        row = self._steps % self.history_steps
        self._history[row] = obs
        self._history_episode[row] = self._episode
        self._steps += 1
        self._since_training += 1
        starting = self._starting
        if bool(starting.any()):
            proj = torch.zeros(self.num_envs, self.comparator_size)
            proj[starting] = comparator.second(embedding(obs[starting]))
            memory.add(starting, {"obs": obs, "proj": proj}, self.memory_generator)
        embedded = embedding(next_obs)
        similarities, valid = self.similarities(embedded)
        bonus = self.alpha * (self.beta - self.aggregate(similarities, valid))
        novel = (bonus > self.novelty_threshold) & ~ended
        if bool(novel.any()):
            rows = {"obs": next_obs, "proj": comparator.second(embedded)}
            memory.add(novel, rows, self.memory_generator)
        memory.reset(ended)
        self._episode = self._episode + ended.to(torch.int64)
        self._starting = ended.clone()
        # C is random until it has trained once: no bonus then (official: none for 60k steps).
        self._pending.append(bonus.float() if self._trained else torch.zeros_like(bonus).float())

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """The bonuses ``[T, N]`` fixed in ``observe`` for the last ``T`` observed steps."""
        values = pending_batch(self._pending, batch.shape[0], "EC")
        self._pending = []
        return values

    # ---- training ------------------------------------------------------------------------

    def sample_pairs(self, count: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Up to ``count`` training pairs from the history: ``(time_i, time_j, env, label)``,
        each ``[P]``, half positive (1 <= |i - j| <= k, same episode) and half negative
        (|i - j| > gamma * k, same episode). Times index the ring (``time % history_steps``).
        Candidates are drawn uniformly and those that break the rules are dropped."""
        held = min(self._steps, self.history_steps)
        oldest = self._steps - held
        k, gap = self.reachable_steps, self.negative_gap_multiplier * self.reachable_steps
        half = count // 2
        draws = 4 * half
        gen = self.generator
        # positives: an anchor and a partner 1..k steps later or earlier
        anchor = oldest + torch.randint(0, max(held, 1), (draws,), generator=gen)
        offset = torch.randint(1, k + 1, (draws,), generator=gen)
        sign = torch.randint(0, 2, (draws,), generator=gen) * 2 - 1
        partner = anchor + sign * offset
        env = torch.randint(0, self.num_envs, (draws,), generator=gen)
        pos = self._valid_pairs(anchor, partner, env, oldest)
        pos_idx = torch.nonzero(pos).squeeze(1)[:half]
        # negatives: two times of the history more than gap apart
        first = oldest + torch.randint(0, max(held, 1), (draws,), generator=gen)
        second = oldest + torch.randint(0, max(held, 1), (draws,), generator=gen)
        env_neg = torch.randint(0, self.num_envs, (draws,), generator=gen)
        neg = self._valid_pairs(first, second, env_neg, oldest) & ((first - second).abs() > gap)
        neg_idx = torch.nonzero(neg).squeeze(1)[:half]
        n_pairs = min(len(pos_idx), len(neg_idx))  # balanced classes
        pos_idx, neg_idx = pos_idx[:n_pairs], neg_idx[:n_pairs]
        time_i = torch.cat([anchor[pos_idx], first[neg_idx]])
        time_j = torch.cat([partner[pos_idx], second[neg_idx]])
        envs = torch.cat([env[pos_idx], env_neg[neg_idx]])
        labels = torch.cat([torch.ones(n_pairs), torch.zeros(n_pairs)])
        return time_i, time_j, envs, labels

    def _valid_pairs(self, time_i: Tensor, time_j: Tensor, env: Tensor, oldest: int) -> Tensor:
        inside = (time_j >= oldest) & (time_j < self._steps) & (time_i != time_j)
        rows_i = time_i % self.history_steps
        rows_j = time_j.clamp(oldest, self._steps - 1) % self.history_steps
        episode_i = self._history_episode[rows_i, env]
        episode_j = self._history_episode[rows_j, env]
        return inside & (episode_i == episode_j) & (episode_i >= 0)

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train E and C on pairs from the history once ``train_interval`` steps were observed
        since the last training, then recompute the memories' cached embeddings. ``batch``
        itself is not used: pairs need whole trajectories, which the history keeps (a DQN
        batch of sampled windows would not)."""
        if self._since_training >= self.train_interval:
            self.train_comparator()
        return dict(self._last_metrics)

    def train_comparator(self) -> dict[str, float]:
        """One training of E and C on ``train_pairs`` pairs from the history (none when the
        history holds no negative pair yet), then ``refresh_memory``; returns the metrics."""
        embedding, comparator, optimizer, memory = self._parts()
        time_i, time_j, envs, labels = self.sample_pairs(self.train_pairs)
        if len(labels) < 2:
            return dict(self._last_metrics)
        self._since_training = 0
        x_i = self._history[time_i % self.history_steps, envs]
        x_j = self._history[time_j % self.history_steps, envs]

        def step(idx: Tensor) -> tuple[Tensor, dict[str, Tensor | None]]:
            e = embedding(torch.cat([x_i[idx], x_j[idx]]))
            e_i, e_j = e.chunk(2)
            logits = comparator.logit(comparator.first(e_i) + comparator.second(e_j))
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels[idx])
            correct = ((logits.detach() > 0).float() == labels[idx]).float().mean()
            return loss, {"losses/ec_reachability": loss, "charts/ec_accuracy": correct}

        params = [*embedding.parameters(), *comparator.parameters()]
        order = torch.randperm(len(labels), generator=self.generator)
        batches = order.split(self.minibatch_size)
        metrics = train_minibatches(optimizer, params, self.max_grad_norm, batches, step)
        self._trained = True
        self.refresh_memory()
        self._last_metrics = {
            **metrics,
            "charts/ec_memory_size": float(memory.lengths.float().mean()),
        }
        return dict(self._last_metrics)

    @torch.no_grad()
    def refresh_memory(self) -> None:
        """Recompute the cached first-layer projection of every held row with E and C as
        they are now."""
        embedding, comparator, _, memory = self._parts()
        valid = memory.valid()
        if bool(valid.any()):
            proj = memory.rows("proj")  # a view: writing it writes the memory
            proj[valid] = comparator.second(embedding(memory.rows("obs")[valid]))

    # ---- state ---------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        return {
            **training_state(self.optimizer, self.generator),
            "memory_generator": self.memory_generator.get_state(),
            "memory": self.memory.state_dict() if self.memory is not None else None,
            "history": self._history.clone(),
            "history_episode": self._history_episode.clone(),
            "episode": self._episode.clone(),
            "steps": self._steps,
            "since_training": self._since_training,
            "trained": self._trained,
            "starting": self._starting.clone(),
            "pending": [r.clone() for r in self._pending],
            "last_metrics": dict(self._last_metrics),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        _, _, optimizer, memory = self._parts()
        load_training_state(state, self.generator, optimizer)
        self.memory_generator.set_state(state["memory_generator"])
        memory.load_state_dict(state["memory"])
        if tuple(state["history"].shape) != tuple(self._history.shape):
            raise ValueError(
                f"saved EC history has shape {tuple(state['history'].shape)}, this bonus "
                f"{tuple(self._history.shape)} (history_steps x num_envs x observation)"
            )
        self._history = state["history"].clone()
        self._history_episode = state["history_episode"].clone()
        self._episode = state["episode"].clone()
        self._steps = int(state["steps"])
        self._since_training = int(state["since_training"])
        self._trained = bool(state["trained"])
        self._starting = torch.as_tensor(state["starting"], dtype=torch.bool).clone()
        self._pending = [torch.as_tensor(r).clone() for r in state["pending"]]
        self._last_metrics = dict(state["last_metrics"])
