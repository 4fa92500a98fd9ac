"""Command line: ``explora train | list``.

Examples::

    explora train --env MiniGrid-DoorKey-8x8-v0 --bonus rnd --frames 1000000 --out runs/dk8
    explora train --env CartPole-v1 --frames 100000 --algo-args learning_rate=3e-4
    explora list
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import tyro


def _parse_pairs(pairs: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} takes KEY=VALUE pairs, got {pair!r}")
        lowered = raw.strip().lower()
        if lowered in ("true", "false"):
            value: Any = lowered == "true"
        elif lowered in ("none", "null"):
            value = None
        else:
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw
        out[key.strip().replace("-", "_")] = value
    return out


def train(
    env: str,
    bonus: str | None = None,
    algo: str = "ppo",
    frames: int | None = None,
    seed: int = 0,
    out: Path | None = None,
    num_envs: int | None = None,
    backend: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    algo_args: Annotated[list[str], tyro.conf.arg(metavar="KEY=VALUE")] = [],  # noqa: B006
    bonus_args: Annotated[list[str], tyro.conf.arg(metavar="KEY=VALUE")] = [],  # noqa: B006
) -> None:
    """Train an agent, optionally with a curiosity bonus, and write a run directory.

    Args:
        env: environment id: MiniGrid-*/BabyAI-* (EnvPool), DeepSea-<N>, or any Gymnasium id.
        bonus: intrinsic reward (see `explora list`); none by default.
        algo: agent (see `explora list`).
        frames: environment frames to train for (default: the algo's preset for the env).
        seed: seed of the env copies, network init and sampling.
        out: run directory (default: runs/<env>-<algo>-<bonus>-s<seed>).
        num_envs: parallel environment copies (default: the algo's preset for the env).
        backend: for MiniGrid/BabyAI: envpool (default) or gymnasium.
        resume: continue the run in --out from its last checkpoint.
        overwrite: replace the run in --out.
        progress: show a progress bar.
        algo_args: agent hyper-parameters, e.g. learning_rate=3e-4 int_coef=0.5.
        bonus_args: bonus hyper-parameters, e.g. learning_rate=1e-3.
    """
    from explora.train import train as run_training

    summary = run_training(
        env,
        algo=algo,
        bonus=bonus,
        frames=frames,
        seed=seed,
        out=out,
        num_envs=num_envs,
        backend=backend,
        overwrite=overwrite,
        resume=resume,
        progress=progress,
        algo_args=_parse_pairs(algo_args, "--algo-args"),
        bonus_args=_parse_pairs(bonus_args, "--bonus-args"),
    )
    run_dir = Path(summary["run_dir"])
    shown = {
        k: summary[k]
        for k in (
            "frames",
            "wall_time_s",
            "fps",
            "env_fps",
            "final_return",
            "success_rate",
            "unique_states",
        )
    }
    print(json.dumps(shown, indent=2))
    print(f"summary:        {run_dir / 'summary.json'}")
    print(f"learning curve: {run_dir / 'learning_curve.png'}")
    print(f"metrics:        {run_dir / 'metrics.csv'}  (TensorBoard: {run_dir / 'tb'})")


def list_choices() -> None:
    """List every algo, bonus and env family with one line each."""
    from explora.agents import ALGOS
    from explora.bonuses import BONUSES
    from explora.envs import ENV_FAMILIES

    def section(title: str, rows: dict[str, str]) -> None:
        print(title)
        width = max(len(k) for k in rows)
        for key, text in rows.items():
            print(f"  {key.ljust(width)}  {text}")

    section("algos:", {k: v.description for k, v in ALGOS.items()})
    section("bonuses:", {k: v[1] for k, v in sorted(BONUSES.items())})
    section("envs:", ENV_FAMILIES)


def main(argv: list[str] | None = None) -> int:
    from explora.agents import TrainingDiverged

    try:
        tyro.extras.subcommand_cli_from_dict(
            {"train": train, "list": list_choices},
            prog="explora",
            description="Exploration in deep RL: curiosity bonuses on fast vectorised envs.",
            args=argv,
        )
    except (ValueError, FileExistsError) as err:
        print(f"explora: error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"explora: training stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "explora: interrupted; resume with --resume (the last checkpoint is kept)",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
