"""REINFORCE must learn CartPole-v1 with a learned baseline, and the baseline must cut the
variance of its policy gradient. Fixed seeds; four runs of 160k frames, about 40 s on 2 cores.

Measured with these settings (ReinforceConfig defaults: 8 envs, 16 episodes per update):
final mean return with the value baseline 481-498 on seeds 0-5 (a random policy scores ~22,
the maximum is 500); without a baseline 425 and 285 on seeds 0 and 1. Mean per-episode
gradient variance over a run: value 5.4e5 on both seeds, none 4.7e6 and 3.8e6; within the
value runs, the same batches without the baseline 1.0e7 and 7.5e6.
"""

from functools import cache

import numpy as np
import pytest

from explora.agents.common import NullRun
from explora.agents.reinforce import ReinforceConfig, train_reinforce
from explora.envs import make

pytestmark = pytest.mark.learning

SEEDS, FRAMES = (0, 1), 160_000


class MetricsRun(NullRun):
    def __init__(self):
        self.rows = []

    def log(self, frames, metrics):
        self.rows.append(metrics)

    def progress(self, frames, metrics):
        pass

    def save_checkpoint(self, state):
        pass

    def load_checkpoint(self):
        return None


@cache
def _train(baseline: str, seed: int) -> tuple[float, float, float]:
    """``(final return, mean grad variance, mean grad variance of the same batches without
    a baseline)``, means over the run's updates."""
    cfg = ReinforceConfig(total_frames=FRAMES, baseline=baseline, seed=seed)
    run = MetricsRun()
    result = train_reinforce(make("CartPole-v1", cfg.num_envs, seed=seed), cfg, run=run)
    variance = np.mean([row["charts/grad_variance"] for row in run.rows])
    unbaselined = np.mean([row["charts/grad_variance_no_baseline"] for row in run.rows])
    return result["final_return"], float(variance), float(unbaselined)


@pytest.mark.parametrize("seed", SEEDS)
def test_reinforce_with_a_value_baseline_solves_cartpole(seed):
    final_return, _, _ = _train("value", seed)
    assert final_return >= 450, final_return


@pytest.mark.parametrize("seed", SEEDS)
def test_value_baseline_has_lower_gradient_variance_than_none_on_the_same_budget(seed):
    _, with_value, same_batches_without = _train("value", seed)
    _, without, _ = _train("none", seed)
    # Two runs on the same seed and budget (measured ratio 7-9x) ...
    assert with_value * 3 < without, (with_value, without)
    # ... and, paired, the very same batches with and without the baseline (measured 14-19x).
    assert with_value * 5 < same_batches_without, (with_value, same_batches_without)
