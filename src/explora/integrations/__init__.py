"""explora's bonuses inside other libraries' learners.

* ``explora.integrations.sb3.BonusCallback``: any explora bonus for Stable-Baselines3's PPO, A2C
  (added to the rollout before returns and advantages), DQN, SAC and TD3 (added to each sampled
  batch). Needs the optional extra: ``pip install explora[sb3]``.
* For a training loop of your own (CleanRL-style scripts), ``explora.Curiosity``.

Example:
    >>> from stable_baselines3 import PPO                       # doctest: +SKIP
    >>> from explora.integrations import BonusCallback          # doctest: +SKIP
    >>> model = PPO("MlpPolicy", "DeepSea-10")                 # doctest: +SKIP
    >>> model.learn(50_000, callback=BonusCallback("count"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["BonusCallback"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that explora works without Stable-Baselines3 installed.
    if name == "BonusCallback":
        from explora.integrations.sb3 import BonusCallback

        return BonusCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
