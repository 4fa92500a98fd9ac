"""explora: exploration in deep reinforcement learning.

Example:
    >>> import explora
    >>> summary = explora.train("CartPole-v1", frames=50_000, out="runs/cartpole")  # doctest: +SKIP
"""

import os

# OpenMP threads that spin-wait after each tiny torch op steal the cores EnvPool's C++ threads
# step on: measured 20x slower PPO with an MLP on 2 cores. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from explora.curiosity import Curiosity  # noqa: E402
from explora.envs import registration as _registration  # noqa: E402,F401  - gymnasium ids
from explora.train import train  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Curiosity", "__version__", "train"]
