"""What every agent's training loop does the same way: the run it reports to, a guarded
optimizer step, a metric row, and the parts of a checkpoint that are state dicts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from explora.models.optim import clip_grad_norm
from explora.runs.episodes import EpisodeTracker


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class NullRun:
    """Stands in for a run directory (``explora.runs.RunDir``) when the caller wants no files;
    subclass it to watch what an agent reports."""

    def log(self, frames: int, metrics: dict[str, float]) -> None:
        pass

    def progress(self, frames: int, metrics: dict[str, float]) -> None:
        pass

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        pass

    def load_checkpoint(self) -> dict[str, Any] | None:
        return None

    def checkpoint_due(self) -> bool:
        """Whether to checkpoint now, between the agent's own ``checkpoint_every`` points."""
        return False


def gradient_step(
    loss: Tensor,
    optimizer: torch.optim.Optimizer | Any,
    params: list[nn.Parameter],
    max_grad_norm: float | None,
    *,
    name: str,
    at: str,
    hint: str,
) -> Tensor | None:
    """Step ``optimizer`` on ``loss``: zero the gradients, backpropagate, clip their global
    norm to ``max_grad_norm`` (None: no clip) and step. A NaN or infinite loss raises
    ``TrainingDiverged`` first, naming the loss (``name``), when (``at``) and what to try
    (``hint``). Returns the gradient norm before clipping, or None without a clip."""
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"{name} loss became {loss.item()} at {at}; the last good checkpoint is kept. {hint}"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = clip_grad_norm(params, max_grad_norm) if max_grad_norm is not None else None
    optimizer.step()
    return norm


def log_row(run: Any, tracker: EpisodeTracker, frames: int, metrics: dict[str, float]) -> None:
    """Write one metric row and move the progress bar; adds the distinct states visited so far
    where the env reports positions."""
    if tracker.unique_states is not None:
        metrics["charts/unique_states"] = float(tracker.unique_states)
    run.log(frames, metrics)
    run.progress(frames, metrics)


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


def state_dicts(**parts: Stateful | None) -> dict[str, Any]:
    """``{name: part.state_dict()}`` for a checkpoint; None for an absent part (no bonus)."""
    return {name: None if part is None else part.state_dict() for name, part in parts.items()}


def load_state_dicts(state: dict[str, Any], **parts: Stateful | None) -> None:
    """Restore each part from ``state[name]`` (as written by ``state_dicts``); parts that are
    None here or were None when saved are left as they are."""
    for name, part in parts.items():
        if part is not None and state.get(name) is not None:
            part.load_state_dict(state[name])


def progress_state(
    frames: int, wall_time_s: float, config: Any, rng: np.random.Generator | None = None
) -> dict[str, Any]:
    """The checkpoint fields besides state dicts that every agent writes: frames, wall time,
    random states (torch's, and ``rng``'s) and the config (``dataclasses.asdict``)."""
    state = {
        "frames": frames,
        "wall_time_s": wall_time_s,
        "torch_rng": torch.get_rng_state(),
        "config": asdict(config),
    }
    if rng is not None:
        state["numpy_rng"] = rng.bit_generator.state
    return state


def env_state(env: Any, obs: np.ndarray) -> dict[str, Any]:
    """The checkpoint fields that let a run continue its episodes exactly: the env's own state
    and the observations the agent acts on next. Both None when the env cannot hand its state
    over (``VecEnv.state_dict``); the resumed run then starts new episodes."""
    saved = env.state_dict()
    return {"env": saved, "obs": None if saved is None else obs.copy()}


def restart_bonus_episodes(bonus: Any, num_envs: int) -> None:
    """Tell a bonus with per-episode state (first-visit sets, episodic memories) that every
    env copy starts a new episode without having ended the old one (a resume that had to
    reset the envs). Bonuses without such state need no hook."""
    hook = getattr(bonus, "start_new_episodes", None)
    if hook is not None:
        hook(np.ones(num_envs, dtype=bool))


def restore_progress(state: dict[str, Any], rng: np.random.Generator | None = None) -> float:
    """Put back the random states ``progress_state`` saved; returns the wall time so far."""
    torch.set_rng_state(state["torch_rng"])
    if rng is not None:
        rng.bit_generator.state = state["numpy_rng"]
    return float(state.get("wall_time_s", 0.0))
