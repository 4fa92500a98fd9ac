"""``ObservationView``: the shared part of wrappers that show their inner bonus a view of each
observation (one part of a Dict observation: ``ObsKey``; the newest of stacked frames:
``explora.envs.atari.LastFrame``). A subclass sets the inner bonus up on the view's space and
defines ``_view``; everything else (observe, compute, update, episode hooks, train/eval, the
inner bonus's attributes) passes through here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from explora.bonuses.base import Bonus, Transitions


class ObservationView:
    """``inner`` driven on ``self._view(batch)`` instead of ``batch``."""

    def __init__(self, inner: Bonus) -> None:
        self.inner = inner
        self.episodic = inner.episodic
        self.warmup_steps = inner.warmup_steps

    def _view(self, batch: Transitions) -> Transitions:
        raise NotImplementedError

    def observe(self, step: Transitions) -> None:
        self.inner.observe(self._view(step))

    def compute(self, batch: Transitions) -> Tensor:
        return self.inner.compute(self._view(batch))

    def update(self, batch: Transitions) -> dict[str, float]:
        return self.inner.update(self._view(batch))

    def start_new_episodes(self, envs: np.ndarray) -> None:
        hook = getattr(self.inner, "start_new_episodes", None)
        if hook is not None:
            hook(envs)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> Any:
        return self.inner.load_state_dict(state)

    def train(self, mode: bool = True) -> ObservationView:
        if hasattr(self.inner, "train"):
            self.inner.train(mode)
        return self

    def eval(self) -> ObservationView:
        return self.train(False)

    def __getattr__(self, name: str) -> Any:  # num_unique, count_key, ... of the inner bonus
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
