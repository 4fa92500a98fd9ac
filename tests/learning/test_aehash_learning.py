"""AE-SimHash counts, paid on a view's first visit in an episode, make PPO visit more of a grid
than no bonus does, on the same frames.

MiniGrid-Empty-16x16 has one fixed layout (14 x 14 free cells, start and goal in opposite
corners), so the cells a run visits measure its exploration. In 30k frames (64 envs x
32 steps, ``SHORT`` below) plain PPO visited 180 of the 196 cells on seed 0 (181 on seed 1,
``test_episodic_learning.py``); ``FirstVisit(AEHash(...))`` visited 196 (measured). The
lifelong count alone visited 171 (the egocentric views of an empty room repeat from cell to
cell, and the agent was drawn to rare ones), so the test uses the first-visit form, as the
MiniGrid preset does for RND.

The autoencoder is small and quick here (32 bits, 64-wide layers, lr 3e-3, 500 Adam steps at
the end of a 32-step warm-up) to keep the test near 30 s. The test fails if the bonus paid
nothing (the agent then follows its extrinsic return, as plain PPO does) or if the learned hash
collapsed: the run must end with a saturated code and many distinct keys in the sketch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import explora
from explora.bonuses import FirstVisit
from explora.bonuses.aehash import AEHash
from explora.presets import PPO_MINIGRID_BEFORE_2026_12_01

pytestmark = pytest.mark.learning

ENV, FRAMES, SEED = "MiniGrid-Empty-16x16-v0", 30_000, 0
SHORT = PPO_MINIGRID_BEFORE_2026_12_01  # what these counts were measured with (presets.py)
ALL_CELLS = 14 * 14


def _cells(out: Path, bonus: object = None) -> int:
    summary = explora.train(
        ENV, bonus=bonus, frames=FRAMES, seed=SEED, out=out, progress=False, algo_args=SHORT
    )
    assert FRAMES - 2 * 2048 < summary["frames"] <= FRAMES  # whole 64 x 32 rollouts
    return int(summary["unique_states"])


def test_first_visit_aehash_visits_more_cells_than_plain_ppo(tmp_path: Path) -> None:
    plain = _cells(tmp_path / "plain")
    assert plain <= ALL_CELLS - 10, plain  # room left to explore, or the comparison is void
    aehash = AEHash(
        code_bits=32,
        hidden_size=64,
        learning_rate=3e-3,
        batch_size=128,
        warmup_steps=32,
        warmup_train_steps=500,
    )
    cells = _cells(tmp_path / "aehash", FirstVisit(aehash))
    assert cells >= plain + 8, (cells, plain)
    # the hash worked: a saturated code (measured 0.96) and ~100 keys (measured 113)
    assert aehash.sketch is not None
    keys = int((aehash.sketch.table > 0).sum(dim=1).max())
    assert keys >= 50 and aehash._last["bonus/code_saturation"] > 0.8, (keys, aehash._last)
