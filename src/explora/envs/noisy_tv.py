"""A noisy TV for any MiniGrid-style ``VecEnv``: one action puts fresh random noise on screen.

The test bed for "prediction-error bonuses are drawn to noise" (Burda et al. 2019, "Large-Scale
Study of Curiosity-Driven Learning", sec. 5; Raileanu & Rocktaschel 2020, "RIDE: Rewarding
Impact-Driven Exploration for Procedurally-Generated Environments", sec. 5.3). An agent paid for
what its model cannot predict can earn that pay forever by pressing the TV button, without ever
exploring; a bonus robust to noise (counts of agent states, RIDE's episodic discount, ...) should
keep the fraction of steps spent on the TV small.

RIDE's ``MultiRoomNoisyTV`` (official code: facebookresearch/impact-driven-exploration,
``gym-minigrid/gym_minigrid/envs/multiroom_noisytv.py``, MultiRoom-N7-S4 only) puts a ``Ball`` of
a random colour in the first room and repurposes MiniGrid's ``drop`` action (4): drop no longer
drops, it recolours the ball with a uniform draw from the 6 colours (possibly the colour it
already had). The env still steps (the step counts towards ``max_steps``).

``NoisyTV`` here works on the observation instead of the grid, so it wraps any grid ``VecEnv``
(EnvPool's C++ MiniGrid included, whose grid Python cannot reach), vectorised over env copies:

* The TV action (``tv_action``, default 4 = drop) sends ``base_action`` (default 6 = done, a
  no-op in MiniGrid and EnvPool: nothing moves, the step counts towards the time limit) to the
  base env in its place, so, as in RIDE's env, pressing the TV never drops a carried key. With
  ``base_action=None`` the base env receives the TV action itself.
* After that step, the ``cells`` (default one cell, ``[0, 0]``: the far-left corner of the 7x7
  egocentric view, the cell least useful to the agent) of the observation show a ball of a
  colour drawn uniformly from MiniGrid's 6 colours, i.e. the value ``(6, c, 0)`` with
  ``c ~ U{0..5}``, drawn per press, per env and per cell from the wrapper's own seeded
  ``numpy.random.Generator`` -- RIDE's ball and colour draw, MiniGrid-valid values.
* Every other action leaves the observation exactly as the base env returns it.

How it differs from RIDE's env:

1. RIDE's ball sits in the grid, in the first room: the agent sees it (and its colour changes)
   only when it is in view, and it keeps its colour until the next press. Here the TV is a fixed
   patch of the agent's own view: always on screen when pressed, and shown on that step only
   (the next non-TV step shows the base env's observation of the patch again). The noise is thus
   available everywhere, in every env, which makes this TV at least as attractive as RIDE's.
2. RIDE's ball can be picked up (then it stops being a TV) and blocks a cell; here nothing in the
   grid changes, so the task and its optimal return are those of the base env.
3. The patch hides the base env's view of those cells on TV steps only.
4. RIDE's draw uses the env's own RNG (so it shifts later layouts); here the wrapper's own
   generator draws it, so the base env's episodes are those of the same-seeded base env under
   the same actions (TV presses replaced by ``base_action``).

Where an episode ends on a TV step, ``final_obs`` (the last view of that episode) shows the noise
and ``obs`` (the first view of the next) does not. ``info["on_tv"]`` (bool ``[N]``) says which
envs took the TV action at that step; ``explora.runs.episodes.EpisodeTracker`` turns it into
``charts/tv_fraction`` and the summary's ``tv_fraction``.

Registered ids (``explora.envs.make``, ``explora train --env``): the keys of ``NOISY_TV_IDS``,
e.g. ``MiniGrid-DoorKey-8x8-NoisyTV-v0`` wraps ``MiniGrid-DoorKey-8x8-v0``, on EnvPool (default)
or the gymnasium backend (``backend="gymnasium"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from explora.envs.base import EnvStep, VecEnv

__all__ = ["NOISY_TV_IDS", "NoisyTV", "noisy_tv_base", "noisy_tv_base_kwargs", "tv_values"]

NOISY_TV_SUFFIX = "-NoisyTV-v0"
_MULTIROOM_N7_S4 = (
    {"min_num_rooms": 7, "max_num_rooms": 7, "max_room_size": 4, "max_episode_steps": 140},
    {"minNumRooms": 7, "maxNumRooms": 7, "maxRoomSize": 4},
)
NOISY_TV_IDS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "MiniGrid-MultiRoom-N4-S5-NoisyTV-v0": ("MiniGrid-MultiRoom-N4-S5-v0", {}, {}),
    "MiniGrid-MultiRoom-N7-S4-NoisyTV-v0": ("MiniGrid-MultiRoom-N6-v0", *_MULTIROOM_N7_S4),
    "MiniGrid-DoorKey-8x8-NoisyTV-v0": ("MiniGrid-DoorKey-8x8-v0", {}, {}),
}
"""NoisyTV id -> (base id, the base's arguments on EnvPool, on gymnasium). MultiRoom-N7-S4
(RIDE's noisy-TV task; gym-minigrid's ``MultiRoomEnvN7S4``: 7 rooms of size <= 4, 20 steps per
room) is in neither EnvPool nor the minigrid package: it is their MultiRoom-N6 with 7 rooms of
size at most 4 and a 140-step limit (minigrid's default ``20 * maxNumRooms``)."""

BALL, NUM_COLOURS = 6, 6  # MiniGrid's OBJECT_TO_IDX["ball"] and len(COLOR_TO_IDX)
_SEED_SALT = 0x7E1E715  # keeps the TV's stream apart from anything else seeded with ``seed``


def noisy_tv_base(env_id: str) -> str | None:
    """The base id of a NoisyTV id, None for an id that names no NoisyTV env.

    An id that asks for a NoisyTV env not registered here (one ending in ``-NoisyTV-v0``, or a
    MiniGrid/BabyAI id naming NoisyTV, such as RIDE's ``MiniGrid-MultiRoomNoisyTV-N7-S4-v0``)
    raises ``ValueError`` naming the accepted ids.
    """
    grid = env_id.startswith(("MiniGrid-", "BabyAI-"))
    if not (env_id.endswith(NOISY_TV_SUFFIX) or (grid and "NoisyTV" in env_id)):
        return None
    if env_id not in NOISY_TV_IDS:
        accepted = ", ".join(NOISY_TV_IDS)
        raise ValueError(f"unknown NoisyTV env {env_id!r}; accepted: {accepted}")
    return NOISY_TV_IDS[env_id][0]


def noisy_tv_base_kwargs(env_id: str, backend: str) -> dict[str, Any]:
    """The arguments that make the base env of NoisyTV id ``env_id`` on ``backend``."""
    _, on_envpool, on_gymnasium = NOISY_TV_IDS[env_id]
    return dict(on_envpool if backend == "envpool" else on_gymnasium)


def tv_values() -> np.ndarray:
    """``[6, 3]`` uint8: the values a TV cell can show, a ball in each of MiniGrid's colours."""
    values = np.zeros((NUM_COLOURS, 3), dtype=np.uint8)
    values[:, 0] = BALL
    values[:, 1] = np.arange(NUM_COLOURS)
    return values


class NoisyTV(VecEnv):
    """``env`` with a noisy TV on action ``tv_action`` (see the module docstring).

    Args:
        env: a ``VecEnv`` with a discrete action space and a ``[H, W, 3]`` uint8 image
            observation in MiniGrid's encoding (object, colour, state per cell).
        seed: seeds the TV's generator; ``reset(seed=s)`` re-seeds it from ``s``.
        tv_action: the action that switches the TV on (MiniGrid's drop).
        base_action: what the base env receives in its place (MiniGrid's done, a no-op);
            None passes ``tv_action`` through.
        cells: the ``(i, j)`` indices into the observation's first two axes that show noise.
        env_id: the id reported as ``env_id`` (default: the base's, with ``+NoisyTV``).
    """

    def __init__(
        self,
        env: VecEnv,
        *,
        seed: int = 0,
        tv_action: int = 4,
        base_action: int | None = 6,
        cells: Sequence[tuple[int, int]] = ((0, 0),),
        env_id: str | None = None,
    ) -> None:
        space, actions = env.single_observation_space, env.single_action_space
        if not (
            isinstance(space, gym.spaces.Box)
            and space.dtype == np.uint8
            and len(space.shape) == 3
            and space.shape[2] == 3
        ):
            raise ValueError(
                f"NoisyTV needs a MiniGrid-style [H, W, 3] uint8 image observation, got {space} "
                f"from {env.env_id} (dict_obs=True is not accepted)"
            )
        if not isinstance(actions, gym.spaces.Discrete):
            raise ValueError(f"NoisyTV needs a Discrete action space, got {actions}")
        n = int(actions.n)
        for name, action in (("tv_action", tv_action), ("base_action", base_action)):
            if action is not None and not 0 <= action < n:
                raise ValueError(f"{name}={action} is not an action of {actions}")
        ij = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        if len(ij) == 0 or (ij < 0).any() or (ij >= np.asarray(space.shape[:2])).any():
            raise ValueError(f"cells {cells!r} must be a non-empty list of (i, j) in {space.shape}")
        self.env = env
        self.env_id = env_id if env_id is not None else f"{env.env_id}+NoisyTV"
        self.num_envs = env.num_envs
        self.single_observation_space = space
        self.single_action_space = actions
        self.grid_shape = env.grid_shape
        self.has_success = env.has_success
        self.tv_action = tv_action
        self.base_action = base_action
        self._rows, self._cols = ij[:, 0], ij[:, 1]
        self._values = tv_values()
        self._rng = self._generator(seed)
        self._on_tv = np.zeros(self.num_envs, dtype=bool)

    @staticmethod
    def _generator(seed: int) -> np.random.Generator:
        return np.random.default_rng([int(seed), _SEED_SALT])

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if seed is not None:
            self._rng = self._generator(seed)
        return self.env.reset(seed=seed)

    def step(self, actions: np.ndarray) -> EnvStep:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        self._on_tv = actions == self.tv_action
        if self.base_action is not None and self._on_tv.any():
            actions = np.where(self._on_tv, self.base_action, actions).astype(actions.dtype)
        self.env.step_async(actions)

    def step_wait(self) -> EnvStep:
        step = self.env.step_wait()
        on_tv = self._on_tv
        info = {**step.info, "on_tv": on_tv.copy()}
        if not on_tv.any():
            return step._replace(info=info)
        envs = np.flatnonzero(on_tv)
        # [k, cells, 3]: a fresh draw per pressing env and per cell
        noise = self._values[self._rng.integers(0, NUM_COLOURS, size=(len(envs), len(self._rows)))]
        at = (envs[:, None], self._rows[None, :], self._cols[None, :])
        final_obs = np.array(step.final_obs)
        final_obs[at] = noise
        ended = (step.terminated | step.truncated)[envs]
        if step.obs is step.final_obs and not ended.any():
            obs = final_obs
        else:  # a new episode's first view shows no noise
            obs = np.array(step.obs)
            live = ~ended
            obs[envs[live][:, None], self._rows[None, :], self._cols[None, :]] = noise[live]
        return step._replace(obs=obs, final_obs=final_obs, info=info)

    def state_dict(self) -> dict[str, Any] | None:
        """The base env's state and the TV's generator; None when the base env has none (a
        resumed run then resets, which re-seeds the TV from the reset seed)."""
        base = self.env.state_dict()
        if base is None:
            return None
        return {"env": base, "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env.load_state_dict(state["env"])
        self._rng.bit_generator.state = state["rng"]

    def close(self) -> None:
        self.env.close()
