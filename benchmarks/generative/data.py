"""Observations to fit and score the generative models on: MiniGrid-DoorKey-8x8's 7x7x3
egocentric views, collected by a uniformly random policy over 64 EnvPool copies.

The same seed gives the same observations, so each model's quality figures (ELBO, bits per
observation, perplexity, ...) are measured on one fixed train/test split:

    from data import doorkey_observations
    train, test = doorkey_observations(100_000, seed=0), doorkey_observations(20_000, seed=1)

``empirical_entropy_bits`` is the plug-in entropy of the views' empirical distribution, the
floor a density model's test bits per observation can approach (its estimate is biased low
when many views are seen once).
"""

from __future__ import annotations

import numpy as np
import torch

from explora.envs import make
from explora.envs.base import random_actions


def doorkey_observations(
    count: int, seed: int = 0, env_id: str = "MiniGrid-DoorKey-8x8-v0", num_envs: int = 64
) -> torch.Tensor:
    """``[count, 7, 7, 3]`` uint8 views reached by a random policy (the final view at an
    episode end, as a bonus's ``next_obs``)."""
    env = make(env_id, num_envs=num_envs, seed=seed)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    out = []
    total = 0
    while total < count:
        step = env.step(random_actions(env.single_action_space, num_envs, rng))
        out.append(step.final_obs.copy())
        total += num_envs
    env.close()
    return torch.from_numpy(np.concatenate(out)[:count])


def empirical_entropy_bits(observations: torch.Tensor) -> float:
    """Plug-in entropy, in bits, of the distribution of distinct rows of ``observations``."""
    rows = observations.reshape(observations.shape[0], -1).numpy()
    _, counts = np.unique(rows, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


if __name__ == "__main__":
    obs = doorkey_observations(20_000)
    distinct = len(np.unique(obs.reshape(len(obs), -1).numpy(), axis=0))
    print(f"{len(obs)} views, {distinct} distinct, entropy {empirical_entropy_bits(obs):.2f} bits")
