"""Stochastic multi-armed bandits, vectorised natively in numpy.

The K-armed bandit of Lattimore & Szepesvári, *Bandit Algorithms* (2020), ch. 4, in its two
textbook forms, one id each:

* ``Bandit-Bernoulli-<K>``: arm ``a`` pays 1 with probability ``mu_a`` and 0 otherwise, with
  ``mu_a ~ U(0, 1)`` (the Bernoulli testbed of Chapelle & Li 2011, *An Empirical Evaluation of
  Thompson Sampling*).
* ``Bandit-Gaussian-<K>``: arm ``a`` pays ``N(mu_a, 1)`` with ``mu_a ~ N(0, 1)`` (the 10-armed
  testbed of Sutton & Barto, *Reinforcement Learning: An Introduction*, 2nd ed., sec. 2.3).

The arm means are the problem: they are drawn once, from ``numpy.random.default_rng(seed)``, and
shared by all ``num_envs`` copies, so the copies are independent runs of one bandit and their
average regret estimates the expected regret on it. ``reset(seed)`` reseeds only the reward
noise; the means never change.

Every pull is a one-step episode: ``terminated`` is True on every step (``truncated`` never),
and both ``obs`` and ``final_obs`` are a constant zero ``[N, 1]`` float32 array, so any agent
of the ``VecEnv`` interface (PPO too) can play a bandit. ``info["regret"]`` is the
*pseudo-regret* of the pull, ``max_b mu_b - mu_a`` (Lattimore & Szepesvári sec. 4.5): its sum
over pulls is the cumulative regret the bandit strategies report, free of reward noise.

Example:
    >>> from explora.envs.bandits import BanditEnv
    >>> env = BanditEnv.from_id("Bandit-Bernoulli-10", num_envs=4, seed=0)
    >>> _ = env.reset(seed=0)
    >>> step = env.step(np.zeros(4, dtype=np.int64))
    >>> step.reward.shape, bool(step.terminated.all())
    ((4,), True)
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np

from explora.envs.base import EnvStep, VecEnv

__all__ = ["BANDIT_ID_FORMS", "BANDIT_KINDS", "BanditEnv", "parse_bandit_id"]

BANDIT_KINDS = ("bernoulli", "gaussian")
BANDIT_ID_FORMS = "Bandit-Bernoulli-<K>, Bandit-Gaussian-<K> (K >= 2 arms)"
_BANDIT = re.compile(r"^Bandit-([^-]+)-(.+)$")
# Tags the reward-noise stream, so it never coincides with the means' stream of the same seed.
_NOISE_STREAM = 0x6E6F697365


def parse_bandit_id(env_id: str) -> tuple[str, int] | None:
    """``(kind, K)`` for a bandit id, None for an id outside the ``Bandit-*`` family.

    An id that starts with ``Bandit-`` but is malformed raises ``ValueError`` naming the
    accepted forms, so a typo is not mistaken for some other family's id.

    Example:
        >>> parse_bandit_id("Bandit-Gaussian-10")
        ('gaussian', 10)
        >>> parse_bandit_id("CartPole-v1") is None
        True
    """
    if not env_id.startswith("Bandit-"):
        return None
    match = _BANDIT.match(env_id)
    if match is None:
        raise ValueError(f"bad bandit id {env_id!r}; accepted: {BANDIT_ID_FORMS}")
    kind, arms = match.group(1).lower(), match.group(2)
    if match.group(1) != kind.capitalize() or kind not in BANDIT_KINDS:
        raise ValueError(
            f"unknown bandit kind {match.group(1)!r} in {env_id!r}; accepted: {BANDIT_ID_FORMS}"
        )
    if not arms.isdigit() or int(arms) < 2:
        raise ValueError(
            f"a bandit needs an integer K >= 2 arms, got {arms!r} in {env_id!r}; "
            f"accepted: {BANDIT_ID_FORMS}"
        )
    return kind, int(arms)


class BanditEnv(VecEnv):
    """``num_envs`` independent runs of one K-armed bandit, with same-step auto-reset.

    Args:
        kind: ``"bernoulli"`` or ``"gaussian"`` (see the module docstring).
        num_arms: K >= 2.
        num_envs: copies stepped together; they share the arm means.
        seed: draws the arm means (fixed for the env's life) and seeds the reward noise until
            ``reset(seed=...)`` reseeds it.
        means: ``[K]`` arm means to use instead of drawing them (Bernoulli: in [0, 1]).

    Attributes:
        means: ``[K]`` float64, read-only.
        best_mean: ``means.max()``.
        best_arms: ``[K]`` bool, the arms whose mean is ``best_mean``.

    ``step`` returns in ``info`` (arrays of leading shape ``[num_envs]``):
        regret: float64 pseudo-regret of the pull, ``best_mean - means[arm]``.
        optimal: bool, the pulled arm has the best mean.
        episode_return, episode_length: the pull's reward and 1 (every pull is an episode).
    """

    def __init__(
        self,
        kind: str,
        num_arms: int,
        num_envs: int,
        *,
        seed: int = 0,
        means: np.ndarray | None = None,
    ) -> None:
        if kind not in BANDIT_KINDS:
            raise ValueError(f"unknown bandit kind {kind!r}; choose one of: bernoulli, gaussian")
        if int(num_arms) != num_arms or num_arms < 2:
            raise ValueError(f"a bandit needs an integer num_arms >= 2, got {num_arms!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        num_arms = int(num_arms)
        if means is None:
            draw = np.random.default_rng(seed)
            if kind == "bernoulli":
                means = draw.uniform(0.0, 1.0, size=num_arms)
            else:
                means = draw.standard_normal(num_arms)
        means = np.array(means, dtype=np.float64)
        if means.shape != (num_arms,):
            raise ValueError(f"expected means of shape ({num_arms},), got {means.shape}")
        if kind == "bernoulli" and (means.min() < 0.0 or means.max() > 1.0):
            raise ValueError(f"Bernoulli arm means must lie in [0, 1], got {means}")
        means.flags.writeable = False

        self.kind = kind
        self.num_arms = num_arms
        self.num_envs = num_envs
        self.env_id = f"Bandit-{kind.capitalize()}-{num_arms}"
        self.means: np.ndarray = means
        self.best_mean = float(means.max())
        self.best_arms: np.ndarray = means == self.best_mean
        self.best_arms.flags.writeable = False
        self._regrets = self.best_mean - means
        self.single_action_space = gym.spaces.Discrete(num_arms)
        self.single_observation_space = gym.spaces.Box(0.0, 0.0, (1,), np.float32)
        self._rng = self._noise_rng(seed)
        self._needs_reset = True

    @classmethod
    def from_id(
        cls, env_id: str, num_envs: int, *, seed: int = 0, means: np.ndarray | None = None
    ) -> BanditEnv:
        """The env of a ``Bandit-<Kind>-<K>`` id; ``ValueError`` for any other id."""
        parsed = parse_bandit_id(env_id)
        if parsed is None:
            raise ValueError(f"not a bandit id: {env_id!r}; accepted: {BANDIT_ID_FORMS}")
        kind, num_arms = parsed
        return cls(kind, num_arms, num_envs, seed=seed, means=means)

    def _zero_obs(self) -> np.ndarray:
        # A fresh array per call: callers may write into what they are given.
        return np.zeros((self.num_envs, 1), dtype=np.float32)

    @staticmethod
    def _noise_rng(seed: int) -> np.random.Generator:
        return np.random.default_rng([_NOISE_STREAM, seed])

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "needs_reset": self._needs_reset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._needs_reset = bool(state["needs_reset"])

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if seed is not None:
            self._rng = self._noise_rng(seed)
        self._needs_reset = False
        return self._zero_obs(), {}

    def step(self, actions: np.ndarray) -> EnvStep:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        arms = np.asarray(actions)
        if arms.shape != (self.num_envs,):
            raise ValueError(f"expected actions of shape ({self.num_envs},), got {arms.shape}")
        if arms.dtype.kind not in "iu" or arms.min() < 0 or arms.max() >= self.num_arms:
            raise ValueError(
                f"bandit actions must be integer arms in [0, {self.num_arms - 1}], "
                f"got {np.unique(arms)}"
            )
        arm_means = self.means[arms]
        if self.kind == "bernoulli":
            reward = (self._rng.random(self.num_envs) < arm_means).astype(np.float32)
        else:
            noise = self._rng.standard_normal(self.num_envs)
            reward = (arm_means + noise).astype(np.float32)
        info: dict[str, np.ndarray] = {
            "regret": self._regrets[arms],
            "optimal": self.best_arms[arms],
            "episode_return": reward.copy(),
            "episode_length": np.ones(self.num_envs, dtype=np.int64),
        }
        terminated = np.ones(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        obs, final_obs = self._zero_obs(), self._zero_obs()
        return EnvStep(obs, reward, terminated, truncated, final_obs, info)
