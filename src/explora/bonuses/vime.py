"""VIME: Variational Information Maximizing Exploration (Houthooft, Chen, Duan, Schulman, De Turck
& Abbeel 2016, "VIME: Variational Information Maximizing Exploration", NeurIPS 2016; official
code openai/vime: ``dynamics/bnn.py``, ``algos/batch_polopt_expl.py``,
``sampler/parallel_sampler_expl.py``, ``experiments/run_trpo_expl.py``).

A Bayesian dynamics model p(s' | s, a; theta) with factorised Gaussian weights q(theta; phi)
(``explora.models.bayes``) is fitted to the agent's transitions by maximising the evidence lower
bound on a replay pool. A transition is worth the information its own update would bring:

    r(s, a, s') = KL(q(theta; phi + lambda dphi) || q(theta; phi)) ~= 1/2 lambda^2 g^T H^-1 g
    g = grad_phi [-log p(s' | s, a; theta)],  dphi = -H^-1 g,  H = diag Hessian of the KL

(paper eq. 16-17; official ``fast_kl_div`` with ``step_size`` 0.01; ``explora.models.bayes``
has H and the closed-form per-sample gradients). The gains are clipped to [0, 1000] and divided
by the mean of the medians of the last ``median_window`` batches, the current one included
(official ``use_kl_ratio_q``: ``kl_previous = deque(maxlen=kl_q_len)``, kl_q_len = 10).

Order, as in the official loop: a rollout is scored with the model and the input statistics as
they were before it (``obtain_samples`` uses ``pool.mean_obs_act()`` of the pool before the new
paths join it); ``update`` then folds the new transitions into the statistics and trains on the
pool. Until the model has taken its first training step the bonus is 0 (official: no KL at
iteration 0).

Defaults and where they come from (official code):
    hidden_sizes = (32,), ReLU, both layers Bayesian (``unn_n_hidden=[32]``,
        ``unn_layers_type=[1, 1]``; same in BatchPolopt and ``run_trpo_expl.py``).
    prior_std = 0.5 (``prior_sd``); every sigma starts there; weight and bias means start at
        N(0, 1) (``lasagne.init.Normal(1., 0.)``).
    likelihood_std = 5.0 (``BNN(likelihood_sd=5.0)``).
    num_samples = 10 Monte-Carlo draws, for training and for the gain (``snn_n_samples``).
    step_size = 0.01 (lambda of the second-order step, the sampler's ``for step_size in [0.01]``).
    learning_rate = 1e-3 (Adam; BatchPolopt's ``unn_learning_rate``; ``run_trpo_expl.py`` uses
        1e-4 with 5000 updates of 10 per 50,000-sample iteration).
    replay_pool_size = 100,000 (BatchPolopt; ``run_trpo_expl.py``: 1e6); min_pool_size = 500.
    train_ratio = 1.0: pool samples trained on per new transition (both official settings draw
        as many pool samples per iteration as the iteration collected: 500 x 10 for batches of
        5000, 5000 x 10 for 50,000).
    dataset_size = 50: the ELBO's KL(q || prior) is divided by it, per sample (official
        ``kl / n_batches - sum log p / n_samples`` with ``n_batches = 5`` hard-coded and
        batches of 10: a data set of 50).
    median_window = 10 (``kl_q_len``); max_gain = 1000 (``np.clip(loss_value, 0, 1000)``).
    The paper's eta (official 1e-4 on SwimmerGather, 1.0 in BatchPolopt) is the agent's
        ``int_coef``: explora's agents divide the bonus by a running std, so a constant
        factor in r has no effect.

Deviations, and why:
    - batch_size = 256 samples per Adam step instead of 10 (``pool_batch_size``): with
      train_ratio 1 a rollout of 2048 transitions took 204 tiny steps, each costing about as
      much Python and kernel overhead as one of 256. Measured roughly (one thread, MiniGrid
      views, 154 -> 32 -> 147, 10 draws, a shared machine at load ~6.5 on 2 cores): ``update``
      on 2048 new transitions took 2.2 s at batch 10 (204 Adam steps) and 0.33 s at batch 256
      (8 steps). It takes 25x fewer Adam steps than the official schedule; on DeepSea-20 (PPO,
      20k frames, seed 0; plain PPO visited 174 cells) batch 10 did not explore more: 164
      cells against 167 at batch 256 (batch 32 with learning rate 3e-3: 164; batch 256 with 1e-2:
      163).
    - The 1/2 of the Taylor expansion is kept (the official code drops it; the median
      normalisation cancels the factor either way).
    - Inputs are whitened with running statistics of the observed transitions that forget with
      the pool's horizon (``RunningMeanStd(max_count=replay_pool_size)``) instead of the mean
      and std of the pool recomputed each iteration, and clipped to +-``obs_clip`` (RND's 5):
      the official ``(x - mean) / (std + 1e-8)`` turns a feature that was constant in the pool
      and then changes into a value of ~1e8. Targets s' are whitened with the statistics of s.
    - Transitions are (obs, action, true next_obs) as stored; the official pool pairs each
      observation with the next one stored, across episode ends too.
    - Each sample and draw has its own noise in the local reparameterisation (the official
      layer shares one draw across a minibatch).
    - Observations go through ``obs_features`` (MiniGrid codes scaled per channel, one-hot
      Discrete) and actions through ``action_features`` (one-hot Discrete) before whitening.

Cost: the gain needs each sample's gradient over every weight's mean and rho; ``compute`` does
it in closed form from one backward pass (``information_gain``): for a 2048-sample rollout on
MiniGrid (154 -> 32 -> 147, 10 draws) the two per-sample products of the second layer are
2 x 2048 x 32 x 147 x 10 x 2 ~ 0.39 GFLOP, and its forward and backward pass over the 10 draws
about as much again: ~1 GFLOP. Measured roughly on the loaded shared machine (one thread):
``compute`` on 2048 MiniGrid transitions 0.27-0.55 s, ``update`` 0.33 s; whole runs took
15 s against plain PPO's 3.3 s (MiniGrid-Empty-16x16, 30k frames), 23-41 s against 5-8 s
(DeepSea-20, 20k frames) and 82 s against 12 s (DeepSea-30, 40k frames: the network is 903 ->
32 -> 900 on the one-hot view), so VIME is over the 2x budget, by a factor that grows with the
observation's size. The lead's quiet-machine measurement should replace
these.

Where the time goes (cProfile, DoorKey-8x8, 30k frames, the bonus on the main thread, rough):
``compute`` 63% of the bonus's time (``information_gain``: the second layer's per-sample
gradients, 2 x [2048, 32, 147] per rollout, and the forward and backward pass over 10 draws),
``update`` 37% (8 Adam steps of 256 x 10 draws); drawing the noise (3.7M normals per rollout
for the gain) is ~7% of the whole. ``information_gain`` now forms the per-sample gradients 128
samples at a time (``bayes.GAIN_CHUNK``), so they stay in cache instead of streaming ~76 MB
through memory: the same values, ~30% faster in a micro-benchmark (2048 samples, 154-32-147, 10
draws: 0.45-0.69 s against 0.66-1.08 s, noisy). Everything else is the method's work at the
official sizes. In one process, 50k frames of DoorKey-8x8 at load ~14 on 2 cores: plain PPO
3,482 and 2,852 frames/s (run first and last), VIME 836 (0.24-0.29; the lead's quieter run
before the change: 0.25): still ~4x slower.

No learning test: on the budgets tried VIME did not visit more cells than plain PPO, and each
run took 15-80 s (rough). Measured: DeepSea-20, 20k frames: plain 174 / 172 cells (seeds 0 /
1), VIME 167 / 170 (seed 0, batch 10: 164; learning rate 1e-2: 163); DeepSea-30, 40k frames,
seed 0: plain 324, VIME 305; MiniGrid-Empty-16x16, 30k frames, seed 0: plain 180
(``tests/learning/test_aehash_learning.py``), VIME 175. The unit tests check the mechanism (a
never-seen transition gains > 10x a trained one).
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from explora.bonuses.base import RunningMeanStd, Transitions
from explora.models.bayes import BayesianMLP, elbo_loss, information_gain
from explora.models.dynamics import (
    action_dim,
    action_features,
    check_space,
    input_dim,
    obs_features,
)


class VIME(nn.Module):
    """VIME's information gain on ``(obs, actions, next_obs)``; see the module docstring.

    Args:
        hidden_sizes: widths of the Bayesian dynamics network's hidden layers.
        prior_std: standard deviation of the Gaussian prior on every weight (and initial sigma).
        likelihood_std: standard deviation of the Gaussian likelihood of s'.
        weight_init_std: standard deviation of the initial weight means.
        num_samples: Monte-Carlo draws of the weights, in training and in the gain.
        step_size: lambda of the second-order step whose KL is the bonus.
        learning_rate: Adam step size of the ELBO.
        batch_size: pool samples per Adam step.
        train_ratio: pool samples trained on per new transition observed.
        replay_pool_size: transitions the pool keeps (the oldest are overwritten).
        min_pool_size: no training (and a zero bonus) before the pool holds this many.
        dataset_size: the ELBO divides KL(q || prior) by it.
        median_window: batches whose median gains the bonus is divided by (their mean).
        max_gain: gains are clipped to [0, max_gain].
        obs_clip: whitened inputs and targets are clipped to [-obs_clip, obs_clip].
        warmup_steps: random-policy steps per env the agent feeds to ``observe`` first.

    Example:
        >>> import gymnasium as gym
        >>> vime = VIME(min_pool_size=16, batch_size=16)
        >>> vime.setup(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), num_envs=4)
        >>> obs = torch.randn(8, 4, 3)
        >>> batch = Transitions(obs, torch.zeros(8, 4, dtype=torch.long), obs.roll(1, 0),
        ...     torch.zeros(8, 4), torch.zeros(8, 4, dtype=torch.bool),
        ...     torch.zeros(8, 4, dtype=torch.bool))
        >>> for t in range(8):
        ...     vime.observe(Transitions(*(f[t : t + 1] for f in (obs, batch.actions,
        ...         batch.next_obs, batch.ext_rewards, batch.terminated, batch.truncated))))
        >>> sorted(vime.update(batch))
        ['losses/vime_elbo', 'losses/vime_nll']
        >>> vime.compute(batch).shape
        torch.Size([8, 4])
    """

    medians: Tensor
    num_medians: Tensor
    train_steps: Tensor

    def __init__(
        self,
        *,
        hidden_sizes: tuple[int, ...] = (32,),
        prior_std: float = 0.5,
        likelihood_std: float = 5.0,
        weight_init_std: float = 1.0,
        num_samples: int = 10,
        step_size: float = 0.01,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        train_ratio: float = 1.0,
        replay_pool_size: int = 100_000,
        min_pool_size: int = 500,
        dataset_size: float = 50.0,
        median_window: int = 10,
        max_gain: float = 1000.0,
        obs_clip: float = 5.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("prior_std", prior_std), ("likelihood_std", likelihood_std),
                            ("weight_init_std", weight_init_std), ("step_size", step_size),
                            ("dataset_size", dataset_size), ("max_gain", max_gain),
                            ("obs_clip", obs_clip)):  # fmt: skip
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name, count in (("num_samples", num_samples), ("batch_size", batch_size),
                            ("replay_pool_size", replay_pool_size),
                            ("median_window", median_window)):  # fmt: skip
            if count < 1:
                raise ValueError(f"{name} must be >= 1, got {count}")
        if any(h < 1 for h in hidden_sizes):
            raise ValueError(f"hidden_sizes must be widths >= 1, got {hidden_sizes}")
        if not train_ratio >= 0:
            raise ValueError(f"train_ratio must be >= 0, got {train_ratio}")
        if min_pool_size < 0 or warmup_steps < 0:
            raise ValueError("min_pool_size and warmup_steps must be >= 0")
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.prior_std = prior_std
        self.likelihood_std = likelihood_std
        self.weight_init_std = weight_init_std
        self.num_samples = num_samples
        self.step_size = step_size
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.train_ratio = train_ratio
        self.replay_pool_size = replay_pool_size
        self.min_pool_size = min_pool_size
        self.dataset_size = dataset_size
        self.median_window = median_window
        self.max_gain = max_gain
        self.obs_clip = obs_clip
        self.warmup_steps = warmup_steps
        self.episodic = False
        self.obs_space: gym.Space | None = None
        self.action_space: gym.Space | None = None
        self.net: BayesianMLP | None = None
        self.obs_rms: RunningMeanStd | None = None
        self.act_rms: RunningMeanStd | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.generator = torch.Generator()
        self.register_buffer("medians", torch.zeros(median_window, dtype=torch.float64))
        self.register_buffer("num_medians", torch.zeros((), dtype=torch.int64))
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.int64))
        self._reset_pool()

    # ---- set-up ---------------------------------------------------------------------------

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Build the Bayesian dynamics network, optimiser, statistics and an empty pool."""
        check_space(observation_space, "vime")
        if not isinstance(action_space, gym.spaces.Discrete | gym.spaces.Box):
            raise ValueError(
                f"vime models p(s' | s, a) and takes Discrete or Box actions, got {action_space}"
            )
        self.obs_space, self.action_space = observation_space, action_space
        obs_dim, act_dim = input_dim(observation_space), action_dim(action_space)
        sizes = (obs_dim + act_dim, *self.hidden_sizes, obs_dim)
        # Its own generator, seeded from torch's global one (seeded by the agent before setup):
        # update runs on PPO's second thread (Bonus.update).
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(0, 2**62, ())))
        self.net = BayesianMLP(sizes, self.prior_std, self.weight_init_std, self.generator)
        self.obs_rms = RunningMeanStd(shape=(obs_dim,), max_count=self.replay_pool_size)
        self.act_rms = RunningMeanStd(shape=(act_dim,), max_count=self.replay_pool_size)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        self.medians.zero_()
        self.num_medians.zero_()
        self.train_steps.zero_()
        self._reset_pool()

    def _reset_pool(self) -> None:
        self._pool: dict[str, Tensor] = {}
        self._pool_size = 0  # transitions held
        self._pool_top = 0  # next slot to write
        self._unfolded = 0  # newest transitions not yet in the statistics
        self._credit = 0.0  # pool samples owed to training

    def _parts(self) -> tuple[BayesianMLP, RunningMeanStd, RunningMeanStd, torch.optim.Optimizer]:
        if self.net is None or self.obs_rms is None or self.act_rms is None:
            raise RuntimeError("call setup() before using VIME")
        assert self.optimizer is not None
        return self.net, self.obs_rms, self.act_rms, self.optimizer

    # ---- inputs ---------------------------------------------------------------------------

    def _features(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, *obs_shape]``, ``[B, *action_shape]`` -> features ``[B, D_s]``, ``[B, D_a]``."""
        assert self.obs_space is not None and self.action_space is not None
        return obs_features(obs, self.obs_space), action_features(actions, self.action_space)

    def inputs(self, obs: Tensor, actions: Tensor, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        """Whitened, clipped network input ``[B, D_s + D_a]`` and target ``[B, D_s]`` from
        ``obs``, ``actions``, ``next_obs`` with leading shape ``[B]``, with the statistics as
        they are."""
        _, obs_rms, act_rms, _ = self._parts()
        s, a = self._features(obs, actions)
        s_next = obs_features(next_obs, self.obs_space)  # type: ignore[arg-type]
        clip = self.obs_clip
        x = torch.cat([obs_rms.normalize(s, clip), act_rms.normalize(a, clip)], dim=-1)
        return x, obs_rms.normalize(s_next, clip)

    # ---- the pool -------------------------------------------------------------------------

    def _store(self, obs: Tensor, actions: Tensor, next_obs: Tensor) -> None:
        """Append ``[B, ...]`` transitions to the ring buffer (grown by doubling up to
        ``replay_pool_size``)."""
        rows = int(obs.shape[0])
        fields = {"obs": obs, "actions": actions, "next_obs": next_obs}
        if rows > self.replay_pool_size:  # only the newest fit
            fields = {k: v[-self.replay_pool_size :] for k, v in fields.items()}
            rows = self.replay_pool_size
        capacity = int(self._pool["obs"].shape[0]) if self._pool else 0
        if self._pool_size + rows > capacity and capacity < self.replay_pool_size:
            grown = max(self._pool_size + rows, 2 * capacity, 1024)
            grown = min(grown, self.replay_pool_size)
            for key, value in fields.items():
                new = torch.zeros((grown, *value.shape[1:]), dtype=value.dtype)
                if capacity:
                    new[:capacity] = self._pool[key]
                self._pool[key] = new
            capacity = grown
        slots = (self._pool_top + torch.arange(rows)) % capacity
        for key, value in fields.items():
            self._pool[key][slots] = value.to(self._pool[key].dtype)
        self._pool_top = (self._pool_top + rows) % capacity
        self._pool_size = min(self._pool_size + rows, capacity)
        self._unfolded = min(self._unfolded + rows, capacity)

    def _newest(self, count: int) -> dict[str, Tensor]:
        capacity = int(self._pool["obs"].shape[0])
        slots = (self._pool_top - count + torch.arange(count)) % capacity
        return {key: value[slots] for key, value in self._pool.items()}

    @property
    def pool_size(self) -> int:
        return self._pool_size

    def observe(self, step: Transitions) -> None:
        """Store ``step``'s transitions ``[1, N, ...]`` in the pool (not in eval mode)."""
        if not self.training:
            return
        self._parts()
        self._store(step.obs[0], step.actions[0], step.next_obs[0])

    # ---- bonus ----------------------------------------------------------------------------

    def gains(self, batch: Transitions) -> Tensor:
        """``[T, N]`` information gains, clipped to [0, max_gain], before the median scaling."""
        net, _, _, _ = self._parts()
        steps, envs = batch.shape
        rows = steps * envs
        x, y = self.inputs(
            batch.obs.reshape(rows, *batch.obs.shape[2:]),
            batch.actions.reshape(rows, *batch.actions.shape[2:]),
            batch.next_obs.reshape(rows, *batch.next_obs.shape[2:]),
        )
        noise = net.noise((rows, self.num_samples), self.generator)
        gain = information_gain(net, x, y, noise, self.step_size, self.likelihood_std)
        return gain.clamp(0.0, self.max_gain).reshape(steps, envs)

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``[T, N]``: each transition's information gain divided by the mean of the last
        ``median_window`` batch medians, this batch's included (its median joins the window,
        in training mode). Zero before the model's first training step."""
        self._parts()
        if int(self.train_steps) == 0:
            return torch.zeros(batch.shape)
        gain = self.gains(batch)
        median = gain.double().median()
        window = self.median_window
        held = min(int(self.num_medians), window)
        medians = torch.cat([self.medians[:held], median.reshape(1)])[-window:]
        if self.training:
            self.medians[: len(medians)] = medians
            self.num_medians += 1
        scale = medians.mean().clamp_min(1e-12)
        return (gain.double() / scale).float()

    def update(self, batch: Transitions) -> dict[str, float]:
        """Fold the transitions observed since the last update into the input statistics, then
        take ``train_ratio * new / batch_size`` Adam steps on the ELBO over pool samples (none
        before the pool holds ``min_pool_size``). ``batch`` itself is not used: every observed
        step is already in the pool."""
        net, obs_rms, act_rms, optimizer = self._parts()
        new = self._unfolded
        if new:
            fresh = self._newest(new)
            s, a = self._features(fresh["obs"], fresh["actions"])
            obs_rms.update(s)
            act_rms.update(a)
            self._unfolded = 0
        if self._pool_size < max(self.min_pool_size, 1):
            return {}
        self._credit += self.train_ratio * new
        num_steps = int(self._credit // self.batch_size)
        self._credit -= num_steps * self.batch_size
        elbos, nlls = [], []
        for _ in range(num_steps):
            idx = torch.randint(0, self._pool_size, (self.batch_size,), generator=self.generator)
            x, y = self.inputs(
                self._pool["obs"][idx], self._pool["actions"][idx], self._pool["next_obs"][idx]
            )
            noise = net.noise((self.num_samples, self.batch_size), self.generator)
            loss = elbo_loss(net, x, y, noise, self.likelihood_std, self.dataset_size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            elbos.append(loss.detach())
            with torch.no_grad():
                nlls.append(loss.detach() - net.kl_to_prior() / self.dataset_size)
            self.train_steps += 1
        if not elbos:
            return {}
        return {
            "losses/vime_elbo": float(torch.stack(elbos).mean()),
            "losses/vime_nll": float(torch.stack(nlls).mean()),
        }

    # ---- state ----------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        held = self._pool_size
        return {
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "generator": self.generator.get_state(),
            "pool": {k: v[:held].clone() for k, v in self._pool.items()},
            "pool_size": self._pool_size,
            "pool_top": self._pool_top,
            "unfolded": self._unfolded,
            "credit": self._credit,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        if state.get("optimizer") is not None:
            _, _, _, optimizer = self._parts()
            # copied: two bonuses loaded from one state must not share Adam's moment tensors
            optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self._pool = {k: v.clone() for k, v in state["pool"].items()}
        self._pool_size = int(state["pool_size"])
        self._pool_top = int(state["pool_top"])
        self._unfolded = int(state["unfolded"])
        self._credit = float(state["credit"])

    def extra_repr(self) -> str:
        return f"hidden_sizes={self.hidden_sizes}, pool={self._pool_size}"
