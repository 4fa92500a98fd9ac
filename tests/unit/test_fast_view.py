"""The fast MiniGrid view (explora.envs.fast_view) gives minigrid's observations bit for bit."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import gymnasium as gym
import minigrid  # noqa: F401  - registers the ids
import numpy as np
import pytest
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Door, Key, WorldObj
from minigrid.envs import EmptyEnv
from minigrid.minigrid_env import MiniGridEnv

from explora.envs.fast_view import install_fast_view

# left, right, forward, pickup, drop, toggle, done: often enough pickup/drop/toggle that doors
# open and close and objects get carried and put down.
ACTION_PROBS = np.array([0.15, 0.15, 0.27, 0.14, 0.12, 0.15, 0.02])

# (env id, gym.make kwargs, steps); episodes are cut at 120 steps so that resets come often.
CASES: list[tuple[str, dict[str, Any], int]] = [
    ("MiniGrid-MultiRoom-N4-S5-v0", {}, 1500),
    ("MiniGrid-MultiRoom-N6-v0", {}, 1000),
    ("MiniGrid-DoorKey-8x8-v0", {}, 1000),
    ("MiniGrid-DoorKey-8x8-v0", {"see_through_walls": True}, 600),
    ("MiniGrid-KeyCorridorS3R3-v0", {}, 1000),
    ("MiniGrid-ObstructedMaze-2Dlh-v0", {}, 1500),
    ("MiniGrid-LavaGapS7-v0", {}, 600),
    ("MiniGrid-Dynamic-Obstacles-8x8-v0", {}, 600),
    ("MiniGrid-Unlock-v0", {}, 800),
    ("MiniGrid-Empty-5x5-v0", {"agent_view_size": 5}, 400),
    ("MiniGrid-Empty-5x5-v0", {"agent_view_size": 9}, 400),
    ("MiniGrid-KeyCorridorS3R3-v0", {"agent_view_size": 3}, 600),
]


def _make(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    return gym.make(env_id, max_episode_steps=120, disable_env_checker=True, **kwargs)


def assert_same_obs(fast: dict[str, Any], slow: dict[str, Any]) -> None:
    """Equal keys, image (values, dtype, shape), direction and mission."""
    assert list(fast) == list(slow) == ["image", "direction", "mission"]
    assert fast["image"].dtype == slow["image"].dtype == np.uint8
    assert fast["image"].shape == slow["image"].shape
    np.testing.assert_array_equal(fast["image"], slow["image"])
    assert fast["image"].flags.writeable and fast["image"].flags.c_contiguous
    assert type(fast["direction"]) is type(slow["direction"])
    assert fast["direction"] == slow["direction"]
    assert fast["mission"] == slow["mission"]


@pytest.mark.parametrize(
    ("env_id", "kwargs", "steps"),
    CASES,
    ids=[f"{env_id}{''.join(f'-{k}={v}' for k, v in kw.items())}" for env_id, kw, _ in CASES],
)
def test_random_steps_match_minigrid(env_id: str, kwargs: dict[str, Any], steps: int) -> None:
    slow_env, fast_env = _make(env_id, kwargs), _make(env_id, kwargs)
    assert install_fast_view(fast_env)
    assert "gen_obs" in vars(fast_env.unwrapped) and "gen_obs" not in vars(slow_env.unwrapped)
    rng = np.random.default_rng(1)
    seed = 7
    slow_obs, _ = slow_env.reset(seed=seed)
    fast_obs, _ = fast_env.reset(seed=seed)
    assert_same_obs(fast_obs, slow_obs)
    resets = 0
    for _ in range(steps):
        action = int(rng.choice(len(ACTION_PROBS), p=ACTION_PROBS))
        slow_obs, slow_reward, slow_term, slow_trunc, _ = slow_env.step(action)
        fast_obs, fast_reward, fast_term, fast_trunc, _ = fast_env.step(action)
        assert_same_obs(fast_obs, slow_obs)
        assert (fast_reward, fast_term, fast_trunc) == (slow_reward, slow_term, slow_trunc)
        if slow_term or slow_trunc:
            seed += 1
            resets += 1
            slow_obs, _ = slow_env.reset(seed=seed)
            fast_obs, _ = fast_env.reset(seed=seed)
            assert_same_obs(fast_obs, slow_obs)
    assert resets > 0


def test_every_registered_minigrid_and_babyai_id_matches() -> None:
    """60 random steps of every MiniGrid/BabyAI id this minigrid registers (a new minigrid
    version that changes how the view is built fails here). The WFC ids need pattern files
    that are not installed here; an id that cannot reset is skipped, one that falls back must
    say so by returning False."""
    checked = 0
    for env_id in sorted(i for i in gym.envs.registry if i.startswith(("MiniGrid-", "BabyAI-"))):
        slow_env, fast_env = _make(env_id, {}), _make(env_id, {})
        try:
            slow_obs, _ = slow_env.reset(seed=3)
        except FileNotFoundError:  # MiniGrid-WFC-*: pattern images missing from the wheel
            continue
        if not install_fast_view(fast_env):
            continue
        fast_obs, _ = fast_env.reset(seed=3)
        rng = np.random.default_rng(0)
        for t in range(60):
            if isinstance(slow_obs, dict):
                assert_same_obs(fast_obs, slow_obs)
            else:  # an id registered with an observation wrapper
                np.testing.assert_array_equal(fast_obs, slow_obs)
            action = int(rng.choice(len(ACTION_PROBS), p=ACTION_PROBS))
            slow_obs, *slow_rest = slow_env.step(action)
            fast_obs, *fast_rest = fast_env.step(action)
            assert fast_rest[:3] == slow_rest[:3], (env_id, t)
            if slow_rest[1] or slow_rest[2]:
                slow_obs, _ = slow_env.reset(seed=t)
                fast_obs, _ = fast_env.reset(seed=t)
        checked += 1
    assert checked >= 150  # minigrid 3.x registers ~180 ids


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("MiniGrid-ObstructedMaze-2Dlh-v0", {}),
        ("MiniGrid-KeyCorridorS3R3-v0", {"agent_view_size": 5}),
        ("MiniGrid-MultiRoom-N4-S5-v0", {}),
        ("MiniGrid-DoorKey-8x8-v0", {"see_through_walls": True, "agent_view_size": 9}),
    ],
)
def test_every_cell_and_direction_matches(env_id: str, kwargs: dict[str, Any]) -> None:
    """Agent on every cell (walls too) in every direction, carrying or not, doors both ways."""
    env = _make(env_id, kwargs)
    env.reset(seed=3)
    unwrapped: Any = env.unwrapped
    assert install_fast_view(env)
    doors = [obj for obj in unwrapped.grid.grid if isinstance(obj, Door)]
    for door_round in range(2):
        for door in doors:
            door.is_open = door_round == 1
        for carrying in (None, Key("yellow"), Ball("purple")):
            unwrapped.carrying = carrying
            for x in range(unwrapped.width):
                for y in range(unwrapped.height):
                    for direction in range(4):
                        unwrapped.agent_pos = (x, y)
                        unwrapped.agent_dir = direction
                        assert_same_obs(unwrapped.gen_obs(), MiniGridEnv.gen_obs(unwrapped))


@pytest.mark.parametrize("view_size", [3, 4, 6, 11])
def test_other_view_sizes_match_including_even_ones(view_size: int) -> None:
    """Sizes set after construction (minigrid's constructor only takes odd ones)."""
    env = _make("MiniGrid-MultiRoom-N6-v0", {})
    env.reset(seed=5)
    unwrapped: Any = env.unwrapped
    assert install_fast_view(env)
    unwrapped.agent_view_size = view_size
    for x in range(unwrapped.width):
        for y in range(unwrapped.height):
            for direction in range(4):
                unwrapped.agent_pos = np.array([x, y])
                unwrapped.agent_dir = direction
                assert_same_obs(unwrapped.gen_obs(), MiniGridEnv.gen_obs(unwrapped))


def test_install_is_refused_where_the_view_would_differ() -> None:
    cartpole = gym.make("CartPole-v1")
    assert not install_fast_view(cartpole)
    assert "gen_obs" not in vars(cartpole.unwrapped)

    class OwnObs(EmptyEnv):
        def gen_obs(self) -> dict[str, Any]:
            return {"image": np.zeros((7, 7, 3), np.uint8)}

    class OwnGrid(EmptyEnv):
        def gen_obs_grid(self, agent_view_size: int | None = None) -> Any:
            return super().gen_obs_grid(agent_view_size)

    for cls in (OwnObs, OwnGrid):
        env = cls(size=6)
        assert not install_fast_view(env)
        assert "gen_obs" not in vars(env)

    patched = EmptyEnv(size=6)
    patched.get_view_exts = lambda agent_view_size=None: (0, 0, 7, 7)  # type: ignore[method-assign]
    assert not install_fast_view(patched)

    plain = gym.make("MiniGrid-Empty-5x5-v0")
    assert install_fast_view(plain) and install_fast_view(plain)  # idempotent


def test_grid_subclass_and_bad_direction_hand_over_to_minigrid() -> None:
    env = _make("MiniGrid-DoorKey-8x8-v0", {})
    env.reset(seed=0)
    unwrapped: Any = env.unwrapped
    assert install_fast_view(env)

    class SeeAllGrid(Grid):
        def process_vis(self, agent_pos: tuple[int, int]) -> np.ndarray:
            return np.ones((self.width, self.height), dtype=bool)

    unwrapped.grid.__class__ = SeeAllGrid
    assert_same_obs(unwrapped.gen_obs(), MiniGridEnv.gen_obs(unwrapped))
    unwrapped.grid.__class__ = Grid
    unwrapped.agent_dir = 4
    with pytest.raises(AssertionError):
        unwrapped.gen_obs()


def test_copies_keep_a_correct_view() -> None:
    env = _make("MiniGrid-KeyCorridorS3R3-v0", {})
    env.reset(seed=0)
    assert install_fast_view(env)
    twin: Any = copy.deepcopy(env.unwrapped)
    assert twin.gen_obs.__self__ is twin  # rebound to the copy
    restored: Any = pickle.loads(pickle.dumps(env.unwrapped))
    for other in (twin, restored):
        other.agent_dir = (other.agent_dir + 1) % 4
        assert_same_obs(other.gen_obs(), MiniGridEnv.gen_obs(other))


class OpaqueBall(Ball):
    """A ball that hides what is behind it and encodes with numpy ints."""

    def see_behind(self) -> bool:
        return False

    def encode(self) -> tuple[int, int, int]:
        code = super().encode()
        return (np.int64(code[0]), np.uint8(code[1]), 1)  # type: ignore[return-value]


class BrokenCode(WorldObj):
    def __init__(self, code: tuple[Any, ...]) -> None:
        super().__init__("ball", "red")
        self.code = code

    def encode(self) -> Any:
        return self.code


def test_custom_world_objects_are_reproduced() -> None:
    env = _make("MiniGrid-Empty-5x5-v0", {"agent_view_size": 7})
    env.reset(seed=0)
    unwrapped: Any = env.unwrapped
    unwrapped.see_through_walls = False
    assert install_fast_view(env)
    unwrapped.grid.set(2, 2, OpaqueBall("green"))
    for x in range(1, 4):
        for y in range(1, 4):
            for direction in range(4):
                unwrapped.agent_pos, unwrapped.agent_dir = (x, y), direction
                assert_same_obs(unwrapped.gen_obs(), MiniGridEnv.gen_obs(unwrapped))
    unwrapped.agent_pos, unwrapped.agent_dir = (1, 2), 0  # looking at (2, 2)
    unwrapped.grid.set(2, 2, BrokenCode((4, 1, 0, 0)))  # numpy refuses four values
    with pytest.raises(ValueError):
        unwrapped.gen_obs()
    for code in [(7,), (2.7, 1, 0), (np.int64(300), 0, 0)]:  # broadcast, cast, wrapped by numpy
        unwrapped.grid.set(2, 2, BrokenCode(code))
        assert_same_obs(unwrapped.gen_obs(), MiniGridEnv.gen_obs(unwrapped))
