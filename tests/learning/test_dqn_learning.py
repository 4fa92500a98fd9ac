"""DQN-family runs that must learn: fixed seeds, asserted thresholds, each under a minute."""

import pytest

import explora

pytestmark = pytest.mark.learning


def _train(tmp_path, env, **kwargs):
    return explora.train(env, out=tmp_path / "run", progress=False, **kwargs)


def test_dqn_solves_cartpole(tmp_path):
    # Defaults (DQNConfig) solve it in 60k frames on seeds 0-2; random play scores ~22.
    summary = _train(tmp_path, "CartPole-v1", algo="dqn", frames=60_000, seed=0)
    assert summary["final_return"] >= 400, summary


# DeepSea-20: a dithering agent needs ~2^20 episodes per lucky visit to the treasure. With 4
# copies and 600 episodes (12k frames) bootstrapped DQN with priors was measured solving it at
# episode 508 (bsuite's rule: average bad episodes below 0.9), plain DQN never.
DEEPSEA = dict(frames=600 * 20, seed=0, algo_args={"num_envs": 4})


def test_bootstrapped_dqn_with_priors_solves_deepsea_20(tmp_path):
    summary = _train(tmp_path, "DeepSea-20", algo="bootdqn", **DEEPSEA)
    assert summary["solved_at_episode"] is not None, summary
    assert summary["success_rate"] >= 0.9, summary


def test_plain_dqn_with_epsilon_greedy_does_not_solve_deepsea_20(tmp_path):
    summary = _train(tmp_path, "DeepSea-20", algo="dqn", **DEEPSEA)
    assert summary["solved_at_episode"] is None, summary
    assert summary["success_rate"] < 0.1, summary
