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
        "return ends with the episode: every episode lasts N steps and restarts at the same "
        "cell, so the next episode's novelty is not a consequence of this one's last action, "
        "and carrying it over (RND's continuing return) only adds noise. Measured at the quick "
        "suite's budget (80k frames, seeds 0-9): count solved DeepSea-20 on 5/10 seeds with "
        "the episodic return, 2/10 continuing; RND DeepSea-10 (24k frames) 10/10 and 6/10 "
        "(README, 'The intrinsic return at episode ends')",
    ),
}

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
}


def algo_preset(algo: str, env_id: str) -> dict[str, Any]:
    return dict(ALGO_PRESETS.get((algo, _family(env_id)), ({}, ""))[0])


def bonus_preset(bonus: str, env_id: str) -> dict[str, Any]:
    return dict(BONUS_PRESETS.get((bonus, _family(env_id)), ({}, ""))[0])
