"""Benchmark report: a sweep's runs as one self-contained HTML page and a Markdown summary.

The page holds: learning curves per task (mean over seeds with a 95% bootstrap band), aggregate
metrics (IQM, mean, median, optimality gap) with stratified-bootstrap intervals, performance
profiles, the probability of improvement of every pair of methods, frames to solve, frames per
second, and state-visitation heatmaps for grid worlds. Every figure is a base64 PNG inside the
page, so the file can be mailed or attached to a PR as it is; the one script on the page only
records, for automated checks, how many images decoded.

A run without a score (failed, unfinished, or finished without one) is scored at its task's low
reference, 0 on the normalised scale, in the aggregate metrics, the performance profile and the
probability of improvement: leaving it out would keep only the runs that went well and bias
every figure upwards. The aggregate metrics and the probability of improvement are also shown
over finished runs only, each table with the count of runs scored 0 or left out. The other
sections (curves, frames to solve, frames per second, visitation) need a finished run's files
and analyse only ``done`` runs.

The statistics (``explora.bench.stats``) follow rliable (Agarwal et al. 2021, "Deep RL at the
Edge of the Statistical Precipice"): scores of shape (runs, tasks) per method, intervals from
``reps`` bootstrap resamples at 95% confidence. The Markdown file beside the page holds the
aggregate, frames-to-solve and frames-per-second tables, for pasting into papers and READMEs.

Example:
    >>> from explora.bench.store import Store
    >>> from explora.bench.report import write_report
    >>> rows = Store("bench/store.db").rows()                         # doctest: +SKIP
    >>> write_report(rows, "bench/report.html", title="quick suite")  # doctest: +SKIP
    (PosixPath('bench/report.html'), PosixPath('bench/report.md'))
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from explora.bench import stats
from explora.runs.pictures import picture_files
from explora.runs.rundir import read_episodes, rolling_mean

STATUSES = ("done", "failed", "running", "pending")
LOW_REFERENCE = 0.0
"""normalised score of a run without one: its task's low reference (``Task.score_low`` -> 0)"""
WINDOW = 100
"""episodes in the rolling mean of a learning curve (the suites' success window)"""
GRID_POINTS = 200
"""points of the common frame grid the learning curves are interpolated on"""
CONFIDENCE = 0.95

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 0 24px 48px; color: #1f2328;
       line-height: 1.45; background: #fff; }
header { border-bottom: 2px solid #d0d7de; margin-bottom: 8px; }
h1 { margin: 24px 0 4px; font-size: 1.8em; }
h2 { margin-top: 36px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; font-size: 1.3em; }
h3 { font-size: 1.05em; margin: 18px 0 6px; }
.meta { color: #57606a; margin: 4px 0 12px; }
.desc { color: #57606a; font-size: 0.92em; max-width: 900px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; }
td.l, th.l { text-align: left; }
tr:nth-child(even) td { background: #fbfcfd; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.pics { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.pics img { margin: 0; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px;
          margin-right: 6px; vertical-align: -0.05em; }
.bad { color: #cf222e; }
.note { background: #fff8c5; border: 1px solid #d4a72c66; padding: 8px 12px; border-radius: 6px;
        margin: 8px 0; font-size: 0.92em; }
ul.notes li { margin: 2px 0; }
"""

# Only for automated checks (tests/unit/test_report.py): the figures need no script to be seen.
_SCRIPT = """
<script>
(function () {
  var errors = 0;
  window.addEventListener('error', function () {
    errors += 1;
    document.body.setAttribute('data-errors', String(errors));
  }, true);
  window.addEventListener('load', function () {
    var images = document.images, loaded = 0;
    for (var i = 0; i < images.length; i++) {
      if (images[i].complete && images[i].naturalWidth > 0) { loaded += 1; }
    }
    document.body.setAttribute('data-images-total', String(images.length));
    document.body.setAttribute('data-images-loaded', String(loaded));
    document.body.setAttribute('data-errors', String(errors));
  });
})();
</script>
"""


# -- reading runs ----------------------------------------------------------------------------
@dataclass
class _Curve:
    """One run's learning curve: rolling means at the end of each episode."""

    frames: np.ndarray  # [episodes], non-decreasing
    success: np.ndarray | None  # [episodes] rolling success rate, None without success
    returns: np.ndarray  # [episodes] rolling episodic return
    end: float  # frames the run trained for (the curve is undefined beyond)

    def values(self, success: bool) -> np.ndarray:
        return self.success if success and self.success is not None else self.returns


def _read_episodes(run_dir: Path) -> _Curve | None:
    """``episodes.csv`` of ``run_dir`` as rolling means; None if missing or empty."""
    rows = read_episodes(run_dir)
    if not rows:
        return None
    frames = [float(r[0]) for r in rows]
    returns = [r[1] for r in rows]
    success = [r[3] for r in rows]
    succ = np.asarray(success)
    end = frames[-1]
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            end = max(end, float(json.loads(summary.read_text()).get("frames") or end))
        except (ValueError, OSError):
            pass
    return _Curve(
        frames=np.asarray(frames),
        success=rolling_mean(succ, WINDOW) if np.isfinite(succ).all() else None,
        returns=rolling_mean(np.asarray(returns), WINDOW),
        end=end,
    )


def _on_grid(frames: np.ndarray, values: np.ndarray, end: float, grid: np.ndarray) -> np.ndarray:
    """The latest value at or before each grid point; NaN before the first episode ended and
    after the run ended."""
    idx = np.searchsorted(frames, grid, side="right") - 1
    out = values[np.clip(idx, 0, None)].astype(np.float64)
    out[(idx < 0) | (grid > end)] = np.nan
    return out


def _bootstrap_mean(
    curves: np.ndarray, reps: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds of ``curves`` [seeds, points] and a percentile-bootstrap band over seeds."""
    mean = curves.mean(axis=0)
    if len(curves) < 2:
        return mean, mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(curves), size=(reps, len(curves)))
    boot = curves[idx].mean(axis=1)  # [reps, points]
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.percentile(boot, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return mean, low, high


# -- formatting ------------------------------------------------------------------------------
def _si(value: float | None, digits: int = 3) -> str:
    """1234567 -> '1.23M'; None or NaN -> '—'."""
    if value is None or not math.isfinite(value):
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}{unit}"
    return f"{value:.{digits}g}"


def _interval(point: float, low: float, high: float) -> str:
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def _png(fig: Any) -> str:
    """A matplotlib figure as a ``data:`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """A table of already-formatted text cells; the first ``left`` columns align left."""

    def cells(tag: str, row: Sequence[str]) -> str:
        return "".join(
            f"<{tag}{' class=l' if i < left else ''}>{html.escape(c)}</{tag}>"
            for i, c in enumerate(row)
        )

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    align = ["---" if i < left else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# -- the analysis ----------------------------------------------------------------------------
@dataclass
class _Analysis:
    """Everything the page and the Markdown show, computed once."""

    title: str
    date: str
    counts: dict[str, dict[str, int]]  # method -> status -> runs
    methods: list[str]  # every method in the records (colour order)
    colors: dict[str, str]
    done: list[dict[str, Any]]
    tasks: list[str]  # tasks of done runs, sorted
    all_tasks: list[str]  # tasks of every record, sorted
    # Scores [runs, tasks] per method, and the seeds of their rows, two ways: every run, those
    # without a score at LOW_REFERENCE (over all_tasks); and finished runs only (over tasks).
    all_scores: dict[str, np.ndarray] = field(default_factory=dict)
    all_seeds: dict[str, list[int]] = field(default_factory=dict)
    finished_scores: dict[str, np.ndarray] = field(default_factory=dict)
    finished_seeds: dict[str, list[int]] = field(default_factory=dict)
    scored_low: dict[str, int] = field(default_factory=dict)  # method -> runs in all_scores at 0
    left_out: dict[str, int] = field(default_factory=dict)  # method -> all_scores runs not finished
    notes: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)


def _natural(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting DeepSea-8 before DeepSea-10."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p)


def _colors(methods: list[str]) -> dict[str, str]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {m: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, m in enumerate(methods)}


def _check(records: list[dict[str, Any]]) -> None:
    for i, rec in enumerate(records):
        missing = [k for k in ("method", "task", "seed", "status") if k not in rec]
        if missing:
            raise ValueError(f"record {i} lacks {', '.join(missing)}: {rec!r}")
        if rec["status"] not in STATUSES:
            raise ValueError(
                f"record {i} has unknown status {rec['status']!r}; "
                f"choose one of: {', '.join(STATUSES)}"
            )


def _finished_score(rec: dict[str, Any]) -> float | None:
    """The score of a ``done`` record, or None: no score, or a run that did not finish (whose
    score, if any, is stale)."""
    score = rec.get("score")
    if rec.get("status") != "done" or score is None or not math.isfinite(float(score)):
        return None
    return float(score)


def _runs_at_low_reference(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (method, task, seed) for the all-runs scores: its last finished, scored
    record, else its last record scored ``LOW_REFERENCE``, marked ``scored_low``."""
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    for rec in records:
        key = (str(rec["method"]), str(rec["task"]), int(rec["seed"]))
        score = _finished_score(rec)
        if score is not None:
            runs[key] = rec | {"score": score, "scored_low": False}
        elif key not in runs or runs[key]["scored_low"]:
            runs[key] = rec | {"score": LOW_REFERENCE, "scored_low": True}
    return list(runs.values())


def _score_matrices(
    done: list[dict[str, Any]], tasks: list[str], view: str = "finished runs only"
) -> tuple[dict[str, np.ndarray], dict[str, list[int]], list[str]]:
    """Per method, scores [runs, tasks] over the seeds it has on every task; and notes on
    what was left out of the scores of ``view``."""
    by_method: dict[str, dict[str, dict[int, float]]] = {}
    notes: list[str] = []
    unscored = 0
    for rec in done:
        score = rec.get("score")
        if score is None or not math.isfinite(float(score)):
            unscored += 1
            continue
        by_method.setdefault(rec["method"], {}).setdefault(rec["task"], {})[int(rec["seed"])] = (
            float(score)
        )
    if unscored:
        notes.append(
            f"{unscored} finished run(s) have no score and are left out of the scores ({view})."
        )
    scores: dict[str, np.ndarray] = {}
    seeds_used: dict[str, list[int]] = {}
    for method in sorted(by_method, key=_natural):
        per_task = by_method[method]
        absent = [t for t in tasks if t not in per_task]
        if absent:
            notes.append(
                f"{method}: no scored run on {', '.join(absent)}; left out of the aggregate "
                f"metrics, performance profile and probability of improvement ({view})."
            )
            continue
        common = sorted(set.intersection(*(set(per_task[t]) for t in tasks)))
        if not common:
            notes.append(
                f"{method}: no seed has a scored run on every task; left out of the aggregate "
                f"metrics, performance profile and probability of improvement ({view})."
            )
            continue
        dropped = sorted(set().union(*(set(per_task[t]) for t in tasks)) - set(common))
        if dropped:
            notes.append(
                f"{method}: seed(s) {', '.join(map(str, dropped))} lack a finished run on some "
                f"task; the scores ({view}) use only seeds {', '.join(map(str, common))}, "
                "present on every task."
            )
        scores[method] = np.array([[per_task[t][s] for t in tasks] for s in common])
        seeds_used[method] = common
    return scores, seeds_used, notes


def _analyse(records: list[dict[str, Any]], title: str) -> _Analysis:
    _check(records)
    methods = sorted({str(r["method"]) for r in records}, key=_natural)
    counts = {m: dict.fromkeys(STATUSES, 0) for m in methods}
    for rec in records:
        counts[rec["method"]][rec["status"]] += 1
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for rec in records:
        if rec["status"] == "done":
            latest[(rec["method"], rec["task"], int(rec["seed"]))] = rec
    done = list(latest.values())
    tasks = sorted({str(r["task"]) for r in done}, key=_natural)
    a = _Analysis(
        title=title,
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
        counts=counts,
        methods=methods,
        colors=_colors(methods),
        done=done,
        tasks=tasks,
        all_tasks=sorted({str(r["task"]) for r in records}, key=_natural),
        failed=[r for r in records if r["status"] == "failed"],
    )
    repeated = sum(r["status"] == "done" for r in records) - len(done)
    if repeated:
        a.notes.append(
            f"{repeated} finished run(s) repeat a (method, task, seed) of another; only the "
            "last record of each is analysed."
        )
    every = _runs_at_low_reference(records)
    a.all_scores, a.all_seeds, all_notes = _score_matrices(every, a.all_tasks, "all runs")
    a.finished_scores, a.finished_seeds, notes = _score_matrices(done, tasks)
    a.notes += all_notes + notes
    low = {(r["method"], r["task"], int(r["seed"])) for r in every if r["scored_low"]}
    for method, seeds in a.all_seeds.items():
        cells = {(method, t, s) for t in a.all_tasks for s in seeds}
        finished = {(method, t, s) for t in tasks for s in a.finished_seeds.get(method, [])}
        a.scored_low[method] = len(cells & low)
        a.left_out[method] = len(cells - finished)
    return a


# -- figures ---------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9})
    return plt


def _learning_curves(a: _Analysis, reps: int) -> tuple[str | None, list[str]]:
    """One panel per task: success rate (or return) against frames, mean and band over seeds."""
    from matplotlib.ticker import EngFormatter

    plt = _plt()
    notes: list[str] = []
    curves: dict[tuple[str, str], list[_Curve]] = {}
    budgets: dict[str, float] = {}
    for rec in a.done:
        task = rec["task"]
        if rec.get("budget"):
            budgets[task] = max(budgets.get(task, 0.0), float(rec["budget"]))
        run_dir = rec.get("run_dir")
        curve = _read_episodes(Path(run_dir)) if run_dir else None
        if curve is None:
            notes.append(
                f"{rec['method']} on {task} seed {rec['seed']}: no episodes.csv"
                f"{f' in {run_dir}' if run_dir else ''}; left out of the learning curves."
            )
            continue
        curves.setdefault((rec["method"], task), []).append(curve)
    tasks = [t for t in a.tasks if any(k[1] == t for k in curves)]
    if not tasks:
        return None, notes
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    shown: set[str] = set()
    for ax, task in zip(axes.flat, tasks, strict=False):
        runs = {m: curves[(m, task)] for m in a.methods if (m, task) in curves}
        use_success = all(c.success is not None for cs in runs.values() for c in cs)
        end = budgets.get(task) or max(c.end for cs in runs.values() for c in cs)
        grid = np.linspace(0.0, end, GRID_POINTS)
        for method, cs in runs.items():
            ys = np.stack([_on_grid(c.frames, c.values(use_success), c.end, grid) for c in cs])
            ok = np.isfinite(ys).all(axis=0)
            if not ok.any():
                continue
            mean, low, high = _bootstrap_mean(ys[:, ok], reps)
            color = a.colors[method]
            ax.plot(grid[ok], mean, color=color, lw=1.8, label=f"{method} ({len(cs)} seeds)")
            ax.fill_between(grid[ok], low, high, color=color, alpha=0.2, lw=0)
            shown.add(method)
        ax.set_title(task)
        ax.set_xlabel("frames")
        ax.set_ylabel(
            f"success rate (last {WINDOW} ep.)" if use_success else f"return (last {WINDOW} ep.)"
        )
        ax.set_xlim(0, end)
        if use_success:
            ax.set_ylim(-0.03, 1.03)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="best", framealpha=0.85)
    fig.tight_layout()
    return _png(fig), notes


def _aggregate_plot(a: _Analysis, agg: dict[str, dict[str, tuple[float, float, float]]]) -> str:
    """rliable's interval-estimate plot: one panel per metric, one interval per method."""
    plt = _plt()
    methods = [m for m in a.methods if m in agg]
    fig, axes = plt.subplots(
        1, len(stats.METRICS), figsize=(3.1 * len(stats.METRICS), 0.45 * len(methods) + 1.3)
    )
    for ax, metric in zip(np.atleast_1d(axes), stats.METRICS, strict=True):
        for i, method in enumerate(methods):
            point, low, high = agg[method][metric]
            color = a.colors[method]
            ax.barh(i, high - low, left=low, height=0.6, color=color, alpha=0.75)
            ax.vlines(point, i - 0.3, i + 0.3, color="black", lw=1.6)
        ax.set_yticks(range(len(methods)))
        ax.set_yticklabels(methods if metric == stats.METRICS[0] else [])
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(-0.6, len(methods) - 0.4)
        ax.invert_yaxis()
        ax.set_title(metric)
        ax.set_xlabel("normalised score" + (" (lower is better)" if "gap" in metric else ""))
        ax.grid(axis="x", alpha=0.3)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def _profile_plot(
    a: _Analysis, taus: np.ndarray, profile: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for method in a.methods:
        if method not in profile:
            continue
        curve, low, high = (np.asarray(x, dtype=float) for x in profile[method])
        color = a.colors[method]
        ax.plot(taus, curve, color=color, lw=1.8, label=method)
        ax.fill_between(taus, low, high, color=color, alpha=0.2, lw=0)
    ax.set_xlabel(r"normalised score $\tau$")
    ax.set_ylabel(r"fraction of runs with score > $\tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(taus[0], taus[-1])
    ax.grid(alpha=0.3)
    ax.legend(framealpha=0.85)
    fig.tight_layout()
    return _png(fig)


def _improvement_plot(a: _Analysis, poi: dict[tuple[str, str], tuple[float, float, float]]) -> str:
    plt = _plt()
    pairs = list(poi)
    fig, ax = plt.subplots(figsize=(6.4, 0.42 * len(pairs) + 1.2))
    for i, (x, y) in enumerate(pairs):
        point, low, high = poi[(x, y)]
        ax.barh(i, high - low, left=low, height=0.55, color=a.colors.get(x, "grey"), alpha=0.75)
        ax.vlines(point, i - 0.28, i + 0.28, color="black", lw=1.6)
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set_yticks(range(len(pairs)))
    ax.set_yticklabels([f"P({x} > {y})" for x, y in pairs])
    ax.set_ylim(-0.6, len(pairs) - 0.4)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of improvement")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _visitation(a: _Analysis) -> tuple[list[tuple[str, str]], list[str]]:
    """Per grid task, one row of heatmaps (one per method): visits summed over seeds."""
    from matplotlib.colors import LogNorm

    plt = _plt()
    notes: list[str] = []
    counts: dict[str, dict[str, tuple[np.ndarray, int]]] = {}
    for rec in a.done:
        run_dir = rec.get("run_dir")
        path = Path(run_dir) / "visitation.npy" if run_dir else None
        if path is None or not path.is_file():
            continue
        visits = np.load(path).astype(np.float64)
        per_task = counts.setdefault(rec["task"], {})
        total, n = per_task.get(rec["method"], (np.zeros_like(visits), 0))
        if total.shape != visits.shape:
            notes.append(
                f"{rec['method']} on {rec['task']} seed {rec['seed']}: visitation shape "
                f"{visits.shape} differs from {total.shape}; left out of the heatmap."
            )
            continue
        per_task[rec["method"]] = (total + visits, n + 1)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#f0f0f0")  # grey: never visited
    figures = []
    for task in a.tasks:
        if task not in counts:
            continue
        methods = [m for m in a.methods if m in counts[task]]
        vmax = max(float(c.max()) for c, _ in counts[task].values())
        fig, axes = plt.subplots(
            1, len(methods), figsize=(2.9 * len(methods) + 0.8, 3.0), squeeze=False
        )
        image = None
        for ax, method in zip(axes[0], methods, strict=True):
            total, n = counts[task][method]
            shown = np.ma.masked_less_equal(total, 0)
            image = ax.imshow(
                shown, cmap=cmap, norm=LogNorm(vmin=1, vmax=max(vmax, 1.0)), interpolation="nearest"
            )
            ax.set_title(f"{method} ({n} seed{'s' if n != 1 else ''})", color=a.colors[method])
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(a.colors[method])
                spine.set_linewidth(2)
        if image is not None:
            bar = fig.colorbar(image, ax=list(axes[0]), fraction=0.035, pad=0.02)
            bar.set_label("visits (log scale)")
        figures.append((task, _png(fig)))
    return figures, notes


def _bonus_maps(a: _Analysis) -> list[tuple[str, str]]:
    """Per grid task, one row of heatmaps (one per method with a bonus): the mean raw bonus
    per cell, averaged over seeds, each method on its own colour scale (bonuses differ in
    scale by orders of magnitude; the shape is what compares)."""
    plt = _plt()
    maps: dict[str, dict[str, list[np.ndarray]]] = {}
    for rec in a.done:
        run_dir = rec.get("run_dir")
        path = Path(run_dir) / "bonus_map.npy" if run_dir else None
        if path is None or not path.is_file():
            continue
        maps.setdefault(rec["task"], {}).setdefault(rec["method"], []).append(np.load(path))
    cmap = plt.get_cmap("magma").with_extremes(bad="#f0f0f0")  # grey: no bonus paid there
    figures = []
    for task in a.tasks:
        methods = [m for m in a.methods if m in maps.get(task, {})]
        if not methods:
            continue
        fig, axes = plt.subplots(
            1, len(methods), figsize=(2.9 * len(methods) + 0.4, 3.0), squeeze=False
        )
        for ax, method in zip(axes[0], methods, strict=True):
            runs = [m for m in maps[task][method] if m.shape == maps[task][method][0].shape]
            with warnings.catch_warnings():  # cells no run reached are NaN: left blank
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(np.stack(runs), axis=0)
            image = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, interpolation="nearest")
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
            n = len(runs)
            ax.set_title(f"{method} ({n} seed{'s' if n != 1 else ''})", color=a.colors[method])
            ax.set_xticks([])
            ax.set_yticks([])
        figures.append((task, _png(fig)))
    return figures


def _model_pictures(a: _Analysis) -> list[tuple[str, list[tuple[str, int, list[Path]]]]]:
    """Per task, per method: the pictures of its generative model (``explora.runs.pictures``:
    code map, codebook usage, reconstructions) from one representative run, the finished run
    with the lowest seed that has them. Tasks and methods without pictures are left out."""
    runs: dict[tuple[str, str], tuple[int, list[Path]]] = {}
    for rec in a.done:
        run_dir = rec.get("run_dir")
        files = picture_files(run_dir) if run_dir and Path(run_dir).is_dir() else []
        key, seed = (str(rec["task"]), str(rec["method"])), int(rec["seed"])
        if files and (key not in runs or seed < runs[key][0]):
            runs[key] = (seed, files)
    out = []
    for task in a.tasks:
        rows = [(m, *runs[(task, m)]) for m in a.methods if (task, m) in runs]
        if rows:
            out.append((task, rows))
    return out


def _file_uri(path: Path) -> str:
    """A PNG file as a data URI (the page stays self-contained)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# -- tables ----------------------------------------------------------------------------------
def _aggregate_rows(
    a: _Analysis, agg: dict[str, dict[str, tuple[float, float, float]]], finished_only: bool
) -> tuple[list[str], list[list[str]]]:
    """One row per method with scores in either view: runs (seeds x tasks) in the scores, runs
    scored 0 (all runs) or left out (finished only), then the metrics ('—' without scores)."""
    seeds, tasks = (a.finished_seeds, a.tasks) if finished_only else (a.all_seeds, a.all_tasks)
    count = a.left_out if finished_only else a.scored_low
    header = ["Method", "Runs", "Left out" if finished_only else "Scored 0", *stats.METRICS]
    rows = [
        [
            m,
            str(len(seeds.get(m, [])) * len(tasks)),
            str(count[m]) if m in count else "—",
            *(_interval(*agg[m][metric]) if m in agg else "—" for metric in stats.METRICS),
        ]
        for m in a.methods
        if m in a.all_seeds or m in a.finished_seeds
    ]
    return header, rows


def _aggregate(
    scores: dict[str, np.ndarray], reps: int
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``stats.aggregate_metrics`` of one view's scores; empty if no method has any."""
    if not scores:
        return {}
    return stats.aggregate_metrics(scores, reps=reps, seed=0, confidence=CONFIDENCE)


def _improvement(
    scores: dict[str, np.ndarray], pairs: list[tuple[str, str]], reps: int
) -> dict[tuple[str, str], tuple[float, float, float]]:
    """P(X > Y) of one view's scores for the ``pairs`` whose two methods both have scores
    there (a method can be in one view and not the other)."""
    present = [(x, y) for x, y in pairs if x in scores and y in scores]
    if not present:
        return {}
    return stats.probability_of_improvement(
        scores, present, reps=reps, seed=0, confidence=CONFIDENCE
    )


def _view_headings(a: _Analysis) -> tuple[str, str]:
    """Headings of the two score views, with how many runs each scores 0 or leaves out."""

    def runs(n: int) -> str:
        return f"{n} run{'' if n == 1 else 's'}"

    low, out = sum(a.scored_low.values()), sum(a.left_out.values())
    return (
        f"All runs ({runs(low)} without a score scored 0)",
        f"Finished runs only ({runs(out)} left out)",
    )


def _tv_rows(a: _Analysis) -> tuple[list[str], list[list[str]]]:
    """Per (task, method) with a noisy TV: mean fraction of steps on the TV and success."""
    values: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for rec in a.done:
        summary = json.loads(rec["summary"]) if rec.get("summary") else {}
        if summary.get("tv_fraction") is None:
            continue
        tv, success = values.setdefault((rec["task"], rec["method"]), ([], []))
        tv.append(float(summary["tv_fraction"]))
        if rec.get("success_rate") is not None:
            success.append(float(rec["success_rate"]))
    rows = []
    for task in a.tasks:
        for method in a.methods:
            if (task, method) not in values:
                continue
            tv, success = values[(task, method)]
            spread = f" ({min(tv):.1%}-{max(tv):.1%})" if len(tv) > 1 else ""
            rate = f"{np.mean(success):.2f}" if success else "—"
            rows.append([method, task, str(len(tv)), f"{np.mean(tv):.1%}{spread}", rate])
    return ["Method", "Task", "Runs", "Steps on the TV", "Final success"], rows


_WIDE = 6  # methods a task-by-method table shows as columns


def _methods_as_rows(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """A task-by-method table (``header`` ``["Task", *methods]``, a row per task) turned so
    that methods are the rows when there are more than ``_WIDE`` methods and more methods than
    tasks: a suite of 18 methods on 4 tasks reads down a column instead of across 19."""
    methods = header[1:]
    if len(methods) <= max(len(rows), _WIDE):
        return header, rows
    turned = [[method, *(row[i + 1] for row in rows)] for i, method in enumerate(methods)]
    return ["Method", *(row[0] for row in rows)], turned


def _final_success_rows(a: _Analysis) -> tuple[list[str], list[list[str]]]:
    """Per task (rows) and method (columns): the mean final success rate of finished runs,
    with the min-max over seeds, for tasks whose runs report success."""
    rates: dict[tuple[str, str], list[float]] = {}
    for rec in a.done:
        if rec.get("success_rate") is not None:
            rates.setdefault((rec["task"], rec["method"]), []).append(float(rec["success_rate"]))
    methods = [m for m in a.methods if any((t, m) in rates for t in a.tasks)]
    rows = []
    for task in a.tasks:
        if not any((task, m) in rates for m in methods):
            continue
        row = [task]
        for method in methods:
            values = rates.get((task, method))
            if not values:
                row.append("—")
                continue
            spread = f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
            row.append(f"{np.mean(values):.2f}{spread}")
        rows.append(row)
    return ["Task", *methods], rows


def _frames_to_solve_rows(a: _Analysis) -> tuple[list[str], list[list[str]]]:
    frames: dict[tuple[str, str], list[int | None]] = {}
    for rec in a.done:
        value = rec.get("frames_to_solve")
        frames.setdefault((rec["method"], rec["task"]), []).append(
            int(value) if value is not None else None
        )
    solved = stats.frames_to_solve(frames)
    methods = [m for m in a.methods if any((m, t) in solved for t in a.tasks)]
    rows = []
    for task in a.tasks:
        row = [task]
        for method in methods:
            entry = solved.get((method, task))
            if entry is None:
                row.append("—")
                continue
            median = entry.get("median")
            row.append(
                f"{_si(float(median)) if median is not None else '—'} "
                f"({entry['solved']}/{entry['runs']})"
            )
        rows.append(row)
    return ["Task", *methods], rows


def _fps_rows(a: _Analysis) -> tuple[list[str], list[list[str]]]:
    values: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for rec in a.done:
        fps, env_fps = values.setdefault((rec["task"], rec["method"]), ([], []))
        if rec.get("fps") is not None:
            fps.append(float(rec["fps"]))
        if rec.get("env_fps") is not None:
            env_fps.append(float(rec["env_fps"]))
    rows = []
    for task in a.tasks:
        for method in a.methods:
            if (task, method) not in values:
                continue
            fps, env_fps = values[(task, method)]
            train = float(np.mean(fps)) if fps else math.nan
            env = float(np.mean(env_fps)) if env_fps else math.nan
            ratio = f"{train / env:.1%}" if fps and env_fps and env > 0 else "—"
            rows.append([task, method, str(len(fps)), _si(train), _si(env), ratio])
    header = ["Task", "Method", "Runs", "Training fps", "Env fps", "Training / env"]
    return header, rows


# -- the page --------------------------------------------------------------------------------
def _section(sid: str, heading: str, desc: str, body: str) -> str:
    return (
        f'<section id="{sid}"><h2>{html.escape(heading)}</h2>'
        f'<p class="desc">{html.escape(desc)}</p>{body}</section>'
    )


def _missing(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _header(a: _Analysis, n_records: int) -> tuple[str, str]:
    totals = {s: sum(c[s] for c in a.counts.values()) for s in STATUSES}
    unfinished = totals["running"] + totals["pending"]
    line = (
        f"{n_records} runs: {totals['done']} done, {totals['failed']} failed, {unfinished} "
        f"unfinished ({totals['running']} running, {totals['pending']} pending). "
        f"The {sum(a.scored_low.values())} run(s) without a score count at their task's low "
        "reference (score 0) in the aggregate metrics, performance profile and probability of "
        "improvement, which are also shown over finished runs only; the other sections analyse "
        f"the {totals['done']} done runs. Intervals are {CONFIDENCE:.0%} bootstrap confidence "
        "intervals."
    )
    rows = []
    for method in a.methods:
        c = a.counts[method]
        swatch = f'<span class="swatch" style="background:{a.colors[method]}"></span>'
        cells = [str(c["done"]), str(c["failed"]), str(c["running"] + c["pending"])]
        seeds = a.finished_seeds.get(method)
        cells.append(", ".join(map(str, seeds)) if seeds else "—")
        klass = ' class="bad"' if c["failed"] else ""
        rows.append(
            f"<tr><td class=l>{swatch}{html.escape(method)}</td><td>{cells[0]}</td>"
            f"<td{klass}>{cells[1]}</td><td>{cells[2]}</td><td>{html.escape(cells[3])}</td></tr>"
        )
    table = (
        "<table><thead><tr><th class=l>Method</th><th>Done</th><th>Failed</th>"
        "<th>Unfinished</th><th>Seeds finished on every task</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    page = (
        f"<header><h1>{html.escape(a.title)}</h1>"
        f'<p class="meta">Generated {html.escape(a.date)}. {html.escape(line)}</p>'
        f"{table}</header>"
    )
    return page, line


def write_report(
    records: list[dict[str, Any]],
    out_html: str | Path,
    title: str = "explora benchmark",
    reps: int = 2000,
) -> tuple[Path, Path]:
    """Write out_html and a Markdown summary beside it (same name, .md); return both paths.

    ``records`` are runs as the result store holds them (``Store.rows()``): ``method``,
    ``task``, ``seed``, ``status`` and, for finished runs, ``run_dir``, ``budget``, ``score``,
    ``frames_to_solve``, ``fps``, ``env_fps``, ``success_rate``, ``final_return``. ``reps`` is
    the number of bootstrap resamples behind every interval.

    Example:
        >>> write_report(rows, "bench/report.html", reps=2000)   # doctest: +SKIP
        (PosixPath('bench/report.html'), PosixPath('bench/report.md'))
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    out_html = Path(out_html)
    out_md = out_html.with_suffix(".md")
    a = _analyse(records, title)
    header, counts_line = _header(a, len(records))
    sections: list[str] = []
    md = [f"# {title}", "", f"Generated {a.date}. {counts_line}", ""]

    # 1. learning curves
    curves, notes = _learning_curves(a, reps) if a.done else (None, [])
    a.notes += notes
    sections.append(
        _section(
            "learning-curves",
            "Learning curves",
            f"Per task: success rate (or, for environments without a success signal, episodic "
            f"return), each a rolling mean of the last {WINDOW} finished episodes (fewer early "
            f"on), against environment frames up to the task's budget. Line: mean over seeds; "
            f"band: {CONFIDENCE:.0%} bootstrap interval over seeds.",
            _img(curves, "learning curves per task")
            if curves
            else _missing("No finished run has an episodes.csv."),
        )
    )

    # 2-4. scores: aggregate metrics, performance profile, probability of improvement. The
    # figures and first tables count runs without a score at 0; the second tables drop them.
    all_heading, finished_heading = _view_headings(a)
    md += ["## Aggregate metrics", ""]
    agg = _aggregate(a.all_scores, reps)
    finished_agg = _aggregate(a.finished_scores, reps)
    if agg or finished_agg:
        all_header, all_rows = _aggregate_rows(a, agg, finished_only=False)
        fin_header, fin_rows = _aggregate_rows(a, finished_agg, finished_only=True)
        body = (
            (_img(_aggregate_plot(a, agg), "aggregate metrics, all runs") if agg else "")
            + f"<h3>{html.escape(all_heading)}</h3>"
            + _html_table(all_header, all_rows)
            + f"<h3>{html.escape(finished_heading)}</h3>"
            + _html_table(fin_header, fin_rows)
        )
        md += [f"### {all_heading}", "", _md_table(all_header, all_rows), ""]
        md += [f"### {finished_heading}", "", _md_table(fin_header, fin_rows), ""]
        md += [
            f"Normalised scores over {len(a.all_tasks)} task(s) (all runs) and "
            f"{len(a.tasks)} task(s) (finished runs only); point estimate "
            f"[{CONFIDENCE:.0%} stratified-bootstrap interval], {reps} resamples. Runs: seeds x "
            "tasks in the scores; Scored 0: failed, unfinished or unscored runs counted at the "
            "task's low reference; Left out: runs of the first table missing from the second.",
            "",
        ]
    else:
        body = _missing("No method has a run on every task.")
        md += ["No method has a run on every task.", ""]
    sections.append(
        _section(
            "aggregate",
            "Aggregate metrics",
            "Normalised scores (0: the task's low reference, 1: its high reference) over all "
            f"tasks: interquartile mean, mean, median and optimality gap (mean shortfall below "
            f"1; lower is better). Bars: {CONFIDENCE:.0%} stratified-bootstrap intervals "
            f"({reps} resamples); black tick: point estimate. The plot and the first table "
            "count every run, a run without a score (failed, unfinished) at 0, since leaving "
            "it out would favour methods that fail often; the second table keeps finished runs "
            "only. Runs: seeds present on every task x tasks.",
            body,
        )
    )

    if a.all_scores:
        values = np.concatenate([s.ravel() for s in a.all_scores.values()])
        taus = np.linspace(min(0.0, float(values.min())), max(1.0, float(values.max())), 101)
        profile = stats.performance_profile(
            a.all_scores, taus, reps=reps, seed=0, confidence=CONFIDENCE
        )
        body = _img(_profile_plot(a, taus, profile), "performance profile")
    else:
        body = _missing("No scores to profile.")
    sections.append(
        _section(
            "profile",
            "Performance profile",
            "Fraction of runs (over all tasks and seeds; runs without a score at 0) whose "
            f"normalised score exceeds tau, with {CONFIDENCE:.0%} bootstrap bands. A curve "
            "above another is better everywhere.",
            body,
        )
    )

    scored = [m for m in a.methods if m in a.all_scores or m in a.finished_scores]
    pairs = [(x, y) for i, x in enumerate(scored) for y in scored[i + 1 :]]  # P(Y>X) = 1-P(X>Y)
    poi = _improvement(a.all_scores, pairs, reps)
    finished_poi = _improvement(a.finished_scores, pairs, reps)
    if poi or finished_poi:
        poi_rows = [
            [x, y, *(_interval(*v[(x, y)]) if (x, y) in v else "—" for v in (poi, finished_poi))]
            for x, y in pairs
            if (x, y) in poi or (x, y) in finished_poi
        ]
        poi_header = ["X", "Y", "P(X > Y), all runs", "P(X > Y), finished runs only"]
        body = (
            _img(_improvement_plot(a, poi), "probability of improvement, all runs") if poi else ""
        ) + _html_table(poi_header, poi_rows, left=2)
        md += ["## Probability of improvement", "", _md_table(poi_header, poi_rows, left=2), ""]
    else:
        body = _missing("Needs at least two methods with scores.")
    sections.append(
        _section(
            "improvement",
            "Probability of improvement",
            "P(X > Y): the probability that a run of X scores higher than a run of Y on a "
            "randomly chosen task (ties count half), averaged over tasks; above 0.5 favours X. "
            f"Bars: {CONFIDENCE:.0%} bootstrap intervals over all runs (runs without a score "
            "at 0); the table also gives P(X > Y) over finished runs only, with intervals.",
            body,
        )
    )

    # 4b. final success
    fs_header, fs_rows = _methods_as_rows(*_final_success_rows(a))
    if fs_rows:
        md += ["## Final success", "", _md_table(fs_header, fs_rows), ""]
        md += ["Mean success rate at the end of the runs (min-max over seeds).", ""]
        sections.append(
            _section(
                "final-success",
                "Final success",
                "Per task and method: the mean over finished runs of the success rate of the "
                "episodes that ended in the last 10% of each run's frames, with the min-max "
                "over seeds in brackets.",
                _html_table(fs_header, fs_rows),
            )
        )

    # 5. frames to solve
    if a.done:
        fts_header, fts_rows = _methods_as_rows(*_frames_to_solve_rows(a))
        body = _html_table(fts_header, fts_rows)
        md += ["## Frames to solve", "", _md_table(fts_header, fts_rows), ""]
        md += ["Median frames to solve over the seeds that solved it (seeds solved / runs).", ""]
    else:
        body = _missing("No finished runs.")
    sections.append(
        _section(
            "frames-to-solve",
            "Frames to solve",
            "Per task and method: median environment frames at which a run first met the "
            "task's success rule, and (in brackets) how many of the finished runs ever did.",
            body,
        )
    )

    # 6. frames per second
    if a.done:
        fps_header, fps_rows = _fps_rows(a)
        body = _html_table(fps_header, fps_rows, left=2)
        md += ["## Frames per second", "", _md_table(fps_header, fps_rows, left=2), ""]
    else:
        body = _missing("No finished runs.")
    sections.append(
        _section(
            "fps",
            "Frames per second",
            "Mean over finished runs of training throughput (environment frames per second of "
            "wall time, learning included) and of the bare vectorised environment's speed "
            "(random actions); their ratio is the share of the environment's speed that "
            "training keeps.",
            body,
        )
    )

    # 6b. noisy TV
    tv_header, tv_rows = _tv_rows(a)
    if tv_rows:
        md += ["## Steps on the noisy TV", "", _md_table(tv_header, tv_rows, left=2), ""]
        sections.append(
            _section(
                "noisy-tv",
                "Steps on the noisy TV",
                "Tasks with a noisy TV only: the fraction of all steps of a run on which the "
                "agent turned the TV on (mean over finished runs, min-max over seeds in "
                "brackets), beside the final success rate. A bonus drawn to unpredictable "
                "noise spends more of its steps there.",
                _html_table(tv_header, tv_rows, left=2),
            )
        )

    # 7. visitation
    heatmaps, notes = _visitation(a) if a.done else ([], [])
    a.notes += notes
    body = "".join(
        f"<h3>{html.escape(task)}</h3>{_img(uri, f'state visitation on {task}')}"
        for task, uri in heatmaps
    )
    sections.append(
        _section(
            "visitation",
            "State visitation",
            "Grid worlds only: agent-position counts summed over seeds, log colour scale shared "
            "by the methods of a task; light grey cells were never visited.",
            body or _missing("No finished run has a visitation.npy (no grid-world tasks)."),
        )
    )

    # 8. bonus maps
    bonus_maps = _bonus_maps(a) if a.done else []
    if bonus_maps:
        sections.append(
            _section(
                "bonus-maps",
                "Where each bonus pays",
                "Grid worlds only: the mean raw intrinsic reward paid per cell reached, "
                "averaged over seeds; each method on its own colour scale; light grey cells "
                "were never reached.",
                "".join(
                    f"<h3>{html.escape(task)}</h3>{_img(uri, f'bonus per cell on {task}')}"
                    for task, uri in bonus_maps
                ),
            )
        )

    # 9. what the generative models learned
    pictures = _model_pictures(a) if a.done else []
    if pictures:
        body = ""
        for task, rows in pictures:
            body += f"<h3>{html.escape(task)}</h3>"
            for method, seed, files in rows:
                images = "".join(
                    _img(_file_uri(f), f"{f.stem.replace('_', ' ')} of {method} on {task}")
                    for f in files
                )
                body += (
                    f'<h4>{html.escape(method)} (seed {seed})</h4><div class="pics">{images}</div>'
                )
        sections.append(
            _section(
                "model-pictures",
                "What the models learned",
                "Bonuses with a generative model, one run each (the lowest finished seed): the "
                "code each grid cell gets (the most frequent code of the views seen there, "
                "through the final model; one colour per code, grey cells never reached), the "
                "codebook's use over training (codes used per update, perplexity, dead codes "
                "restarted), and distinct views of the last rollout above their "
                "reconstructions, with the cells decoded wrong outlined in red.",
                body,
            )
        )

    # failed runs and notes
    if a.failed:
        failed_rows = [
            [
                str(r["method"]),
                str(r["task"]),
                str(r["seed"]),
                (str(r.get("error") or "").strip().splitlines() or ["—"])[0][:160],
            ]
            for r in a.failed
        ]
        sections.append(
            _section(
                "failed",
                "Failed runs",
                "Scored 0 in the aggregate metrics, performance profile and probability of "
                "improvement over all runs; left out of every other analysis. First line of the "
                "error.",
                _html_table(["Method", "Task", "Seed", "Error"], failed_rows, left=4),
            )
        )
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in a.notes)
    sections.append(
        _section(
            "notes",
            "Notes",
            "What was left out of which analysis, and why.",
            f'<ul class="notes">{notes_html}</ul>' if a.notes else "<p>None.</p>",
        )
    )
    if a.notes:
        md += ["## Notes", "", *(f"- {n}" for n in a.notes), ""]

    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        f"{header}\n" + "\n".join(sections) + f"\n{_SCRIPT}</body></html>\n"
    )
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(page, encoding="utf-8")
    out_md.write_text("\n".join(md), encoding="utf-8")
    return out_html, out_md
