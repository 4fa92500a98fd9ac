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
    from explora.envs.atari import atari_task

    if atari_task(env_id) is not None:
        return "atari"
    return "other"


# PPO's MiniGrid settings before 2026-12-01, where they differ from ALGO_PRESETS below: what
# the `catalogue` and `generative` suites and the Empty-16x16 coverage learning tests were
# measured with, and pin (with 128-step rollouts plain PPO covers 191-193 of Empty-16x16's 196
# cells by 32k frames, leaving a bonus nothing to show; 32 steps update 4x as often). A MiniGrid
# run started before then resumes with these as ``algo_args``.
PPO_MINIGRID_BEFORE_2026_12_01: dict[str, Any] = {"num_steps": 32, "ent_coef": 0.01}

# (algo, family) -> (settings, why)
ALGO_PRESETS: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("ppo", "minigrid"): (
        {
            "num_envs": 64,
            "num_steps": 128,
            "minibatch_size": 512,
            "ent_coef": 0.03,
            "encoder": "grid-mlp",
        },
        "64 envs keep EnvPool's threads busy and amortise Python overhead per frame. 128-step "
        "rollouts (8,192 frames per update) and entropy 0.03, measured on 2026-12-01 with "
        "PPO+RND (first_visit) against 32 steps and 0.01: DoorKey-8x8 within 1M frames on 5 of "
        "5 seeds against 3 of 5, MultiRoom-N4-S5 within 500k on 3 of 3 against 2 of 3, "
        "KeyCorridorS5R3 within 5M on 3 of 3 against 0 of 3; PPO's gradient steps per frame do "
        "not change (minibatches of 512), GAE runs 4x further before it bootstraps. Entropy "
        "0.03: with 0.01, aehash on DoorKey-16x16 lost the `toggle` action before opening the "
        "door on 1 of 3 seeds at 128 steps (2 of 3 at 32). The grid MLP (128 wide) costs a "
        "third of rl-starter-files' CNN per sample and with RND (first_visit) solved "
        "DoorKey-8x8 seeds on which the CNN did not",
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
    ("ppo", "atari"): (
        {
            "num_envs": 32,
            "num_steps": 128,
            "minibatch_size": 1024,
            "update_epochs": 4,
            "learning_rate": 1e-4,
            "anneal_lr": False,
            "gamma": 0.999,
            "int_gamma": 0.99,
            "gae_lambda": 0.95,
            "clip_coef": 0.1,
            "ent_coef": 0.001,
            "vf_coef": 1.0,
            "ext_coef": 2.0,
            "int_coef": 1.0,
            "encoder": "pixel-cnn",
            "hidden": 448,
        },
        "the RND paper's PPO (openai/random-network-distillation run_atari.py, ppo_agent.py): "
        "128-step rollouts, 4 epochs x 4 minibatches, lr 1e-4 held constant, gamma_ext 0.999 "
        "(paper; run_atari.py's flag defaults to 0.99), gamma_int 0.99, lambda 0.95, clip 0.1, "
        "entropy 0.001, ext_coef 2, int_coef 1, each value head's loss 0.5 x MSE unweighted "
        "(vf_coef 1). Deviations: 32 envs, run_atari.py's default per worker, instead of the "
        "paper's 128 (four workers), for a 2-core CPU: 4x fewer frames per update; gradients "
        "clipped at 0.5 (CleanRL; RND's code does not clip); the policy is the Nature-DQN conv "
        "stack (32-8x8/4, 64-4x4/2, 64-3x3/1, dense 512) with 448-wide heads, not RND's "
        "parameter-matched net (last conv 4x4, dense 256 then 448 with residual 448 heads)",
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
    ("rnd", "atari"): (
        {
            "hidden_size": 512,
            "feature_size": 512,
            "learning_rate": 1e-4,
            "update_proportion": 0.25,
            "warmup_steps": 256,
        },
        "the RND paper's networks on the newest frame (explora.train wraps RND in LastFrame on "
        "Atari): conv 32-8x8/4, 64-4x4/2, 64-3x3/1 with leaky ReLU, target dense 512, predictor "
        "dense 512-512-512; inputs whitened per pixel and clipped to [-5, 5]; lr 1e-4. The "
        "predictor trains on 25% of each rollout (CleanRL; RND's code 1.0 with 32 envs): "
        "measured in CPU time on one thread, RND's update costs 2.6 ms per frame on every "
        "sample, 1.1 ms on 25%, against 3.3 ms for PPO's rollout forward and 4 epochs. "
        "Warm-up 256 random steps per env (8k frames with 32 envs) instead of the paper's "
        "6400 (50 rollouts, 205k frames with 32 envs, a fifth of a 1M-frame budget)",
    ),
    ("ngu", "minigrid"): (
        {"rnd_hidden_size": 128, "rnd_feature_size": 64},
        "the RND preset's network sizes for NGU's lifelong RND (256/128 in the papers' "
        "ports): RND's update and compute cost about half, as many cells visited "
        "(Empty-16x16, 16k frames, seeds 0/2: 184/185 against 184/190 at 256/128, 142/135 "
        "without a bonus; ngu.py)",
    ),
    ("vqcount", "minigrid"): (
        {"mode": "episodic"},
        "counts of codes within the episode (LECO's, NGU's) instead of lifelong ones, as for "
        "RND: on DoorKey-8x8 (dead_after=20) episodic mode ended at 0.23 / 1.0 / 0.33 success "
        "on seeds 1 / 2 / 3 where lifelong ended at 0.0 / - / 0.0 (plain PPO 0.20 / 0.0 / "
        "0.30), visited more of Empty-16x16 than plain PPO (195 / 192 / 188 against 180 / 181 "
        "/ 176 cells) where lifelong did not, and runs 1.6x faster (vqcount.py)",
    ),
    ("aehash", "minigrid"): (
        {"hidden_size": 128, "first_visit": True},
        "paid on a view's first visit in an episode, as RND's preset: on DoorKey-16x16 "
        "(5M frames) lifelong counts ended at 0.42 / 0.54 / 0.56 success on seeds 0 / 1 / 2 "
        "(`generative` suite), first visits at 1.00 / 0.00 / 0.00 (seeds 1 and 2 stopped "
        "using toggle before opening the door) and, with PPO's ent_coef 0.03, at 0.98 / 0.92 "
        "/ 0.97, each past 0.9 by 1.2M frames; lifelong counts visited fewer cells of "
        "Empty-16x16 than plain PPO, first visits all of them (aehash.py). hidden_size 128: "
        "half the autoencoder's cost per training step with codes as distinct as at 256 (948 "
        "held-out DoorKey-8x8 views: 480/511/506 distinct codes after the warm-up and 5 and 20 "
        "rollouts, against 449/469/507; aehash.py)",
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
