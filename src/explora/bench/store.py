"""The result store: one SQLite file indexing every run of every sweep.

One row per run, keyed by ``RunSpec.key`` (a hash of suite, method, task and seed), holding its
status, attempts, last error, summary figures and run directory: the directory the run last
started training in, so a finished run is found where it trained even when a later sweep puts
new runs under another root. Stores written before the suite was part of the key are re-keyed
on their next sweep (``Store.add``). Only the sweep's parent process writes to it, one short
transaction per event, so a killed worker or a killed parent never loses a finished run: a run
is ``done`` once its summary is committed, and nothing un-does that.

Statuses: ``pending`` (not started, or to be retried), ``running`` (started by a sweep; if that
sweep died, the next one resumes it from its checkpoint), ``done``, ``failed`` (crashed
``max_attempts`` times; the error is kept).

Example:
    >>> store = Store(":memory:")
    >>> store.counts()
    {}
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from explora.bench.suites import RunSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    method TEXT NOT NULL,
    task TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    run_dir TEXT,
    frames INTEGER,
    wall_time_s REAL,
    fps REAL,
    env_fps REAL,
    final_return REAL,
    success_rate REAL,
    unique_states INTEGER,
    frames_to_solve INTEGER,
    score REAL,
    spec TEXT NOT NULL,
    summary TEXT,
    updated REAL NOT NULL
)
"""

FIGURES = ("frames", "wall_time_s", "fps", "env_fps", "final_return", "success_rate",
           "unique_states")  # fmt: skip


class Store:
    """The SQLite index of runs at ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, runs: list[RunSpec], run_root: Path) -> None:
        """Index ``runs`` as pending; runs already in the store keep their state and directory
        (``mark_running`` records where a run trains when it starts).

        A row keyed by a run's ``legacy_key`` (suite left out) and written by the same suite
        is that run: it is re-keyed, keeping its status, so finished runs are not run again.
        A legacy row of another suite stays with that suite."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE runs SET key = ? WHERE key = ? AND suite = ? "
                "AND NOT EXISTS (SELECT 1 FROM runs WHERE key = ?)",
                [(r.key, r.legacy_key, r.suite, r.key) for r in runs],
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO runs (key, suite, method, task, seed, budget, run_dir, "
                "spec, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.key,
                        r.suite,
                        r.method.name,
                        r.task.env_id,
                        r.seed,
                        r.task.frames,
                        str(run_root / r.relative_dir),
                        json.dumps({"method": r.method.__dict__, "task": r.task.__dict__}),
                        now,
                    )
                    for r in runs
                ],
            )

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        return dict(row) if row is not None else None

    def rows(self, keys: list[str] | None = None) -> list[dict[str, Any]]:
        """Every run (or those with ``keys``), ordered by suite, task, method, seed."""
        order = " ORDER BY suite, task, method, seed"
        if keys is None:
            return [dict(r) for r in self._db.execute("SELECT * FROM runs" + order)]
        marks = ",".join("?" * len(keys))
        query = f"SELECT * FROM runs WHERE key IN ({marks})" + order
        return [dict(r) for r in self._db.execute(query, keys)]

    def counts(self, keys: list[str] | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows(keys):
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out

    def _set(self, key: str, **values: Any) -> None:
        values["updated"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self._db:
            self._db.execute(
                f"UPDATE runs SET {assignments} WHERE key = ?", (*values.values(), key)
            )

    def mark_running(self, key: str, run_dir: Path) -> None:
        """The run starts training in ``run_dir``, which may differ from the directory it was
        indexed with (another run root), so the row follows it there."""
        self._set(key, status="running", run_dir=str(run_dir))

    def mark_done(
        self, key: str, summary: dict[str, Any], frames_to_solve: int | None, score: float | None
    ) -> None:
        figures = {k: summary.get(k) for k in FIGURES}
        self._set(
            key,
            status="done",
            error=None,
            frames_to_solve=frames_to_solve,
            score=score,
            summary=json.dumps(summary),
            **figures,
        )

    def mark_failed(self, key: str, error: str, max_attempts: int) -> str:
        """Record a crash; the run goes back to ``pending`` until it has failed
        ``max_attempts`` times, then stays ``failed``. Returns the new status."""
        row = self.get(key)
        attempts = (row["attempts"] if row else 0) + 1
        status = "failed" if attempts >= max_attempts else "pending"
        self._set(key, status=status, attempts=attempts, error=error)
        return status

    def mark_pending(self, key: str) -> None:
        """Back to the queue without counting an attempt (the sweep, not the run, stopped)."""
        self._set(key, status="pending")
