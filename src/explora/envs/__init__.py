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
import importlib
import os
import re
import warnings
from functools import cache
from typing import Any

import gymnasium

from explora.envs.atari import atari_task
from explora.envs.bandits import parse_bandit_id
from explora.envs.base import EnvStep, VecEnv, measure_env_fps
from explora.envs.noisy_tv import NOISY_TV_IDS, NoisyTV, noisy_tv_base, noisy_tv_base_kwargs

__all__ = [
    "ENV_FAMILIES",
    "EnvStep",
    "VecEnv",
    "check_env_id",
    "deepsea_size",
    "make",
    "measure_env_fps",
]

# family -> one-line description (shown by `explora list`)
ENV_FAMILIES: dict[str, str] = {
    "MiniGrid-*": "MiniGrid grid worlds; EnvPool's C++ backend by default (MultiRoom: the "
    "Python one, see ENVPOOL_DEFECTS), backend='gymnasium' for the Python one; obs = 7x7x3 "
    "egocentric image",
    "BabyAI-*": "BabyAI language-grid tasks, same backends and observation as MiniGrid",
    "<base>-NoisyTV-v0": "a MiniGrid task whose drop action shows fresh noise in a corner of "
    "the view (explora.envs.noisy_tv); info['on_tv']; " + ", ".join(NOISY_TV_IDS),
    "DeepSea-<N>": "bsuite's DeepSea, native numpy-vectorised, any N up to 8192; obs one-hot "
    "(N x N) or coords",
    "Bandit-Bernoulli-<K>": "K-armed Bernoulli bandit, native numpy-vectorised, any K >= 2; arm "
    "means ~ U(0, 1) drawn from the seed; every pull a one-step episode; info['regret']",
    "Bandit-Gaussian-<K>": "K-armed Gaussian bandit: rewards N(mu, 1), mu ~ N(0, 1) drawn from "
    "the seed; otherwise as Bandit-Bernoulli-<K>",
    "<any gymnasium id>": "anything gymnasium.make can build (CartPole-v1, Pendulum-v1, your "
    "own registered envs), stepped by gymnasium.vector",
    "ALE/<Game>-v5": "Atari games on EnvPool (also <Game>-v5), with the RND paper's "
    "preprocessing: 84x84 grey, 4 stacked frames, sticky actions 0.25, 4500-step episodes "
    "(explora.envs.atari); Montezuma's Revenge reports rooms",
    "<module>:<id>": "import <module> (which registers its envs with gymnasium), then make "
    "<id> as above, e.g. mypkg.envs:MyEnv-v0",
}

BACKENDS = ("envpool", "gymnasium")

ENVPOOL_DEFECTS: dict[str, str] = {
    "MiniGrid-MultiRoom-": (
        "EnvPool's MultiRoom generator (envpool 1.2.5, minigrid_room_tasks.cc, PlaceRoom) draws "
        "the next room's offset along the door's wall from one value more than minigrid does "
        "(RandInt(y - size + 2, y + 1) against minigrid's _rand_int(y - size + 2, y)), so a "
        "door can sit in the next room's corner and open onto its wall: an unsolvable layout. "
        "Measured on MiniGrid-MultiRoom-N2-S4-v0 under random actions: 30% of the views facing "
        "an open door show a wall right behind it on EnvPool, none on minigrid; a PPO policy "
        "trained on EnvPool solves 100% of minigrid's layouts and 69% of EnvPool's. With one "
        "door in 3 to 4 bad, few of MultiRoom-N4-S5-v0's 6-room layouts are solvable"
    ),
}
"""Id prefix -> why EnvPool's version of those envs is not used by default: they run on the
Python minigrid backend unless ``backend='envpool'`` is asked for (which warns)."""


def envpool_defect(env_id: str) -> str | None:
    """Why EnvPool's version of ``env_id`` is wrong, or None when it is not known to be."""
    for prefix, why in ENVPOOL_DEFECTS.items():
        if env_id.startswith(prefix):
            return why
    return None


_DEEPSEA = re.compile(r"^DeepSea-(.*)$")
MAX_DEEPSEA_SIZE = 8192
"""DeepSea's one-hot observation is N x N uint8 per env copy (and its action mapping N x N
int64, shared): N = 8192 is 64 MiB per copy already, and a rollout or a replay buffer holds
thousands of observations, so larger N cannot train in memory. (bsuite's sweep stops at 100.)"""


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


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def deepsea_size(env_id: str) -> int | None:
    """N of a ``DeepSea-<N>`` id, None for an id outside the family.

    A malformed or too large N raises ``ValueError`` saying why, before anything is allocated.
    """
    match = _DEEPSEA.match(env_id)
    if match is None:
        return None
    text = match.group(1)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"DeepSea size must be a positive integer N, as in DeepSea-20, got {text!r} in "
            f"{env_id!r}"
        )
    size = int(text)
    if size > MAX_DEEPSEA_SIZE:
        raise ValueError(
            f"{env_id} is too large: its one-hot observation is N x N uint8, "
            f"{_bytes(size * size)} per env copy, and a rollout or replay buffer holds thousands "
            f"of them; the largest accepted is DeepSea-{MAX_DEEPSEA_SIZE} "
            f"({_bytes(MAX_DEEPSEA_SIZE**2)} per copy)"
        )
    return size


def split_module(env_id: str) -> tuple[str | None, str]:
    """``("mypkg.envs", "MyEnv-v0")`` for ``"mypkg.envs:MyEnv-v0"`` (gymnasium.make's form),
    ``(None, env_id)`` for an id without a module."""
    module, sep, name = env_id.rpartition(":")
    if not sep:
        return None, env_id
    if not module or not name:
        raise ValueError(
            f"env {env_id!r} has an empty module or id; the form is <module>:<id>, e.g. "
            "mypkg.envs:MyEnv-v0"
        )
    return module, name


def import_env_module(env_id: str) -> str:
    """Import the module of a ``module:EnvId`` id (it registers its envs with gymnasium when
    imported); returns the id without the module. Ids without a module are returned as they
    are. A module that cannot be imported raises ``ValueError`` naming it."""
    module, name = split_module(env_id)
    if module is None:
        return env_id
    try:
        importlib.import_module(module)
    except ImportError as err:
        missing = getattr(err, "name", None)
        why = f"No module named {missing!r}" if missing and missing != module else str(err) or "?"
        raise ValueError(
            f"cannot import module {module!r} of env {env_id!r}: {why}; is its folder on "
            "PYTHONPATH?"
        ) from err
    return name


def _registered_by(module: str) -> list[str]:
    """Gymnasium ids whose entry point lives in ``module``."""
    import gymnasium as gym

    ids = []
    for env_id, spec in gym.envs.registry.items():
        entry = spec.entry_point
        where = entry.partition(":")[0] if isinstance(entry, str) else entry.__module__
        if where == module or where.startswith(module + "."):
            ids.append(env_id)
    return sorted(ids)


def check_env_id(env_id: str, backend: str | None = None) -> str:
    """Validate ``env_id`` without building anything; returns the backend that will run it.

    ``module:EnvId`` imports ``module`` first (its envs register themselves), then checks
    ``EnvId`` as any other id. Raises ``ValueError`` naming the accepted families (and the
    closest known ids) otherwise.

    Example:
        >>> check_env_id("DeepSea-10")
        'native'
    """
    if not isinstance(env_id, str):
        raise ValueError(f"env id must be a string, got {env_id!r}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    module, _ = split_module(env_id)
    if module is not None:
        name = import_env_module(env_id)
        if deepsea_size(name) is None and parse_bandit_id(name) is None:
            if name not in _gymnasium_ids() and not (
                _is_grid_family(name) and name in _envpool_ids()
            ):
                registered = _registered_by(module)
                listed = (
                    f"it registered: {', '.join(registered)}"
                    if registered
                    else "it registered no gymnasium env"
                )
                raise ValueError(f"module {module!r} did not register an env {name!r}; {listed}")
        return check_env_id(name, backend)
    if atari_task(env_id) is not None:
        if backend == "gymnasium":
            raise ValueError(f"{env_id!r} runs on EnvPool only; drop backend='gymnasium'")
        return "envpool"
    tv_base = noisy_tv_base(env_id)  # an unknown NoisyTV id raises ValueError naming them
    if tv_base is not None:
        return check_env_id(tv_base, backend)
    if parse_bandit_id(env_id) is not None:  # a malformed Bandit-* id raises ValueError
        return "native"
    if deepsea_size(env_id) is not None:
        return "native"
    known = _gymnasium_ids()
    if _is_grid_family(env_id):
        defect = envpool_defect(env_id)
        if backend is None and defect is not None and env_id in known:
            return "gymnasium"
        if backend in (None, "envpool") and env_id in _envpool_ids():
            if defect is not None:
                warnings.warn(f"{env_id} on EnvPool: {defect}", stacklevel=2)
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


def _check_fits(env_id: str, batch_bytes: int, num_envs: int) -> None:
    """Refuse an env whose one observation batch alone exceeds this machine's memory."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no figure to compare
        return
    if batch_bytes > memory:
        raise ValueError(
            f"{env_id} with {num_envs} env copies needs {_bytes(batch_bytes)} for one batch of "
            f"observations, more than this machine's {_bytes(memory)} of memory; use fewer "
            "copies or a smaller N"
        )


def make(
    env_id: str,
    num_envs: int = 8,
    seed: int = 0,
    backend: str | None = None,
    **kwargs: Any,
) -> VecEnv:
    """Build ``num_envs`` copies of ``env_id`` behind the ``VecEnv`` interface.

    Args:
        env_id: a MiniGrid/BabyAI id, ``DeepSea-<N>``, any Gymnasium id, or ``module:EnvId``
            (the module is imported first, so its envs register themselves).
        num_envs: copies stepped together.
        seed: seeds the copies (each copy gets its own stream).
        backend: for MiniGrid/BabyAI, ``"envpool"`` (default when EnvPool has the id) or
            ``"gymnasium"`` (the Python minigrid package).
        kwargs: passed to the environment (e.g. ``obs_type="coords"`` for DeepSea).
    """
    if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    chosen = check_env_id(env_id, backend)
    env_id = import_env_module(env_id)  # module:EnvId -> EnvId, its module imported
    try:
        env = _build(env_id, chosen, num_envs, seed, kwargs)
    except TypeError as err:  # an argument the env's constructor does not take
        raise ValueError(f"{env_id} does not take the arguments {sorted(kwargs)}: {err}") from err
    # (gymnasium by its full name: the submodule explora.envs.gym shadows "gym" here)
    if isinstance(env.single_observation_space, gymnasium.spaces.Dict):
        from explora.envs.dict_obs import FlattenDict

        return FlattenDict(env)
    return env


def _build(env_id: str, chosen: str, num_envs: int, seed: int, kwargs: dict[str, Any]) -> VecEnv:
    tv_base = noisy_tv_base(env_id)
    if tv_base is not None:
        base_kwargs = {**noisy_tv_base_kwargs(env_id, chosen), **kwargs}
        inner = _build(tv_base, chosen, num_envs, seed, base_kwargs)
        try:
            return NoisyTV(inner, seed=seed, env_id=env_id)
        except ValueError:
            inner.close()
            raise
    if chosen == "native" and env_id.startswith("Bandit-"):
        from explora.envs.bandits import BanditEnv

        return BanditEnv.from_id(env_id, num_envs, seed=seed, **kwargs)
    size = deepsea_size(env_id)
    if chosen == "native" and size is not None:
        from explora.envs.deepsea import DeepSea

        _check_fits(env_id, size * size * num_envs, num_envs)
        return DeepSea(size, num_envs, seed=seed, **kwargs)
    if chosen == "envpool" and atari_task(env_id) is not None:
        from explora.envs.atari import EnvPoolAtari

        return EnvPoolAtari(env_id, num_envs, seed=seed, **kwargs)
    if chosen == "envpool":
        from explora.envs.minigrid import EnvPoolMiniGrid

        return EnvPoolMiniGrid(env_id, num_envs, seed=seed, **kwargs)
    if _is_grid_family(env_id):
        from explora.envs.minigrid import make_gymnasium_minigrid

        return make_gymnasium_minigrid(env_id, num_envs, seed=seed, **kwargs)
    from explora.envs.gym import GymnasiumVecEnv

    return GymnasiumVecEnv(env_id, num_envs, seed=seed, **kwargs)
