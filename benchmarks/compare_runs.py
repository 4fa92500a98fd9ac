"""Compare finished runs side by side: one Markdown table of their summaries and one picture of a
metric against frames (e.g. the rooms Montezuma's Revenge runs visited).

    python benchmarks/compare_runs.py runs/mz-ppo runs/mz-rnd \\
        --metric charts/unique_states --label "rooms visited" --out docs/montezuma-rooms.png

Each run is labelled by its bonus and seed (``config.json``), or by ``--names``, one per run. The
table gives frames, wall time, training frames/s, the env's raw frames/s of the same run, the final
return and, where the env reports success, the final success rate and the frames at which the last
100 episodes first succeeded 90% of the time, the metric's last value, and the frame counts a run
resumed from after being stopped (``resumes.csv``; runs that predate that file show "-").
``--smooth N`` draws the mean of the last N logged values, from the N-th on (per-update success
rates jump between 0 and 1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from explora.runs.rundir import read_metrics


def label(run: Path) -> str:
    config = json.loads((run / "config.json").read_text())
    name = f"{config['algo']}+{config['bonus']}" if config.get("bonus") else config["algo"]
    return f"{name} s{config['seed']}"


def resumes(run: Path) -> str:
    summary = json.loads((run / "summary.json").read_text())
    frames = summary.get("resumed_from_frames")
    return "-" if frames is None else ", ".join(f"{f:,}" for f in frames) or "none"


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes >= 10 else f"{minutes:.1f} min"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _frames(value: int | None) -> str:
    return "not reached" if value is None else f"{value:,}"


def table(runs: list[Path], metric: str, metric_label: str, names: list[str]) -> str:
    head = (
        f"| run | frames | wall time | frames/s | env frames/s (same run) | final return | "
        f"final success | frames to 90% success | {metric_label} | resumed from |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    rows = [head]
    for run, name in zip(runs, names, strict=True):
        s = json.loads((run / "summary.json").read_text())
        values = read_metrics(run / "metrics.csv").get(metric)
        last = (
            values[np.isfinite(values)][-1]
            if values is not None and np.isfinite(values).any()
            else None
        )
        rows.append(
            f"| {name} | {s['frames']:,} | {_minutes(s['wall_time_s'])} | "
            f"{s['fps']:,.0f} | {s['env_fps']:,.0f} | {s['final_return']:.2f} | "
            f"{_rate(s.get('success_rate'))} | {_frames(s.get('frames_to_success_0.9'))} | "
            f"{'-' if last is None else f'{last:g}'} | {resumes(run)} |"
        )
    return "\n".join(rows)


def plot(
    runs: list[Path],
    metric: str,
    metric_label: str,
    out: Path,
    title: str,
    names: list[str],
    smooth: int = 1,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    legend_beside = len(runs) > 3  # beside the axes, where it hides no curve
    fig, ax = plt.subplots(figsize=(7.5 if legend_beside else 6, 3.5))
    for run, name in zip(runs, names, strict=True):
        cols = read_metrics(run / "metrics.csv")
        values = cols.get(metric)
        if values is None:
            continue
        ok = np.isfinite(values)
        frames, shown = cols["frames"][ok], values[ok]
        if smooth > 1:  # drawn from the first full window on
            sums = np.cumsum(np.insert(shown, 0, 0.0))
            frames, shown = frames[smooth - 1 :], (sums[smooth:] - sums[:-smooth]) / smooth
        ax.step(frames, shown, where="post", label=name)
    ax.set_xlabel("frames")
    ax.set_ylabel(metric_label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend_beside:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--metric", default="charts/episodic_return", help="metrics.csv column")
    parser.add_argument("--label", default=None, help="the metric's name in the table and plot")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (none: no picture)")
    parser.add_argument("--title", default="", help="title of the picture")
    parser.add_argument("--smooth", type=int, default=1, help="draw the mean of the last N values")
    parser.add_argument(
        "--names", nargs="+", default=None, help="one name per run (default: method and seed)"
    )
    args = parser.parse_args()
    if args.names is not None and len(args.names) != len(args.runs):
        parser.error(f"--names gives {len(args.names)} names for {len(args.runs)} runs")
    for run in args.runs:
        if not (run / "summary.json").exists():
            parser.error(f"{run} is not a finished run (no summary.json)")
    metric_label = args.label or args.metric
    names = args.names or [label(run) for run in args.runs]
    print(table(args.runs, args.metric, metric_label, names))
    if args.out is not None:
        plot(args.runs, args.metric, metric_label, args.out, args.title, names, args.smooth)
        print(f"\npicture: {args.out}")


if __name__ == "__main__":
    main()
