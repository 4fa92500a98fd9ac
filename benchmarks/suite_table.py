"""Print a suite's results as the README's markdown table, from its result store.

    python benchmarks/suite_table.py bench/generative/store.db
    python benchmarks/suite_table.py bench/catalogue/store.db --suite catalogue

One row per method, per task: the mean final success over the finished seeds (episodes ending in
the last 10% of frames), the median frames at which the last 100 episodes first reached 90%
success with the number of seeds that got there, and on noisy-TV tasks the fraction of steps on
the TV. The last column is the median over runs of frames/s relative to plain PPO's run on the
same task and seed in the same store (suite runs share the machine with another worker, so the
ratio, not the absolute figure, is what carries over; ``benchmarks/throughput.py`` measures it on
a quiet machine). A task or method with unfinished runs shows how many finished. The figures are
the store's own (``Store.rows()``), medians to solve as the report computes them
(``explora.bench.stats.frames_to_solve``); tasks in the order their suite defines.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from explora.bench import stats
from explora.bench.store import Store
from explora.bench.suites import SUITES


def _short(task: str) -> str:
    return task.removeprefix("MiniGrid-").removesuffix("-v0")


def _success(runs: list[dict[str, Any]], expected: int) -> str:
    if not runs:
        return "…"
    text = f"{statistics.mean(r['success_rate'] or 0.0 for r in runs):.2f}"
    return text if len(runs) == expected else f"{text} ({len(runs)} runs)"


def _to_solve(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "…"
    solved = stats.frames_to_solve({("", ""): [r["frames_to_solve"] for r in runs]})[("", "")]
    median = solved["median"]
    frames = "—" if median is None else f"{median / 1e3:.0f}k"
    return f"{frames} ({solved['solved']}/{solved['runs']})"


def _task_order(rows: list[dict[str, Any]]) -> list[str]:
    """The tasks in their suite's order where the suite is known, else the store's."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    defined = [t.env_id for name in dict.fromkeys(r["suite"] for r in rows)
               if name in SUITES for t in SUITES[name].tasks]  # fmt: skip
    return sorted(tasks, key=lambda t: defined.index(t) if t in defined else len(defined))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="the suite's store.db")
    parser.add_argument("--suite", default=None, help="only this suite's runs")
    parser.add_argument("--baseline", default="ppo", help="the method frames/s is relative to")
    parser.add_argument(
        "--no-fps",
        action="store_true",
        help="leave out frames/s (when other work shared the machine with only some runs)",
    )
    args = parser.parse_args()
    if not args.store.is_file():
        parser.error(f"{args.store} is not a result store (no such file)")

    store = Store(args.store)
    rows = [r for r in store.rows() if args.suite is None or r["suite"] == args.suite]
    store.close()
    if not rows:
        where = f" for suite {args.suite}" if args.suite else ""
        raise SystemExit(f"no runs in {args.store}{where}")

    done: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    seeds: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        seeds[(r["method"], r["task"])] += 1
        if r["status"] == "done":
            tv = json.loads(r["summary"]).get("tv_fraction") if r["summary"] else None
            done[(r["method"], r["task"])].append(r | {"tv_fraction": tv})
    tasks = _task_order(rows)
    methods = sorted({r["method"] for r in rows}, key=lambda m: (m != args.baseline, m))
    has_tv = {
        t for t in tasks for m in methods for r in done[(m, t)] if r["tv_fraction"] is not None
    }

    base_fps = {(r["task"], r["seed"]): r["fps"] for t in tasks for r in done[(args.baseline, t)]}
    header = ["method"]
    for t in tasks:
        header += [f"{_short(t)} success", f"{_short(t)} frames to 0.9 (seeds)"]
        if t in has_tv:
            header.append(f"{_short(t)} steps on the TV")
    if not args.no_fps:
        header.append(f"frames/s vs {args.baseline} (suite)")
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for m in methods:
        cells = [m]
        ratios = []
        for t in tasks:
            runs = done[(m, t)]
            cells += [_success(runs, seeds[(m, t)]), _to_solve(runs)]
            if t in has_tv:
                tv = [r["tv_fraction"] for r in runs if r["tv_fraction"] is not None]
                cells.append(f"{statistics.mean(tv):.2f}" if tv else "…")
            ratios += [
                r["fps"] / base_fps[(t, r["seed"])] for r in runs if (t, r["seed"]) in base_fps
            ]
        if not args.no_fps:
            cells.append(f"{statistics.median(ratios):.2f}" if ratios else "…")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
