"""NoisyTV: the TV action shows fresh noise in a fixed patch of the view, nothing else changes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import explora
from explora.envs import ENV_FAMILIES, check_env_id, make
from explora.envs.base import EnvStep, VecEnv
from explora.envs.noisy_tv import NOISY_TV_IDS, NoisyTV, noisy_tv_base, tv_values
from explora.runs.episodes import EpisodeTracker
from explora.runs.rundir import RunDir

TV, DONE = 4, 6
IDS = (
    "MiniGrid-MultiRoom-N4-S5-NoisyTV-v0",
    "MiniGrid-MultiRoom-N7-S4-NoisyTV-v0",
    "MiniGrid-DoorKey-8x8-NoisyTV-v0",
)


def _patch_ok(values: np.ndarray) -> bool:
    """Every ``[..., 3]`` value is a ball (6) of one of MiniGrid's 6 colours, state 0."""
    return bool((values[..., 0] == 6).all() and (values[..., 1] < 6).all())


class FakeGrid(VecEnv):
    """A tiny deterministic grid env with a state: the view encodes (env, time); episodes end
    every ``length`` steps (terminated); ``state_dict`` holds the clock."""

    def __init__(self, num_envs: int, length: int = 3) -> None:
        self.env_id = "Fake"
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
        self.single_action_space = gym.spaces.Discrete(7)
        self.length = length
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.seen: list[np.ndarray] = []

    def _view(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, 7, 7, 3), dtype=np.uint8)
        obs[..., 0] = 2  # walls everywhere
        obs[:, :, :, 1] = (self.t % 256)[:, None, None]
        obs[:, :, :, 2] = np.arange(self.num_envs)[:, None, None]
        return obs

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self.t[:] = 0
        return self._view(), {}

    def step(self, actions: np.ndarray) -> EnvStep:
        self.seen.append(np.array(actions))
        self.t += 1
        final = self._view()
        ended = self.t % self.length == 0
        self.t[ended] = 100  # a new episode's clock
        obs = self._view() if ended.any() else final
        zeros = np.zeros(self.num_envs, dtype=bool)
        return EnvStep(obs, np.zeros(self.num_envs, np.float32), ended, zeros, final, {})

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = state["t"].copy()


def _compare_with_base(env_id: str, backend: str, steps: int = 300) -> dict[str, int]:
    """Step the NoisyTV env and its same-seeded base env (TV presses sent as done) side by
    side; assert everything but the TV patch of pressing envs is identical."""
    n, seed = 6, 3
    noisy = make(env_id, num_envs=n, seed=seed, backend=backend)
    base_id = noisy_tv_base(env_id)
    assert base_id is not None
    _, on_envpool, on_gym = NOISY_TV_IDS[env_id]
    base = make(base_id, n, seed, backend, **(on_envpool if backend == "envpool" else on_gym))
    rng = np.random.default_rng(0)
    counts = {"tv": 0, "mixed_steps": 0, "tv_at_end": 0}
    try:
        obs_n, _ = noisy.reset()
        obs_b, _ = base.reset()
        np.testing.assert_array_equal(obs_n, obs_b)
        for _ in range(steps):
            actions = rng.integers(0, 7, size=n)
            actions[rng.random(n) < 0.3] = TV
            sn = noisy.step(actions)
            sb = base.step(np.where(actions == TV, DONE, actions))
            tv = actions == TV
            np.testing.assert_array_equal(sn.info["on_tv"], tv)
            assert sn.info["on_tv"].dtype == bool
            for field in ("reward", "terminated", "truncated"):
                np.testing.assert_array_equal(getattr(sn, field), getattr(sb, field))
            np.testing.assert_array_equal(sn.info["agent_pos"], sb.info["agent_pos"])
            ended = sn.terminated | sn.truncated
            # envs that did not press: bit-identical views
            np.testing.assert_array_equal(sn.obs[~tv], sb.obs[~tv])
            np.testing.assert_array_equal(sn.final_obs[~tv], sb.final_obs[~tv])
            # envs that pressed: identical outside the patch [0, 0], a ball there
            mask = np.ones((7, 7), dtype=bool)
            mask[0, 0] = False
            np.testing.assert_array_equal(sn.final_obs[tv][:, mask], sb.final_obs[tv][:, mask])
            assert _patch_ok(sn.final_obs[tv, 0, 0])
            live = tv & ~ended
            np.testing.assert_array_equal(sn.obs[live], sn.final_obs[live])
            # a new episode's first view shows no noise
            np.testing.assert_array_equal(sn.obs[tv & ended], sb.obs[tv & ended])
            counts["tv"] += int(tv.sum())
            counts["mixed_steps"] += int(tv.any() and not tv.all())
            counts["tv_at_end"] += int((tv & ended).sum())
    finally:
        noisy.close()
        base.close()
    return counts


@pytest.mark.parametrize("env_id", IDS)
def test_other_actions_leave_the_base_envs_transitions_unchanged(env_id: str) -> None:
    counts = _compare_with_base(env_id, "envpool")
    assert counts["tv"] > 100 and counts["mixed_steps"] > 100


def test_gymnasium_backend_too_and_a_tv_press_at_an_episode_end() -> None:
    # MultiRoom-N4-S5 under random actions hits its 120-step limit: TV presses on final steps
    counts = _compare_with_base("MiniGrid-MultiRoom-N4-S5-NoisyTV-v0", "gymnasium", steps=500)
    assert counts["tv_at_end"] > 0


def test_the_tv_shows_fresh_values_on_each_press() -> None:
    env = make("MiniGrid-DoorKey-8x8-NoisyTV-v0", num_envs=3, seed=0)
    env.reset()
    shown = []
    for _ in range(120):  # env 0 and 1 keep pressing; the state under them never changes
        step = env.step(np.array([TV, TV, 0]))
        shown.append(step.obs[:2, 0, 0].copy())
    env.close()
    values = np.stack(shown)  # [120, 2, 3]
    assert _patch_ok(values)
    colours = values[..., 1]
    # all 6 colours show, in each env; consecutive presses differ about 5/6 of the time
    assert all(len(np.unique(colours[:, i])) == 6 for i in range(2))
    changed = (colours[1:] != colours[:-1]).mean()
    assert 0.7 < changed < 0.95
    # the two envs draw independently
    assert (colours[:, 0] != colours[:, 1]).mean() > 0.7


def test_the_tv_draw_comes_from_the_wrappers_own_seeded_generator() -> None:
    def presses(seed: int, reset_seed: int | None = None) -> np.ndarray:
        env = NoisyTV(FakeGrid(4), seed=seed)
        env.reset(seed=reset_seed)
        out = [env.step(np.array([TV, 1, TV, TV])).final_obs[:, 0, 0, 1] for _ in range(10)]
        return np.stack(out)

    np.testing.assert_array_equal(presses(0), presses(0))
    assert not np.array_equal(presses(0), presses(1))
    np.testing.assert_array_equal(presses(0, reset_seed=5), presses(1, reset_seed=5))
    values = tv_values()
    assert values.shape == (6, 3) and (values[:, 0] == 6).all()


def test_vectorised_only_pressing_envs_change_and_the_base_gets_done() -> None:
    inner = FakeGrid(5, length=4)
    env = NoisyTV(inner, seed=0, cells=((0, 0), (6, 6)))
    ref = FakeGrid(5, length=4)
    env.reset()
    ref.reset()
    for t in range(12):
        actions = np.array([TV, 0, (t % 2) * TV, 2, TV])
        env.step_async(actions)  # the asynchronous path EnvPool's agents use
        step = env.step_wait()
        want = ref.step(actions)
        tv = actions == TV
        np.testing.assert_array_equal(inner.seen[-1], np.where(tv, DONE, actions))
        np.testing.assert_array_equal(step.info["on_tv"], tv)
        np.testing.assert_array_equal(step.final_obs[~tv], want.final_obs[~tv])
        patch = step.final_obs[tv][:, [0, 6], [0, 6]]
        assert _patch_ok(patch)
        rest = step.final_obs[tv].copy()
        rest[:, [0, 6], [0, 6]] = want.final_obs[tv][:, [0, 6], [0, 6]]
        np.testing.assert_array_equal(rest, want.final_obs[tv])
        ended = want.terminated
        np.testing.assert_array_equal(step.obs[ended], want.obs[ended])
        np.testing.assert_array_equal(step.obs[~ended], step.final_obs[~ended])
    # base_action=None passes the TV action through
    passthrough = NoisyTV(FakeGrid(2), base_action=None)
    passthrough.reset()
    passthrough.step(np.array([TV, 0]))
    assert isinstance(passthrough.env, FakeGrid)
    np.testing.assert_array_equal(passthrough.env.seen[-1], [TV, 0])


def test_state_round_trip_resumes_the_tv_exactly() -> None:
    rng = np.random.default_rng(1)
    actions = [np.where(rng.random(4) < 0.5, TV, 0) for _ in range(20)]
    a = NoisyTV(FakeGrid(4, length=5), seed=0)
    a.reset()
    for act in actions[:7]:
        a.step(act)
    state = copy.deepcopy(a.state_dict())
    assert state is not None
    again = a.state_dict()  # reading the state leaves it as it was
    assert again is not None and again["rng"] == state["rng"]
    b = NoisyTV(FakeGrid(4, length=5), seed=99)
    b.reset()
    b.load_state_dict(state)
    for act in actions[7:]:
        sa, sb = a.step(act), b.step(act)
        np.testing.assert_array_equal(sa.obs, sb.obs)
        np.testing.assert_array_equal(sa.final_obs, sb.final_obs)
    # a base env without a state (EnvPool): none for the wrapper either
    env = make("MiniGrid-DoorKey-8x8-NoisyTV-v0", num_envs=2, seed=0)
    assert env.state_dict() is None
    env.close()


def test_registered_ids_and_the_error_for_unknown_ones() -> None:
    assert set(IDS) <= set(NOISY_TV_IDS)
    assert any("NoisyTV" in family for family in ENV_FAMILIES)
    for env_id in IDS:
        # MultiRoom runs on minigrid's code by default (EnvPool's generator is broken)
        assert check_env_id(env_id) == ("gymnasium" if "MultiRoom" in env_id else "envpool")
        assert check_env_id(env_id, "gymnasium") == "gymnasium"
        env = make(env_id, num_envs=2, seed=0)
        assert isinstance(env, NoisyTV) and env.env_id == env_id and env.has_success
        assert env.grid_shape == ((8, 8) if "DoorKey" in env_id else (25, 25))
        env.close()
    assert noisy_tv_base("MiniGrid-DoorKey-8x8-v0") is None
    for bad in ("MiniGrid-DoorKey-5x5-NoisyTV-v0", "MiniGrid-MultiRoomNoisyTV-N7-S4-v0"):
        with pytest.raises(ValueError, match="unknown NoisyTV env") as err:
            make(bad, num_envs=2)
        assert all(env_id in str(err.value) for env_id in IDS)
    with pytest.raises(ValueError, match="dict_obs=True is not accepted"):
        make("MiniGrid-DoorKey-8x8-NoisyTV-v0", num_envs=2, dict_obs=True)
    with pytest.raises(ValueError, match="tv_action=9"):
        NoisyTV(FakeGrid(2), tv_action=9)


def _on_tv_step(on_tv: list[bool]) -> EnvStep:
    n = len(on_tv)
    zeros = np.zeros(n, dtype=bool)
    obs = np.zeros((n, 1), np.uint8)
    info = {"on_tv": np.array(on_tv)}
    return EnvStep(obs, np.zeros(n, np.float32), zeros, zeros, obs, info)


def test_tracker_logs_the_tv_fraction_per_window_and_over_the_run(tmp_path: Path) -> None:
    tracker = EpisodeTracker(2)
    tracker.step(_on_tv_step([True, False]), 2)
    tracker.step(_on_tv_step([True, True]), 4)
    charts = tracker.drain_charts()
    assert charts["charts/tv_fraction"] == 0.75 and charts["charts/tv_fraction_total"] == 0.75
    tracker.step(_on_tv_step([False, False]), 6)
    state = copy.deepcopy(tracker.state_dict())
    charts = tracker.drain_charts()
    assert charts["charts/tv_fraction"] == 0.0 and charts["charts/tv_fraction_total"] == 0.5
    assert tracker.result(6, 1.0, True)["tv_fraction"] == 0.5
    resumed = EpisodeTracker(2)
    resumed.load_state_dict(state)
    again = resumed.drain_charts()
    assert all(
        again[key] == charts[key] for key in ("charts/tv_fraction", "charts/tv_fraction_total")
    )
    # no NoisyTV env: no TV figures
    plain = EpisodeTracker(2)
    plain.step(_on_tv_step([False, False])._replace(info={}), 2)
    assert not any("tv" in key for key in plain.drain_charts())
    assert plain.result(2, 1.0, True)["tv_fraction"] is None
    # the run directory puts the last total into summary.json, and only then
    for metrics, want in (({"charts/tv_fraction_total": 0.25}, 0.25), ({}, None)):
        run = RunDir(tmp_path / str(want), {"env": "x"}, progress=False)
        run.log(10, {"charts/x": 1.0, **metrics})
        summary: dict[str, Any] = {"env": "x"}
        path = run.finish(summary)
        assert json.loads(path.read_text()).get("tv_fraction") == want
        assert summary.get("tv_fraction") == want


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_training_writes_tv_fraction_to_the_summary(tmp_path: Path, algo: str) -> None:
    args = {"num_steps": 64} if algo == "ppo" else {"learning_starts": 256}
    summary = explora.train(
        "MiniGrid-DoorKey-8x8-NoisyTV-v0",
        algo=algo,
        frames=2048,
        seed=0,
        num_envs=8,
        out=tmp_path / algo,
        progress=False,
        algo_args=args,
    )
    saved = json.loads((tmp_path / algo / "summary.json").read_text())
    # an untrained policy presses the TV about 1 step in 7
    assert 0.05 < saved["tv_fraction"] < 0.3
    assert saved["tv_fraction"] == summary["tv_fraction"]
    header = (tmp_path / algo / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "charts/tv_fraction" in header


def test_multiroom_n7_s4_has_rides_seven_rooms_of_size_four_and_140_steps() -> None:
    env_id = "MiniGrid-MultiRoom-N7-S4-NoisyTV-v0"
    gym_env = make(env_id, num_envs=2, seed=0, backend="gymnasium")
    gym_env.reset()
    assert isinstance(gym_env, NoisyTV)
    one: Any = gym_env.env._vec.envs[0].unwrapped  # type: ignore[attr-defined]
    assert len(one.rooms) == 7 and max(max(room.size) for room in one.rooms) <= 4
    assert one.max_steps == 140
    gym_env.close()
    for backend in ("envpool", "gymnasium"):  # standing still: truncated after 140 steps
        env = make(env_id, num_envs=2, seed=0, backend=backend)
        env.reset()
        ends = [env.step(np.array([TV, DONE])).truncated.all() for _ in range(141)]
        assert np.flatnonzero(ends).tolist() == [139], backend
        env.close()
