"""A run killed with SIGKILL at a random moment, then resumed, ends exactly where the same run
left alone ends: on envs whose state explora owns (DeepSea), bit for bit -- parameters,
optimiser, normalisers, bonus, replay, random states, metric rows and summary."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

CASES = {
    "ppo+rnd": ["--env", "DeepSea-8", "--bonus", "rnd", "--frames", "60000",
                "--algo-args", "checkpoint_every=2"],
    "ppo+gru": ["--env", "DeepSea-8", "--bonus", "count", "--frames", "40000",
                "--algo-args", "checkpoint_every=2", "recurrent_size=16"],
    "bootdqn": ["--env", "DeepSea-8", "--algo", "bootdqn", "--frames", "1600",
                "--algo-args", "log_every=40", "checkpoint_every=2"],
}  # fmt: skip
TIMING = {"wall_time_s", "fps", "env_fps", "finished_at", "run_dir", "resumed_from_frames"}
TIMING_COLUMNS = {"charts/SPS", "time/rollout_s", "time/update_s"}


def _command(args: list[str], out: Path, *extra: str) -> list[str]:
    base = [sys.executable, "-m", "explora.cli", "train", "--seed", "3", "--no-progress"]
    return [*base, *args, "--out", str(out), *extra]


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    """Recursive exact equality of checkpoint contents (tensors, arrays, containers)."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys differ: {set(a) ^ set(b)}"
        for key in a:
            if key != "wall_time_s":
                _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where}: tensors differ"
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def _metric_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return [
            {k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)
        ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_at_a_random_moment_resumes_bit_for_bit(tmp_path, case):
    args = CASES[case]
    alone, killed = tmp_path / "alone", tmp_path / "killed"
    subprocess.run(_command(args, alone), check=True, capture_output=True, timeout=600)

    delay = random.Random().uniform(0.0, 3.0)  # a different moment on every test run
    proc = subprocess.Popen(
        _command(args, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be killed ({delay:.2f} s after its first "
                    "checkpoint): give it a larger budget")  # fmt: skip
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()
    subprocess.run(_command(args, killed, "--resume"), check=True, capture_output=True,
                   timeout=600)  # fmt: skip

    why = f"{case} killed {delay:.2f} s after its first checkpoint"
    a = torch.load(alone / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(checkpoint, weights_only=False)
    _assert_same(a, b, why)
    sa = json.loads((alone / "summary.json").read_text())
    sb = json.loads((killed / "summary.json").read_text())
    assert {k: v for k, v in sa.items() if k not in TIMING} == {
        k: v for k, v in sb.items() if k not in TIMING
    }, why
    # the resume is on record, at the frame count of the checkpoint it continued from
    assert sa["resumed_from_frames"] == [] and len(sb["resumed_from_frames"]) == 1, why
    assert 0 < sb["resumed_from_frames"][0] < sb["frames"], why
    rows_a, rows_b = _metric_rows(alone), _metric_rows(killed)
    assert [r["frames"] for r in rows_a] == [r["frames"] for r in rows_b], why  # none lost or twice
    assert rows_a == rows_b, why
    assert (alone / "episodes.csv").read_text() == (killed / "episodes.csv").read_text(), why
    assert _tensorboard_steps(killed) == [int(r["frames"]) for r in rows_b], why


def _tensorboard_steps(run: Path) -> list[int]:
    """The steps of one scalar as TensorBoard shows it: the resumed process purges what the
    killed one logged after the checkpoint, so no step appears twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    return [e.step for e in events.Scalars("charts/SPS")]
