"""Defaults per environment family, applied under what the user sets explicitly.

A preset is where explora departs from an algo's or a bonus's paper defaults for a family of
environments; each entry says why. ``explora train`` and ``explora.train`` apply them; the
lower-level ``train_ppo`` and bonus constructors do not.
"""

from __future__ import annotations

from typing import Any


def _family(env_id: str) -> str:
    if env_id.startswith(("MiniGrid-", "BabyAI-")):
        return "minigrid"
    if env_id.startswith("DeepSea-"):
        return "deepsea"
    if env_id.startswith("MountainCar-"):
        return "mountaincar"
    return "other"


# (algo, family) -> (settings, why)
ALGO_PRESETS: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("ppo", "minigrid"): (
        {"num_envs": 64, "num_steps": 32, "minibatch_size": 512, "encoder": "grid-mlp"},
        "64 envs keep EnvPool's threads busy and amortise Python overhead per frame; short "
        "32-step rollouts update often (64 x 128 rollouts were measured to learn DoorKey-8x8 "
        "slower per frame); the grid MLP (128 wide) costs a third of rl-starter-files' CNN per "
        "sample and with RND (first_visit) solved DoorKey-8x8 seeds on which the CNN did not",
    ),
    ("ppo", "mountaincar"): (
        {
            "num_envs": 16,
            "num_steps": 32,
            "minibatch_size": 128,
            "ent_coef": 0.05,
            "int_scale_horizon": 2048,
            "obs_rescale": True,
        },
        "a sparse goal behind a 2-d float observation: the policy needs inputs rescaled to "
        "[-1, 1] (raw velocity +-0.07 is invisible to the MLP), and RND's error falls by three "
        "orders of magnitude within 100k frames, so the intrinsic scale must forget "
        "(DiscountedReturnStd; tests/learning/test_sparse_control.py)",
    ),
    ("ppo", "deepsea"): (
        {"num_envs": 16, "num_steps": 32, "minibatch_size": 128, "int_episodic": True},
        "episodes last N steps: short rollouts and small batches update often. The intrinsic "
        "return ends with the episode: every episode lasts N steps whatever the agent does, "
        "so an episodic return gives no reason to avoid the end (where a goal ends the "
        "episode it does), and the next episode's novelty, after a reset to the same cell, is "
        "not a consequence of this one's last action. Measured (seeds 0-9): RND on DeepSea-10 "
        "(24k frames) solved 10/10 episodic, 6/10 continuing into the next episode (PPO's "
        "default, RND's code); count on DeepSea-20 (80k) 5/10 and 2/10 (docs/trust.md)",
    ),
}

_SMALL_FORWARD_MODELS = (
    "small networks, as the learning tests use them: with the papers' sizes (288/256 ICM, "
    "128/256 with 4 residual blocks for dynamics and disagreement) PPO trained on DoorKey-8x8 "
    "at 0.21, 0.19 and 0.04 of plain PPO's frames/s, over the 2x budget; with these at 0.58, "
    "0.95 and 0.55 (100k-frame runs). lr 1e-3: with 1e-4 and 24 Adam steps per rollout ICM "
    "explored no more than no bonus (tests/learning/test_prediction_learning.py)"
)

# (bonus, family) -> (settings, why)
BONUS_PRESETS: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("rnd", "minigrid"): (
        {
            "learning_rate": 1e-3,
            "update_proportion": 1.0,
            "first_visit": True,
            "hidden_size": 128,
            "feature_size": 64,
        },
        "procedurally generated layouts: lifelong RND stays high on rare views and the agent "
        "camps on them (measured on DoorKey-8x8: no-op actions earned 2.4x the bonus of "
        "moving, and the agent stayed in the first room for 600k frames); paying first visits "
        "within an episode (NovelD's restriction) removes that. The predictor must keep up "
        "with a 1M-frame budget: lr 1e-3 on every sample instead of CleanRL's 1e-4 on 25% "
        "(with 25% and 128/64-wide nets, seed 1 of 5 never solved DoorKey-8x8). 128/64-wide "
        "nets instead of 256/128: as fast to solve on the seeds tried, 1.4x the frames/s",
    ),
    ("icm", "minigrid"): (
        {"feature_size": 64, "hidden_size": 128, "learning_rate": 1e-3},
        _SMALL_FORWARD_MODELS,
    ),
    **dict.fromkeys(
        [("dynamics", "minigrid"), ("disagreement", "minigrid")],
        (
            {"feature_size": 64, "hidden_size": 128, "learning_rate": 1e-3, "residual_blocks": 0},
            _SMALL_FORWARD_MODELS,
        ),
    ),
    ("dora", "deepsea"): (
        {"hidden_size": 0, "gamma_e": 0.9, "learning_rate": 1e-2},
        "a table of E-values per (cell, action) instead of the MLP, which generalises the "
        "push-down of E to cells never visited: on DeepSea-30 (40k frames, seeds 0, 1) the "
        "table visited 369 and 347 cells, the MLP 311 and 351, plain PPO 324 and 324. A "
        "table needs lr 1e-2 (16 Adam steps per rollout move an entry by ~0.016 at 1e-3); "
        "gamma_E 0.9 as the tabular experiments (dora.py)",
    ),
}


def algo_preset(algo: str, env_id: str) -> dict[str, Any]:
    return dict(ALGO_PRESETS.get((algo, _family(env_id)), ({}, ""))[0])


def bonus_preset(bonus: str, env_id: str) -> dict[str, Any]:
    return dict(BONUS_PRESETS.get((bonus, _family(env_id)), ({}, ""))[0])
