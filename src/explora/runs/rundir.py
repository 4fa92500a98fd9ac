"""A run is a directory: config, metrics table, TensorBoard events, checkpoints, summary, plot.

Layout::

    RUN/config.json          what was asked for, plus the git revision of the code
    RUN/metrics.csv          one row per update (namespaced columns: charts/*, losses/*, ...)
    RUN/tb/                  TensorBoard events of the same scalars
    RUN/checkpoints/last.pt  the latest good checkpoint (written atomically)
    RUN/summary.json         the run's figures (frames, fps, env_fps, final_return, ...)
    RUN/learning_curve.png   episodic return and success rate against frames
    RUN/visitation.npy       agent-position counts, for grid worlds
    RUN/bonus_map.npy        mean raw intrinsic reward per grid cell (runs with a bonus)
    RUN/episodes.csv         every finished episode: frames at its end, return, length, success
    RUN/rooms.png            rooms visited so far against frames, and rooms_map.png the steps
                             spent in each room (Montezuma's Revenge: summary["rooms"])
    RUN/code_map.*, codebook_usage.png, reconstructions.*   what a bonus's generative model
                             learned (``explora.runs.pictures``)
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.json", "metrics.csv", "summary.json", "last.pt"
EPISODES = "episodes.csv"
RESUMES = "resumes.csv"
RUN_STAMP = "run_config"
"""Checkpoint key holding the run's record (``_comparable``), so that a checkpoint copied into
another run's directory is recognised as foreign before any agent reads it."""


class RunExistsError(FileExistsError):
    """``--out`` points at an existing run and neither resume nor overwrite was asked."""


class OutDirError(ValueError):
    """``--out`` cannot hold a run: under a regular file, or not writable."""


class ResumeError(ValueError):
    """``--resume`` cannot continue this run: its checkpoint or config is damaged, foreign,
    or from other settings. Nothing of the run has been changed when this is raised."""


def git_revision() -> str | None:
    """The commit of the explora checkout this code runs from, if it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def check_writable(path: str | os.PathLike[str], flag: str = "--out", file: bool = False) -> None:
    """Refuse a path that could not be created or written: its nearest existing ancestor must
    be a directory we may write in. Checked up front, so a run (or report) that could never
    write its files fails before anything is built, let alone written. With ``file=True`` the
    path is a file to (over)write: an existing file is fine, a directory is not.

    Example:
        >>> check_writable("/etc/hostname/run")
        Traceback (most recent call last):
        ...
        explora.runs.rundir.OutDirError: --out /etc/hostname/run: /etc/hostname is a file, ...
    """
    path = Path(path)
    probe = path.absolute()
    if file:
        if probe.is_dir():
            raise OutDirError(f"{flag} {path}: is a directory, not a file")
        if probe.exists() and not os.access(probe, os.W_OK):
            raise OutDirError(f"{flag} {path}: cannot write it (permission denied)")
        probe = probe.parent
    try:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise OutDirError(f"{flag} {path}: {probe} is a file, not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise OutDirError(f"{flag} {path}: cannot write in {probe} (permission denied)")
    except OutDirError:
        raise
    except OSError as err:  # e.g. a parent we may not even look into
        raise OutDirError(f"{flag} {path}: {err.strerror or err}") from err


def check_out_dir(path: str | os.PathLike[str], overwrite: bool, resume: bool) -> None:
    """Refuse an existing non-empty run directory unless asked to resume or overwrite, and a
    path that cannot be written (``check_writable``)."""
    if overwrite and resume:
        raise ValueError("choose one of --resume and --overwrite, not both")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunExistsError(f"--out {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise RunExistsError(
            f"{path} already holds a run; pass --resume to continue it from its last "
            "checkpoint or --overwrite to replace it"
        )
    check_writable(path)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable: without it a crash may forget the new entry."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Any) -> None:
    """Write ``path`` through a temporary file beside it: ``write(file)`` fills it, it is
    flushed and fsynced, renamed over ``path`` and the directory fsynced. A kill at any moment
    leaves either the old file or the new one, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written file helps no one; the old one stays
        raise
    _fsync_dir(path.parent)


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings in which ``new`` differs from the saved ``old`` (nested dicts compared key
    by key, named ``algo_config.gamma``). A setting the saved record does not have at all is a
    field added to explora after the run started; it is not a difference, so that an upgrade
    does not strand runs in progress (the record's git revision says which code wrote it)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


REQUIRED_CHECKPOINT_KEYS = ("frames", "torch_rng", "config")
"""What every agent's checkpoint holds (``explora.agents.common.progress_state``)."""


def read_checkpoint(file: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Load ``file`` and check it belongs to the run described by ``config`` (the run
    directory's record): readable by ``torch.load``, holding the keys every agent writes, and
    written by a run of the same env, algo, bonus, seed and settings. Raises ``ResumeError``
    naming the file and what is wrong, never an unpickling traceback."""
    fix = "pass --overwrite to start the run again, or choose a new --out"
    try:
        # on the CPU whatever device wrote it (PPOConfig.device): load_state_dict moves it
        state = torch.load(file, weights_only=False, map_location="cpu")
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means a damaged file
        raise ResumeError(
            f"cannot resume from {file}: it is not a readable checkpoint ({_first_line(err)}); "
            f"{fix}"
        ) from err
    missing = [k for k in REQUIRED_CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ResumeError(
            f"cannot resume from {file}: it is not an explora checkpoint (no "
            f"{', '.join(missing)}); {fix}"
        )
    stamp = state.get(RUN_STAMP)
    if isinstance(stamp, dict):
        diff = _differences(_jsonable(stamp), _comparable(config))
        what = "it was written by a different run"
    else:  # written before checkpoints carried the run's record: compare the agent's settings
        saved = _comparable({"algo_config": state["config"]}).get("algo_config")
        diff = _differences(
            saved if isinstance(saved, dict) else {},
            _comparable(config).get("algo_config") or {},
        )
        what = "it was written with other agent settings (another algo or hyper-parameters)"
    if diff:
        shown = ", ".join(diff[:8]) + (f" and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise ResumeError(f"cannot resume from {file}: {what}; differs in {shown}; {fix}")
    return state


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """What must match for a run to resume: everything but the budget and the code revision."""
    out = _jsonable({k: v for k, v in config.items() if k not in ("frames", "git_revision")})
    if isinstance(out.get("algo_config"), dict):
        out["algo_config"] = {k: v for k, v in out["algo_config"].items() if k != "total_frames"}
    return out


class RunDir:
    """Writes one run's files. Pass it to an agent's ``train_*`` function as ``run``.

    Args:
        path: the run directory.
        config: everything needed to reproduce the run (saved as ``config.json``). On resume it
            must equal the saved one, except for ``frames`` (a run may be extended).
        overwrite: delete an existing run at ``path`` first.
        resume: continue from ``path``'s last checkpoint.
        progress: show a progress bar on the terminal.
        total_frames: the progress bar's end.
        checkpoint_minutes: the longest wall time between checkpoints (``checkpoint_due``),
            whatever the agent's own cadence.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: dict[str, Any],
        *,
        overwrite: bool = False,
        resume: bool = False,
        progress: bool = True,
        total_frames: int | None = None,
        checkpoint_minutes: float = 5.0,
    ) -> None:
        check_out_dir(path, overwrite, resume)
        self.path = Path(path)
        self.resume = resume
        config = {**config, "git_revision": git_revision()}
        self._stamp = _comparable(config)
        # Every check (config, checkpoint) comes before the first write, so a refused resume
        # leaves the run exactly as it was.
        self._resume_state = self._check_resumable(config) if resume else None
        try:
            if overwrite and self.path.exists():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "checkpoints").mkdir(exist_ok=True)
            text = json.dumps(_jsonable(config), indent=2, sort_keys=True)
            write_atomic(self.path / CONFIG, lambda f: f.write(text.encode()))
        except OSError as err:
            raise OutDirError(
                f"cannot write the run directory {self.path}: {err.strerror or err}"
            ) from err
        self._csv_file: Any = None
        self._csv: csv.DictWriter[str] | None = None
        self._columns: list[str] | None = None
        self._tb: Any = None
        self._progress: Any = None
        self._task: Any = None
        self._show_progress = progress
        self._total = total_frames
        self._checkpoint_seconds = 60.0 * checkpoint_minutes
        self._purge_step: int | None = None
        self._last_checkpoint = time.monotonic()
        self._tv_fraction: float | None = None  # charts/tv_fraction_total last logged

    def _check_resumable(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The checkpoint to resume from (None: no checkpoint yet, start afresh), after
        checking that the saved config and the checkpoint belong to this run."""
        saved = self.path / CONFIG
        if saved.exists():
            try:
                old = json.loads(saved.read_text())
            except (OSError, ValueError) as err:
                raise ResumeError(
                    f"cannot resume {self.path}: {saved} is unreadable ({_first_line(err)}); "
                    "pass --overwrite to start the run again, or choose a new --out"
                ) from err
            diff = _differences(
                _comparable(old) if isinstance(old, dict) else {}, _comparable(config)
            )
            if diff:
                raise ResumeError(
                    f"cannot resume {self.path}: the config differs in {', '.join(diff)}; "
                    "use the same settings or a new --out"
                )
        file = self.path / "checkpoints" / CHECKPOINT
        return read_checkpoint(file, config) if file.exists() else None

    # -- metrics -------------------------------------------------------------------------
    def log(self, frames: int, metrics: dict[str, float]) -> None:
        """Append one row to ``metrics.csv`` and write the scalars to TensorBoard."""
        row = {"frames": frames, **metrics}
        if "charts/tv_fraction_total" in metrics:  # a NoisyTV env: the summary's tv_fraction
            self._tv_fraction = metrics["charts/tv_fraction_total"]
        if self._csv is None:
            file = self.path / METRICS
            existing = file.exists() and file.stat().st_size > 0 and self.resume
            if existing:
                with file.open() as f:
                    self._columns = next(csv.reader(f))
            else:
                self._columns = list(row)
            self._csv_file = file.open("a" if existing else "w", newline="")
            self._csv = csv.DictWriter(self._csv_file, self._columns, extrasaction="ignore")
            if not existing:
                self._csv.writeheader()
        self._csv.writerow(row)
        self._csv_file.flush()
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            # On resume, TensorBoard discards the events an earlier process logged after the
            # checkpoint (they are logged again), as _drop_rows_after does for metrics.csv.
            self._tb = SummaryWriter(str(self.path / "tb"), purge_step=self._purge_step)
        for key, value in metrics.items():
            if value is not None and math.isfinite(value):
                self._tb.add_scalar(key, value, frames)

    def progress(self, frames: int, metrics: dict[str, float]) -> None:
        if not self._show_progress:
            return
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("frames"),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.path.name, total=self._total, completed=frames, stats=""
            )
        parts = [f"{metrics.get('charts/SPS', float('nan')):,.0f} fps"]
        ret = metrics.get("charts/episodic_return", float("nan"))
        if math.isfinite(ret):
            parts.append(f"return {ret:.3f}")
        success = metrics.get("charts/success_rate", float("nan"))
        if math.isfinite(success):
            parts.append(f"success {success:.2f}")
        self._progress.update(self._task, completed=frames, stats="  ".join(parts))

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write atomically (``write_atomic``: temporary file, fsync, rename, fsync of the
        directory), so a kill or a power cut mid-write leaves the previous checkpoint intact.
        The run's record goes in too, so the checkpoint can be recognised as this run's."""
        stamped = {**state, RUN_STAMP: self._stamp}
        write_atomic(self.path / "checkpoints" / CHECKPOINT, lambda f: torch.save(stamped, f))
        self._last_checkpoint = time.monotonic()

    def checkpoint_due(self) -> bool:
        """True once the last checkpoint (or the start) is ``checkpoint_minutes`` old. Agents
        ask at each metric row, so a run whose own checkpoint cadence is slow in wall time
        (bootdqn on DeepSea-40: 100k frames, about 12 minutes) loses at most that much work."""
        return time.monotonic() - self._last_checkpoint >= self._checkpoint_seconds

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint to resume from (checked when the run directory was opened), or None
        when not resuming or there is none yet; forgets metric rows logged after it."""
        if not self.resume:
            return None
        state, self._resume_state = self._resume_state, None
        file = self.path / "checkpoints" / CHECKPOINT
        if state is None and file.exists():  # asked again after the first one was handed out
            state = read_checkpoint(file, {**self._stamp})
        if state is None:
            return None
        self._drop_rows_after(int(state["frames"]))
        self._purge_step = int(state["frames"]) + 1
        self._note_resume(int(state["frames"]))
        return state

    def _note_resume(self, frames: int) -> None:
        """Append to ``resumes.csv`` the frame count this process resumes from and when."""
        file = self.path / RESUMES
        new = not file.exists()
        with file.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["frames", "resumed_at", "git_revision"])
            writer.writerow([frames, time.strftime("%Y-%m-%dT%H:%M:%S"), git_revision() or ""])

    def resumed_from(self) -> list[int]:
        """The frame counts the run resumed from, in order (``resumes.csv``)."""
        file = self.path / RESUMES
        if not file.exists():
            return []
        with file.open(newline="") as f:
            return [int(row["frames"]) for row in csv.DictReader(f)]

    def _drop_rows_after(self, frames: int) -> None:
        """Forget metric rows logged after the checkpoint: the resumed run logs them again."""
        file = self.path / METRICS
        if not file.exists():
            return
        with file.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= frames]
        with file.open("w", newline="") as f:
            csv.writer(f).writerows(kept)

    # -- the end -------------------------------------------------------------------------
    def finish(
        self,
        summary: dict[str, Any],
        visits: np.ndarray | None = None,
        episodes: list[tuple[int, float, int, float]] | None = None,
        bonus_map: np.ndarray | None = None,
        pictures: Any = None,
    ) -> Path:
        """Write ``summary.json``, the learning curve, visitation counts, the mean raw bonus
        per grid cell (``bonus_map.npy``, NaN where none was paid), the episode list and the
        bonus's ``pictures`` (an ``explora.runs.pictures.Pictures``)."""
        self.close()
        if visits is not None:
            np.save(self.path / "visitation.npy", visits)
        if bonus_map is not None:
            np.save(self.path / "bonus_map.npy", bonus_map)
            plot_grid_map(
                bonus_map,
                self.path / "bonus_map.png",
                title=f"mean raw bonus per cell: {summary.get('bonus')} on {summary.get('env')}",
                label="mean raw bonus",
            )
        if episodes is not None:
            with (self.path / EPISODES).open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["frames", "return", "length", "success"])
                writer.writerows(episodes)
        if pictures is not None:
            pictures.write(self.path, title=f"on {summary.get('env')}")
        if self._tv_fraction is not None:
            summary["tv_fraction"] = self._tv_fraction  # in place: the caller returns it too
        summary["resumed_from_frames"] = self.resumed_from()  # in place too
        (self.path / SUMMARY).write_text(json.dumps(_jsonable(summary), indent=2))
        plot_learning_curve(
            self.path / METRICS,
            self.path / "learning_curve.png",
            title=str(summary.get("env", self.path.name)),
        )
        if summary.get("rooms") is not None:
            plot_rooms(self.path / METRICS, visits, self.path, title=str(summary.get("env")))
        return self.path / SUMMARY

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file, self._csv = None, None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``metrics.csv`` as columns of floats (empty cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {
        key: np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])
        for key in rows[0]
    }


def frames_to_success(
    episodes: list[tuple[int, float, int, float]], threshold: float = 0.9, window: int = 100
) -> int | None:
    """First frame at which the last ``window`` finished episodes succeeded at >= ``threshold``.

    ``episodes`` rows are ``(frames at the end, return, length, success)`` as in episodes.csv.
    """
    success = np.array([row[3] for row in episodes], dtype=np.float64)
    if len(success) < window or np.isnan(success).all():
        return None
    rolling = np.convolve(success, np.ones(window) / window, mode="valid")
    hits = np.flatnonzero(rolling >= threshold)
    return int(episodes[hits[0] + window - 1][0]) if len(hits) else None


def read_episodes(path: str | os.PathLike[str]) -> list[tuple[int, float, int, float]]:
    """``episodes.csv`` (a run directory or the file) as ``(frames at the end, return, length,
    success)`` rows; success is NaN where the env defines none. Empty if there is no file."""
    path = Path(path)
    if path.is_dir():
        path = path / EPISODES
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [
            (
                int(r["frames"]),
                float(r["return"]),
                int(r["length"]),
                float(r["success"]) if r["success"] not in ("", None) else math.nan,
            )
            for r in csv.DictReader(f)
        ]


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def plot_grid_map(values: np.ndarray, out_png: Path, title: str = "", label: str = "") -> None:
    """A heatmap of one value per grid cell (rows down, columns across); NaN cells (never
    reached) light grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    cmap = plt.get_cmap("magma").with_extremes(bad="#f0f0f0")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label(label)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_learning_curve(
    metrics_csv: Path, out_png: Path, title: str = "", window: int = 100
) -> None:
    """Episodic return and success rate (means over the last ``window`` finished episodes)
    against frames; from ``episodes.csv`` beside ``metrics_csv``, else from the metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    rows = read_episodes(metrics_csv.parent / EPISODES)
    if rows:
        frames = np.array([r[0] for r in rows], dtype=np.float64)
        returns = np.array([r[1] for r in rows])
        success = np.array([r[3] for r in rows])
        ax.plot(frames, rolling_mean(returns, window), label="episodic return", color="tab:blue")
        if np.isfinite(success).all():
            ax.plot(frames, rolling_mean(success, window), label="success rate", color="tab:green")
        ax.legend(loc="best", title=f"mean of last {window} episodes")
    elif metrics_csv.exists():
        cols = read_metrics(metrics_csv)
        if cols:
            ret = cols.get("charts/episodic_return")
            if ret is not None:
                ok = np.isfinite(ret)
                ax.plot(cols["frames"][ok], ret[ok], label="episodic return", color="tab:blue")
                ax.legend(loc="best")
    ax.set_xlabel("frames")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_rooms(
    metrics_csv: Path, visits: np.ndarray | None, out_dir: Path, title: str = ""
) -> None:
    """``rooms.png``: rooms visited so far (``charts/unique_states`` of an env that counts
    rooms) against frames; ``rooms_map.png``: steps spent in each room of ``visits`` (the
    env's map of rooms; never-visited rooms light grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = read_metrics(metrics_csv) if metrics_csv.exists() else {}
    rooms = cols.get("charts/unique_states")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rooms is not None:
        ok = np.isfinite(rooms)
        ax.step(cols["frames"][ok], rooms[ok], where="post", color="tab:purple")
    ax.set_xlabel("frames")
    ax.set_ylabel("rooms visited")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "rooms.png", dpi=100)
    plt.close(fig)
    if visits is not None:
        steps = np.where(visits > 0, visits, np.nan).astype(np.float64)
        plot_grid_map(
            steps, out_dir / "rooms_map.png", title=f"steps per room: {title}", label="steps"
        )
