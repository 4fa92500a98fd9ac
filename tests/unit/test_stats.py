"""Benchmark statistics against hand computations, and the bootstrap's properties."""

import numpy as np
import pytest
from rliable import library, metrics

from explora.bench import stats

REPS = 300

# 4 runs x 3 tasks.
HAND = np.array(
    [
        [0.0, 0.5, 1.2],
        [0.1, 0.6, 0.9],
        [0.2, 0.4, 1.5],
        [0.3, 0.9, 0.8],
    ]
)


def _random_scores(runs: int, tasks: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (runs, tasks))


def test_aggregate_point_estimates_match_hand_computation():
    agg = stats.aggregate_metrics({"m": HAND}, reps=REPS)["m"]
    # IQM: the 12 scores sorted are 0 .1 .2 | .3 .4 .5 .6 .8 .9 | .9 1.2 1.5; trim_mean(0.25)
    # drops int(12 / 4) = 3 from each end -> (.3 + .4 + .5 + .6 + .8 + .9) / 6 = 3.5 / 6.
    assert agg["IQM"][0] == pytest.approx(3.5 / 6)
    # task means: .6 / 4 = .15, 2.4 / 4 = .6, 4.4 / 4 = 1.1
    assert agg["Mean"][0] == pytest.approx((0.15 + 0.6 + 1.1) / 3)
    assert agg["Median"][0] == pytest.approx(0.6)
    # shortfalls below 1 (scores above 1 count as 1): task 0: 1 + .9 + .8 + .7 = 3.4,
    # task 1: .5 + .4 + .6 + .1 = 1.6, task 2: 0 + .1 + 0 + .2 = .3 -> 5.3 / 12
    assert agg["Optimality gap"][0] == pytest.approx(5.3 / 12)
    assert set(agg) == set(stats.METRICS)


def test_iqm_trims_the_flattened_array_not_each_task():
    # 4 runs x 2 tasks; all 8 scores sorted: 0 1 | 2 3 10 20 | 30 40 -> (2 + 3 + 10 + 20) / 4.
    # Trimming each task's column separately would give mean(1.5, 25) = 13.25 instead.
    scores = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0]])
    iqm = stats.aggregate_metrics({"m": scores}, reps=REPS)["m"]["IQM"][0]
    assert iqm == pytest.approx(35 / 4)
    scores[0, 0] = -100.0  # an outlier is trimmed away
    assert stats.aggregate_metrics({"m": scores}, reps=REPS)["m"]["IQM"][0] == pytest.approx(35 / 4)


def test_intervals_contain_the_point_estimate():
    agg = stats.aggregate_metrics({"m": _random_scores(10)}, reps=REPS)["m"]
    for metric in stats.METRICS:
        point, low, high = agg[metric]
        assert low <= point <= high, metric
        assert low < high, metric


def test_intervals_collapse_when_all_scores_are_equal():
    agg = stats.aggregate_metrics({"m": np.full((5, 3), 0.7)}, reps=REPS)["m"]
    for metric in stats.METRICS:
        point, low, high = agg[metric]
        assert low == point == high, metric
    assert agg["IQM"][0] == pytest.approx(0.7)
    assert agg["Optimality gap"][0] == pytest.approx(0.3)


def test_bootstrap_resamples_runs_within_each_task():
    # Task 0 always scores 0 and task 1 always 1. Resampling runs within each task keeps every
    # resample's mean at exactly 0.5; resampling scores across tasks would move it.
    scores = np.array([[0.0, 1.0]] * 4)
    _, low, high = stats.aggregate_metrics({"m": scores}, reps=REPS)["m"]["Mean"]
    assert low == high == 0.5
    flat = scores.ravel()
    pooled = np.random.default_rng(0).choice(flat, (REPS, flat.size)).mean(axis=1)
    assert pooled.min() < 0.5 < pooled.max()


def test_interval_narrows_as_runs_increase():
    def width(runs: int) -> float:
        _, low, high = stats.aggregate_metrics({"m": _random_scores(runs)}, reps=REPS)["m"]["IQM"]
        return high - low

    # the width shrinks like 1 / sqrt(runs): sqrt(100 / 5) ~ 4.5
    assert width(100) < width(5) / 2


def test_same_seed_gives_same_intervals_and_leaves_global_rng_alone():
    scores = {"a": _random_scores(6, seed=1), "b": _random_scores(6, seed=2)}
    np.random.seed(123)
    expected_draw = np.random.random()
    np.random.seed(123)
    first = stats.aggregate_metrics(scores, reps=REPS, seed=7)
    assert np.random.random() == expected_draw
    assert stats.aggregate_metrics(scores, reps=REPS, seed=7) == first
    assert stats.aggregate_metrics(scores, reps=REPS, seed=8) != first
    profile = stats.performance_profile(scores, np.linspace(0, 1, 5), reps=REPS, seed=7)
    again = stats.performance_profile(scores, np.linspace(0, 1, 5), reps=REPS, seed=7)
    for method in scores:
        for ours, theirs in zip(profile[method], again[method], strict=True):
            np.testing.assert_array_equal(ours, theirs)
    poi = stats.probability_of_improvement(scores, reps=REPS, seed=7)
    assert stats.probability_of_improvement(scores, reps=REPS, seed=7) == poi


def test_a_methods_interval_does_not_depend_on_the_other_methods():
    a = _random_scores(6, seed=1)
    alone = stats.aggregate_metrics({"a": a}, reps=REPS)["a"]
    together = stats.aggregate_metrics({"b": _random_scores(9, seed=2), "a": a}, reps=REPS)
    assert together["a"] == alone


def test_improvement_is_one_when_x_beats_y_on_every_run_and_task():
    y = _random_scores(5, seed=3)
    x = y.max() + _random_scores(7, seed=4)  # more runs than y, every one above all of y's
    poi = stats.probability_of_improvement({"x": x, "y": y}, reps=REPS)
    assert poi[("x", "y")] == (1.0, 1.0, 1.0)
    assert poi[("y", "x")] == (0.0, 0.0, 0.0)


def test_improvement_of_identical_scores_is_one_half():
    scores = _random_scores(5)
    poi = stats.probability_of_improvement({"x": scores, "y": scores.copy()}, reps=REPS)
    point, low, high = poi[("x", "y")]
    assert point == 0.5
    assert low < 0.5 < high
    constant = np.full((3, 2), 0.4)
    poi = stats.probability_of_improvement({"x": constant, "y": constant}, reps=REPS)
    assert poi[("x", "y")] == (0.5, 0.5, 0.5)


def test_improvement_matches_hand_mann_whitney_with_ties_and_unequal_runs():
    x = np.array([[1.0, 0.0], [3.0, 0.0], [4.0, 5.0]])
    y = np.array([[2.0, 1.0], [3.0, 0.0]])
    # task 0, x vs y = 2, 3: 1 loses twice; 3 wins over 2 and ties 3 (1/2); 4 wins twice
    #   -> 3.5 / 6.  task 1, x vs y = 1, 0: 0 loses, ties; 0 loses, ties; 5 wins twice -> 3 / 6.
    poi = stats.probability_of_improvement({"x": x, "y": y}, reps=REPS)
    assert poi[("x", "y")][0] == pytest.approx((3.5 / 6 + 3 / 6) / 2)  # 13 / 24
    assert poi[("y", "x")][0] == pytest.approx(11 / 24)
    point, low, high = poi[("x", "y")]
    assert low <= point <= high


def test_improvement_agrees_with_rliable():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, (6, 3)).astype(float)  # small integers, so there are ties
    y = rng.integers(0, 4, (4, 3)).astype(float)
    ours = stats.probability_of_improvement({"x": x, "y": y}, [("x", "y")], reps=REPS)
    assert ours[("x", "y")][0] == pytest.approx(metrics.probability_of_improvement(x, y))


def test_improvement_default_pairs_are_all_ordered_pairs():
    scores = {m: _random_scores(3, seed=i) for i, m in enumerate("abc")}
    poi = stats.probability_of_improvement(scores, reps=50)
    assert list(poi) == [("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"), ("c", "a"), ("c", "b")]
    only = stats.probability_of_improvement(scores, [("c", "a")], reps=50)
    assert list(only) == [("c", "a")]


def test_performance_profile_matches_hand_values():
    scores = {"m": np.array([[0.1, 0.5], [0.9, 0.5]])}
    taus = np.array([0.0, 0.5, 0.95])
    profile, low, high = stats.performance_profile(scores, taus, reps=REPS)["m"]
    # > 0: all 4 scores; > 0.5: only 0.9 (0.5 itself does not count); > 0.95: none
    np.testing.assert_allclose(profile, [1.0, 0.25, 0.0])
    assert np.all(low <= profile) and np.all(profile <= high)
    assert low[0] == high[0] == 1.0  # every resample is above 0
    assert low[1] < high[1]


def test_performance_profile_agrees_with_rliable():
    scores = {"m": _random_scores(5, tasks=3)}
    taus = np.linspace(0.0, 1.0, 11)
    ours = stats.performance_profile(scores, taus, reps=REPS, seed=3)["m"]
    np.random.seed(3)  # rliable's profile takes no seed; it draws from the global RNG
    points, intervals = library.create_performance_profile(scores, taus, reps=REPS)
    np.testing.assert_allclose(ours[0], points["m"])
    np.testing.assert_allclose(ours[1], intervals["m"][0])
    np.testing.assert_allclose(ours[2], intervals["m"][1])


def test_frames_to_solve_matches_hand_values():
    frames: dict[tuple[str, str], list[int | None]] = {
        ("rnd", "deepsea"): [1000, None, 100, 300],  # median 300, not the mean 466.7
        ("rnd", "keycorridor"): [400, 100],
        ("ppo", "deepsea"): [None, None, None],
    }
    solved = stats.frames_to_solve(frames)
    assert solved[("rnd", "deepsea")] == {"median": 300.0, "solved": 3, "runs": 4, "fraction": 0.75}
    assert solved[("rnd", "keycorridor")]["median"] == 250.0
    assert solved[("rnd", "keycorridor")]["fraction"] == 1.0
    assert solved[("ppo", "deepsea")] == {"median": None, "solved": 0, "runs": 3, "fraction": 0.0}


@pytest.mark.parametrize(
    ("scores", "match"),
    [
        ({}, "scores is empty"),
        ({"m": np.zeros(4)}, r"scores\['m'\] has shape \(4,\); expected 2-d"),
        ({"m": np.zeros((2, 2, 2))}, r"shape \(2, 2, 2\); expected 2-d"),
        ({"m": np.zeros((0, 3))}, "at least one run and one task"),
        ({"m": np.array([[0.1, np.nan], [0.2, 0.3]])}, "1 NaN or infinite value.*run 0, task 1"),
    ],
)
def test_bad_scores_raise(scores, match):
    with pytest.raises(ValueError, match=match):
        stats.aggregate_metrics(scores, reps=10)
    with pytest.raises(ValueError, match=match):
        stats.performance_profile(scores, np.array([0.5]), reps=10)
    with pytest.raises(ValueError, match=match):
        stats.probability_of_improvement(scores, reps=10)


def test_bad_bootstrap_settings_raise():
    scores = {"m": _random_scores(3)}
    with pytest.raises(ValueError, match="reps must be a positive integer, got 0"):
        stats.aggregate_metrics(scores, reps=0)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 95"):
        stats.aggregate_metrics(scores, confidence=95)
    with pytest.raises(ValueError, match=r"taus has shape \(2, 2\)"):
        stats.performance_profile(scores, np.zeros((2, 2)), reps=10)


def test_bad_improvement_pairs_raise():
    scores = {"a": _random_scores(3, tasks=2), "b": _random_scores(3, tasks=3)}
    with pytest.raises(ValueError, match=r"'a' and 'b' have different numbers of tasks \(2 and 3"):
        stats.probability_of_improvement(scores, reps=10)
    with pytest.raises(ValueError, match="unknown method 'c' in pair.*choose from: a, b"):
        stats.probability_of_improvement(scores, [("a", "c")], reps=10)
    with pytest.raises(ValueError, match="no pairs to compare"):
        stats.probability_of_improvement({"a": scores["a"]}, reps=10)


def test_bad_frames_raise():
    with pytest.raises(ValueError, match="frames is empty"):
        stats.frames_to_solve({})
    with pytest.raises(ValueError, match=r"frames\[\('rnd', 'deepsea'\)\] has no runs"):
        stats.frames_to_solve({("rnd", "deepsea"): []})
    with pytest.raises(ValueError, match="negative frame count"):
        stats.frames_to_solve({("rnd", "deepsea"): [-5, None]})
