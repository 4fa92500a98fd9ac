"""NovelD, RIDE, E3B and RE3 make PPO visit more of a grid than no bonus does, on the same frames.

MiniGrid-Empty-16x16 has one fixed layout (14 x 14 free cells, the agent starting in a corner
and the goal in the opposite one), so the cells a run visits measure its exploration, not the
variety of generated layouts. 30k frames (64 envs x 32 steps, ~15 updates: ``SHORT`` below) is
too little for plain PPO to stray far from its path to the goal: it visited 180 and 181 of the
196 cells on seeds 0 and 1, while each episodic bonus, with its paper defaults, visited 189 to
196 (measured: NovelD 196 / 196, RIDE 194 / 189, E3B 196 / 196), and RE3 (not episodic: k-NN
distances within each rollout) 196 / 196 (192 against 176 on seed 2). Each test would fail
with a bonus that paid nothing or paid revisits as much as new states: the agent then follows
its extrinsic return alone, as plain PPO does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import explora
from explora.bonuses import make_bonus
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


@pytest.fixture(scope="module")
def plain_cells(tmp_path_factory: pytest.TempPathFactory) -> int:
    cells = _cells(tmp_path_factory.mktemp("plain") / "run")
    assert cells <= ALL_CELLS - 10, cells  # room left to explore, or the comparison is void
    return cells


@pytest.mark.parametrize("name", ["noveld", "ride", "e3b", "re3"])
def test_bonus_visits_more_cells_than_plain_ppo(
    tmp_path: Path, plain_cells: int, name: str
) -> None:
    cells = _cells(tmp_path / "run", make_bonus(name))
    assert cells >= plain_cells + 5, (name, cells, plain_cells)
