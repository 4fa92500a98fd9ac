"""Training throughput next to the raw stepping rate of the same envs, measured in the same run.

    python benchmarks/throughput.py            # the README's table (a few minutes on 2 cores)
    python benchmarks/throughput.py --frames 100000 --cases DeepSea-20:rnd
    python benchmarks/throughput.py --frames 5000 --cases DeepSea-50:none:bootdqn
    python benchmarks/throughput.py --catalogue --frames 100000   # every bonus on DoorKey-8x8
    python benchmarks/throughput.py --atari                  # PPO and PPO+RND on Montezuma

With ``--catalogue`` the cases are plain PPO and PPO with every registered bonus (its MiniGrid
preset, as ``explora train --bonus NAME`` runs it) on DoorKey-8x8, and the table adds each
one's frames/s relative to plain PPO's in the same run.

With ``--atari`` the cases are plain PPO and PPO+RND on ALE/MontezumaRevenge-v5 with the Atari
presets (32 envs, the RND paper's conv nets; 50,000 frames per case unless ``--frames``), and
``env_fps`` is EnvPool's raw Atari rate. A frame is one agent step of one env copy, i.e. 4
emulator frames (``explora.envs.atari``); the table says so. RND's random-policy warm-up
(8,192 frames, no learning) counts in its frames/s as in any run: with a budget much below
50,000 frames it inflates them (at 4,096 frames the warm-up was 2/3 of the run).

Each case is one ``explora.train`` run; ``env_fps`` is measured by that run on its own envs
(random actions) just before training, so the ratio fps/env_fps holds on a noisy machine.
Do not run two of these at once, or anything else heavy: it is a timing.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

import explora
from explora.bonuses import BONUSES

ATARI = "ALE/MontezumaRevenge-v5"
DEFAULT_CASES = [
    "MiniGrid-DoorKey-8x8-v0:none",
    "MiniGrid-DoorKey-8x8-v0:rnd",
    "DeepSea-20:none",
    "DeepSea-20:rnd",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per case (300k; 50k with --atari)"
    )
    parser.add_argument(
        "--cases", nargs="+", default=DEFAULT_CASES, help="ENV:BONUS[:ALGO] (algo: ppo)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--catalogue", action="store_true", help="plain PPO and every bonus on DoorKey-8x8"
    )
    parser.add_argument(
        "--atari", action="store_true", help="plain PPO and PPO+RND on Montezuma's Revenge"
    )
    args = parser.parse_args()
    if args.catalogue:
        args.cases = [f"MiniGrid-DoorKey-8x8-v0:{name}" for name in ["none", *BONUSES]]
    if args.atari:
        args.cases = [f"{ATARI}:none", f"{ATARI}:rnd"]
    if args.frames is None:
        args.frames = 50_000 if args.atari else 300_000

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            env_id, _, rest = case.partition(":")
            bonus, _, algo = rest.partition(":")
            bonus_name = None if bonus in ("", "none") else bonus
            summary = explora.train(
                env_id,
                algo=algo or "ppo",
                bonus=bonus_name,
                frames=args.frames,
                seed=args.seed,
                out=Path(tmp) / case.replace(":", "-"),
                progress=False,
            )
            algo, bonus = algo or "ppo", bonus or "none"
            rows.append((env_id, bonus, algo, summary))
            print(
                f"{env_id:28s} {bonus:12s} {algo:8s} fps {summary['fps']:>9,.0f}   "
                f"env_fps {summary['env_fps']:>11,.0f}",
                flush=True,
            )

    print()
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__}, {args.frames:,} frames per case"
    )
    print()
    plain = {(e, a): s["fps"] for e, b, a, s in rows if b == "none"}
    print(
        "| env | algo | bonus | num_envs | training frames/s | env frames/s (same run) | ratio "
        "| vs plain |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for env_id, bonus, algo, s in rows:
        base = plain.get((env_id, algo))
        versus = f"{s['fps'] / base:.2f}" if base else "—"
        print(
            f"| {env_id} | {algo} | {bonus} | {s['num_envs']} | {s['fps']:,.0f} | "
            f"{s['env_fps']:,.0f} | {s['fps'] / s['env_fps']:.3f} | {versus} |"
        )
    if any("emulator_frames" in s for *_, s in rows):
        print()
        print(
            "Atari: a frame is one agent step of one env copy = 4 emulator frames (frame "
            "skip 4); emulator frames/s are 4x the figures above."
        )


if __name__ == "__main__":
    main()
