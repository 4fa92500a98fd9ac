"""Quality of the VQ-VAE (``explora.models.vqvae``) on MiniGrid-DoorKey-8x8 views.

    python benchmarks/generative/vqvae_quality.py                       # the default model
    python benchmarks/generative/vqvae_quality.py --grid 16:4 64:1 512:1  # K:G configurations

Fits each configuration (K codes, G latents per view) on a fixed train split of random-policy
views (``data.doorkey_observations``: 100,000 views, seed 0) with minibatches of 512, and
reports on the test split (20,000 views, seed 1): reconstruction accuracy (per element and of
whole views), perplexity of the codes, the fraction of codes no test view uses (dead), the
number of distinct cells (code tuples) against the number of distinct views, and how many views
share a cell with a view that differs from them (merged). Seeds are fixed: the same command
gives the same table. Not a timing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import doorkey_observations  # noqa: E402

from explora.envs import make  # noqa: E402
from explora.models.vqvae import VQVAE  # noqa: E402


def merged_fraction(views: torch.Tensor, cells: torch.Tensor) -> float:
    """Fraction of distinct views whose cell also holds another distinct view."""
    rows = views.reshape(len(views), -1).numpy()
    _, first = np.unique(rows, axis=0, return_index=True)
    cell_of_view = cells[torch.from_numpy(first)].numpy()
    _, inverse, counts = np.unique(cell_of_view, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).mean())


def fit(
    model: VQVAE, train: torch.Tensor, steps: int, batch: int, seed: int
) -> list[dict[str, float]]:
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(steps):
        idx = torch.randint(0, len(train), (batch,), generator=gen)
        history.append(model.train_step(train[idx]))
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="+", default=["64:1"], help="K:G configurations")
    parser.add_argument("--code-dim", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps of 512 views")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--test", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = doorkey_observations(args.train, seed=0)
    test = doorkey_observations(args.test, seed=1)
    space = make("MiniGrid-DoorKey-8x8-v0", num_envs=1, seed=0).single_observation_space
    distinct = len(np.unique(test.reshape(len(test), -1).numpy(), axis=0))
    print(f"train {len(train)} views, test {len(test)} views ({distinct} distinct)")
    header = (
        "| K | G | code dim | element acc | view acc | perplexity | dead codes | "
        "distinct cells | views merged | restarts |"
    )
    print(header)
    print("|" + "---:|" * (header.count("|") - 1))
    for spec in args.grid:
        k, _, g = spec.partition(":")
        model = VQVAE(
            space, num_codes=int(k), num_latents=int(g or 1), code_dim=args.code_dim, seed=args.seed
        )
        history = fit(model, train, args.steps, args.batch, args.seed)
        quality = model.evaluate(test)
        cells = torch.cat([model.codes(chunk) for chunk in test.split(4096)])
        restarts = sum(h["vq/dead_restarts"] for h in history)
        print(
            f"| {k} | {g or 1} | {args.code_dim} | {quality['element_accuracy']:.4f} | "
            f"{quality['view_accuracy']:.3f} | {quality['perplexity']:.1f} | "
            f"{quality['dead_fraction']:.3f} | {quality['distinct_cells']:.0f} | "
            f"{merged_fraction(test, cells):.3f} | {restarts:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
