"""explora: exploration in deep reinforcement learning."""

__version__ = "0.1.0"
