"""Frames and minutes to solve: the README's DoorKey-8x8 claim, re-measured.

    python benchmarks/solve_time.py          # PPO+RND, DoorKey-8x8, seeds 1-5, 1M frames
    python benchmarks/solve_time.py --bonus none --seeds 1 2 3

Runs ``explora train`` with its defaults for each seed, one after another (a timing: keep the
machine otherwise idle), and prints per seed the final success rate, the frames at which the
last 100 episodes first reached 90% success, and the wall time.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import explora


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MiniGrid-DoorKey-8x8-v0")
    parser.add_argument("--bonus", default="rnd")
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = parser.parse_args()
    bonus = None if args.bonus == "none" else args.bonus

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            s = explora.train(
                args.env,
                bonus=bonus,
                frames=args.frames,
                seed=seed,
                out=Path(tmp) / str(seed),
                progress=False,
            )
            rows.append(s)
            solved = s["frames_to_success_0.9"]
            print(
                f"seed {seed}: success {s['success_rate']:.3f}  return {s['final_return']:.3f}"
                f"  frames to 90% success {solved if solved is not None else 'never':>9}"
                f"  wall {s['wall_time_s'] / 60:.1f} min  fps {s['fps']:,.0f}",
                flush=True,
            )

    solved = [s["frames_to_success_0.9"] for s in rows if s["frames_to_success_0.9"] is not None]
    ok = sum(1 for s in rows if (s["success_rate"] or 0) >= 0.9)
    print()
    print("| seed | final success | frames to 90% success | wall time (min) | frames/s |")
    print("|---:|---:|---:|---:|---:|")
    for seed, s in zip(args.seeds, rows, strict=True):
        f = s["frames_to_success_0.9"]
        print(
            f"| {seed} | {s['success_rate']:.3f} | {f:,} | {s['wall_time_s'] / 60:.1f} | "
            f"{s['fps']:,.0f} |"
            if f is not None
            else f"| {seed} | {s['success_rate']:.3f} | never | {s['wall_time_s'] / 60:.1f} | "
            f"{s['fps']:,.0f} |"
        )
    print()
    print(
        f"{ok}/{len(rows)} seeds end at success >= 0.9"
        + (f"; median frames to 90% success {sorted(solved)[len(solved) // 2]:,}" if solved else "")
    )


if __name__ == "__main__":
    main()
