"""Sweeps: the store indexes every run exactly once, through killed workers, a killed parent,
a second run of the same command, and the Ray backend."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from explora.bench.store import Store
from explora.bench.suites import SUITES, RunSpec, Suite, deepsea_task, plan
from explora.bench.sweep import SweepLocked, _exclusive, sweep
from explora.cli import main
from explora.runs.rundir import read_metrics

SMOKE_RUNS = len(plan("smoke"))  # 2 tasks x 2 methods x 2 seeds


def bench_command(store: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "explora.cli",
        "bench",
        "--suite",
        "smoke",
        "--store",
        str(store),
        "--no-progress",
        *extra,
    ]


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def train_processes(run_root: Path) -> list[int]:
    """Live ``explora train`` processes writing under ``run_root``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"train" in cmd and any(str(run_root).encode() in c for c in cmd):
                pids.append(int(entry.name))
    return pids


def wait_for(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def statuses(store: Path) -> dict[str, int]:
    """Runs per status; empty until the sweep has created the store."""
    if not store.exists():
        return {}
    try:
        with sqlite3.connect(store) as db:
            query = "SELECT status, COUNT(*) FROM runs GROUP BY status"
            return dict(db.execute(query).fetchall())
    except sqlite3.OperationalError:  # the table is not there yet
        return {}


def check_complete(store: Path) -> list[dict]:
    """Every run of the suite is in the store once, done, with its summary and a clean
    metrics table (no frame logged twice, as a run restarted from scratch over its old files
    or a resume that kept rows past its checkpoint would leave)."""
    db = Store(store)
    rows = db.rows()
    db.close()
    assert len(rows) == SMOKE_RUNS
    assert len({r["key"] for r in rows}) == SMOKE_RUNS
    assert {(r["method"], r["task"], r["seed"]) for r in rows} == {
        (r.method.name, r.task.env_id, r.seed) for r in plan("smoke")
    }
    for row in rows:
        assert row["status"] == "done", row
        run_dir = Path(row["run_dir"])
        assert (run_dir / "summary.json").exists()
        frames = [int(f) for f in read_metrics(run_dir / "metrics.csv")["frames"]]
        assert frames == sorted(set(frames)), f"{run_dir}: frames logged twice"
        assert row["frames"] == frames[-1]
    return rows


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """One complete smoke sweep through the CLI, shared by the tests that only read it."""
    store = tmp_path_factory.mktemp("bench") / "store.db"
    done = subprocess.run(bench_command(store), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return store, done.stdout


def test_sweep_runs_every_run_and_reports(finished_sweep):
    store, stdout = finished_sweep
    rows = check_complete(store)
    assert all(r["score"] is not None and r["fps"] > 0 for r in rows)
    assert f"{SMOKE_RUNS} of {SMOKE_RUNS} runs done, 0 failed" in stdout
    assert "report:" in stdout and (store.parent / "report.html").exists()


def test_report_rewrites_an_existing_report_and_refuses_a_directory(finished_sweep, capsys):
    store, _ = finished_sweep
    out = store.parent / "report.html"  # written by the sweep: the README's command rewrites it
    assert out.exists()
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    assert main(["report", "--store", str(store), "--out", str(store.parent)]) == 2
    assert "is a directory, not a file" in capsys.readouterr().err


def test_running_the_same_command_again_runs_nothing(finished_sweep):
    store, _ = finished_sweep
    summaries = sorted(store.parent.glob("runs/**/summary.json"))
    before = {p: p.stat().st_mtime_ns for p in summaries}
    started = time.monotonic()
    assert main(["bench", "--suite", "smoke", "--store", str(store), "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in summaries} == before
    assert time.monotonic() - started < 60
    check_complete(store)


def test_killed_worker_is_recorded_retried_and_resumed(tmp_path):
    store = tmp_path / "store.db"
    parent = subprocess.Popen(bench_command(store, "--workers", "1"), stdout=subprocess.PIPE)
    run_root = tmp_path / "runs"
    # Kill the first run once it has written a checkpoint, so the retry must resume it.
    wait_for(lambda: any(run_root.glob("**/checkpoints/last.pt")), what="a checkpoint")
    victims = train_processes(run_root)
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)
    assert parent.wait(timeout=300) == 0
    rows = check_complete(store)
    retried = [r for r in rows if r["attempts"] == 1]
    assert len(retried) == 1 and all(r["attempts"] == 0 for r in rows if r not in retried)
    log = (run_root / "logs" / f"{retried[0]['key']}.log").read_text()
    assert "Traceback" not in log


def test_killed_parent_loses_nothing_and_the_rerun_completes(tmp_path):
    store = tmp_path / "store.db"
    run_root = tmp_path / "runs"
    parent = subprocess.Popen(bench_command(store), stdout=subprocess.DEVNULL)
    wait_for(lambda: statuses(store).get("done", 0) >= 1, what="a finished run")
    wait_for(lambda: len(train_processes(run_root)) >= 1, what="a running run")
    finished = {
        r["key"]: Path(r["run_dir"]) / "summary.json"
        for r in Store(store).rows()
        if r["status"] == "done"
    }
    stamps = {k: p.stat().st_mtime_ns for k, p in finished.items()}
    parent.kill()
    parent.wait()
    # The workers die with their parent: nothing keeps writing to the runs.
    wait_for(lambda: not train_processes(run_root), timeout=10, what="workers to exit")
    assert statuses(store).get("running", 0) >= 1  # left behind by the killed sweep
    rerun = subprocess.run(bench_command(store), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    check_complete(store)
    # Runs finished before the kill were not run again.
    assert {k: p.stat().st_mtime_ns for k, p in finished.items()} == stamps


def test_ctrl_c_stops_the_workers_and_the_same_command_resumes(tmp_path):
    store = tmp_path / "store.db"
    run_root = tmp_path / "runs"
    # A shell starts background jobs with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the sweep the default disposition a terminal would.
    parent = subprocess.Popen(
        bench_command(store),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: any(run_root.glob("**/checkpoints/last.pt")), what="a checkpoint")
    parent.send_signal(signal.SIGINT)
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == 130
    assert "Run the same command again" in err
    assert not train_processes(run_root)
    assert statuses(store).get("running", 0) == 0  # interrupted runs went back to pending
    rerun = subprocess.run(bench_command(store), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    check_complete(store)


def test_a_crashing_run_is_recorded_with_its_error(tmp_path, monkeypatch):
    # Every worker crashes: the sweep still ends, each run failed after max_attempts tries
    # with the worker's last words kept.
    from explora.bench import sweep as sweep_module

    crash = [sys.executable, "-c", "raise SystemExit('worker crashed on purpose')"]
    monkeypatch.setattr(sweep_module, "train_command", lambda run, run_dir: crash)
    rows = sweep("smoke", tmp_path / "store.db", methods=["ppo"], seeds=1, max_attempts=2,
                 progress=False)  # fmt: skip
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(r["attempts"] == 2 for r in rows)
    assert all("exit code 1" in r["error"] and "on purpose" in r["error"] for r in rows)


# A stand-in for `explora train` (seconds instead of minutes): writes a summary into the
# directory it was given and notes that directory, so a test sees where each run trained.
FAKE_TRAIN = """
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "summary.json").write_text(json.dumps({"final_return": 0.495, "frames": 12}))
with open(sys.argv[2], "a") as trained:
    trained.write(f"{out}\\n")
"""


def fake_training(monkeypatch: pytest.MonkeyPatch, trained: Path) -> None:
    """Make sweeps run FAKE_TRAIN; each run's directory is appended to ``trained``."""
    from explora.bench import sweep as sweep_module

    def command(run: RunSpec, run_dir: Path) -> list[str]:
        return [sys.executable, "-c", FAKE_TRAIN, str(run_dir), str(trained)]

    monkeypatch.setattr(sweep_module, "train_command", command)


def trained_dirs(trained: Path) -> list[str]:
    return trained.read_text().splitlines() if trained.exists() else []


def test_a_sweep_with_another_run_root_records_the_directory_it_trained_in(tmp_path, monkeypatch):
    store, trained = tmp_path / "store.db", tmp_path / "trained.txt"
    fake_training(monkeypatch, trained)
    runs = plan("smoke", ["ppo"], 1)
    db = Store(store)  # a first sweep under old/ indexed the runs and stopped before any ran
    db.add(runs, tmp_path / "old")
    db.close()
    rows = sweep("smoke", store, methods=["ppo"], seeds=1, run_root=tmp_path / "new",
                 progress=False)  # fmt: skip
    expected = {str(tmp_path / "new" / r.relative_dir) for r in runs}
    assert [r["status"] for r in rows] == ["done", "done"], [r["error"] for r in rows]
    assert {r["run_dir"] for r in rows} == expected == set(trained_dirs(trained))
    assert all(r["score"] == pytest.approx(0.5) for r in rows)
    # A third root: the finished runs are neither redone nor moved.
    again = sweep("smoke", store, methods=["ppo"], seeds=1, run_root=tmp_path / "third",
                  progress=False)  # fmt: skip
    assert again == rows
    assert len(trained_dirs(trained)) == 2
    assert not (tmp_path / "third" / "smoke").exists()


def test_two_suites_with_the_same_runs_get_a_row_and_a_directory_each(tmp_path, monkeypatch):
    store, trained = tmp_path / "store.db", tmp_path / "trained.txt"
    fake_training(monkeypatch, trained)
    one = Suite("one", "test", tasks=(deepsea_task(6, episodes=2_000),), methods=("ppo",), seeds=1)
    two = replace(one, name="two")
    sweep(one, store, progress=False)
    rows = sweep(two, store, progress=False)
    run_dir = tmp_path / "runs" / "two" / "DeepSea-6" / "ppo" / "seed0"
    assert [(r["suite"], r["status"], r["run_dir"]) for r in rows] == [
        ("two", "done", str(run_dir))
    ]
    assert (run_dir / "summary.json").exists()
    assert sorted(r["suite"] for r in Store(store).rows()) == ["one", "two"]
    assert len(trained_dirs(trained)) == 2


def key_before_the_suite_was_in_it(run: RunSpec) -> str:
    """``RunSpec.key`` as stores written before the suite was part of it hold it (tasks had
    no env arguments then)."""
    task = {k: v for k, v in asdict(run.task).items() if k != "env_kwargs"}
    content = {"method": asdict(run.method) | {"description": None}, "task": task, "seed": run.seed}
    blob = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_a_store_keyed_without_the_suite_resumes_without_redoing_finished_runs(
    tmp_path, monkeypatch
):
    store, trained = tmp_path / "store.db", tmp_path / "trained.txt"
    fake_training(monkeypatch, trained)
    finished, unfinished = plan("smoke", ["ppo"], 1)
    # The store as an older explora left it: the same table, keys without the suite, one run
    # done (trained elsewhere), the other left running by a killed sweep.
    db = Store(store)
    db.add([finished, unfinished], tmp_path / "old")
    db.close()
    with sqlite3.connect(store) as raw:
        for run, status in ((finished, "done"), (unfinished, "running")):
            raw.execute(
                "UPDATE runs SET key = ?, status = ?, score = ? WHERE key = ?",
                (key_before_the_suite_was_in_it(run), status, 0.25, run.key),
            )
    raw.close()
    rows = sweep("smoke", store, methods=["ppo"], seeds=1, progress=False)
    assert trained_dirs(trained) == [str(tmp_path / "runs" / unfinished.relative_dir)]
    assert [(r["key"], r["status"]) for r in rows] == [
        (finished.key, "done"),
        (unfinished.key, "done"),
    ]
    assert finished.key != key_before_the_suite_was_in_it(finished)
    assert rows[0]["score"] == 0.25
    assert rows[0]["run_dir"] == str(tmp_path / "old" / finished.relative_dir)
    assert len(Store(store).rows()) == 2
    assert sweep("smoke", store, methods=["ppo"], seeds=1, progress=False) == rows
    # Another suite with the same method, task and seed (the old key) gets its own run.
    smoke = SUITES["smoke"]
    other = Suite("other", "test", tasks=smoke.tasks[:1], methods=("ppo",), seeds=1,
                  algo_args=smoke.algo_args)  # fmt: skip
    assert key_before_the_suite_was_in_it(plan(other)[0]) == key_before_the_suite_was_in_it(
        finished
    )
    assert [r["suite"] for r in sweep(other, store, progress=False)] == ["other"]
    assert len(trained_dirs(trained)) == 2
    assert len(Store(store).rows()) == 3


def test_second_sweep_on_the_same_store_refuses(tmp_path):
    store = tmp_path / "store.db"
    with _exclusive(store), pytest.raises(SweepLocked, match="another sweep is using"):
        sweep("smoke", store, progress=False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "quik"], "unknown suite 'quik' (did you mean 'quick'?); choose one of"),
        (["--suite", "smoke", "--methods", "ppo+rdn"], "unknown method 'ppo+rdn'"),
        (["--suite", "smoke", "--backend", "slurm"], "unknown backend 'slurm'"),
        (["--suite", "smoke", "--methods", "ppo+rnd", "--seeds", "0"], "seeds must be >= 1"),
    ],
)
def test_bad_sweep_input_fails_before_anything_runs(tmp_path, capsys, args, message):
    store = tmp_path / "store.db"
    assert main(["bench", *args, "--store", str(store), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not store.exists()


def test_impossible_method_task_combination_fails_before_anything_runs(tmp_path, capsys):
    from explora.bench import suites

    task = suites.Task("CartPole-v1", 10_000, score_low=0, score_high=500)
    suite = suites.Suite("float-obs", "test", tasks=(task,), methods=("ppo+count",))
    suites.SUITES["float-obs"] = suite
    try:
        store = tmp_path / "store.db"
        assert main(["bench", "--suite", "float-obs", "--store", str(store)]) == 2
        err = capsys.readouterr().err
        assert "method ppo+count cannot run CartPole-v1" in err and "simhash" in err
        assert not store.exists()
    finally:
        del suites.SUITES["float-obs"]


def test_ray_backend_runs_the_same_sweep(tmp_path):
    ray = pytest.importorskip("ray")
    try:
        rows = sweep("smoke", tmp_path / "store.db", methods=["ppo"], backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert [r["status"] for r in rows] == ["done"] * 4
    assert all(Path(r["run_dir"], "summary.json").exists() for r in rows)


def test_deepsea_sweep_reports_the_solving_episode_per_size(tmp_path, capsys):
    store = tmp_path / "store.db"
    args = ["deepsea", "--sizes", "6", "8", "--episodes", "300", "--store", str(store)]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| 6 | " in out and "| 8 | " in out
    assert "largest N solved within 300 episodes: 8; every N up to 8" in out
    rows = Store(store).rows()
    assert [r["status"] for r in rows] == ["done", "done"]
    for row in rows:  # each run stopped at its solving episode, well inside the budget
        n = int(row["task"].split("-")[1])
        assert row["frames"] < 300 * n
    assert (tmp_path / "deepsea-bootdqn.md").exists()
    assert (tmp_path / "deepsea-bootdqn.png").stat().st_size > 0
    assert "run time of the sizes finished so far" in out


@pytest.mark.parametrize("name", ["quick", "catalogue", "generative", "minigrid-hard"])
def test_every_run_of_a_suite_passes_the_preflight(name):
    """Each method of the suite sets up on each of its tasks (env ids exist, the bonus takes the
    task's spaces), so a sweep of hours does not fail on its last task."""
    from explora.bench.suites import plan
    from explora.bench.sweep import preflight

    runs = plan(name)
    preflight(runs)
    if name == "catalogue":  # every bonus of the registry, and plain PPO
        from explora.bonuses import BONUSES

        assert {r.method.bonus for r in runs} == {None, *BONUSES}


def test_suite_table_prints_one_row_per_method_from_the_store(finished_sweep):
    store, _ = finished_sweep
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "suite_table.py"
    out = subprocess.run([sys.executable, str(script), str(store)], check=True,
                         capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    header, _, *rows = out
    tasks = [t.env_id for t in SUITES["smoke"].tasks]
    assert header.startswith(f"| method | {tasks[0]} success | {tasks[0]} frames to 0.9 (seeds) |")
    assert [r.split(" | ")[0] for r in rows] == ["| ppo", "| ppo+count"]
    assert rows[0].endswith("| 1.00 |")  # plain PPO against itself
    db = sqlite3.connect(store)
    for row in rows:
        method = row.split(" | ")[0].removeprefix("| ")
        cells = row.split(" | ")[1:]
        for i, task in enumerate(tasks):
            success = [json.loads(s)["success_rate"] or 0.0 for (s,) in db.execute(
                "select summary from runs where method=? and task=?", (method, task))]  # fmt: skip
            assert cells[2 * i] == f"{sum(success) / len(success):.2f}"
