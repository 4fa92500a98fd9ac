"""Quality of the binary-code autoencoder (``explora.models.autoencoder``) on MiniGrid-DoorKey-8x8
views: the learned hash of ``explora.bonuses.aehash``.

    python benchmarks/generative/aehash_quality.py                        # the default model
    python benchmarks/generative/aehash_quality.py --grid 32:0.1:0.3 64:0:0  # D:lambda:noise
    python benchmarks/generative/aehash_quality.py --png /tmp/recon.png   # + a picture

Fits each configuration (code length D, penalty weight lambda, noise half-width a) on a fixed
train split of random-policy views (``data.doorkey_observations``: 100,000 views, seed 0) with
Adam (lr 1e-3 unless --lr, minibatches of 256, model seed 0) and reports on the test split
(20,000 views, seed 1):

- ``cell acc``: fraction of (cell, channel) elements that the hash round(b) decodes right;
  ``view acc``: fraction of whole views decoded without an error;
- ``saturated``: fraction of code units with |b - 0.5| > 0.4;
- ``codes / views``: distinct codes round(b) against distinct views in the test split;
- ``merged``: fraction of distinct views whose code is shared with another distinct view
  (the bonus counts them together).

Seeds are fixed: the same command gives the same table. Not a timing.
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
from explora.models.autoencoder import BinaryAutoencoder, render_reconstructions  # noqa: E402


def code_table(views: torch.Tensor, codes: torch.Tensor) -> dict[str, float]:
    """Distinct views and codes of ``views`` ``[B, ...]`` with codes ``[B, D]``, and the fraction
    of distinct views (and of distinct codes) that share their code with another view."""
    rows = views.reshape(len(views), -1).numpy()
    _, first = np.unique(rows, axis=0, return_index=True)
    code_of_view = codes[torch.from_numpy(first)].numpy()
    _, inverse, counts = np.unique(code_of_view, axis=0, return_inverse=True, return_counts=True)
    return {
        "views": float(len(first)),
        "codes": float(len(counts)),
        "merged": float((counts[inverse.reshape(-1)] > 1).mean()),
        "shared_codes": float((counts > 1).mean()),
    }


def evaluate(
    space,
    train: torch.Tensor,
    test: torch.Tensor,
    code_bits: int,
    penalty: float,
    noise: float,
    steps: int,
    hidden: int,
    lr: float,
    seed: int,
) -> tuple[BinaryAutoencoder, dict[str, float]]:
    torch.manual_seed(seed)
    model = BinaryAutoencoder(
        space, code_bits=code_bits, hidden_size=hidden, noise=noise, penalty=penalty
    )
    gen = torch.Generator().manual_seed(seed)
    model.fit(train, steps=steps, batch_size=256, learning_rate=lr, generator=gen)
    model.eval()
    quality = model.quality(test)
    table = code_table(test, model.hash(test))
    return model, {**quality, **table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="+", default=["64:0.1:0.3"], help="D:lambda:noise")
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps of 256 views")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam step size")
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--test", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", default=None, help="draw 8 test views and their decodings")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = doorkey_observations(args.train, seed=0)
    test = doorkey_observations(args.test, seed=1)
    env = make("MiniGrid-DoorKey-8x8-v0", num_envs=1, seed=0)
    space = env.single_observation_space
    env.close()
    seen = {bytes(r) for r in train.reshape(len(train), -1).numpy()}
    new = sum(bytes(r) not in seen for r in np.unique(test.reshape(len(test), -1).numpy(), axis=0))
    print(
        f"train {len(train)} views ({code_table(train, torch.zeros(len(train), 1))['views']:.0f} "
        f"distinct), test {len(test)} views, {new} distinct test views never in train; "
        f"{args.steps} steps of 256, lr {args.lr}, hidden {args.hidden}"
    )
    header = "| D | lambda | noise | cell acc | view acc | saturated | codes / views | merged |"
    print(header)
    print("|" + "---:|" * (header.count("|") - 1))
    model = None
    for spec in args.grid:
        d, lam, noise = spec.split(":")
        model, q = evaluate(
            space,
            train,
            test,
            int(d),
            float(lam),
            float(noise),
            args.steps,
            args.hidden,
            args.lr,
            args.seed,
        )
        print(
            f"| {d} | {lam} | {noise} | {q['element_accuracy']:.4f} | {q['view_accuracy']:.3f} "
            f"| {q['saturated']:.3f} | {q['codes']:.0f} / {q['views']:.0f} | {q['merged']:.3f} |",
            flush=True,
        )
    if args.png and model is not None:
        render_reconstructions(model, test[:: max(1, len(test) // 8)][:8], args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
