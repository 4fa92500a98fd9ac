"""DeepSea against bsuite's reference implementation, plus the semantics bsuite does not cover."""

from __future__ import annotations

import numpy as np
import pytest

from explora.envs.base import EnvStep
from explora.envs.deepsea import (
    BSUITE_MAPPING_SEED,
    DeepSea,
    bsuite_deep_sea_solved_at,
)


def bsuite_deep_sea_cls() -> type:
    """The reference implementation (bsuite is a dev dependency; skip the test without it)."""
    return pytest.importorskip("bsuite.environments.deep_sea").DeepSea


def right_actions(env: DeepSea, cols: np.ndarray) -> np.ndarray:
    """The action meaning "right" for each copy at the current row and ``cols``."""
    return env.action_mapping[env._row, cols].copy()


def optimal_actions(env: DeepSea) -> np.ndarray:
    """[size] actions going right in every cell along the diagonal."""
    return np.array([env.action_mapping[k, k] for k in range(env.size)])


def run_episode(env: DeepSea, actions: np.ndarray) -> list[EnvStep]:
    """Step every copy through one episode with ``actions`` ``[size]`` or ``[size, num_envs]``."""
    env.reset()
    steps = []
    for t in range(env.size):
        a = np.broadcast_to(actions[t], (env.num_envs,))
        steps.append(env.step(np.ascontiguousarray(a)))
    return steps


@pytest.mark.parametrize("size", [1, 5, 10, 20])
def test_matches_bsuite_transition_by_transition(size: int) -> None:
    num_envs, episodes = 3, 6
    env = DeepSea(size, num_envs)
    reference = bsuite_deep_sea_cls()
    refs = [reference(size, mapping_seed=BSUITE_MAPPING_SEED) for _ in range(num_envs)]
    assert np.array_equal(env.action_mapping, refs[0]._action_mapping)

    rng = np.random.default_rng(size)
    obs, info = env.reset()
    ref_obs = np.stack([ref.reset().observation for ref in refs])
    assert np.array_equal(obs, ref_obs.astype(np.uint8))
    assert np.array_equal(info["agent_pos"], np.zeros((num_envs, 2)))
    ref_returns = np.zeros(num_envs)
    for t in range(episodes * size):
        # Mostly the optimal action, so the treasure and long right runs occur too.
        optimal = right_actions(env, env._col)
        actions = np.where(rng.random(num_envs) < 0.8, optimal, 1 - optimal)
        out = env.step(actions)
        ref_steps = [ref.step(int(a)) for ref, a in zip(refs, actions, strict=True)]
        ref_returns += [ts.reward for ts in ref_steps]
        ref_final = np.stack([ts.observation for ts in ref_steps]).astype(np.uint8)
        np.testing.assert_allclose(out.reward, [ts.reward for ts in ref_steps], atol=1e-6)
        assert np.array_equal(out.final_obs, ref_final)
        assert np.array_equal(out.terminated, [ts.last() for ts in ref_steps])
        assert not out.truncated.any()
        # agent_pos follows final_obs, including row == size at the end.
        assert np.array_equal(out.info["agent_pos"][:, 1], [ref._column for ref in refs])
        assert np.array_equal(out.info["agent_pos"][:, 0], [ref._row for ref in refs])
        if (t + 1) % size == 0:
            assert out.terminated.all()
            np.testing.assert_allclose(out.info["episode_return"], ref_returns, atol=1e-5)
            assert np.array_equal(out.info["episode_length"], np.full(num_envs, size))
            assert np.array_equal(out.info["success"], out.reward > 0.5)
            assert np.array_equal(out.info["bad_episode"], [ref._bad_episode for ref in refs])
            ref_returns[:] = 0
            # bsuite resets on the step after the end; we already hold the reset obs.
            ref_obs = np.stack([ref.reset().observation for ref in refs])
        else:
            assert not out.terminated.any()
            ref_obs = ref_final
        assert np.array_equal(out.obs, ref_obs.astype(np.uint8))


def test_bad_episodes_total_matches_bsuite() -> None:
    size, episodes = 6, 40
    env = DeepSea(size, 1)
    ref = bsuite_deep_sea_cls()(size, mapping_seed=BSUITE_MAPPING_SEED)
    rng = np.random.default_rng(1)
    env.reset()
    ref.reset()
    ours = 0
    for _ in range(episodes * size):
        optimal = right_actions(env, env._col)
        action = np.where(rng.random(1) < 0.9, optimal, 1 - optimal)
        out = env.step(action)
        ts = ref.step(int(action[0]))
        ours += int(out.info["bad_episode"].sum())
        if ts.last():
            ref.reset()
    assert ours == ref.bsuite_info()["total_bad_episodes"]
    assert 0 < ours < episodes


def test_default_mapping_is_bsuites_sweep() -> None:
    reference = bsuite_deep_sea_cls()
    import bsuite

    for bsuite_id, size in (("deep_sea/0", 10), ("deep_sea/5", 20)):
        ref = bsuite.load_from_id(bsuite_id)
        assert ref._size == size
        assert np.array_equal(DeepSea(size, 1).action_mapping, ref._action_mapping)
    other = DeepSea(10, 1, mapping_seed=7).action_mapping
    assert np.array_equal(other, reference(10, mapping_seed=7)._action_mapping)


@pytest.mark.parametrize("obs_type", ["onehot", "coords"])
def test_same_step_auto_reset(obs_type: str) -> None:
    size = 4
    env = DeepSea(size, 2, obs_type=obs_type)
    env.reset()
    for t in range(size):
        out = env.step(np.array([0, 1]))
        last = t == size - 1
        assert np.array_equal(out.terminated, [last, last])
        assert not out.truncated.any()
        assert out.terminated.dtype == bool and out.truncated.dtype == bool
    assert np.array_equal(out.info["agent_pos"][:, 0], [size, size])
    if obs_type == "onehot":
        assert not out.final_obs.any()  # bsuite's null observation past the last row
        assert np.array_equal(out.obs[:, 0, 0], [1, 1]) and out.obs.sum() == 2
    else:
        assert np.array_equal(out.final_obs[:, 0], [size, size])
        assert np.array_equal(out.final_obs, out.info["agent_pos"])
        assert np.array_equal(out.obs, np.zeros((2, 2)))
    # The next episode runs from the start again.
    out = env.step(np.array([0, 1]))
    assert np.array_equal(out.info["agent_pos"][:, 0], [1, 1])
    assert not out.terminated.any()


@pytest.mark.parametrize("size", [1, 3, 10, 25])
def test_optimal_policy_succeeds_with_bsuite_return(size: int) -> None:
    env = DeepSea(size, 2)
    steps = run_episode(env, optimal_actions(env))
    for t, out in enumerate(steps[:-1]):
        np.testing.assert_allclose(out.reward, -0.01 / size, rtol=1e-6)
        assert np.array_equal(out.info["agent_pos"], np.tile([t + 1, t + 1], (2, 1)))
        assert not out.info["success"].any()
    # The +1 and the last move cost come on the same, last step.
    np.testing.assert_allclose(steps[-1].reward, 1 - 0.01 / size, rtol=1e-6)
    assert steps[-1].info["success"].all()
    assert not steps[-1].info["bad_episode"].any()
    np.testing.assert_allclose(steps[-1].info["episode_return"], 0.99, rtol=1e-5)
    assert env.optimal_return == pytest.approx(0.99)


def test_success_only_on_the_optimal_sequence() -> None:
    size = 5
    # Every one of the 2**size action sequences, one per copy.
    sequences = (np.arange(2**size)[None, :] >> np.arange(size)[:, None]) & 1
    env = DeepSea(size, 2**size)
    end = run_episode(env, sequences)[-1]
    optimal = np.flatnonzero((sequences == optimal_actions(env)[:, None]).all(axis=0))
    assert np.flatnonzero(end.info["success"]).tolist() == optimal.tolist()
    assert np.flatnonzero(end.reward > 0).tolist() == optimal.tolist()
    # In the deterministic game, missing the treasure means leaving the diagonal by choice.
    assert np.array_equal(end.info["bad_episode"], ~end.info["success"])


def test_bad_episode_on_hand_made_trajectories() -> None:
    size = 5
    env = DeepSea(size, 5)
    mapping = env.action_mapping

    def act(right: bool, row: int, col: int) -> int:
        return int(mapping[row, col]) if right else 1 - int(mapping[row, col])

    # Per copy, a right/left plan; (row, col) is tracked by hand to choose the action meaning it.
    plans = {
        "always_left": [False] * 5,  # left on the diagonal at (0, 0): bad
        "right_then_left": [True, True, False, True, True],  # left at (2, 2): bad
        "all_right": [True] * 5,  # success, not bad
        "right_left_right_left": [True, False, True, False, True],  # left at (1, 1): bad
        "left_at_end": [True, True, True, True, False],  # left at (4, 4): bad
    }
    actions = np.zeros((size, len(plans)), dtype=np.int64)
    for i, plan in enumerate(plans.values()):
        col = 0
        for row, right in enumerate(plan):
            actions[row, i] = act(right, row, col)
            col = min(col + 1, size - 1) if right else max(col - 1, 0)
    end = run_episode(env, actions)[-1]
    assert end.info["bad_episode"].tolist() == [True, True, False, True, True]
    assert end.info["success"].tolist() == [False, False, True, False, False]
    assert end.info["agent_pos"][:, 1].tolist() == [0, 3, 4, 1, 3]

    # The flags start afresh with each episode.
    out = run_episode(env, np.tile(optimal_actions(env)[:, None], (1, 5)))[-1]
    assert not out.info["bad_episode"].any()
    assert out.info["success"].all()


def test_flags_are_false_away_from_episode_ends() -> None:
    env = DeepSea(4, 3)
    env.reset()
    out = env.step(np.zeros(3, dtype=np.int64))
    assert not out.info["bad_episode"].any() and not out.info["success"].any()
    assert out.info["episode_length"].tolist() == [1, 1, 1]


def test_coords_match_onehot() -> None:
    size, num_envs = 7, 4
    onehot = DeepSea(size, num_envs)
    coords = DeepSea(size, num_envs, obs_type="coords")
    assert coords.single_observation_space.shape == (2,)
    assert onehot.single_observation_space.shape == (size, size)
    obs_h, _ = onehot.reset()
    obs_c, _ = coords.reset()
    rng = np.random.default_rng(0)
    for _ in range(3 * size):
        assert obs_h.dtype == np.uint8 and obs_c.dtype == np.int64
        # argwhere lists copies in order, each with its single (row, col).
        assert np.array_equal(np.argwhere(obs_h)[:, 1:], obs_c)
        actions = rng.integers(0, 2, num_envs)
        out_h, out_c = onehot.step(actions), coords.step(actions)
        assert np.array_equal(out_c.final_obs, out_h.info["agent_pos"])
        assert np.array_equal(out_h.info["agent_pos"], out_c.info["agent_pos"])
        obs_h, obs_c = out_h.obs, out_c.obs


def run_always_right(env: DeepSea, seed: int | None = None) -> list[EnvStep]:
    """One episode choosing right in whatever cell each copy is in (the windy game moves some
    copies off the diagonal, where the diagonal's actions would mean something else)."""
    env.reset(seed=seed)
    return [env.step(right_actions(env, env._col)) for _ in range(env.size)]


def test_windy_variant_statistics_and_seeding() -> None:
    size, num_envs = 4, 4000
    env = DeepSea(size, num_envs, deterministic=False, seed=3)
    steps = run_always_right(env)
    # A right fails (the column stays) with probability 1/N.
    first_cols = steps[0].info["agent_pos"][:, 1]
    assert abs((first_cols == 0).mean() - 1 / size) < 0.03
    # Every attempt pays the move cost, failed or not; no noise before the last row.
    for out in steps[:-1]:
        np.testing.assert_allclose(out.reward, -0.01 / size, rtol=1e-6)
    last = steps[-1]
    assert not last.info["bad_episode"].any()  # failing to move right is not a bad choice
    assert abs(last.info["success"].mean() - (1 - 1 / size) ** (size - 1)) < 0.03
    assert env.optimal_return == pytest.approx((1 - 1 / size) ** (size - 1) - 0.01)
    # N(0, 1) noise only on steps taken from the two bottom corners.
    start_cols = steps[-2].info["agent_pos"][:, 1]
    corner = (start_cols == 0) | (start_cols == size - 1)
    noise = last.reward - last.info["success"] + 0.01 / size
    assert corner.sum() > 1000 and (~corner).sum() > 100
    np.testing.assert_allclose(noise[~corner], 0, atol=1e-6)
    assert abs(noise[corner].mean()) < 0.1 and abs(noise[corner].std() - 1) < 0.1
    # The constructor seed drives the first episodes and reset(seed) restarts the stream;
    # reset() without a seed continues it.
    again = run_always_right(DeepSea(size, num_envs, deterministic=False, seed=3))
    assert np.array_equal(again[-1].reward, last.reward)
    assert np.array_equal(run_always_right(env, seed=3)[-1].reward, last.reward)
    assert not np.array_equal(run_always_right(env)[-1].reward, last.reward)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="onehot, coords"):
        DeepSea(5, 2, obs_type="pixels")
    with pytest.raises(ValueError, match=">= 1"):
        DeepSea(0, 2)
    with pytest.raises(ValueError, match="num_envs"):
        DeepSea(5, 0)
    env = DeepSea(5, 2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, dtype=np.int64))
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="0 or 1"):
        env.step(np.array([0, 2]))


def test_env_attributes_and_make() -> None:
    from explora.envs import make

    env = make("DeepSea-12", num_envs=3, seed=1, obs_type="coords")
    assert isinstance(env, DeepSea)
    assert env.env_id == "DeepSea-12" and env.num_envs == 3
    assert env.grid_shape == (12, 12) and env.has_success
    assert env.single_action_space.n == 2
    obs, info = env.reset()
    assert obs.shape == (3, 2) and info["agent_pos"].shape == (3, 2)


def test_solved_at_hand_computed() -> None:
    assert bsuite_deep_sea_solved_at(np.array([], dtype=bool)) is None
    assert bsuite_deep_sea_solved_at(np.ones(50, dtype=bool)) is None
    assert bsuite_deep_sea_solved_at(np.array([False])) == 1
    # One good episode, the 10th: the average touches 9/10 == 0.9, not below, then rises.
    flags = np.ones(20, dtype=bool)
    flags[9] = False
    assert bsuite_deep_sea_solved_at(flags) is None
    flags[10] = False
    assert bsuite_deep_sea_solved_at(flags) == 11  # 9/11 < 0.9
    assert bsuite_deep_sea_solved_at(flags, threshold=0.95) == 10  # 9/10 < 0.95
    assert bsuite_deep_sea_solved_at(flags, num_episodes=10) is None
    assert bsuite_deep_sea_solved_at(flags.tolist()) == 11


def _bsuite_find_solution(flags: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> int | None:
    import pandas as pd  # a dependency of bsuite, itself a dev dependency
    from bsuite.experiments.deep_sea import analysis

    # bsuite 0.3.6 calls Series.append, removed in pandas 2; give it the old meaning.
    if not hasattr(pd.Series, "append"):
        monkeypatch.setattr(
            pd.Series, "append", lambda self, other: pd.concat([self, other]), raising=False
        )
    episodes = np.arange(1, len(flags) + 1)
    df = pd.DataFrame({"episode": episodes, "total_bad_episodes": np.cumsum(flags), "size": 10})
    result = analysis.find_solution(df, merge=False)
    assert len(result) == 1
    row = result.iloc[0]
    return int(row["episode"]) if bool(row["solved"]) else None


def test_solved_at_matches_bsuite_find_solution(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    cases = [np.ones(30, dtype=bool), np.zeros(5, dtype=bool)]
    for learn_at in (3, 40, 200):
        length = 400
        p_bad = np.where(np.arange(length) < learn_at, 0.98, 0.3)
        cases.append(rng.random(length) < p_bad)
    # Longer than bsuite's 10,000 episodes and solved only after them: unsolved for both.
    tail = np.ones(11_200, dtype=bool)  # 10,000 / 11,200 < 0.9
    tail[10_000:] = False
    cases.append(tail)
    for flags in cases:
        expected = _bsuite_find_solution(flags, monkeypatch)
        assert bsuite_deep_sea_solved_at(flags) == expected
    assert bsuite_deep_sea_solved_at(tail) is None
    assert bsuite_deep_sea_solved_at(tail, num_episodes=None) == 11_112  # 10,000 / 11,112 < 0.9


def test_the_solved_threshold_is_a_setting_of_the_tracker_and_the_summary():
    """bad flags 1 1 0 1 0 0: running rates 1, 1, .67, .75, .6, .5 -> below 0.9 at episode 3,
    below 0.6 only at episode 6 (bsuite 0.3.6 uses 0.9, newer bsuite code 0.8)."""
    from explora.runs.episodes import EpisodeTracker

    flags = [1, 1, 0, 1, 0, 0]
    for threshold, want in ((0.9, 3), (0.6, 6)):
        tracker = EpisodeTracker(1, solved_threshold=threshold)
        for bad in flags:
            one = np.ones(1, dtype=bool)
            info = {"bad_episode": np.array([bool(bad)])}
            tracker.step(EnvStep(np.zeros(1), np.zeros(1), one, ~one, np.zeros(1), info), 1)
        assert tracker.deep_sea_solved_at == want
        assert bsuite_deep_sea_solved_at(np.array(flags, bool), threshold) == want
