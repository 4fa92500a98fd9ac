"""Command line: ``explora train | bench | report | deepsea | list``.

Examples::

    explora train --env MiniGrid-DoorKey-8x8-v0 --bonus rnd --frames 1000000 --out runs/dk8
    explora train --env CartPole-v1 --frames 100000 --algo-args learning_rate=3e-4
    explora train --env mypkg.envs:MyEnv-v0 --frames 100000    # imports mypkg.envs first
    explora list

Bad input ends with one line ``explora: error: ...`` on stderr and exit status 2, before any
file is written (tyro's own usage errors, e.g. ``--frames abc``, print tyro's message and also
exit with 2); a training run that diverges exits with 1, an interrupted one with 130.
"""

from __future__ import annotations

import ast
import json
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Any

import tyro


def _parse_pairs(pairs: list[str], flag: str) -> dict[str, Any]:
    """``["lr=3e-4", "hidden=(64, 64)"]`` as Python values (true/false, none, numbers, tuples;
    anything else stays a string, for the settings' checks to accept or refuse)."""
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
        elif lowered.lstrip("+-") in ("nan", "inf", "infinity"):
            value = float(lowered)  # so the range check says "not finite", not "not a number"
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
    env_args: Annotated[list[str], tyro.conf.arg(metavar="KEY=VALUE")] = [],  # noqa: B006
    device: str | None = None,
) -> None:
    """Train an agent, optionally with a curiosity bonus, and write a run directory.

    Args:
        env: environment id: MiniGrid-*/BabyAI-* (EnvPool), DeepSea-<N>, or any Gymnasium id.
        bonus: intrinsic reward (see `explora list`); none by default. A weighted sum with
            '+': rnd+count, 0.5*rnd+count (its --bonus-args prefixed: rnd.learning_rate=1e-3).
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
        env_args: arguments of the env, e.g. map_name=8x8 is_slippery=false (FrozenLake) or
            dict_obs=true (MiniGrid's image, direction and mission).
        device: where PPO's networks run: cpu (default), cuda, cuda:<index> or auto (cuda
            when torch sees a GPU; needs a CUDA build of torch).
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
        env_kwargs=_parse_pairs(env_args, "--env-args"),
        device=device,
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
            "rooms",
        )
        if k in summary
    }
    print(json.dumps(shown, indent=2))
    print(f"summary:        {run_dir / 'summary.json'}")
    print(f"learning curve: {run_dir / 'learning_curve.png'}")
    print(f"metrics:        {run_dir / 'metrics.csv'}  (TensorBoard: {run_dir / 'tb'})")


def bench(
    suite: str,
    store: Path = Path("bench/store.db"),
    methods: list[str] | None = None,
    seeds: int | None = None,
    workers: int = 2,
    backend: str = "local",
    ray_address: str | None = None,
    run_root: Path | None = None,
    max_attempts: int = 3,
    report: Path | None = None,
    progress: bool = True,
) -> None:
    """Run a benchmark suite (every method x task x seed), then write its report.

    Interrupt it at any time: running the same command again skips finished runs and resumes
    the others from their last checkpoints.

    Args:
        suite: suite name (see `explora list`).
        store: SQLite file indexing the runs; run directories go beside it.
        methods: methods to compare (default: the suite's).
        seeds: seeds per (method, task) (default: the suite's).
        workers: runs at a time.
        backend: local (child processes here) or ray.
        ray_address: Ray cluster address for --backend ray (default: start a local Ray).
        run_root: where run directories go (default: <store's folder>/runs).
        max_attempts: a run that crashes this many times is recorded as failed.
        report: HTML report path (default: <store's folder>/report.html).
        progress: show the sweep's progress.
    """
    from explora.bench.sweep import sweep
    from explora.runs.rundir import check_writable

    check_store(store, must_exist=False)
    if report is not None:
        check_writable(report, "--report", file=True)
    try:
        rows = sweep(
            suite,
            store,
            methods=methods,
            seeds=seeds,
            workers=workers,
            backend=backend,
            ray_address=ray_address,
            run_root=run_root,
            max_attempts=max_attempts,
            progress=progress,
        )
    except KeyboardInterrupt:
        print(
            "explora: sweep interrupted; finished runs are kept in the store. Run the same "
            "command again to resume the others from their checkpoints.",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    failed = [r for r in rows if r["status"] == "failed"]
    for row in failed:
        first = (row["error"] or "").splitlines()[:1]
        print(f"failed: {row['method']} on {row['task']} seed {row['seed']}: {first}")
    html, md = _write_report(store, report or store.parent / "report.html", rows=rows)
    done = sum(r["status"] == "done" for r in rows)
    print(f"{done} of {len(rows)} runs done, {len(failed)} failed; store: {store}")
    print(f"report:  {html}")
    print(f"summary: {md}")


DEEPSEA_SIZES = [*range(10, 52, 2), 60, 70, 80, 90, 100]


def deepsea(
    algo: str = "bootdqn",
    sizes: list[int] = DEEPSEA_SIZES,  # noqa: B006
    episodes: int = 10_000,
    seed: int = 0,
    workers: int = 2,
    store: Path = Path("bench/deepsea/store.db"),
    threshold: float = 0.9,
    algo_args: Annotated[list[str], tyro.conf.arg(metavar="KEY=VALUE")] = [],  # noqa: B006
    progress: bool = True,
) -> None:
    """DeepSea sweep: each size N trained until bsuite's solved rule holds or `episodes` end;
    reports the episode each N was solved at and the largest N solved.

    Resumable like `explora bench` (same store): run it again to continue.

    Args:
        algo: dqn or bootdqn (the agents that can stop at the solving episode).
        sizes: DeepSea sizes N (default: bsuite's 10..50 step 2, then 60..100 step 10).
        episodes: episode budget per size (bsuite: 10,000).
        seed: seed of every run.
        workers: runs at a time.
        store: SQLite file indexing the runs; run directories go beside it.
        threshold: N is solved at the first episode where the fraction of bad episodes so far
            falls below this (bsuite 0.3.6's find_solution: 0.9; newer bsuite code: 0.8).
        algo_args: agent hyper-parameters, e.g. num_envs=4.
        progress: show the sweep's progress.
    """
    from explora.bench.suites import Suite, deepsea_task
    from explora.bench.sweep import sweep

    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--sizes must be DeepSea sizes N >= 1, got {sizes}")
    check_store(store, must_exist=False)
    suite = Suite(
        f"deepsea-{algo}",
        f"DeepSea sweep of {algo}",
        tasks=tuple(deepsea_task(n, episodes) for n in sorted(set(sizes))),
        methods=(algo,),
        seeds=1,
        algo_args={
            "stop_when_solved": True,
            "seed": seed,
            # only when it differs from the default, so stores of earlier sweeps keep their keys
            **({"solved_threshold": threshold} if threshold != 0.9 else {}),
            **_parse_pairs(algo_args, "--algo-args"),
        },
    )
    rows = sweep(suite, store, workers=workers, progress=progress)
    table, solved = deepsea_table(rows, episodes, threshold)
    out = store.parent / f"deepsea-{algo}.md"
    out.write_text(table + "\n")
    title = f"DeepSea sweep of {algo} (solved: bad-episode rate < {threshold:g})"
    plot_deepsea(solved, episodes, out.with_suffix(".png"), title=title)
    print(table)
    run_time = sum(float(r["wall_time_s"] or 0.0) for r in rows)
    print(f"run time of the sizes finished so far: {run_time / 60:.1f} min (sum over runs)")
    contiguous = 0
    for n, at in solved:
        if at is None:
            break
        contiguous = n
    largest = max((n for n, at in solved if at is not None), default=None)
    print(f"largest N solved within {episodes:,} episodes: {largest}; every N up to {contiguous}")
    print(f"table: {out}; plot: {out.with_suffix('.png')}")


def plot_deepsea(
    solved: list[tuple[int, int | None]], episodes: int, out_png: Path, title: str = ""
) -> None:
    """The episode each size was solved at against N (log scale), with the episode budget and
    the 2^N episodes that dithering (epsilon-greedy) needs; unsolved sizes sit on the budget
    line as crosses."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    done = [(n, at) for n, at in solved if at is not None]
    if done:
        ax.plot(*zip(*done, strict=True), "o-", color="tab:blue", label="solved at episode")
    missed = [n for n, at in solved if at is None]
    if missed:
        ax.plot(missed, [episodes] * len(missed), "x", color="tab:red", ms=9, label="not solved")
    sizes = [n for n, _ in solved] or [10]
    lo, hi = min(sizes), max(sizes)
    ax.axhline(episodes, color="grey", ls="--", lw=1, label=f"budget ({episodes:,} episodes)")
    grid = np.linspace(lo, max(lo, min(hi, np.log2(episodes * 3))), 50)
    ax.plot(grid, 2.0**grid, ":", color="tab:orange", label="2^N (dithering)")
    ax.set_yscale("log")
    ax.set_ylim(10, episodes * 3)
    ax.set_xlabel("DeepSea size N")
    ax.set_ylabel("episodes")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def deepsea_table(
    rows: list[dict[str, Any]], episodes: int, threshold: float = 0.9
) -> tuple[str, list[tuple[int, int | None]]]:
    """Markdown table of a DeepSea sweep's rows and (N, solved-at episode) pairs; the header
    names the solved rule's ``threshold``."""
    lines = [
        f"| N | solved at episode (bad rate < {threshold:g}) | episodes run | frames | "
        "wall time (s) | status |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    solved: list[tuple[int, int | None]] = []
    for row in sorted(rows, key=lambda r: int(r["task"].split("-")[1])):
        n = int(row["task"].split("-")[1])
        summary = json.loads(row["summary"]) if row["summary"] else {}
        at = summary.get("solved_at_episode")
        at = at if at is not None and at <= episodes else None
        solved.append((n, at))
        run = summary.get("frames")
        lines.append(
            f"| {n} | {at if at is not None else 'not solved'} | "
            f"{run // n if run else '-'} | {run or '-'} | "
            f"{summary.get('wall_time_s', float('nan')):.0f} | {row['status']} |"
        )
    return "\n".join(lines), solved


SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file (sqlite.org/fileformat.html)."""


def check_store(store: Path, must_exist: bool) -> None:
    """Refuse a ``--store`` that is not an explora store, without changing it: sqlite3 would
    create a missing file and turn an empty one into a database, and ``Store`` adds its table
    to any SQLite file, so existence, the SQLite header and the ``runs`` table are checked
    first, reading only.

    A missing store is refused when ``must_exist`` (a report), else its folder must be
    writable (a sweep creates it).
    """
    from explora.runs.rundir import check_writable

    if not store.exists():
        if must_exist:
            raise ValueError(f"no store at {store}; run `explora bench --store {store}` first")
        check_writable(store, "--store")
        return
    if store.is_dir():
        raise ValueError(
            f"--store {store} is a directory; give the SQLite file `explora bench` writes, "
            f"e.g. {store / 'store.db'}"
        )
    try:
        with store.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as err:
        raise ValueError(f"cannot read --store {store}: {err.strerror or err}") from err
    if head != SQLITE_HEADER:
        what = "an empty file" if not head else "not an SQLite file"
        raise ValueError(f"--store {store} is not an explora store: it is {what}")
    # immutable=1 reads the file alone: no lock, no -wal/-shm files left beside it (mode=ro
    # leaves them). It does not see a write-ahead log that has not been copied into the file
    # yet, so a missing table with a -wal file beside it may still be there: let Store open it.
    try:
        db = sqlite3.connect(f"{store.resolve().as_uri()}?immutable=1", uri=True)
        try:
            query = "SELECT name FROM sqlite_master WHERE type='table'"
            tables = {row[0] for row in db.execute(query)}
        finally:
            db.close()
    except sqlite3.Error as err:
        raise ValueError(f"--store {store} cannot be read as SQLite: {err}") from err
    if "runs" not in tables and not store.with_name(store.name + "-wal").exists():
        raise ValueError(
            f"--store {store} is an SQLite file but not an explora store (it has no runs table)"
        )


def _write_report(
    store: Path, out: Path, rows: list[dict[str, Any]] | None = None
) -> tuple[Path, Path]:
    from explora.bench.report import write_report
    from explora.bench.store import Store

    if rows is None:
        check_store(store, must_exist=True)
        db = Store(store)
        rows = db.rows()
        db.close()
    if not rows:
        raise ValueError(f"{store} holds no runs")
    suites = sorted({r["suite"] for r in rows})
    return write_report(rows, out, title=f"explora benchmark: {', '.join(suites)}")


def report(store: Path = Path("bench/store.db"), out: Path = Path("bench/report.html")) -> None:
    """Write the HTML report (and a Markdown summary beside it) of every run in a store.

    Args:
        store: SQLite file written by `explora bench`.
        out: HTML file to write; the Markdown summary gets the same name with .md.
    """
    from explora.runs.rundir import check_writable

    check_store(store, must_exist=True)
    check_writable(out, "--out", file=True)
    html, md = _write_report(store, out)
    print(f"report:  {html}")
    print(f"summary: {md}")


def list_choices() -> None:
    """List every algo, bonus and env family with one line each."""
    from explora.agents import ALGOS
    from explora.bench.suites import METHODS, SUITES
    from explora.bonuses import BONUSES
    from explora.envs import ENV_FAMILIES

    def section(title: str, rows: dict[str, str]) -> None:
        print(title)
        width = max(len(k) for k in rows)
        for key, text in rows.items():
            print(f"  {key.ljust(width)}  {text}")

    section("algos:", {k: v.description for k, v in ALGOS.items()})
    combination = "a sum of bonuses, each divided by its running RMS: rnd+count, 0.5*rnd+2*count"
    section(
        "bonuses:",
        {**{k: v[1] for k, v in sorted(BONUSES.items())}, "<a>+<b>": combination},
    )
    section("envs:", ENV_FAMILIES)
    section(
        "suites:",
        {
            k: f"{v.description} ({len(v.tasks)} tasks, methods {', '.join(v.methods)})"
            for k, v in SUITES.items()
        },
    )
    section("methods:", {k: v.description for k, v in METHODS.items()})


def _one_line(err: BaseException) -> str:
    """The error's message on one line: a message from a library may span several."""
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Only the errors that bad input raises (``ValueError`` and its subclasses, an existing run
    ``FileExistsError``, a locked store) become one ``explora: error:`` line; any other
    exception is a bug and keeps its traceback. ``explora --version`` prints ``explora <version>``.
    """
    from explora.agents import TrainingDiverged
    from explora.bench.sweep import SweepLocked

    if (sys.argv[1:] if argv is None else argv) in (["--version"], ["-V"]):
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"explora {version('explora')}")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from explora import __version__

            print(f"explora {__version__}")
        return 0
    try:
        tyro.extras.subcommand_cli_from_dict(
            {
                "train": train,
                "bench": bench,
                "report": report,
                "deepsea": deepsea,
                "list": list_choices,
            },
            prog="explora",
            description="Exploration in deep RL: curiosity bonuses on fast vectorised envs. "
            "`explora --version` prints the version.",
            args=argv,
        )
    except SystemExit as exit_:  # tyro's usage errors (it prints them, no traceback), --help
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(f"explora: error: {exit_.code}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError, SweepLocked) as err:
        print(f"explora: error: {_one_line(err)}", file=sys.stderr)
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
