"""``Curiosity``: any explora bonus, with the reward normalisation explora's PPO gives it, for a
training loop you already have (CleanRL-style scripts, your own agent).

Three calls, on plain numpy arrays or torch tensors with a leading env axis ``[N, ...]``:

    curiosity = explora.Curiosity("rnd", observation_space, action_space, num_envs=8)
    r_int = curiosity.reward(obs, actions, next_obs, terminated, truncated)   # every env step
    metrics = curiosity.update()                                             # after a rollout

``reward`` shows the step to the bonus and returns ``int_coef * r / std`` per env, where ``r`` is
the raw bonus and ``std`` the running standard deviation of its discounted return along time
per env (``DiscountedReturnStd``, as in the RND paper; the mean is not subtracted). One
difference from explora's PPO, which folds a whole rollout into ``std`` and then divides every
step of it: here ``std`` takes each step in before dividing that step, since a loop's reward is
needed when the step happens. Both read the same running statistic; they differ by what one
rollout changes in it, largest over the first rollouts. ``next_obs``
must be the true successor of ``obs``: at an episode end, the episode's final observation, not
the first observation of the next one (gymnasium's vector envs put it in ``info["final_obs"]``
with same-step autoreset). With gymnasium's default next-step autoreset, the step that only
resets an env is not a transition: leave it out (``valid``). ``update`` trains the bonus's own
models on every step seen since the previous ``update``.

The bonus is computed one step at a time, in the same order as explora's PPO, which
computes a whole rollout at once after it ends: RND scores every step of a rollout with the
observation statistics from before the rollout and folds the rollout in at ``update`` (the RND
paper's order). For a bonus with a random-policy warm-up (``warmup_steps``), call
``warmup(obs, actions, next_obs, terminated, truncated)`` on random-policy steps before
training, or skip it.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> from explora import Curiosity
    >>> obs_space, act_space = gym.spaces.Box(0, 1, (4,), np.float32), gym.spaces.Discrete(2)
    >>> curiosity = Curiosity("rnd", obs_space, act_space, num_envs=2)
    >>> obs, next_obs = np.zeros((2, 4), np.float32), np.ones((2, 4), np.float32)
    >>> r = curiosity.reward(obs, np.array([0, 1]), next_obs, np.array([False, True]),
    ...                      np.array([False, False]))
    >>> r.shape, r.dtype
    ((2,), dtype('float32'))
    >>> sorted(curiosity.update())
    ['losses/rnd']
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from explora.bonuses import Bonus, make_bonus
from explora.bonuses.base import DiscountedReturnStd, Transitions
from explora.bonuses.obs_key import for_env

Array = np.ndarray | Tensor


def _tensor(x: Array) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))


class Curiosity:
    """A bonus (a name from ``explora.bonuses.BONUSES`` or a ``Bonus`` object) with its reward
    normaliser, driven step by step.

    Args:
        bonus: bonus name or object; a name is built with ``bonus_args``.
        observation_space, action_space: spaces of one env copy.
        num_envs: env copies stepped together (N).
        int_coef: weight of the normalised bonus in what ``reward`` returns.
        int_gamma: discount of the intrinsic return whose std divides the raw bonus.
        bonus_args: constructor arguments of a bonus given by name.
    """

    def __init__(
        self,
        bonus: str | Bonus,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        num_envs: int,
        int_coef: float = 1.0,
        int_gamma: float = 0.99,
        **bonus_args: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if isinstance(bonus, str):
            self.bonus: Bonus = make_bonus(bonus, **bonus_args)
        elif bonus_args:
            raise ValueError("bonus_args apply to a bonus given by name, not to a Bonus object")
        else:
            self.bonus = bonus
        self.bonus = for_env(self.bonus, observation_space) or self.bonus
        self.bonus.setup(observation_space, action_space, num_envs)
        self.num_envs, self.int_coef = num_envs, int_coef
        self.scale = DiscountedReturnStd(num_envs, int_gamma)
        self._steps: list[Transitions] = []

    def _step(
        self,
        obs: Array,
        actions: Array,
        next_obs: Array,
        terminated: Array,
        truncated: Array,
    ) -> Transitions:
        arrays = [_tensor(x) for x in (obs, actions, next_obs, terminated, truncated)]
        names = ("obs", "actions", "next_obs", "terminated", "truncated")
        for name, x in zip(names, arrays, strict=True):
            if x.dim() == 0 or x.shape[0] != self.num_envs:
                raise ValueError(
                    f"expected arrays with a leading axis of num_envs = {self.num_envs}, got "
                    f"{name} of shape {tuple(x.shape)}"
                )
        obs_t, actions_t, next_t, term_t, trunc_t = arrays
        return Transitions(
            obs=obs_t.unsqueeze(0),
            actions=actions_t.unsqueeze(0),
            next_obs=next_t.unsqueeze(0),
            ext_rewards=torch.zeros(1, self.num_envs),
            terminated=term_t.bool().reshape(1, self.num_envs),
            truncated=trunc_t.bool().reshape(1, self.num_envs),
        )

    def warmup(
        self, obs: Array, actions: Array, next_obs: Array, terminated: Array, truncated: Array
    ) -> None:
        """Show a random-policy step to the bonus's input statistics (no reward, no training)."""
        self.bonus.observe(self._step(obs, actions, next_obs, terminated, truncated))

    def reward(
        self,
        obs: Array,
        actions: Array,
        next_obs: Array,
        terminated: Array,
        truncated: Array,
        valid: Array | None = None,
    ) -> Array:
        """``[N]`` normalised intrinsic reward of one vector step (``[N, ...]`` arrays), in the
        type of ``obs`` (numpy or torch). Where ``valid`` ``[N]`` is False the env's step is
        not a transition (gymnasium's next-step autoreset): its reward is 0."""
        step = self._step(obs, actions, next_obs, terminated, truncated)
        self.bonus.observe(step)
        raw = self.bonus.compute(step).float()  # [1, N]
        if valid is not None:
            raw = raw * _tensor(valid).bool().reshape(1, self.num_envs)
        self.scale.update(raw)
        self._steps.append(step)
        out = self.int_coef * raw[0] / self.scale.std
        return out if isinstance(obs, Tensor) else out.numpy()

    def update(self) -> dict[str, float]:
        """Train the bonus on the steps seen since the last call; returns its figures."""
        if not self._steps:
            return {}
        fields = ("obs", "actions", "next_obs", "ext_rewards", "terminated", "truncated")
        batch = Transitions(**{f: torch.cat([getattr(s, f) for s in self._steps]) for f in fields})
        self._steps = []
        return self.bonus.update(batch)

    def state_dict(self) -> dict[str, Any]:
        return {"bonus": self.bonus.state_dict(), "scale": self.scale.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bonus.load_state_dict(state["bonus"])
        self.scale.load_state_dict(state["scale"])
