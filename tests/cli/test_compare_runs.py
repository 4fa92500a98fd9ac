"""benchmarks/compare_runs.py on two finished runs, one of them resumed: its table and picture."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import explora

ROOT = Path(__file__).resolve().parents[2]


def test_compare_runs_tables_and_draws_two_runs(tmp_path: Path) -> None:
    plain, counted = tmp_path / "plain", tmp_path / "count"
    explora.train("DeepSea-6", frames=1024, out=plain, progress=False)
    explora.train("DeepSea-6", bonus="count", frames=512, out=counted, progress=False)
    explora.train("DeepSea-6", bonus="count", frames=1024, out=counted, progress=False, resume=True)
    out = tmp_path / "cells.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_runs.py"), str(plain), str(counted),
         "--metric", "charts/unique_states", "--label", "cells", "--out", str(out),
         "--smooth", "3"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| run | frames |") and "| cells |" in lines[0]
    assert lines[2].startswith("| ppo s0 | 1,024 |") and lines[2].endswith("| none |")
    assert lines[3].startswith("| ppo+count s0 | 1,024 |") and lines[3].endswith("| 512 |")
    assert "| final success | frames to 90% success |" in lines[0]
    assert out.read_bytes().startswith(b"\x89PNG")
    named = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_runs.py"), str(plain), str(counted),
         "--names", "no bonus", "counts"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    assert named[2].startswith("| no bonus |") and named[3].startswith("| counts |")
    wrong = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_runs.py"), str(plain), str(counted),
         "--names", "one"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert wrong.returncode != 0 and "gives 1 names for 2 runs" in wrong.stderr
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_runs.py"), str(tmp_path / "nothing")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode != 0 and "is not a finished run" in bad.stderr
