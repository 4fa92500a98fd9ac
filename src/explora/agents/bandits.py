"""Multi-armed bandit strategies: epsilon-greedy, UCB1 and Thompson sampling, scored by regret.

A bandit is exploration with nothing else in the way: one state, K arms, and the only question
is how many pulls to spend on arms that look worse. Each strategy keeps, per copy of the env,
the pull count ``n_a`` and reward sum ``s_a`` of every arm, and chooses arms from them:

* **epsilon-greedy** (Sutton & Barto, *Reinforcement Learning: An Introduction*, 2nd ed.,
  sec. 2.2-2.4): with probability ``epsilon`` a uniformly random arm, otherwise the arm of the
  highest sample mean ``s_a / n_a`` (0 for an arm never pulled, the book's ``Q_1 = 0``).
  ``epsilon = 0.1`` as in the book's 10-armed testbed.
* **UCB1** (Auer, Cesa-Bianchi & Fischer 2002, *Finite-time Analysis of the Multiarmed Bandit
  Problem*, Fig. 1): pull every arm once, then the arm maximising
  ``s_a / n_a + c * sqrt(ln t / n_a)``, ``t`` the pulls made so far. The paper's index is
  ``sqrt(2 ln t / n_a)``, i.e. ``c = sqrt(2)``, our default; it is also the standard constant
  for 1-sub-Gaussian rewards, so it serves the unit-variance Gaussian bandit unchanged.
* **Thompson sampling** (Thompson 1933; Chapelle & Li 2011; Russo et al. 2018, *A Tutorial on
  Thompson Sampling*): draw one mean per arm from its posterior and pull the largest. The
  posterior follows the env: Bernoulli arms get a ``Beta(alpha_0, beta_0)`` prior (default
  ``Beta(1, 1)``, uniform, as in Chapelle & Li) and the posterior
  ``Beta(alpha_0 + s_a, beta_0 + n_a - s_a)``; Gaussian arms get a ``N(m_0, s_0^2)`` prior
  (default ``N(0, 1)``, the testbed's distribution of means) with known noise ``sigma^2``
  (default 1, the testbed's) and the conjugate posterior with precision
  ``1/s_0^2 + n_a/sigma^2`` and mean ``(m_0/s_0^2 + s_a/sigma^2) / precision``.

Epsilon-greedy and UCB1 break ties between equal values uniformly at random. Statistics are
arrays ``[N, K]`` (N copies, K arms) updated in one vectorised step per pull; each copy is an
independent run on the same arm means, and the reported regret is the mean over copies of the
cumulative pseudo-regret ``sum_t (max_b mu_b - mu_{a_t})`` (``info["regret"]`` of
``explora.envs.bandits.BanditEnv``).

Example:
    >>> from explora.envs.bandits import BanditEnv
    >>> from explora.agents.bandits import BanditConfig, train_bandit
    >>> env = BanditEnv.from_id("Bandit-Bernoulli-10", num_envs=8, seed=0)
    >>> cfg = BanditConfig(strategy="ucb1", total_frames=8 * 500, num_envs=8)
    >>> result = train_bandit(env, cfg)
    >>> len(result["regret_curve"])
    500
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from explora.agents import common
from explora.agents.common import NullRun
from explora.envs.bandits import BANDIT_ID_FORMS, BanditEnv
from explora.envs.base import VecEnv

__all__ = [
    "STRATEGIES",
    "UCB1",
    "BanditConfig",
    "BanditStrategy",
    "BetaThompson",
    "EpsilonGreedy",
    "GaussianThompson",
    "argmax_random_ties",
    "make_strategy",
    "train_bandit",
]

STRATEGIES = ("epsilon-greedy", "ucb1", "thompson")


@dataclass(frozen=True)
class BanditConfig:
    """Bandit-strategy settings. One frame is one pull of one copy."""

    strategy: str = "thompson"
    """epsilon-greedy, ucb1 or thompson"""
    total_frames: int = 64_000
    """pulls over all copies: each copy pulls total_frames // num_envs times"""
    num_envs: int = 64
    """independent copies of the bandit (independent runs, each with its own statistics)"""
    log_every: int = 100
    """pulls per copy between metric rows; one such block is an "update" for checkpoint_every"""
    epsilon: float = 0.1
    """epsilon-greedy: probability of a uniformly random arm (Sutton & Barto's testbed)"""
    ucb_c: float = math.sqrt(2.0)
    """UCB1: index = mean + ucb_c * sqrt(ln t / n); sqrt(2) is Auer et al. (2002)'s UCB1"""
    prior_alpha: float = 1.0
    """Thompson on Bernoulli arms: alpha of the Beta prior (Beta(1, 1) is uniform)"""
    prior_beta: float = 1.0
    """Thompson on Bernoulli arms: beta of the Beta prior"""
    prior_mean: float = 0.0
    """Thompson on Gaussian arms: mean of the normal prior on each arm's mean"""
    prior_std: float = 1.0
    """Thompson on Gaussian arms: std of the normal prior (N(0, 1) is how means are drawn)"""
    noise_std: float = 1.0
    """Thompson on Gaussian arms: the known reward-noise std (the env's is 1)"""
    checkpoint_every: int = 50
    """updates (log_every pulls per copy each) between checkpoints (a final one is always
    written)"""
    seed: int = 0
    """seed of the strategy's randomness and of the env's reward noise"""

    @property
    def pulls_per_env(self) -> int:
        return self.total_frames // self.num_envs

    @property
    def num_updates(self) -> int:
        return -(-self.pulls_per_env // self.log_every)

    def check(self) -> None:
        """Raise ValueError for settings that cannot work, before anything is built."""
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown bandit strategy {self.strategy!r}; choose one of: {', '.join(STRATEGIES)}"
            )
        for name in ("num_envs", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.total_frames < self.num_envs:
            raise ValueError(
                f"total_frames {self.total_frames} is less than one pull per copy "
                f"(num_envs = {self.num_envs})"
            )
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if not self.ucb_c >= 0.0:
            raise ValueError(f"ucb_c must be >= 0, got {self.ucb_c}")
        for name in ("prior_alpha", "prior_beta", "prior_std", "noise_std"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[N]`` index of a maximum of each row of ``values`` ``[N, K]``, uniform among ties."""
    is_max = values == values.max(axis=1, keepdims=True)
    return np.where(is_max, rng.random(values.shape), -1.0).argmax(axis=1)


class BanditStrategy(abc.ABC):
    """Per-copy pull counts and reward sums of every arm; subclasses choose the arms.

    Attributes:
        counts: int64 ``[N, K]``, pulls of each arm per copy.
        sums: float64 ``[N, K]``, total reward of each arm per copy.
    """

    def __init__(self, num_envs: int, num_arms: int) -> None:
        self.num_envs, self.num_arms = num_envs, num_arms
        self.counts = np.zeros((num_envs, num_arms), dtype=np.int64)
        self.sums = np.zeros((num_envs, num_arms), dtype=np.float64)
        self._rows = np.arange(num_envs)

    @abc.abstractmethod
    def select(self, rng: np.random.Generator) -> np.ndarray:
        """``[N]`` int64 arm to pull in each copy."""

    def update(self, arms: np.ndarray, rewards: np.ndarray) -> None:
        """Fold in one pull per copy: ``arms`` ``[N]`` and their ``rewards`` ``[N]``."""
        self.counts[self._rows, arms] += 1
        self.sums[self._rows, arms] += rewards

    @property
    def pulls(self) -> np.ndarray:
        """``[N, 1]`` pulls made so far in each copy (UCB1's ``t``)."""
        return self.counts.sum(axis=1, keepdims=True)

    @property
    def sample_means(self) -> np.ndarray:
        """``[N, K]`` mean reward of each arm, 0 for an arm never pulled."""
        return np.divide(
            self.sums, self.counts, out=np.zeros_like(self.sums), where=self.counts > 0
        )

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.copy(), "sums": self.sums.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        counts, sums = np.asarray(state["counts"]), np.asarray(state["sums"])
        if counts.shape != self.counts.shape or sums.shape != self.sums.shape:
            raise ValueError(
                f"checkpoint holds statistics of shape {counts.shape}, this strategy "
                f"{self.counts.shape} (num_envs, num_arms)"
            )
        self.counts = counts.astype(np.int64)
        self.sums = sums.astype(np.float64)


class EpsilonGreedy(BanditStrategy):
    """A uniformly random arm with probability ``epsilon``, else the best sample mean."""

    def __init__(self, num_envs: int, num_arms: int, epsilon: float = 0.1) -> None:
        super().__init__(num_envs, num_arms)
        self.epsilon = epsilon

    def select(self, rng: np.random.Generator) -> np.ndarray:
        greedy = argmax_random_ties(self.sample_means, rng)
        explore = rng.random(self.num_envs) < self.epsilon
        return np.where(explore, rng.integers(0, self.num_arms, self.num_envs), greedy)


class UCB1(BanditStrategy):
    """Every arm once, then the largest ``mean + c * sqrt(ln t / n)`` (Auer et al. 2002)."""

    def __init__(self, num_envs: int, num_arms: int, c: float = math.sqrt(2.0)) -> None:
        super().__init__(num_envs, num_arms)
        self.c = c

    def index(self) -> np.ndarray:
        """``[N, K]`` upper confidence bounds; ``+inf`` for an arm not yet pulled."""
        pulled = self.counts > 0
        n = np.maximum(self.counts, 1)
        # log(max(t, 1)): t >= 1 whenever an index is finite; the max only silences log(0).
        bonus = self.c * np.sqrt(np.log(np.maximum(self.pulls, 1)) / n)
        return np.where(pulled, self.sums / n + bonus, np.inf)

    def select(self, rng: np.random.Generator) -> np.ndarray:
        return argmax_random_ties(self.index(), rng)


class BetaThompson(BanditStrategy):
    """Thompson sampling for Bernoulli arms: ``Beta(alpha_0 + s, beta_0 + n - s)`` posteriors.

    Rewards must be 0 or 1.
    """

    def __init__(
        self, num_envs: int, num_arms: int, prior_alpha: float = 1.0, prior_beta: float = 1.0
    ) -> None:
        super().__init__(num_envs, num_arms)
        self.prior_alpha, self.prior_beta = prior_alpha, prior_beta

    @property
    def alpha(self) -> np.ndarray:
        """``[N, K]`` posterior alpha: prior plus successes."""
        return self.prior_alpha + self.sums

    @property
    def beta(self) -> np.ndarray:
        """``[N, K]`` posterior beta: prior plus failures."""
        return self.prior_beta + self.counts - self.sums

    def select(self, rng: np.random.Generator) -> np.ndarray:
        return rng.beta(self.alpha, self.beta).argmax(axis=1)


class GaussianThompson(BanditStrategy):
    """Thompson sampling for Gaussian arms of known noise: a conjugate normal posterior."""

    def __init__(
        self,
        num_envs: int,
        num_arms: int,
        prior_mean: float = 0.0,
        prior_std: float = 1.0,
        noise_std: float = 1.0,
    ) -> None:
        super().__init__(num_envs, num_arms)
        self.prior_mean, self.prior_std, self.noise_std = prior_mean, prior_std, noise_std

    @property
    def posterior_var(self) -> np.ndarray:
        """``[N, K]``: ``1 / (1/s_0^2 + n/sigma^2)``."""
        return 1.0 / (self.prior_std**-2 + self.counts / self.noise_std**2)

    @property
    def posterior_mean(self) -> np.ndarray:
        """``[N, K]``: ``var * (m_0/s_0^2 + s/sigma^2)``."""
        weighted = self.prior_mean / self.prior_std**2 + self.sums / self.noise_std**2
        return self.posterior_var * weighted

    def select(self, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal((self.num_envs, self.num_arms))
        return (self.posterior_mean + np.sqrt(self.posterior_var) * noise).argmax(axis=1)


def make_strategy(config: BanditConfig, kind: str, num_arms: int) -> BanditStrategy:
    """The strategy ``config`` names for ``config.num_envs`` copies of a ``kind`` bandit
    (``"bernoulli"`` or ``"gaussian"``, which picks Thompson's posterior)."""
    config.check()
    n = config.num_envs
    if config.strategy == "epsilon-greedy":
        return EpsilonGreedy(n, num_arms, config.epsilon)
    if config.strategy == "ucb1":
        return UCB1(n, num_arms, config.ucb_c)
    if kind == "bernoulli":
        return BetaThompson(n, num_arms, config.prior_alpha, config.prior_beta)
    if kind == "gaussian":
        return GaussianThompson(n, num_arms, config.prior_mean, config.prior_std, config.noise_std)
    raise ValueError(f"unknown bandit kind {kind!r}; choose one of: bernoulli, gaussian")


def _update_seed(seed: int, update: int) -> int:
    """The env's reward-noise seed for one update, a function of (seed, update) only."""
    return int(np.random.SeedSequence([seed, update]).generate_state(1)[0])


def train_bandit(
    env: VecEnv,
    config: BanditConfig,
    bonus: Any = None,
    run: Any = None,
) -> dict[str, Any]:
    """Run ``config.strategy`` on a ``BanditEnv`` of ``config.num_envs`` copies.

    The contract of ``train_ppo``: ``run`` receives metrics, progress and checkpoints, and a
    checkpoint in it is resumed. The env's reward noise is reseeded at every update from
    ``(config.seed, update)``, so a resumed run draws what an uninterrupted one would have.
    Bandit strategies take no curiosity bonus: their exploration is the strategy itself.

    Returns ``train_ppo``'s keys (``success_rate``, ``unique_states`` and ``visits`` are None,
    ``episodes`` is empty: every pull is an episode) plus ``cumulative_regret`` (mean over
    copies of the total pseudo-regret) and ``regret_curve`` (float64 ``[pulls_per_env]``, that
    mean after each pull). ``final_return`` is the mean reward of the pulls in the last 10% of
    frames; ``agent`` is the strategy.

    Example:
        >>> from explora.envs.bandits import BanditEnv
        >>> env = BanditEnv.from_id("Bandit-Gaussian-10", num_envs=16, seed=0)
        >>> result = train_bandit(env, BanditConfig(total_frames=16 * 1000, num_envs=16))
        >>> result["cumulative_regret"] < 100
        True
    """
    cfg = config
    cfg.check()
    if bonus is not None:
        raise ValueError(
            f"bandit strategies take no curiosity bonus, got {type(bonus).__name__}; their "
            f"exploration is the strategy itself: {', '.join(STRATEGIES)}"
        )
    if not isinstance(env, BanditEnv):
        raise ValueError(
            f"train_bandit needs a bandit env ({BANDIT_ID_FORMS}), got "
            f"{getattr(env, 'env_id', type(env).__name__)!r}"
        )
    if env.num_envs != cfg.num_envs:
        raise ValueError(f"env has {env.num_envs} copies but config.num_envs = {cfg.num_envs}")
    run = run or NullRun()
    rng = np.random.default_rng(cfg.seed)
    strategy = make_strategy(cfg, env.kind, env.num_arms)
    N, P = cfg.num_envs, cfg.pulls_per_env
    cum_regret = np.zeros(N)  # per copy
    pulls, update, wall_offset = 0, 0, 0.0
    done_curves: dict[str, np.ndarray] = {}

    state = run.load_checkpoint()
    if state is not None:
        common.load_state_dicts(state, strategy=strategy)
        wall_offset = common.restore_progress(state, rng)
        pulls, update = int(state["pulls"]), int(state["update"])
        cum_regret[:] = state["cumulative_regret"]
        done_curves = {k: np.asarray(state[k]) for k in ("regret_curve", "reward_curve")}
    # Means over copies after each pull; sized for a run extended past its checkpoint too.
    regret_curve = np.zeros(max(P, pulls))
    reward_curve = np.zeros(max(P, pulls))
    if done_curves:
        regret_curve[:pulls] = done_curves["regret_curve"]
        reward_curve[:pulls] = done_curves["reward_curve"]

    start_time, pulls_at_start = time.perf_counter(), pulls
    summary_metrics: dict[str, float] = {}
    while pulls < P:
        env.reset(seed=_update_seed(cfg.seed, update))
        block = min(cfg.log_every, P - pulls)
        optimal = 0
        for _ in range(block):
            arms = strategy.select(rng)
            step = env.step(arms)
            strategy.update(arms, step.reward)
            cum_regret += step.info["regret"]
            optimal += int(step.info["optimal"].sum())
            # sum / N: ndarray.mean's Python wrapper costs more than the rest of a pull here
            regret_curve[pulls] = cum_regret.sum() / N
            reward_curve[pulls] = step.reward.sum(dtype=np.float64) / N
            pulls += 1
        update += 1
        frames = pulls * N

        elapsed = time.perf_counter() - start_time
        first = pulls - block
        before = regret_curve[first - 1] if first > 0 else 0.0
        metrics = {
            "charts/cumulative_regret": float(regret_curve[pulls - 1]),
            "charts/regret_per_pull": float((regret_curve[pulls - 1] - before) / block),
            "charts/optimal_action_rate": optimal / (block * N),
            "charts/episodic_return": float(reward_curve[first:pulls].mean()),
            "charts/episodic_length": 1.0,
            "charts/SPS": (pulls - pulls_at_start) * N / max(elapsed, 1e-9),
        }
        run.log(frames, metrics)
        run.progress(frames, metrics)
        summary_metrics = metrics

        if update % cfg.checkpoint_every == 0 or pulls >= P or run.checkpoint_due():
            wall = wall_offset + time.perf_counter() - start_time
            run.save_checkpoint(
                {
                    **common.state_dicts(strategy=strategy),
                    **common.progress_state(frames, wall, cfg, rng),
                    "pulls": pulls,
                    "update": update,
                    "cumulative_regret": cum_regret.copy(),
                    "regret_curve": regret_curve[:pulls].copy(),
                    "reward_curve": reward_curve[:pulls].copy(),
                }
            )

    frames = pulls * N
    wall = wall_offset + time.perf_counter() - start_time
    # train_ppo's window: episodes ending at or after 90% of the frames; pull p (from 0) ends
    # at frame (p + 1) * N.
    first_final = max(-(-math.ceil(0.9 * frames) // N) - 1, 0)
    final = reward_curve[first_final:pulls]
    return {
        "frames": frames,
        "wall_time_s": wall,
        "fps": frames / max(wall, 1e-9),
        "final_return": float(final.mean()) if final.size else None,
        "success_rate": None,
        "final_episodes": int(final.size) * N,
        "unique_states": None,
        "visits": None,
        "episodes": [],
        "last_metrics": summary_metrics,
        "agent": strategy,
        "cumulative_regret": float(cum_regret.mean()),
        "regret_curve": regret_curve[:pulls],
    }
