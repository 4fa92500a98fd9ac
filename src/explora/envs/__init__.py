"""Vectorised environments behind one interface (``VecEnv``) with same-step auto-reset.

Example:
    >>> from explora.envs import make
    >>> env = make("DeepSea-10", num_envs=4, seed=0)
    >>> obs, info = env.reset()
    >>> obs.shape
    (4, 10, 10)
"""

from __future__ import annotations

import difflib
import re
from functools import cache
from typing import Any

from explora.envs.bandits import parse_bandit_id
from explora.envs.base import EnvStep, VecEnv, measure_env_fps

__all__ = ["ENV_FAMILIES", "EnvStep", "VecEnv", "check_env_id", "make", "measure_env_fps"]

# family -> one-line description (shown by `explora list`)
ENV_FAMILIES: dict[str, str] = {
    "MiniGrid-*": "MiniGrid grid worlds; EnvPool's C++ backend by default, backend='gymnasium' "
    "for the Python one; obs = 7x7x3 egocentric image",
    "BabyAI-*": "BabyAI language-grid tasks, same backends and observation as MiniGrid",
    "DeepSea-<N>": "bsuite's DeepSea, native numpy-vectorised, any N; obs one-hot (N x N) or "
    "coords",
    "Bandit-Bernoulli-<K>": "K-armed Bernoulli bandit, native numpy-vectorised, any K >= 2; arm "
    "means ~ U(0, 1) drawn from the seed; every pull a one-step episode; info['regret']",
    "Bandit-Gaussian-<K>": "K-armed Gaussian bandit: rewards N(mu, 1), mu ~ N(0, 1) drawn from "
    "the seed; otherwise as Bandit-Bernoulli-<K>",
    "<any gymnasium id>": "anything gymnasium.make can build (CartPole-v1, Pendulum-v1, your "
    "own registered envs), stepped by gymnasium.vector",
}

BACKENDS = ("envpool", "gymnasium")
_DEEPSEA = re.compile(r"^DeepSea-(\d+)$")


@cache
def _envpool_ids() -> frozenset[str]:
    try:
        import envpool

        return frozenset(envpool.list_all_envs())
    except Exception:  # envpool missing on this platform: the Python backends still work
        return frozenset()


def _gymnasium_ids() -> list[str]:
    import gymnasium as gym

    try:
        import minigrid  # noqa: F401  - registers MiniGrid-* and BabyAI-*
    except ImportError:
        pass
    return list(gym.envs.registry.keys())


def _is_grid_family(env_id: str) -> bool:
    return env_id.startswith(("MiniGrid-", "BabyAI-"))


def check_env_id(env_id: str, backend: str | None = None) -> str:
    """Validate ``env_id`` without building anything; returns the backend that will run it.

    Raises ``ValueError`` naming the accepted families (and the closest known ids) otherwise.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if parse_bandit_id(env_id) is not None:  # a malformed Bandit-* id raises ValueError
        return "native"
    match = _DEEPSEA.match(env_id)
    if match:
        if int(match.group(1)) < 1:
            raise ValueError(f"DeepSea size must be >= 1, got {env_id!r}")
        return "native"
    known = _gymnasium_ids()
    if _is_grid_family(env_id):
        if backend in (None, "envpool") and env_id in _envpool_ids():
            return "envpool"
        if backend == "envpool":
            raise ValueError(
                f"{env_id!r} is not in EnvPool's registry; use backend='gymnasium' for the "
                "Python minigrid implementation"
            )
        if env_id in known:
            return "gymnasium"
    elif env_id in known:
        if backend == "envpool":
            raise ValueError("backend='envpool' is supported for MiniGrid-* and BabyAI-* ids only")
        return "gymnasium"
    close = difflib.get_close_matches(env_id, [*known, "DeepSea-10"], n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    families = "; ".join(ENV_FAMILIES)
    raise ValueError(f"unknown env {env_id!r}; accepted: {families}.{hint}")


def make(
    env_id: str,
    num_envs: int = 8,
    seed: int = 0,
    backend: str | None = None,
    **kwargs: Any,
) -> VecEnv:
    """Build ``num_envs`` copies of ``env_id`` behind the ``VecEnv`` interface.

    Args:
        env_id: a MiniGrid/BabyAI id, ``DeepSea-<N>``, or any Gymnasium id.
        num_envs: copies stepped together.
        seed: seeds the copies (each copy gets its own stream).
        backend: for MiniGrid/BabyAI, ``"envpool"`` (default when EnvPool has the id) or
            ``"gymnasium"`` (the Python minigrid package).
        kwargs: passed to the environment (e.g. ``obs_type="coords"`` for DeepSea).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    chosen = check_env_id(env_id, backend)
    if chosen == "native" and env_id.startswith("Bandit-"):
        from explora.envs.bandits import BanditEnv

        return BanditEnv.from_id(env_id, num_envs, seed=seed, **kwargs)
    if chosen == "native":
        from explora.envs.deepsea import DeepSea

        size = int(env_id.split("-")[1])
        return DeepSea(size, num_envs, seed=seed, **kwargs)
    if chosen == "envpool":
        from explora.envs.minigrid import EnvPoolMiniGrid

        return EnvPoolMiniGrid(env_id, num_envs, seed=seed, **kwargs)
    if _is_grid_family(env_id):
        from explora.envs.minigrid import make_gymnasium_minigrid

        return make_gymnasium_minigrid(env_id, num_envs, seed=seed)
    from explora.envs.gym import GymnasiumVecEnv

    return GymnasiumVecEnv(env_id, num_envs, seed=seed, **kwargs)
