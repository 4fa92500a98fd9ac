"""Atari 2600 games on EnvPool's C++ Arcade Learning Environment, preprocessed as in the RND
paper's code (Burda et al. 2018, openai/random-network-distillation: ``run_atari.py``,
``atari_wrappers.py``'s ``make_atari`` and ``wrap_deepmind``).

Ids: ``ALE/<Game>-v5`` or ``<Game>-v5`` for every game whose ROM EnvPool ships
(``envpool.atari.registration.atari_game_list``), e.g. ``ALE/MontezumaRevenge-v5``,
``Breakout-v5``.

Preprocessing, each setting beside the RND code's wrapper it reproduces (EnvPool keyword in
brackets; any of them can be overridden through ``make(..., **kwargs)`` / ``--env-args``):
- 84 x 84 grey frames, area-interpolated (``WarpFrame``) [``img_height``, ``img_width``,
  ``gray_scale``, ``use_inter_area_resize``: EnvPool's defaults];
- each action repeated for 4 emulator frames, the observation the max of the last two
  (``MaxAndSkipEnv(skip=4)``) [``frame_skip=4``; EnvPool always max-pools the last two];
- the last 4 observations stacked (``VecFrameStack(4)``) [``stack_num=4``];
- sticky actions, p = 0.25 (``StickyActionEnv``) [``repeat_action_probability=0.25``].
  Deviation: ALE draws the repeat per emulator frame (Machado et al. 2018, the v5 standard), the
  RND wrapper once per agent step for all 4 frames; both repeat the previous action with
  probability 0.25;
- episodes cut after 4500 agent steps = 18000 emulator frames (``run_atari.py``'s
  ``--max_episode_steps 4500``; ``make_atari`` sets gym's TimeLimit to 4 x that in frames)
  [``max_episode_steps=4500``]: such an end is ``truncated``, a game over ``terminated``;
- no random no-op starts, no FIRE at reset, no end of episode at a lost life (``make_atari``
  has none of these wrappers) [``noop_max=1``: EnvPool's least, one no-op frame at each reset;
  ``use_fire_reset=False``; ``episodic_life=False``];
- the minimal action set of the game (gym's ``*NoFrameskip-v4`` ids; for Montezuma's Revenge
  that is all 18 actions) [``full_action_space=False``];
- rewards clipped to their sign (``ClipRewardEnv``) [``reward_clip=True``]: the agent trains
  on, and ``episodic_return`` reports, the clipped reward; ``info["score"]`` carries the game's
  own reward of each step (``reward_clip=false`` makes the reward the score itself).

Observation: ``[N, 84, 84, 4]`` uint8, frames last (``[H, W, C]``, as explora's image
encoders take images), oldest first: ``obs[..., -1]`` is the current frame. (EnvPool's own
layout is ``[N, 4, 84, 84]``.)

Frames: as for every env in explora, a *frame* is one agent step of one env copy (``--frames``,
``summary["frames"]``, ``fps``). One agent step here is 4 emulator frames, the unit of the RND
paper's frame counts (30k updates x 128 envs x 128 steps = 1.97B frames): 1M explora frames are
4M emulator frames (``summary["emulator_frames"]``).

Rooms (Montezuma's Revenge): RAM byte 3 holds the room the agent is in (``MontezumaInfoWrapper``
of the RND code reads ``ram[3]``; the game starts in room 1). ``info["room"]`` [N] gives it,
and ``info["map_cell"]`` [N, 2] the room's (row, column) on the first level's pyramid of 24
rooms (``PYRAMID``, as Go-Explore draws it), which the episode tracker counts: the run's
``unique_states`` is the number of rooms visited and ``visitation.npy`` the steps spent in each
room (later levels repeat the same 24 rooms and count as the same). Other games report no rooms
and no ``unique_states``. No compact state key is offered (a room is far coarser than a state),
so counting bonuses key on the observation's bytes.

RND reads the newest frame only (the paper's target and predictor take ``[..., -1:]`` and keep
per-pixel statistics of it): ``explora.train`` wraps an RND bonus on an Atari env in
``LastFrame``; with ``train_ppo`` wrap it yourself, ``LastFrame(RND(...))``.

EnvPool resets an env on the step *after* its last one; as ``explora.envs.minigrid`` does, this
adapter resets the ended copies at once by stepping only them, so it hands out same-step
auto-reset (``explora.envs.base``).

Example:
    >>> from explora.envs import make
    >>> env = make("ALE/MontezumaRevenge-v5", num_envs=2, seed=0)  # doctest: +SKIP
    >>> env.reset()[0].shape                                       # doctest: +SKIP
    (2, 84, 84, 4)
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from explora.bonuses.view import NewestFrame
from explora.envs.base import EnvStep, VecEnv

if TYPE_CHECKING:
    from explora.bonuses.base import Bonus

RND_SETTINGS: dict[str, Any] = {
    "img_height": 84,
    "img_width": 84,
    "gray_scale": True,
    "stack_num": 4,
    "frame_skip": 4,
    "repeat_action_probability": 0.25,
    "max_episode_steps": 4500,
    "noop_max": 1,
    "use_fire_reset": False,
    "episodic_life": False,
    "full_action_space": False,
    "reward_clip": True,
}
"""EnvPool settings reproducing the RND paper's preprocessing (module docstring)."""

PYRAMID = (
    (-1, -1, -1, 0, 1, 2, -1, -1, -1),
    (-1, -1, 3, 4, 5, 6, 7, -1, -1),
    (-1, 8, 9, 10, 11, 12, 13, 14, -1),
    (15, 16, 17, 18, 19, 20, 21, 22, 23),
)
"""Montezuma's Revenge's 24 rooms of a level as (row, column) on the game's map."""

ROOM_ADDRESS = {"montezuma_revenge": 3}
"""RAM byte holding the room, per EnvPool task (RND code: 3 for Montezuma; it reads byte 1 as
Pitfall's room, which has no map here)."""

_ROOM_CELLS = np.full((256, 2), -1, dtype=np.int64)
for _row, _rooms in enumerate(PYRAMID):
    for _col, _room in enumerate(_rooms):
        if _room >= 0:
            _ROOM_CELLS[_room] = (_row, _col)

_ATARI_ID = re.compile(r"^(?:ALE/)?([A-Z][A-Za-z0-9]*)-v5$")


@cache
def _atari_games() -> dict[str, str]:
    """``MontezumaRevenge`` -> ``montezuma_revenge`` for every ROM EnvPool ships."""
    try:
        from envpool.atari.registration import atari_game_list
    except Exception:  # no envpool (or no Atari in it) on this platform
        return {}
    return {"".join(p.capitalize() for p in game.split("_")): game for game in atari_game_list}


def atari_task(env_id: str) -> str | None:
    """EnvPool's task name of an Atari id (``ALE/<Game>-v5`` or ``<Game>-v5``), else None.

    Example:
        >>> atari_task("ALE/MontezumaRevenge-v5")  # doctest: +SKIP
        'montezuma_revenge'
        >>> atari_task("CartPole-v1") is None
        True
    """
    match = _ATARI_ID.match(env_id) if isinstance(env_id, str) else None
    if match is None:
        return None
    return _atari_games().get(match.group(1))


def room_cells(rooms: np.ndarray) -> np.ndarray:
    """``[N]`` Montezuma room numbers -> ``[N, 2]`` (row, column) on ``PYRAMID``; (-1, -1) for
    a number outside the map.

    Example:
        >>> room_cells(np.array([1, 15])).tolist()
        [[0, 4], [3, 0]]
    """
    return _ROOM_CELLS[np.asarray(rooms, dtype=np.int64) & 255]


class EnvPoolAtari(VecEnv):
    """An Atari game via ``envpool.make(..., env_type="gymnasium")`` with the RND paper's
    preprocessing (module docstring); ``envpool_kwargs`` override ``RND_SETTINGS``."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int = 0,
        num_threads: int = 0,
        **envpool_kwargs: Any,
    ) -> None:
        task = atari_task(env_id)
        if task is None:
            raise ValueError(f"{env_id!r} is not an Atari id EnvPool has a ROM for")
        self.env_id = env_id
        self.task = task
        self._envpool_id = env_id.removeprefix("ALE/")
        self.num_envs = num_envs
        self._seed = seed
        self._num_threads = num_threads
        self.settings = {**RND_SETTINGS, **envpool_kwargs}
        self._env = self._make(seed)
        stack = int(self.settings["stack_num"]) * (1 if self.settings["gray_scale"] else 3)
        height, width = int(self.settings["img_height"]), int(self.settings["img_width"])
        self.single_observation_space = gym.spaces.Box(0, 255, (height, width, stack), np.uint8)
        self.single_action_space = gym.spaces.Discrete(int(self._env.action_space.n))
        self.frame_skip = int(self.settings["frame_skip"])
        """emulator frames per agent step"""
        self._room_address = ROOM_ADDRESS.get(task)
        self.has_rooms = self._room_address is not None
        """True when ``info`` reports rooms (``room``, ``map_cell``) and ``unique_states``
        counts rooms visited"""
        self.grid_shape = (len(PYRAMID), len(PYRAMID[0])) if self.has_rooms else None
        self._all_ids = np.arange(num_envs, dtype=np.int32)

    def _make(self, seed: int) -> Any:
        import envpool

        return envpool.make(
            self._envpool_id,
            env_type="gymnasium",
            num_envs=self.num_envs,
            seed=seed,
            num_threads=self._num_threads,
            **self.settings,
        )

    @staticmethod
    def _frames_last(obs: np.ndarray) -> np.ndarray:
        """EnvPool's ``[N, K, H, W]`` -> a new ``[N, H, W, K]`` array."""
        return np.ascontiguousarray(np.asarray(obs).transpose(0, 2, 3, 1))

    def _info(self, info: dict[str, Any]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "lives": np.asarray(info["lives"]).astype(np.int64),
            "score": np.asarray(info["reward"], dtype=np.float32),
        }
        if self._room_address is not None:
            rooms = np.asarray(info["ram"])[:, self._room_address].astype(np.int64)
            out["room"] = rooms
            out["map_cell"] = room_cells(rooms)
        return out

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if seed is not None and seed != self._seed:
            # EnvPool seeds at construction only.
            self._env.close()
            self._seed = seed
            self._env = self._make(seed)
        obs, info = self._env.reset()
        out = self._info(info)
        out["score"][:] = 0.0
        return self._frames_last(obs), out

    def step(self, actions: np.ndarray) -> EnvStep:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        self._env.send(np.asarray(actions, dtype=np.int32), self._all_ids)

    def step_wait(self) -> EnvStep:
        obs, reward, terminated, truncated, info = self._env.recv()
        order = np.asarray(info["env_id"])
        if not np.array_equal(order, self._all_ids):  # EnvPool's synchronous steps are ordered
            raise RuntimeError(f"EnvPool returned the env copies out of order: {order}")
        final_obs = self._frames_last(obs)
        out_info = self._info(info)
        # A game over is a termination even when it falls on the step limit's last step.
        terminated = np.asarray(terminated, dtype=bool) | np.asarray(info["terminated"], dtype=bool)
        truncated = np.asarray(truncated, dtype=bool) & ~terminated
        ended = terminated | truncated
        next_obs = final_obs
        if ended.any():
            ids = np.flatnonzero(ended).astype(np.int32)
            # EnvPool's auto-reset step for exactly the ended envs: the action is ignored, the
            # others do not move.
            reset_obs, _, _, _, reset_info = self._env.step(np.zeros(len(ids), np.int32), ids)
            next_obs = final_obs.copy()
            next_obs[np.asarray(reset_info["env_id"])] = self._frames_last(reset_obs)
        reward = np.asarray(reward, dtype=np.float32)
        return EnvStep(next_obs, reward, terminated, truncated, final_obs, out_info)

    def close(self) -> None:
        self._env.close()


class LastFrame(NewestFrame):
    """``inner`` seeing only the newest frame of stacked observations: ``obs`` and
    ``next_obs`` ``[T, N, H, W, K]`` reach it as ``[T, N, H, W, 1]``, and it is set up on that
    space. The RND paper's target and predictor read the last frame alone, whitened with
    per-pixel statistics of it (``cnn_policy_param_matched.py``: ``[:, :, :, -1:]``;
    ``ppo_agent.py``: ``ob_rms.update(ob[:, :, :, -1:])``). Transparent to checkpoints: its
    ``state_dict`` is the inner bonus's.

    Example:
        >>> from explora.bonuses import RND
        >>> bonus = LastFrame(RND())
    """

    def __init__(self, inner: Bonus) -> None:
        super().__init__(inner, channels=1)


def rnd_on_last_frame(bonus: Bonus) -> Bonus:
    """``bonus`` wrapped in ``LastFrame`` when it is RND (alone or inside ``FirstVisit`` /
    ``ObsKey``), as the RND paper feeds it; any other bonus as it is (ICM and the dynamics
    bonuses read the whole stack in their papers)."""
    from explora.bonuses.base import wrapper_chain
    from explora.bonuses.rnd import RND

    is_rnd = any(isinstance(part, RND) for part in wrapper_chain(bonus))
    return LastFrame(bonus) if is_rnd else bonus
