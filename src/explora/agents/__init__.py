"""Agents and the registry ``explora train --algo`` chooses from.

Each algo has a config dataclass and a ``train(env, config, bonus, run)`` function;
``algo_config`` layers the env family's preset (``explora.presets``) under the user's settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from explora.agents.bandits import BanditConfig, train_bandit
from explora.agents.common import TrainingDiverged
from explora.agents.dqn import BootDQNConfig, DQNConfig, train_dqn
from explora.agents.ppo import PPOConfig, train_ppo
from explora.agents.reinforce import ReinforceConfig, train_reinforce
from explora.models.encoders import ENCODERS
from explora.presets import algo_preset
from explora.validate import check_settings, hints_of

__all__ = [
    "ALGOS",
    "BanditConfig",
    "BootDQNConfig",
    "DQNConfig",
    "PPOConfig",
    "ReinforceConfig",
    "TrainingDiverged",
    "algo_config",
    "train_bandit",
    "train_dqn",
    "train_ppo",
    "train_reinforce",
]


# What the agents' networks take: ``explora.models.encoders.make_encoder`` (PPO, REINFORCE)
# flattens Box, one-hot encodes Discrete and reads MultiBinary as a vector; DQN's Q-networks
# flatten any array-shaped observation. Tuple and Dict observations have no array form.
FLAT_OBSERVATIONS: tuple[type[gym.Space], ...] = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiBinary,
)
IMAGE_ENCODERS = ("grid-mlp", "grid-cnn", "pixel-cnn")


def _space_names(spaces: tuple[type[gym.Space], ...]) -> str:
    return ", ".join(s.__name__ for s in spaces)


@dataclass(frozen=True)
class Algo:
    config: type
    train: Callable[..., dict[str, Any]]
    description: str
    takes_bonus: bool = True
    discrete_actions_only: bool = False
    env_prefix: str | None = None
    """the only env ids it runs (e.g. "Bandit-"), or None for any"""
    observation_spaces: tuple[type[gym.Space], ...] = FLAT_OBSERVATIONS
    """observation spaces its networks take"""
    action_spaces: tuple[type[gym.Space], ...] = (gym.spaces.Discrete, gym.spaces.Box)
    """action spaces its policy can output"""

    def check(self, name: str, env_id: str, bonus: object | None) -> None:
        """Fail on a combination the algo cannot run, before anything is built."""
        if bonus is not None and not self.takes_bonus:
            raise ValueError(f"{name} takes no bonus; drop --bonus")
        if self.env_prefix is not None and not env_id.startswith(self.env_prefix):
            raise ValueError(f"{name} runs only {self.env_prefix}* envs, got {env_id!r}")
        if self.env_prefix is None and env_id.startswith("Bandit-"):
            raise ValueError(f"Bandit-* envs are for --algo bandit, not {name}")

    def check_env(self, name: str, env: Any, config: Any = None) -> None:
        """Fail on an env whose spaces the algo (with ``config``'s encoder) cannot take: once
        the env is built, before the run directory is written or any network is built."""
        space = env.single_action_space
        if self.discrete_actions_only and not isinstance(space, gym.spaces.Discrete):
            raise ValueError(f"{name} needs Discrete actions, got {space}; use --algo ppo")
        if not isinstance(space, self.action_spaces):
            raise ValueError(
                f"{name} cannot output {type(space).__name__} actions ({space}); it takes "
                f"{_space_names(self.action_spaces)} action spaces"
            )
        obs = env.single_observation_space
        if not isinstance(obs, self.observation_spaces):
            raise ValueError(
                f"{name} cannot take {type(obs).__name__} observations ({obs}); it takes "
                f"{_space_names(self.observation_spaces)} observation spaces (flatten the "
                "observation with a gymnasium wrapper, e.g. FlattenObservation)"
            )
        encoder = getattr(config, "encoder", "auto")
        # a flattened Dict observation: the image encoder applies to its image parts
        layout = getattr(obs, "layout", None)
        parts = [p.space for p in layout.parts.values()] if layout is not None else [obs]
        images = [p for p in parts if isinstance(p, gym.spaces.Box) and len(p.shape or ()) == 3]
        if encoder in IMAGE_ENCODERS and not images:
            raise ValueError(
                f"encoder {encoder!r} needs [H, W, C] image observations, got {obs}; use "
                "encoder=auto or encoder=mlp"
            )


ALGOS: dict[str, Algo] = {
    "ppo": Algo(
        PPOConfig,
        train_ppo,
        "PPO with two value heads (extrinsic, intrinsic), GAE, exact terminated/truncated "
        "handling; discrete and continuous actions",
    ),
    "dqn": Algo(
        DQNConfig,
        train_dqn,
        "DQN with replay and a target network; epsilon-greedy, Boltzmann or NoisyNet "
        "exploration, Double-DQN target, n-step returns",
        discrete_actions_only=True,
        observation_spaces=(*FLAT_OBSERVATIONS, gym.spaces.MultiDiscrete),
    ),
    "bootdqn": Algo(
        BootDQNConfig,
        train_dqn,
        "bootstrapped DQN with randomized prior functions (bsuite's boot_dqn defaults): "
        "one head per episode, deep exploration",
        discrete_actions_only=True,
    ),
    "reinforce": Algo(
        ReinforceConfig,
        train_reinforce,
        "REINFORCE (Williams 1992) on complete episodes with a baseline: none, whiten, "
        "learned value, sampled-mean (leave-one-out) or sampled-greedy (self-critical)",
        takes_bonus=False,
    ),
    "bandit": Algo(
        BanditConfig,
        train_bandit,
        "multi-armed bandit strategies (epsilon-greedy, UCB1, Thompson sampling) for "
        "Bandit-* envs; reports cumulative pseudo-regret; takes no bonus",
        takes_bonus=False,
        env_prefix="Bandit-",
        observation_spaces=(gym.Space,),  # a bandit has no state: the observation is ignored
    ),
}


def algo_config(algo: str, env_id: str, overrides: dict[str, Any]) -> Any:
    """The algo's config for this env and bonus: preset first, then ``overrides``.

    Raises ``ValueError`` for an unknown hyper-parameter, naming the accepted ones, and for a
    value of the wrong type or out of range (``explora.validate``), naming the accepted range.

    Example:
        >>> algo_config("ppo", "CartPole-v1", {"learning_rate": 3e-4}).learning_rate
        0.0003
    """
    cls = ALGOS[algo].config
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown {algo} setting(s) {', '.join(unknown)}; accepted: {', '.join(sorted(fields))}"
        )
    values = {**algo_preset(algo, env_id), **overrides}
    config = cls(**check_settings(f"{algo} setting", values, hints_of(cls)))
    # The encoder is a plain str field, built only once training starts: check its name now.
    encoder = getattr(config, "encoder", None)
    if encoder is not None and encoder not in ENCODERS:
        raise ValueError(
            f"unknown encoder {encoder!r} for {algo}; choose one of: {', '.join(ENCODERS)}"
        )
    return config
