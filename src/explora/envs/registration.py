"""explora's own environments as Gymnasium ids, one env copy each, for other libraries.

``import explora`` registers, with ``gymnasium.register``:

* ``DeepSea-1`` ... ``DeepSea-100`` (``DeepSeaEnv``): bsuite's DeepSea of side N. Gymnasium's
  registry holds exact ids only (``gymnasium.make`` looks an id up by its name; there is no
  pattern hook), so a fixed range is registered: bsuite's own sweep stays within it. Another N
  is one call away: ``register_env("DeepSea-200")``, or ``DeepSeaEnv(200)`` directly.
* ``Bandit-Bernoulli-2`` ... ``Bandit-Bernoulli-100`` and ``Bandit-Gaussian-2`` ... ``-100``
  (``BanditSingleEnv``); other K by ``register_env`` as above.
* The noisy-TV variants ``MiniGrid-*-NoisyTV-v0`` (``NoisyTVEnv``, the keys of
  ``explora.envs.noisy_tv.NOISY_TV_IDS``), over the ``minigrid`` package's Python env.

So ``gymnasium.make("DeepSea-10")`` and Stable-Baselines3's ``make_vec_env("DeepSea-10")`` work.
``explora.envs.make`` does not go through these: it still builds the native numpy-vectorised
DeepSea and bandits, and EnvPool's MiniGrid under the noisy TV (ids of explora's own families
are recognised before gymnasium's registry is consulted).

Each single-env class steps the vectorised implementation's own logic with one copy, so it
transitions exactly as ``explora.envs.make(id, num_envs=1, seed=s)`` after ``reset(seed=s)``
(``tests/unit/test_gym_registration.py`` steps both side by side, and DeepSea against bsuite).
What differs is Gymnasium's single-env protocol: an episode's last step returns its final
observation and ``terminated``/``truncated``, and the caller resets. Arrays in ``info`` become
scalars (DeepSea's ``agent_pos`` is ``[2]``).

Seeds: ``reset(seed=s)`` seeds what the vectorised env's ``reset(seed=s)`` seeds (DeepSea's
wind, the bandit's reward noise, the TV's draw and the MiniGrid layout). The MDP itself is fixed
at construction: DeepSea's action mapping by ``mapping_seed`` (bsuite's 42), a bandit's arm means
by ``problem_seed`` (default 0: the means of ``explora.envs.make(id, seed=0)``), so all copies
of a ``make_vec_env`` play one problem.

Example:
    >>> import gymnasium as gym
    >>> import explora  # registers the ids
    >>> env = gym.make("DeepSea-10")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["agent_pos"].tolist()
    ((10, 10), [0, 0])
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from explora.envs.bandits import BANDIT_KINDS, BanditEnv, parse_bandit_id
from explora.envs.base import EnvStep, VecEnv
from explora.envs.deepsea import BSUITE_MAPPING_SEED, DeepSea
from explora.envs.noisy_tv import NOISY_TV_IDS, NUM_COLOURS, NoisyTV, tv_values

__all__ = [
    "BANDIT_ARMS",
    "DEEPSEA_SIZES",
    "BanditSingleEnv",
    "DeepSeaEnv",
    "NoisyTVEnv",
    "register_all",
    "register_env",
]

DEEPSEA_SIZES = range(1, 101)
"""N of the ``DeepSea-N`` ids registered at import."""
BANDIT_ARMS = range(2, 101)
"""K of the ``Bandit-Bernoulli-K`` and ``Bandit-Gaussian-K`` ids registered at import."""


def _scalars(info: dict[str, np.ndarray]) -> dict[str, Any]:
    """Copy 0 of each ``[1, ...]`` info array: numpy scalars, ``[2]`` for positions."""
    return {key: value[0] for key, value in info.items()}


class _OneCopy(gym.Env):
    """A one-copy native ``VecEnv`` under Gymnasium's single-env protocol."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}
    _vec: VecEnv

    def _bind(self, vec: VecEnv, render_mode: str | None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self._vec = vec
        self.observation_space = vec.single_observation_space
        self.action_space = vec.single_action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, info = self._vec.reset(seed=seed)
        return obs[0], _scalars(info)

    def _step(self, action: Any) -> EnvStep:
        return self._vec.step(np.asarray([action]))

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        step = self._step(action)
        # the true last observation at an episode end; the native env has already reset itself
        # internally, which a caller's reset() then restarts
        return (
            step.final_obs[0],
            float(step.reward[0]),
            bool(step.terminated[0]),
            bool(step.truncated[0]),
            _scalars(step.info),
        )


class DeepSeaEnv(_OneCopy):
    """bsuite's DeepSea of side ``size`` as one Gymnasium env (``explora.envs.deepsea``).

    Args: as ``explora.envs.deepsea.DeepSea`` without ``num_envs``; ``seed`` seeds the windy
    variant until ``reset(seed=...)`` reseeds it; ``render_mode="rgb_array"`` draws the
    agent's cell.
    """

    def __init__(
        self,
        size: int,
        *,
        obs_type: str = "onehot",
        mapping_seed: int | None = BSUITE_MAPPING_SEED,
        deterministic: bool = True,
        seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        self.deepsea = DeepSea(
            size,
            1,
            obs_type=obs_type,
            mapping_seed=mapping_seed,
            deterministic=deterministic,
            seed=seed,
        )
        self._bind(self.deepsea, render_mode)

    def render(self) -> np.ndarray | None:
        """``[N, N, 3]`` uint8: the agent's cell white, the rest black (None without
        ``render_mode="rgb_array"``)."""
        if self.render_mode is None:
            return None
        image = np.zeros((self.deepsea.size, self.deepsea.size, 3), dtype=np.uint8)
        row, col = self.deepsea._row, int(self.deepsea._col[0])
        if row < self.deepsea.size:
            image[row, col] = 255
        return image

    def _step(self, action: Any) -> EnvStep:
        action = np.asarray(action)
        if action.shape not in ((), (1,)):
            raise ValueError(f"DeepSea takes one action 0 or 1, got shape {action.shape}")
        return self._vec.step(action.reshape(1).astype(np.int64))


class BanditSingleEnv(_OneCopy):
    """A K-armed bandit (``explora.envs.bandits``) as one Gymnasium env: every pull is a
    one-step episode (``terminated``), the observation a constant zero ``[1]`` float32.

    Args:
        kind: ``"bernoulli"`` or ``"gaussian"``.
        num_arms: K >= 2.
        problem_seed: draws the arm means, fixed for the env's life (``reset`` reseeds only the
            reward noise), as ``BanditEnv(seed=problem_seed)`` does.
        means: ``[K]`` arm means instead of drawn ones.
        render_mode: None or ``"rgb_array"`` (the arm means as grey levels).
    """

    def __init__(
        self,
        kind: str,
        num_arms: int,
        *,
        problem_seed: int = 0,
        means: np.ndarray | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.bandit = BanditEnv(kind, num_arms, 1, seed=problem_seed, means=means)
        self._bind(self.bandit, render_mode)

    def render(self) -> np.ndarray | None:
        """``[1, K, 3]`` uint8: each arm's mean as a grey level (None without
        ``render_mode="rgb_array"``)."""
        if self.render_mode is None:
            return None
        means = self.bandit.means
        span = float(means.max() - means.min()) or 1.0
        grey = np.round(255 * (means - means.min()) / span).astype(np.uint8)
        return np.repeat(grey[None, :, None], 3, axis=2)

    def _step(self, action: Any) -> EnvStep:
        arm = np.asarray(action)
        if arm.shape not in ((), (1,)):
            raise ValueError(f"a bandit takes one arm, got shape {arm.shape}")
        return self._vec.step(arm.reshape(1).astype(np.int64))


class NoisyTVEnv(gym.Wrapper):
    """A MiniGrid task of the ``minigrid`` package with the noisy TV of
    ``explora.envs.noisy_tv.NoisyTV``, one env copy.

    The observation is the 7x7x3 egocentric image (as ``explora.envs.make``'s MiniGrid), the
    agent's ``agent_pos`` (row, col) and ``direction`` are in ``info``, with ``on_tv``. Action
    ``tv_action`` (drop) sends ``base_action`` (done, a no-op) to the base env and then shows a
    ball of a uniformly drawn colour in ``cells`` of the view, drawn from the wrapper's own
    generator, seeded as ``NoisyTV``'s by ``reset(seed=...)``; on an episode's last step the
    returned (final) observation shows it too.

    Args:
        env_id: a key of ``NOISY_TV_IDS``, e.g. ``MiniGrid-DoorKey-8x8-NoisyTV-v0``.
        tv_action, base_action, cells: as ``NoisyTV``.
        make_kwargs: extra arguments for the base env's ``gymnasium.make``.
    """

    def __init__(
        self,
        env_id: str,
        *,
        tv_action: int = 4,
        base_action: int | None = 6,
        cells: tuple[tuple[int, int], ...] = ((0, 0),),
        **make_kwargs: Any,
    ) -> None:
        import minigrid  # noqa: F401  - registers the base ids

        from explora.envs.minigrid import _MiniGridImage

        if env_id not in NOISY_TV_IDS:
            raise ValueError(f"unknown NoisyTV env {env_id!r}; accepted: {', '.join(NOISY_TV_IDS)}")
        base_id, _, on_gymnasium = NOISY_TV_IDS[env_id]
        base = _MiniGridImage(gym.make(base_id, **{**on_gymnasium, **make_kwargs}))
        super().__init__(base)
        n = int(base.action_space.n)  # type: ignore[attr-defined]
        for name, action in (("tv_action", tv_action), ("base_action", base_action)):
            if action is not None and not 0 <= action < n:
                raise ValueError(f"{name}={action} is not an action of {base.action_space}")
        ij = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        shape = base.observation_space.shape
        assert shape is not None
        if len(ij) == 0 or (ij < 0).any() or (ij >= np.asarray(shape[:2])).any():
            raise ValueError(f"cells {cells!r} must be a non-empty list of (i, j) in {shape}")
        self.tv_action, self.base_action = tv_action, base_action
        self._rows, self._cols = ij[:, 0], ij[:, 1]
        self._values = tv_values()
        self._tv_rng = NoisyTV._generator(0)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._tv_rng = NoisyTV._generator(seed)
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        on_tv = int(action) == self.tv_action
        base_action = self.base_action if on_tv and self.base_action is not None else action
        obs, reward, terminated, truncated, info = self.env.step(base_action)
        info = {**info, "on_tv": on_tv}
        if on_tv:
            # one draw per cell, as NoisyTV's [pressing envs, cells] draw with one env
            colours = self._tv_rng.integers(0, NUM_COLOURS, size=(1, len(self._rows)))[0]
            obs = np.array(obs)
            obs[self._rows, self._cols] = self._values[colours]
        # minigrid pays an int 0 on most steps; the vectorised backends give float32
        return obs, float(reward), terminated, truncated, info


def register_env(env_id: str) -> None:
    """Register one of explora's ids with Gymnasium (a no-op when it already is): any
    ``DeepSea-<N>``, ``Bandit-<Kind>-<K>`` or NoisyTV id. Raises ``ValueError`` for another id.

    Example:
        >>> register_env("DeepSea-200")
        >>> gym.make("DeepSea-200").observation_space.shape
        (200, 200)
    """
    from explora.envs import deepsea_size  # here: explora.envs imports this module's package

    if env_id in gym.envs.registry:
        return
    if env_id in NOISY_TV_IDS:
        gym.register(env_id, entry_point=f"{__name__}:NoisyTVEnv", kwargs={"env_id": env_id})
        return
    bandit = parse_bandit_id(env_id)
    if bandit is not None:
        kind, arms = bandit
        gym.register(
            env_id,
            entry_point=f"{__name__}:BanditSingleEnv",
            kwargs={"kind": kind, "num_arms": arms},
        )
        return
    size = deepsea_size(env_id)
    if size is not None:
        gym.register(env_id, entry_point=f"{__name__}:DeepSeaEnv", kwargs={"size": size})
        return
    raise ValueError(
        f"{env_id!r} is not one of explora's own envs; accepted: DeepSea-<N>, "
        f"Bandit-Bernoulli-<K>, Bandit-Gaussian-<K>, {', '.join(NOISY_TV_IDS)}"
    )


def register_all() -> None:
    """Register the ids listed in the module docstring (what ``import explora`` does)."""
    for size in DEEPSEA_SIZES:
        register_env(f"DeepSea-{size}")
    for kind in BANDIT_KINDS:
        for arms in BANDIT_ARMS:
            register_env(f"Bandit-{kind.capitalize()}-{arms}")
    for env_id in NOISY_TV_IDS:
        register_env(env_id)


register_all()
