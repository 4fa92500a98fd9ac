"""Run a suite: every (method, task, seed) as its own run directory, indexed in the store.

Each run is a separate ``explora train`` process, started by a backend:

- ``local`` (default): up to ``workers`` child processes on this machine. Children die with the
  parent (Linux ``PR_SET_PDEATHSIG``), so a killed sweep leaves no orphan writing to a run.
- ``ray``: the same command as a Ray task (``num_cpus=1``) on a cluster (``ray.init(address)``)
  or a local Ray. Run directories must be on a file system every node sees.

Running the same command again skips finished runs, resumes unfinished ones from their last
checkpoint (``explora train --resume``) and never starts a run that is already ``done``. A run
that crashes is recorded with its error and retried until it has failed ``max_attempts`` times.
A second sweep on the same store waits for nothing: it refuses to start (a file lock).

Runs train in ``run_root / RunSpec.relative_dir``, and the store records that directory when a
run starts. So with another ``run_root`` a finished run stays where it trained (and is not run
again), while an unfinished one starts over in the new root: its checkpoint is in the old one.

Example:
    >>> from explora.bench.sweep import sweep
    >>> rows = sweep("smoke", store="bench/store.db", workers=2)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from explora.bench.store import Store
from explora.bench.suites import RunSpec, Suite, plan
from explora.runs.rundir import frames_to_success, read_episodes

BACKENDS = ("local", "ray")


class SweepLocked(RuntimeError):
    """Another sweep holds the store."""


def train_command(run: RunSpec, run_dir: Path) -> list[str]:
    """The ``explora train`` command line of ``run``; resumes when a checkpoint exists."""
    cmd = [
        sys.executable,
        "-m",
        "explora.cli",
        "train",
        "--env",
        run.task.env_id,
        "--algo",
        run.method.algo,
        "--frames",
        str(run.task.frames),
        "--seed",
        str(run.seed),
        "--out",
        str(run_dir),
        "--no-progress",
    ]
    if run.method.bonus is not None:
        cmd += ["--bonus", run.method.bonus]
    if run.method.algo_args:
        cmd += ["--algo-args", *(f"{k}={v}" for k, v in run.method.algo_args.items())]
    if run.method.bonus_args:
        cmd += ["--bonus-args", *(f"{k}={v}" for k, v in run.method.bonus_args.items())]
    if run.task.env_kwargs:
        cmd += ["--env-args", *(f"{k}={v}" for k, v in run.task.env_kwargs.items())]
    if (run_dir / "checkpoints" / "last.pt").exists():
        cmd.append("--resume")
    elif run_dir.exists():
        cmd.append("--overwrite")  # started but died before its first checkpoint
    return cmd


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Finished(Protocol):
    key: str
    returncode: int
    log_tail: str


class _Done:
    def __init__(self, key: str, returncode: int, log_tail: str) -> None:
        self.key, self.returncode, self.log_tail = key, returncode, log_tail


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class LocalBackend:
    """Child processes on this machine, at most ``workers`` at a time."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    @property
    def free(self) -> int:
        return self.workers - len(self._procs)

    def start(self, key: str, cmd: list[str], log: Path) -> None:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )
        self._procs[key] = (proc, log)

    def wait(self, timeout: float) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while True:
            done: list[Finished] = []
            for key, (proc, log) in list(self._procs.items()):
                code = proc.poll()
                if code is not None:
                    del self._procs[key]
                    done.append(_Done(key, code, _tail(log)))
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.2)

    def stop(self) -> None:
        for proc, _ in self._procs.values():
            proc.terminate()
        for proc, _ in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
        self._procs.clear()


def _ray_train(cmd: list[str], log: str) -> int:
    """Runs on a Ray worker: the same ``explora train`` process as the local backend."""
    with open(log, "ab") as out:
        return subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)


class RayBackend:
    """Ray tasks, one CPU each, on the cluster at ``address`` (None: start a local Ray)."""

    def __init__(self, workers: int, address: str | None) -> None:
        try:
            import ray
        except ImportError as err:
            raise ValueError(
                "--backend ray needs the ray package: pip install 'explora[ray]'"
            ) from err
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_train)
        self.workers = workers
        self._refs: dict[Any, tuple[str, Path]] = {}

    @property
    def free(self) -> int:
        return self.workers - len(self._refs)

    def start(self, key: str, cmd: list[str], log: Path) -> None:
        ref = self._remote.remote(cmd, str(log))
        self._refs[ref] = (key, log)

    def wait(self, timeout: float) -> list[Finished]:
        if not self._refs:
            time.sleep(min(timeout, 0.2))
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        done: list[Finished] = []
        for ref in ready:
            key, log = self._refs.pop(ref)
            try:
                code = int(self._ray.get(ref))
                tail = _tail(log)
            except Exception as err:  # a killed Ray worker: the task's error names it
                code, tail = -1, f"{type(err).__name__}: {err}\n{_tail(log)}"
            done.append(_Done(key, code, tail))
        return done

    def stop(self) -> None:
        for ref in self._refs:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self._refs.clear()


@contextlib.contextmanager
def _exclusive(store_path: Path) -> Iterator[None]:
    """Hold a lock beside the store for the sweep's lifetime (released if the process dies)."""
    lock_path = store_path.with_name(store_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepLocked(
                f"another sweep is using {store_path}; wait for it or stop it first"
            ) from None
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def _record_finished(
    store: Store, run: RunSpec, run_dir: Path, done: Finished, max_attempts: int
) -> str:
    """Move a finished process's run to ``done`` (the summary it wrote in ``run_dir``, the
    directory it was started in, read) or count a failure."""
    summary_path = run_dir / "summary.json"
    if done.returncode == 0 and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        solved = frames_to_solve(run_dir, run.task.success_threshold, run.task.success_window)
        store.mark_done(run.key, summary, solved, run.task.score(summary.get("final_return")))
        return "done"
    if done.returncode < 0:
        why = f"killed by signal {-done.returncode}"
    elif done.returncode == 0:
        why = f"exit code 0 but no {summary_path}"
    else:
        why = f"exit code {done.returncode}"
    return store.mark_failed(run.key, f"{why}\n{done.log_tail}", max_attempts)


def frames_to_solve(run_dir: Path, threshold: float, window: int) -> int | None:
    """The task's success rule applied to the run's ``episodes.csv``."""
    return frames_to_success(read_episodes(run_dir), threshold, window)


def preflight(runs: list[RunSpec]) -> None:
    """Fail before anything runs when a method cannot run on a task: its settings, and its
    bonus set up on the task's observation space (e.g. exact counts on float observations)."""
    from explora.agents import algo_config
    from explora.bonuses import make_bonus
    from explora.bonuses.obs_key import for_env
    from explora.envs import check_env_id, make
    from explora.presets import bonus_preset

    pairs = {(r.method.name, r.task.env_id): (r.method, r.task) for r in runs}
    for method, task in pairs.values():
        try:
            check_env_id(task.env_id)
            overrides = {**method.algo_args, "total_frames": task.frames}
            algo_config(method.algo, task.env_id, overrides).check()
            if method.bonus is not None:
                args = {**bonus_preset(method.bonus, task.env_id), **method.bonus_args}
                bonus = make_bonus(method.bonus, **args)
                env = make(task.env_id, num_envs=1, **task.env_kwargs)
                try:
                    probe = for_env(bonus, env.single_observation_space)
                    assert probe is not None
                    probe.setup(env.single_observation_space, env.single_action_space, 1)
                finally:
                    env.close()
        except ValueError as err:
            raise ValueError(f"method {method.name} cannot run {task.env_id}: {err}") from None


def sweep(
    suite: str | Suite,
    store: str | Path,
    *,
    methods: list[str] | None = None,
    seeds: int | None = None,
    workers: int = 2,
    backend: str = "local",
    ray_address: str | None = None,
    run_root: str | Path | None = None,
    max_attempts: int = 3,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every (method, task, seed) of ``suite`` not yet done; returns the store's rows for
    this sweep. Safe to interrupt and to run again (module docstring)."""
    runs = plan(suite, methods, seeds)  # unknown names fail here, before anything runs
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    preflight(runs)
    store_path = Path(store)
    root = Path(run_root) if run_root is not None else store_path.parent / "runs"
    logs = root / "logs"
    by_key = {r.key: r for r in runs}

    with _exclusive(store_path):
        db = Store(store_path)
        db.add(runs, root)
        keys = list(by_key)
        # Runs left "running" by a sweep that died are resumed like pending ones.
        state_of = {row["key"]: row["status"] for row in db.rows(keys)}
        queue = [k for k in keys if state_of[k] in ("pending", "running")]  # in the suite's order
        for key in queue:
            db.mark_pending(key)
        logs.mkdir(parents=True, exist_ok=True)
        runner: LocalBackend | RayBackend = (
            LocalBackend(workers) if backend == "local" else RayBackend(workers, ray_address)
        )
        display = _Progress(len(runs), db, keys, enabled=progress)
        try:
            with display:
                while queue or runner.free < runner.workers:
                    while queue and runner.free > 0:
                        key = queue.pop(0)
                        run = by_key[key]
                        run_dir = root / run.relative_dir
                        run_dir.parent.mkdir(parents=True, exist_ok=True)
                        db.mark_running(key, run_dir)
                        runner.start(key, train_command(run, run_dir), logs / f"{key}.log")
                        display.refresh()
                    for done in runner.wait(timeout=1.0):
                        run = by_key[done.key]
                        status = _record_finished(
                            db, run, root / run.relative_dir, done, max_attempts
                        )
                        if status == "pending":
                            queue.append(done.key)  # retried after the others
                        display.refresh()
                    display.refresh()
        except KeyboardInterrupt:
            runner.stop()
            for row in db.rows(keys):
                if row["status"] == "running":
                    db.mark_pending(row["key"])
            raise
        finally:
            runner.stop()
        rows = db.rows(keys)
        db.close()
    return rows


class _Progress:
    """A rich progress bar: runs done / running / failed and the time left."""

    def __init__(self, total: int, db: Store, keys: list[str], enabled: bool) -> None:
        self.db, self.keys, self.enabled = db, keys, enabled
        self._bar: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task("", total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
            self.refresh()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self.refresh()
            self._bar.__exit__(*exc)

    def refresh(self) -> None:
        if self._bar is None:
            return
        c = self.db.counts(self.keys)
        text = (
            f"done {c.get('done', 0)}  running {c.get('running', 0)}  "
            f"failed {c.get('failed', 0)}  pending {c.get('pending', 0)}"
        )
        self._bar.update(
            self._task, completed=c.get("done", 0) + c.get("failed", 0), description=text
        )
