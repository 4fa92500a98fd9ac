"""Stable-Baselines3's PPO with ``BonusCallback(Count())`` solves DeepSea-10 where SB3's PPO alone
does not, on the same seeds and steps; and ``examples/sb3_curiosity.py`` runs.

Settings (``examples/sb3_curiosity.py``): 8 envs x 32 steps, batch 128, 10 epochs, lr 1e-3,
6144 steps (24 rollouts, ~600 episodes). Measured (success rate of the last 100 episodes;
successes in the run): count on seeds 0-3 at 6000 steps: 1.00 (413), 1.00 (401), 0.98 (276),
0.99 (218); plain PPO on the same seeds: 0.00 (0) each. DeepSea charges for every "right", so
PPO without a bonus learns to go left before a random walk finds the treasure (p = 2^-10 per
episode). The test fails if the bonus does not reach the rollout (``int_coef=0`` is plain PPO).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

pytestmark = pytest.mark.learning

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sb3_curiosity.py"
STEPS = 6144
SEEDS = (0, 1)


def _example() -> object:
    spec = importlib.util.spec_from_file_location("sb3_curiosity", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(int_coef: float, seed: int, steps: int = STEPS) -> dict[str, float]:
    example = _example()
    argv = ["--total-timesteps", str(steps), "--seed", str(seed), "--int-coef", str(int_coef)]
    return example.main([*argv, "--bonus", "count"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", SEEDS)
def test_count_bonus_solves_deepsea_10_where_plain_sb3_ppo_does_not(seed: int) -> None:
    with_count = _run(1.0, seed)
    plain = _run(0.0, seed)
    assert with_count["success_last_100"] >= 0.9, with_count
    assert plain["success_last_100"] <= 0.1 and plain["successes"] <= 10, plain
    assert np.isclose(with_count["episodes"], plain["episodes"])  # the same steps


def test_example_runs_on_a_tiny_budget() -> None:
    result = _run(1.0, seed=3, steps=512)
    assert result["episodes"] == 8 * (512 // 8 // 10)  # whole 10-step episodes of 8 envs
