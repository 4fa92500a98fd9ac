"""Agents and the registry ``explora train --algo`` chooses from.

Each algo has a config dataclass and a ``train(env, config, bonus, run)`` function. Defaults
per env family (``algo_config``) are the ones measured to solve the small tasks without flags;
each preset says why it departs from the config's defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from explora.agents.ppo import PPOConfig, TrainingDiverged, train_ppo

__all__ = ["ALGOS", "PPOConfig", "TrainingDiverged", "algo_config", "train_ppo"]


@dataclass(frozen=True)
class Algo:
    config: type
    train: Callable[..., dict[str, Any]]
    description: str


ALGOS: dict[str, Algo] = {
    "ppo": Algo(
        PPOConfig,
        train_ppo,
        "PPO with two value heads (extrinsic, intrinsic), GAE, exact terminated/truncated "
        "handling; discrete and continuous actions",
    ),
}


def _ppo_preset(env_id: str, bonus: str | None) -> dict[str, Any]:
    if env_id.startswith(("MiniGrid-", "BabyAI-")):
        # 64 envs keep EnvPool's threads busy and amortise Python overhead per frame; one
        # large minibatch per epoch instead of rl-starter-files' 256 keeps the update cheap.
        return {"num_envs": 64, "minibatch_size": 2048}
    if env_id.startswith("DeepSea-"):
        return {"num_envs": 16, "num_steps": 32, "minibatch_size": 128}
    return {}


_PRESETS: dict[str, Callable[[str, str | None], dict[str, Any]]] = {"ppo": _ppo_preset}


def algo_config(algo: str, env_id: str, bonus: str | None, overrides: dict[str, Any]) -> Any:
    """The algo's config for this env and bonus: preset first, then ``overrides``.

    Raises ``ValueError`` for an unknown hyper-parameter, naming the accepted ones.
    """
    cls = ALGOS[algo].config
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown {algo} setting(s) {', '.join(unknown)}; accepted: {', '.join(sorted(fields))}"
        )
    values = {**_PRESETS[algo](env_id, bonus), **overrides}
    return cls(**values)
