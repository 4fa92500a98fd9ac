"""``ObsKey``: a bonus that reads one part of a Dict observation.

explora flattens Dict observations into one array with a layout (``explora.envs.dict_obs``);
``ObsKey(bonus, key)`` hands the inner bonus the part ``key`` alone, in its own shape and dtype,
and sets it up on that part's space, so any bonus takes any Dict-observation env without
knowing about dicts. The agents wrap a bonus in it themselves on such envs (``for_env``), with
the image by default; ``--bonus-args obs_key=mission`` (or ``ObsKey(RND(), "mission")``) picks
another part.

Example:
    >>> from explora.bonuses import RND
    >>> bonus = ObsKey(RND(), "image")
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from explora.bonuses.base import Bonus
from explora.bonuses.view import ObservationView


class ObsKey(ObservationView):
    """``inner`` seeing only the part ``key`` (None: the layout's default, the image) of a
    flattened Dict observation's ``obs`` and ``next_obs``."""

    def __init__(self, inner: Bonus, key: str | None = None) -> None:
        super().__init__(inner)
        self.key = key
        self._layout: Any = None

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        layout = getattr(observation_space, "layout", None)
        if layout is None:
            raise ValueError(
                f"obs_key={self.key!r} needs a Dict observation space, got {observation_space}"
            )
        self._layout = layout
        self.key = self.key or layout.default_key()
        self.inner.setup(layout.part(self.key).space, action_space, num_envs)

    def view_obs(self, obs: Any) -> Any:
        return self._layout.view(obs, self.key)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "key": self.key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])


def for_env(bonus: Bonus | None, observation_space: gym.Space) -> Bonus | None:
    """``bonus`` as an agent should drive it on ``observation_space``: wrapped in ``ObsKey``
    (the default part) when the space is a flattened Dict and the bonus does not pick one."""
    if bonus is None or isinstance(bonus, ObsKey) or not hasattr(observation_space, "layout"):
        return bonus
    return ObsKey(bonus)
