"""Episode bookkeeping shared by the agents: returns, lengths, success, state visitation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explora.envs.base import EnvStep

DEEP_SEA_SOLVED_BELOW = 0.9
"""bsuite's ``find_solution`` threshold as installed (0.3.6); newer bsuite code defaults to 0.8
(METHODS.md). Agents take it as ``solved_threshold`` and summaries name the one they used."""


@dataclass
class EpisodeTracker:
    """Accumulates per-env extrinsic returns and records each finished episode.

    ``visits`` counts agent positions over the whole run when the env exposes ``agent_pos`` on a
    known grid (for ``unique_states`` and visitation heatmaps).
    """

    num_envs: int
    grid_shape: tuple[int, int] | None = None
    returns: np.ndarray = field(init=False)
    lengths: np.ndarray = field(init=False)
    finished: list[tuple[int, float, int, float]] = field(default_factory=list)
    visits: np.ndarray | None = field(init=False, default=None)
    bad_episodes: list[bool] = field(default_factory=list)
    """DeepSea's ``info["bad_episode"]`` of each finished episode, in order (bsuite's score)"""
    solved_threshold: float = DEEP_SEA_SOLVED_BELOW
    """DeepSea counts as solved once the average of bad episodes falls below this"""
    deep_sea_solved_at: int | None = None
    """first episode at which the average of bad episodes fell below ``solved_threshold``
    (bsuite's rule, as ``explora.envs.deepsea.bsuite_deep_sea_solved_at`` without its
    10,000-episode cap)"""
    bonus_sum: np.ndarray | None = field(init=False, default=None)
    """raw intrinsic reward summed per grid cell reached (``add_bonus``), for the bonus map"""
    bonus_count: np.ndarray | None = field(init=False, default=None)
    tv_counts: np.ndarray | None = field(init=False, default=None)
    """NoisyTV envs (``info["on_tv"]``): [steps on the TV, steps] over the run, and the same at
    the last ``drain_charts``, for ``charts/tv_fraction`` and the summary's ``tv_fraction``"""
    _bad_count: int = field(init=False, default=0)
    _cursor: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.returns = np.zeros(self.num_envs, dtype=np.float64)
        self.lengths = np.zeros(self.num_envs, dtype=np.int64)
        if self.grid_shape is not None:
            self.visits = np.zeros(self.grid_shape, dtype=np.int64)

    def add_bonus(self, positions: np.ndarray, values: np.ndarray) -> None:
        """Fold raw bonus ``values`` ``[...]`` into the cells ``positions`` ``[..., 2]`` (row,
        col) of the states they were paid for; cells outside the grid are skipped."""
        if self.visits is None:
            return
        if self.bonus_sum is None or self.bonus_count is None:
            self.bonus_sum = np.zeros(self.visits.shape, dtype=np.float64)
            self.bonus_count = np.zeros(self.visits.shape, dtype=np.int64)
        pos = positions.reshape(-1, 2)
        vals = values.reshape(-1).astype(np.float64)
        rows, cols = pos[:, 0], pos[:, 1]
        inside = (rows >= 0) & (rows < self.visits.shape[0]) & (cols >= 0)
        inside &= cols < self.visits.shape[1]
        np.add.at(self.bonus_sum, (rows[inside], cols[inside]), vals[inside])
        np.add.at(self.bonus_count, (rows[inside], cols[inside]), 1)

    @property
    def bonus_map(self) -> np.ndarray | None:
        """Mean raw bonus per grid cell (NaN where none was paid), or None without one."""
        if self.bonus_sum is None or self.bonus_count is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.bonus_count > 0, self.bonus_sum / self.bonus_count, np.nan)

    def record_positions(self, info: dict[str, np.ndarray]) -> None:
        # map_cell: a coarse map's cell (Atari: the room), counted like a position but, unlike
        # agent_pos, no state key for the bonuses
        pos = info.get("agent_pos", info.get("map_cell"))
        if self.visits is None or pos is None:
            return
        rows, cols = pos[:, 0], pos[:, 1]
        inside = (rows >= 0) & (rows < self.visits.shape[0]) & (cols >= 0)
        inside &= cols < self.visits.shape[1]
        np.add.at(self.visits, (rows[inside], cols[inside]), 1)

    def step(self, step: EnvStep, frames: int) -> None:
        """Fold in one vector step; ``frames`` is the run's frame count after it."""
        self.returns += step.reward
        self.lengths += 1
        self.record_positions(step.info)
        if "on_tv" in step.info:
            if self.tv_counts is None:
                self.tv_counts = np.zeros(4, dtype=np.int64)
            self.tv_counts[:2] += (int(step.info["on_tv"].sum()), len(step.info["on_tv"]))
        ended = step.terminated | step.truncated
        if not ended.any():
            return
        success = step.info.get("success")
        if "bad_episode" in step.info:
            for bad in step.info["bad_episode"][ended].tolist():
                self.bad_episodes.append(bad)
                self._bad_count += bad
                rate = self._bad_count / len(self.bad_episodes)
                if self.deep_sea_solved_at is None and rate < self.solved_threshold:
                    self.deep_sea_solved_at = len(self.bad_episodes)
        for i in np.flatnonzero(ended):
            ok = float(success[i]) if success is not None else float("nan")
            self.finished.append((frames, float(self.returns[i]), int(self.lengths[i]), ok))
        self.returns[ended] = 0.0
        self.lengths[ended] = 0

    def drain(self) -> dict[str, float]:
        """Means over the episodes finished since the last call (NaN when none finished)."""
        recent = self.finished[self._cursor :]
        self._cursor = len(self.finished)
        if not recent:
            nan = float("nan")
            return {"episodic_return": nan, "episodic_length": nan, "success_rate": nan}
        arr = np.array([row[1:] for row in recent], dtype=np.float64)
        return {
            "episodic_return": float(arr[:, 0].mean()),
            "episodic_length": float(arr[:, 1].mean()),
            "success_rate": float(np.nanmean(arr[:, 2]))
            if not np.isnan(arr[:, 2]).all()
            else float("nan"),
        }

    def drain_charts(self) -> dict[str, float]:
        """``drain`` under the metric names every agent logs (``charts/...``); on a NoisyTV env
        also the fraction of steps on the TV since the last call (``charts/tv_fraction``) and
        over the run (``charts/tv_fraction_total``, the summary's ``tv_fraction``)."""
        charts = {f"charts/{key}": value for key, value in self.drain().items()}
        if self.tv_counts is not None:
            tv, steps, tv_before, steps_before = self.tv_counts.tolist()
            window = steps - steps_before
            charts["charts/tv_fraction"] = (tv - tv_before) / window if window else math.nan
            charts["charts/tv_fraction_total"] = tv / max(steps, 1)
            self.tv_counts[2:] = self.tv_counts[:2]
        return charts

    def window(self, from_frame: int) -> dict[str, Any]:
        """Mean return and success of episodes that ended at or after ``from_frame``."""
        rows = [row for row in self.finished if row[0] >= from_frame]
        if not rows:
            return {"final_return": None, "success_rate": None, "episodes": 0}
        arr = np.array([row[1:] for row in rows], dtype=np.float64)
        success = None if np.isnan(arr[:, 2]).all() else float(np.nanmean(arr[:, 2]))
        return {
            "final_return": float(arr[:, 0].mean()),
            "success_rate": success,
            "episodes": len(rows),
        }

    def result(
        self, frames: int, wall_time_s: float, has_success: bool, bonus: Any = None
    ) -> dict[str, Any]:
        """The figures every agent's ``train_*`` returns about its episodes: throughput, final
        return and success (episodes ending in the last 10% of frames), visitation."""
        window = self.window(from_frame=int(math.ceil(0.9 * frames)))
        unique = self.unique_states
        return {
            "frames": frames,
            "wall_time_s": wall_time_s,
            "fps": frames / max(wall_time_s, 1e-9),
            "final_return": window["final_return"],
            "success_rate": window["success_rate"] if has_success else None,
            "final_episodes": window["episodes"],
            "unique_states": unique if unique is not None else getattr(bonus, "num_unique", None),
            "visits": self.visits,
            "bonus_map": self.bonus_map,
            "episodes": self.finished,
            "bad_episodes": self.bad_episodes or None,
            "tv_fraction": None
            if self.tv_counts is None
            else float(self.tv_counts[0] / max(self.tv_counts[1], 1)),
        }

    @property
    def unique_states(self) -> int | None:
        return None if self.visits is None else int((self.visits > 0).sum())

    def start_new_episodes(self) -> None:
        """Forget the episodes in progress: the envs were reset without finishing them (a resume
        on a backend whose state a checkpoint cannot hold)."""
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "returns": self.returns.copy(),
            "lengths": self.lengths.copy(),
            "finished": list(self.finished),
            "cursor": self._cursor,
            "visits": None if self.visits is None else self.visits.copy(),
            "bonus_sum": None if self.bonus_sum is None else self.bonus_sum.copy(),
            "bonus_count": None if self.bonus_count is None else self.bonus_count.copy(),
            "bad_episodes": list(self.bad_episodes),
            "deep_sea_solved_at": self.deep_sea_solved_at,
            "tv_counts": None if self.tv_counts is None else self.tv_counts.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "returns" in state:  # checkpoints before 2026-11-30 do not hold them
            self.returns = np.array(state["returns"], dtype=np.float64)
            self.lengths = np.array(state["lengths"], dtype=np.int64)
        self.finished = list(state["finished"])
        self._cursor = int(state["cursor"])
        self.bad_episodes = list(state.get("bad_episodes", []))
        self._bad_count = int(sum(self.bad_episodes))
        self.deep_sea_solved_at = state.get("deep_sea_solved_at")
        if state["visits"] is not None:
            self.visits = np.asarray(state["visits"]).copy()
        if state.get("tv_counts") is not None:
            self.tv_counts = np.array(state["tv_counts"], dtype=np.int64)
        if state.get("bonus_sum") is not None:
            self.bonus_sum = np.asarray(state["bonus_sum"], dtype=np.float64).copy()
            self.bonus_count = np.asarray(state["bonus_count"], dtype=np.int64).copy()
