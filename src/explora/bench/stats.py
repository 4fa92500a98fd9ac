"""Statistics for comparing RL methods over few runs (Agarwal, Schwarzer, Castro, Courville &
Bellemare 2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS;
official code google-research/rliable).

Every function takes ``scores[method]``, normalised scores of shape (runs, tasks): 0 at a
task's low reference, 1 at its high one. The statistics:

    IQM             interquartile mean: the mean of all runs x tasks scores after dropping the
                    lowest and highest 25% (scipy ``trim_mean(0.25)`` over the flattened array,
                    which drops ``int(0.25 * n)`` scores from each end, so for n not divisible
                    by 4 slightly more than the middle half is kept).
    Mean            mean over tasks of each task's mean score.
    Median          median over tasks of each task's mean score.
    Optimality gap  1 - mean(min(score, 1)): how far runs fall short of the high reference
                    (gamma = 1, the paper's choice for normalised scores); lower is better.
    P(X > Y)        probability of improvement: per task, the Mann-Whitney U statistic
                    U / (runs_x * runs_y), i.e. the chance a random run of X beats a random run
                    of Y (ties count 1/2), averaged over tasks.
    Profile         performance profile (score distribution): for each threshold tau, the
                    fraction of all runs x tasks scores above tau.

Intervals are percentile intervals from a stratified bootstrap (the paper's section 4): each
resample draws, for every task independently, runs with replacement from that task's runs, so
the set of tasks stays fixed and only run-to-run noise is measured. For P(X > Y) the runs of X
and Y are resampled independently, which allows different numbers of runs.

Estimation goes through rliable (``library.get_interval_estimates``, ``StratifiedBootstrap``,
``StratifiedIndependentBootstrap``, and ``metrics`` for the four aggregates). Its resamplers
draw from numpy's global RNG and ignore the ``random_state`` argument (which arch >= 7 also
deprecates), so each estimate seeds the global RNG with ``seed`` and restores the caller's RNG
state afterwards. Each method is estimated on its own with the same seed, so a method's
interval does not depend on which other methods are in ``scores``. (The global RNG makes
concurrent calls from several threads unsafe.)

P(X > Y) and the performance profile are vectorised here rather than taken from rliable, whose
``probability_of_improvement`` calls ``scipy.stats.mannwhitneyu`` once per task per resample
(~90x slower for 10 runs x 8 tasks) and whose profile loops over taus with ``np.vectorize``
(~13x slower for 101 taus); the values are the same (tests/unit/test_stats.py checks both).

Example:
    >>> import numpy as np
    >>> from explora.bench import stats
    >>> rng = np.random.default_rng(0)
    >>> scores = {"rnd": rng.uniform(0.4, 1.0, (5, 3)), "ppo": rng.uniform(0.0, 0.6, (5, 3))}
    >>> agg = stats.aggregate_metrics(scores, reps=200)
    >>> point, low, high = agg["rnd"]["IQM"]
    >>> low <= point <= high
    True
    >>> stats.probability_of_improvement(scores, reps=200)[("rnd", "ppo")][0] > 0.5
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from rliable import library, metrics

__all__ = [
    "METRICS",
    "aggregate_metrics",
    "frames_to_solve",
    "performance_profile",
    "probability_of_improvement",
]

METRICS = ("IQM", "Mean", "Median", "Optimality gap")
"""the aggregate metrics of ``aggregate_metrics``, in the paper's order"""


def aggregate_metrics(
    scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """IQM, mean, median and optimality gap per method, with stratified-bootstrap intervals.

    ``scores[method]``: normalised scores, shape (runs, tasks). Returns
    ``{method: {metric: (point, low, high)}}`` for each metric in ``METRICS``. All four metrics
    of a method are computed on the same ``reps`` resamples. Percentile intervals need not
    contain the point estimate when runs are very few, though they usually do.

    Example:
        >>> import numpy as np
        >>> scores = {"rnd": np.array([[0.2, 0.8], [0.4, 1.2]])}
        >>> aggregate_metrics(scores, reps=100)["rnd"]["Mean"][0]
        0.65
    """
    arrays = _check_scores(scores)
    _check_bootstrap(reps, confidence)
    result = {}
    for method, array in arrays.items():
        point, low, high = _estimate(array, _aggregates, reps, seed, confidence)
        result[method] = {
            metric: (float(point[i]), float(low[i]), float(high[i]))
            for i, metric in enumerate(METRICS)
        }
    return result


def probability_of_improvement(
    scores: dict[str, np.ndarray],
    pairs: list[tuple[str, str]] | None = None,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[tuple[str, str], tuple[float, float, float]]:
    """P(X > Y) with a bootstrap interval for each pair ``(x, y)`` of methods.

    ``scores[method]``: normalised scores, shape (runs, tasks); the two methods of a pair may
    have different numbers of runs but must have the same tasks (in the same column order).
    ``pairs`` defaults to every ordered pair of distinct methods, in the order of ``scores``.
    Returns ``{(x, y): (point, low, high)}``; above 0.5 favours x. Runs of x and y are
    resampled independently, each within its tasks.

    Example:
        >>> import numpy as np
        >>> scores = {"x": np.array([[1.0], [3.0]]), "y": np.array([[2.0], [2.0]])}
        >>> # pairs of runs: 1 vs 2 loses twice, 3 vs 2 wins twice -> 2 / 4
        >>> probability_of_improvement(scores, [("x", "y")], reps=100)[("x", "y")][0]
        0.5
    """
    arrays = _check_scores(scores)
    _check_bootstrap(reps, confidence)
    if pairs is None:
        pairs = [(x, y) for x in arrays for y in arrays if x != y]
    if not pairs:
        raise ValueError(
            f"no pairs to compare: give at least two methods (got {list(arrays)}) or pairs"
        )
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"pair {pair!r} is not (x, y)")
        for method in pair:
            if method not in arrays:
                raise ValueError(
                    f"unknown method {method!r} in pair {pair!r}; choose from: " + ", ".join(arrays)
                )
        x, y = pair
        if arrays[x].shape[1] != arrays[y].shape[1]:
            raise ValueError(
                f"methods {x!r} and {y!r} have different numbers of tasks "
                f"({arrays[x].shape[1]} and {arrays[y].shape[1]}); P(X > Y) compares them task "
                "by task, so both need the same tasks"
            )
    result = {}
    for x, y in pairs:
        point, low, high = _estimate([arrays[x], arrays[y]], _improvement, reps, seed, confidence)
        result[(x, y)] = (float(point[0]), float(low[0]), float(high[0]))
    return result


def performance_profile(
    scores: dict[str, np.ndarray],
    taus: np.ndarray,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The score distribution of each method at thresholds ``taus``, with bootstrap bands.

    ``scores[method]``: normalised scores, shape (runs, tasks); ``taus``: shape (n,). Returns
    ``{method: (profile, low, high)}``, each of shape (n,): the fraction of all runs x tasks
    scores strictly above each tau, and its stratified-bootstrap interval.

    Example:
        >>> import numpy as np
        >>> scores = {"rnd": np.array([[0.1, 0.5], [0.9, 0.5]])}
        >>> profile, low, high = performance_profile(scores, np.array([0.0, 0.5]), reps=100)["rnd"]
        >>> profile.tolist()
        [1.0, 0.25]
    """
    arrays = _check_scores(scores)
    _check_bootstrap(reps, confidence)
    thresholds = np.asarray(taus, dtype=float)
    if thresholds.ndim != 1 or thresholds.size == 0:
        raise ValueError(f"taus has shape {thresholds.shape}; expected a non-empty 1-d array")
    if np.isnan(thresholds).any():
        raise ValueError("taus contains NaN")

    def profile(array: np.ndarray) -> np.ndarray:
        return (array.reshape(1, -1) > thresholds[:, None]).mean(axis=1)

    return {
        method: _estimate(array, profile, reps, seed, confidence)
        for method, array in arrays.items()
    }


def frames_to_solve(
    frames: dict[tuple[str, str], list[int | None]],
) -> dict[tuple[str, str], dict[str, float | int | None]]:
    """Median frames to solve each (method, task) over the seeds that solved it.

    ``frames[(method, task)]``: per seed, the frame at which it solved the task, or None if it
    never did. Returns per key ``{"median": median over the seeds that solved (None if none
    did), "solved": how many solved, "runs": how many runs, "fraction": solved / runs}``. The
    median alone flatters a method that rarely solves; read it together with the fraction.

    Example:
        >>> frames_to_solve({("rnd", "deepsea"): [100, None, 300]})[("rnd", "deepsea")]
        {'median': 200.0, 'solved': 2, 'runs': 3, 'fraction': 0.6666666666666666}
    """
    if not frames:
        raise ValueError("frames is empty: give at least one (method, task) with its runs")
    result: dict[tuple[str, str], dict[str, float | int | None]] = {}
    for key, runs in frames.items():
        if len(runs) == 0:
            raise ValueError(f"frames[{key!r}] has no runs")
        solved = [frame for frame in runs if frame is not None]
        if any(frame < 0 for frame in solved):
            raise ValueError(f"frames[{key!r}] has a negative frame count: {runs}")
        result[key] = {
            "median": float(np.median(solved)) if solved else None,
            "solved": len(solved),
            "runs": len(runs),
            "fraction": len(solved) / len(runs),
        }
    return result


# -- estimation ------------------------------------------------------------------------------
def _aggregates(array: np.ndarray) -> np.ndarray:
    """The four ``METRICS`` of one (runs, tasks) array, in order."""
    return np.array(
        [
            metrics.aggregate_iqm(array),
            metrics.aggregate_mean(array),
            metrics.aggregate_median(array),
            metrics.aggregate_optimality_gap(array, gamma=1.0),
        ]
    )


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of x (runs_x, tasks) over y (runs_y, tasks), as a 1-element array."""
    # (1 + sign(x_i - y_j)) / 2 is 1 for a win, 1/2 for a tie, 0 for a loss; every task has
    # runs_x * runs_y pairs, so the mean over all pairs is the mean over tasks of U / (nx * ny).
    wins = (1.0 + np.sign(x[:, None, :] - y[None, :, :])) / 2.0
    return np.array([wins.mean()])


def _estimate(
    data: np.ndarray | list[np.ndarray],
    func: Callable[..., np.ndarray],
    reps: int,
    seed: int,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point, low, high) of ``func`` on one method's array (or a list of arrays, resampled
    independently), each of ``func``'s output shape (k,)."""
    with _seeded_global_rng(seed):
        points, intervals = library.get_interval_estimates(
            {"data": data}, func, reps=reps, confidence_interval_size=confidence
        )
    return (
        np.asarray(points["data"], dtype=float),
        np.asarray(intervals["data"][0], dtype=float),
        np.asarray(intervals["data"][1], dtype=float),
    )


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG (which rliable's resamplers draw from) and restore it after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# -- validation ------------------------------------------------------------------------------
def _check_scores(scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float copies of ``scores``' arrays, each checked to be finite and (runs, tasks)."""
    if not scores:
        raise ValueError("scores is empty: give at least one method's (runs, tasks) array")
    arrays = {}
    for method, value in scores.items():
        array = np.array(value, dtype=float)
        if array.ndim != 2:
            raise ValueError(
                f"scores[{method!r}] has shape {array.shape}; expected 2-d (runs, tasks)"
            )
        if array.size == 0:
            raise ValueError(
                f"scores[{method!r}] has shape {array.shape}; needs at least one run and one task"
            )
        bad = ~np.isfinite(array)
        if bad.any():
            run, task = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"scores[{method!r}] has {int(bad.sum())} NaN or infinite value(s), first "
                f"{array[run, task]} at run {run}, task {task}"
            )
        arrays[method] = array
    return arrays


def _check_bootstrap(reps: int, confidence: float) -> None:
    if isinstance(reps, bool) or not isinstance(reps, int | np.integer) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
