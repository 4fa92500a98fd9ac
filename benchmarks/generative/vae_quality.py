"""Quality of the VAE (``explora.models.vae``) on MiniGrid-DoorKey-8x8 views.

    python benchmarks/generative/vae_quality.py                     # the four rows of the README
    python benchmarks/generative/vae_quality.py --configs iaf_steps=2,kl_threshold=0 \\
        learning_rate=3e-4                                           # one row per config

Each configuration (keyword arguments of ``VAE``, comma-separated; the default rows are the
model's defaults with and without a 2-step inverse autoregressive flow, with and without the
cyclical KL annealing) is fitted on a fixed train split of random-policy views
(``data.doorkey_observations``: 100,000 views, seed 0) with ``--steps`` Adam steps of
``--batch`` views drawn with replacement; annealing, where on, spreads its cycles over those
steps (``anneal_steps = --steps``). It then reports on the test split (20,000 views, seed 1):

* the ELBO in nats per view (one posterior sample per view; a lower bound on log p(view)) and
  its two parts, the reconstruction NLL -log p(x|z) and the KL; beside it the plug-in entropy
  of the test views (``data.empirical_entropy_bits``, here in nats; biased low), which no
  model's -log p can go below on average;
* the reconstruction accuracy of the posterior mean decoded (most likely class per element),
  per element and of whole views;
* the active units: latent dimensions whose posterior mean varies across the test views
  (variance > 0.01).

Seeds are fixed: the same command gives the same table. Not a timing.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import doorkey_observations, empirical_entropy_bits  # noqa: E402

from explora.envs.minigrid import IMAGE_SPACE  # noqa: E402
from explora.models.vae import VAE  # noqa: E402

DEFAULT_CONFIGS = [
    "iaf_steps=0,anneal=1",
    "iaf_steps=0,anneal=0",
    "iaf_steps=2,anneal=1",
    "iaf_steps=2,anneal=0",
]


def parse_config(spec: str) -> dict[str, Any]:
    """``"iaf_steps=2,kl_threshold=0"`` -> keyword arguments (numbers parsed)."""
    config: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        number = float(value)
        config[key] = int(number) if number.is_integer() and "." not in value else number
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", nargs="+", default=DEFAULT_CONFIGS, help="VAE kwargs per row; anneal=0: off"
    )
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--test", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = doorkey_observations(args.train, seed=0)
    test = doorkey_observations(args.test, seed=1)
    distinct = len(np.unique(test.reshape(len(test), -1).numpy(), axis=0))
    entropy_nats = empirical_entropy_bits(test) * math.log(2)
    print(
        f"train {len(train)} views, test {len(test)} views ({distinct} distinct, plug-in "
        f"entropy {entropy_nats:.2f} nats)"
    )
    header = (
        "| config | ELBO (nats/view) | recon NLL | KL | element acc | view acc | active units |"
    )
    print(header)
    print("|---|" + "---:|" * 6)
    for spec in args.configs:
        config = parse_config(spec)
        anneal = bool(config.pop("anneal", 1))
        config.setdefault("anneal_steps", args.steps if anneal else 0)
        model = VAE(IMAGE_SPACE, seed=args.seed, **config)
        gen = torch.Generator().manual_seed(args.seed)
        for _ in range(args.steps):
            model.train_step(train[torch.randint(0, len(train), (args.batch,), generator=gen)])
        q = model.evaluate(test)
        print(
            f"| {spec} | {q['elbo']:.2f} | {q['reconstruction']:.2f} | {q['kl']:.2f} | "
            f"{q['element_accuracy']:.4f} | {q['view_accuracy']:.3f} | "
            f"{q['active_units']:.0f} / {model.latent_dim} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
