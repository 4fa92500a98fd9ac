"""The memory-based bonuses must make PPO visit more grid cells than no bonus in the same frames.

MiniGrid-Empty-16x16 has a fixed layout (14 x 14 = 196 floor cells, start in a corner), so the
number of cells visited over a run measures exploration (on procedurally generated grids such
as DoorKey every cell is some layout's first room, and the count saturates for every agent).
16k frames (EnvPool, 64 envs x 32 steps: ``SHORT`` below) is about when a policy without a
bonus has covered three quarters of the room.

Measured with these settings (seeds 0, 1, 2; cells visited): no bonus 142 / 165 / 135, NGU
184 / 188 / 190, EC 143 / 154 / 137. NGU's warm-up is cut to 16 steps per env (its default 128,
RND's, would spend half the budget on a random policy).

EC does not beat no bonus here, and the test says so (xfail, strict): on MiniGrid's 7x7
egocentric views an empty room's interior looks the same everywhere, pairs of identical views
are labelled both reachable and unreachable, and the reachability network, which stays at
60-73% accuracy on this data (also on DoorKey-8x8 with a random policy, after 200 trainings, and
with 4x wider networks), rates the all-floor view as unreachable from itself: the agent camps in
the middle of the room (visitation map of a 24k-frame pure-curiosity run, 146 cells against 196
without a bonus). With 16 envs and a 1024-step history: 152 / 130 / 128 against 107 / 194 / 156.
"""

from __future__ import annotations

import pytest

import explora
from explora.bonuses import EC, NGU
from explora.presets import PPO_MINIGRID_BEFORE_2026_12_01

pytestmark = pytest.mark.learning

ENV, FRAMES = "MiniGrid-Empty-16x16-v0", 16_384
SHORT = PPO_MINIGRID_BEFORE_2026_12_01  # what these counts were measured with (presets.py)


def _cells(tmp_path, bonus, seed: int) -> int:
    summary = explora.train(
        ENV,
        bonus=bonus,
        frames=FRAMES,
        seed=seed,
        out=tmp_path / f"s{seed}",
        progress=False,
        algo_args=SHORT,
    )
    return int(summary["unique_states"])


@pytest.mark.parametrize("seed", [0, 2])
def test_ngu_visits_more_cells_than_no_bonus(tmp_path, seed):
    plain = _cells(tmp_path / "plain", None, seed)
    ngu = _cells(tmp_path / "ngu", NGU(warmup_steps=16), seed)
    assert ngu >= plain + 20, (ngu, plain)


@pytest.mark.xfail(
    strict=True,
    reason="EC's reachability network cannot tell aliased egocentric views apart (module doc)",
)
def test_ec_visits_more_cells_than_no_bonus(tmp_path):
    plain = _cells(tmp_path / "plain", None, 0)
    ec = _cells(tmp_path / "ec", EC(), 0)
    assert ec >= plain + 20, (ec, plain)
