"""Agents and the registry ``explora train --algo`` chooses from.

Each algo has a config dataclass and a ``train(env, config, bonus, run)`` function;
``algo_config`` layers the env family's preset (``explora.presets``) under the user's settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from explora.agents.ppo import PPOConfig, TrainingDiverged, train_ppo
from explora.presets import algo_preset

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


def algo_config(algo: str, env_id: str, overrides: dict[str, Any]) -> Any:
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
    values = {**algo_preset(algo, env_id), **overrides}
    return cls(**values)
