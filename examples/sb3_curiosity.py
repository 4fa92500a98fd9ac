"""Stable-Baselines3's PPO with an explora bonus: one callback.

    python examples/sb3_curiosity.py                          # PPO + count bonus on DeepSea-10
    python examples/sb3_curiosity.py --bonus rnd --total-timesteps 20000
    python examples/sb3_curiosity.py --int-coef 0             # SB3's PPO as it is

``import explora`` registers DeepSea-N (and the bandits and noisy-TV grids) with Gymnasium, so
SB3's ``make_vec_env`` builds it by id. ``BonusCallback`` shows every step to the bonus, adds
its normalised reward to the rollout and recomputes SB3's returns and advantages before PPO
updates (``explora.integrations.sb3``). DeepSea-10 pays +1 only to the agent that chooses
"right" ten times in a row, and charges a little for each right: SB3's PPO alone learns to go
left; with visit counts it finds the treasure within a few thousand steps
(``tests/learning/test_sb3.py``). The script prints the success rate of the last 100 episodes.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

import explora  # noqa: F401  - registers DeepSea-N with gymnasium
from explora.integrations.sb3 import BonusCallback


class EpisodeSuccess(BaseCallback):
    """Records ``info["success"]`` of every episode that ends."""

    def __init__(self) -> None:
        super().__init__()
        self.successes: list[bool] = []

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if done:
                self.successes.append(bool(info.get("success", False)))
        return True


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="DeepSea-10")
    parser.add_argument("--bonus", default="count", help="a name from explora.bonuses.BONUSES")
    parser.add_argument("--int-coef", type=float, default=1.0, help="0: no bonus")
    parser.add_argument("--total-timesteps", type=int, default=6144)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # small networks: one thread is fastest on a shared CPU
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    # Short rollouts and a higher learning rate than SB3's defaults: DeepSea's episodes last N
    # steps, and each rollout should hold a few of them.
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=128,
        n_epochs=10,
        learning_rate=1e-3,
        seed=args.seed,
        verbose=0,
    )
    episodes = EpisodeSuccess()
    callbacks: list[BaseCallback] = [episodes]
    if args.int_coef > 0:
        callbacks.append(BonusCallback(args.bonus, int_coef=args.int_coef))
    model.learn(args.total_timesteps, callback=callbacks)

    successes = np.array(episodes.successes, dtype=bool)
    result = {
        "episodes": float(len(successes)),
        "successes": float(successes.sum()),
        "success_last_100": float(successes[-100:].mean()) if len(successes) else 0.0,
    }
    print(
        f"{args.env}, {'PPO' if args.int_coef == 0 else f'PPO + {args.bonus}'}: "
        f"{int(result['successes'])} of {int(result['episodes'])} episodes found the treasure; "
        f"success rate of the last 100: {result['success_last_100']:.2f}"
    )
    return result


if __name__ == "__main__":
    main()
