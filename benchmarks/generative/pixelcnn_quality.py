"""Quality of the PixelCNN density model (``explora.models.pixelcnn``) as the pseudo-count bonus
(``explora.bonuses.pseudocount``) trains it, on MiniGrid-DoorKey-8x8 views.

    python benchmarks/generative/pixelcnn_quality.py                        # the bonus's defaults
    python benchmarks/generative/pixelcnn_quality.py --configs learning_rate=1e-4 \\
        learning_rate=1e-3,momentum=0 first_kernel=3                        # one row per config

Each configuration (keyword arguments of ``PseudoCount``, comma-separated) trains a fresh bonus
with its own ``update`` on the fixed train split (``data.doorkey_observations``: 100,000 views of
a random policy, seed 0), fed in the order collected as rollouts of ``--rollout`` views (64 envs x
32 steps, the MiniGrid preset's rollout), each view once per ``--passes``, as during training.
It then reports on the test split (20,000 views, seed 1):

* bits per observation, ``-log2 rho(x)`` averaged over the test views, against the plug-in
  entropy of the test views (``data.empirical_entropy_bits``; biased low, and a model's
  cross-entropy cannot go below the true entropy), and separately on test views that occur in
  the train split and on those that do not (a density model must still give them mass);
* how well the bonus's pseudo-count ranks views: the Spearman correlation, over the distinct
  test views, between ``N_hat`` (``pseudo_count`` of ``log rho`` and ``log rho'``, ``rho'``
  after one optimiser step on the view alone) and the view's true count in the train split,
  and the fraction of distinct test views whose prediction gain is <= 0 (bonus 0); next to it
  the same correlation for ``rho`` itself, the density without the step.

Seeds are fixed: the same command gives the same table. Not a timing.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import doorkey_observations, empirical_entropy_bits  # noqa: E402

from explora.bonuses.base import Transitions  # noqa: E402
from explora.bonuses.pseudocount import PseudoCount, pseudo_count  # noqa: E402
from explora.envs.minigrid import IMAGE_SPACE  # noqa: E402


def parse_config(spec: str) -> dict[str, Any]:
    """``"learning_rate=1e-3,momentum=0"`` -> keyword arguments (numbers parsed)."""
    config: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        number = float(value)
        config[key] = int(number) if number.is_integer() and "." not in value else number
    return config


def rollout(views: torch.Tensor) -> Transitions:
    """``views`` ``[B, 7, 7, 3]`` as a ``[1, B]`` batch of next observations."""
    obs = views.unsqueeze(0)
    zeros = torch.zeros(1, len(views))
    return Transitions(obs, zeros.long(), obs, zeros, zeros.bool(), zeros.bool())


def counts_in(views: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """How often each row of ``views`` occurs in ``reference``."""
    ref = reference.reshape(len(reference), -1).numpy()
    uniq, counts = np.unique(ref, axis=0, return_counts=True)
    table = {row.tobytes(): int(n) for row, n in zip(uniq, counts, strict=True)}
    rows = views.reshape(len(views), -1).numpy()
    return np.array([table.get(row.tobytes(), 0) for row in rows])


def evaluate(bonus: PseudoCount, train: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    assert bonus.model is not None
    with torch.no_grad():
        bits = torch.cat([-bonus.model.log_prob(c.long()) for c in test.split(2048)]) / math.log(2)
    seen = torch.from_numpy(counts_in(test, train) > 0)
    distinct = torch.unique(test.reshape(len(test), -1), dim=0).view(-1, *test.shape[1:])
    log_rho, gain = bonus.prediction_gain(bonus.grid(distinct.unsqueeze(0)))
    n_hat = pseudo_count(log_rho, log_rho + gain)
    true = counts_in(distinct, train)
    rank = spearmanr(n_hat.numpy(), true).statistic
    rank_rho = spearmanr(log_rho.numpy(), true).statistic
    return {
        "bits": float(bits.mean()),
        "bits_seen": float(bits[seen].mean()),
        "bits_unseen": float(bits[~seen].mean()) if bool((~seen).any()) else math.nan,
        "spearman": float(rank),
        "spearman_rho": float(rank_rho),
        "gain_le_0": float((gain <= 0).double().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=[""], help="PseudoCount kwargs per row")
    parser.add_argument("--rollout", type=int, default=2048, help="views per update call")
    parser.add_argument("--passes", type=int, default=1, help="passes over the train split")
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--test", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = doorkey_observations(args.train, seed=0)
    test = doorkey_observations(args.test, seed=1)
    seen = counts_in(test, train) > 0
    print(
        f"train {len(train)} views ({len(np.unique(train.reshape(len(train), -1), axis=0))} "
        f"distinct), test {len(test)} views "
        f"({len(np.unique(test.reshape(len(test), -1), axis=0))} distinct, "
        f"{100 * (1 - seen.mean()):.1f}% not in train); "
        f"empirical entropy of the test views {empirical_entropy_bits(test):.2f} bits, "
        f"of the train views {empirical_entropy_bits(train):.2f} bits"
    )
    header = (
        "| config | passes | test bits/obs | on views in train | on views not in train | "
        "Spearman(N_hat, train count) | Spearman(rho, train count) | PG <= 0 |"
    )
    print(header)
    print("|---|" + "---:|" * (header.count("|") - 2))
    for spec in args.configs:
        torch.manual_seed(args.seed)
        bonus = PseudoCount(**parse_config(spec))
        bonus.setup(IMAGE_SPACE, gym.spaces.Discrete(7), num_envs=64)
        for _ in range(args.passes):
            for chunk in train.split(args.rollout):
                bonus.update(rollout(chunk))
        q = evaluate(bonus, train, test)
        print(
            f"| {spec or 'defaults'} | {args.passes} | {q['bits']:.2f} | {q['bits_seen']:.2f} | "
            f"{q['bits_unseen']:.2f} | {q['spearman']:.3f} | {q['spearman_rho']:.3f} | "
            f"{100 * q['gain_le_0']:.1f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
