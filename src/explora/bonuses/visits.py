"""Per-episode visit counts, vectorised over env copies, and the keys states are counted by.

Episodic bonuses count the visits of a state within the current episode: NovelD pays only on
the first visit (``N_e(s') = 1``), RIDE divides by ``sqrt(N_e(s'))``. A state is a 64-bit key:
the env's compact state key where the env adapter offers one (``Transitions.state_keys``: a
grid's agent cell and direction, DeepSea's cell), else a hash of the observation's raw bytes
(``byte_keys``).

``EpisodicCounts`` keeps, for each env copy, the keys seen in its current episode and their
counts, in ``[N, capacity]`` arrays: one step of N envs is a few vectorised comparisons
(``O(N * distinct keys in the episode)``), with no Python loop over envs; the capacity doubles
when an episode sees more distinct keys than it holds.

``EpisodeVisits`` is what an episodic bonus holds: it picks the key (``key="auto"``: the state
key where the steps carry one, else the bytes; ``count_key`` says which was used), counts each
step's ``next_obs``, resets an env copy's counts exactly at its episode end and counts the next
episode's first observation (the ``obs`` of the step after the end) as visited where its key is
known. It is known for byte keys; ``Transitions.state_keys`` is the key of ``next_obs`` only and
the adapters do not report the key of a reset state, so with state keys an episode's first
state is counted from its first revisit on (as in NovelD's and RIDE's official code, whose
count of the reset frame lands in the ending episode's table, cleared right after).

Example:
    >>> counts = EpisodicCounts(num_envs=2)
    >>> counts.add(np.array([7, 7], dtype=np.uint64)).tolist()
    [1, 1]
    >>> counts.add(np.array([7, 8], dtype=np.uint64)).tolist()
    [2, 1]
    >>> counts.reset(np.array([True, False]))
    >>> counts.add(np.array([7, 8], dtype=np.uint64)).tolist()
    [1, 2]
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from explora.bonuses.base import Transitions

KeyChoice = Literal["auto", "state", "observation"]
KEY_CHOICES = ("auto", "observation", "state")

_KEY_SEED = 0x5EED
_weights: dict[int, np.ndarray] = {}


def byte_keys(views: Tensor | np.ndarray) -> np.ndarray:
    """``[B]`` uint64 key of each row of ``views`` ``[B, ...]``, from its raw bytes, whatever the
    dtype: ``key = sum_j w_j * byte_j mod 2^64`` with fixed random odd ``w_j``. Two distinct rows
    differ in some byte by at most 255, so they collide with probability at most 2^-56 over the
    draw of ``w``; the weights depend on the row's width only (nothing to save)."""
    array = views.detach().cpu().numpy() if isinstance(views, Tensor) else np.asarray(views)
    rows = np.ascontiguousarray(array).reshape(array.shape[0], -1)
    data = rows.view(np.uint8)
    width = data.shape[1]
    weights = _weights.get(width)
    if weights is None:
        rng = np.random.default_rng(_KEY_SEED)
        weights = rng.integers(0, 2**63, size=width, dtype=np.uint64) * np.uint64(2) + 1
        _weights[width] = weights
    return data @ weights  # uint64 arithmetic wraps: the sum is taken mod 2^64


class EpisodicCounts:
    """Visit counts of 64-bit keys within each env copy's current episode."""

    def __init__(self, num_envs: int, capacity: int = 64) -> None:
        self.num_envs = num_envs
        self.keys = np.zeros((num_envs, capacity), dtype=np.uint64)
        self.counts = np.zeros((num_envs, capacity), dtype=np.int64)
        self.size = np.zeros(num_envs, dtype=np.int64)  # distinct keys held per env

    def add(self, keys: np.ndarray, envs: np.ndarray | None = None) -> np.ndarray:
        """Count one visit of ``keys[i]`` in env i's episode, for every i; returns ``[N]`` the
        counts after this visit (1 on a first visit). With ``envs`` (``[M]`` distinct env
        indices), ``keys`` is ``[M]`` and only those envs count a visit; returns ``[M]``."""
        keys = np.asarray(keys, dtype=np.uint64)
        rows = np.arange(self.num_envs) if envs is None else np.asarray(envs, dtype=np.int64)
        held = np.arange(self.keys.shape[1]) < self.size[rows, None]
        hit = (self.keys[rows] == keys[:, None]) & held
        found = hit.any(axis=1)
        slot = np.where(found, hit.argmax(axis=1), self.size[rows])
        if (slot >= self.keys.shape[1]).any():
            self._grow()
        new = ~found
        self.keys[rows[new], slot[new]] = keys[new]
        self.counts[rows[new], slot[new]] = 0
        self.size[rows] += new
        self.counts[rows, slot] += 1
        return self.counts[rows, slot].copy()

    def peek(self, keys: np.ndarray) -> np.ndarray:
        """``[N]``: how often ``keys[i]`` was visited in env i's episode so far (no visit added)."""
        keys = np.asarray(keys, dtype=np.uint64)
        held = np.arange(self.keys.shape[1]) < self.size[:, None]
        return (((self.keys == keys[:, None]) & held) * self.counts).sum(axis=1)

    def reset(self, envs: np.ndarray) -> None:
        """Forget the episodes of the envs where ``envs`` ``[N]`` bool is True."""
        self.size[np.asarray(envs, dtype=bool)] = 0

    def _grow(self) -> None:
        capacity = self.keys.shape[1]
        self.keys = np.concatenate([self.keys, np.zeros_like(self.keys)], axis=1)
        self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)], axis=1)
        assert self.keys.shape[1] == 2 * capacity

    def state_dict(self) -> dict[str, Any]:
        width = max(1, int(self.size.max(initial=0)))
        return {
            "keys": self.keys[:, :width].copy(),
            "counts": self.counts[:, :width].copy(),
            "size": self.size.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys, counts = np.asarray(state["keys"]), np.asarray(state["counts"])
        if keys.shape[0] != self.num_envs:
            raise ValueError(
                f"saved episodic counts are for {keys.shape[0]} envs, not {self.num_envs}"
            )
        capacity = max(self.keys.shape[1], keys.shape[1])
        self.keys = np.zeros((self.num_envs, capacity), dtype=np.uint64)
        self.counts = np.zeros((self.num_envs, capacity), dtype=np.int64)
        self.keys[:, : keys.shape[1]] = keys
        self.counts[:, : counts.shape[1]] = counts
        self.size = np.asarray(state["size"], dtype=np.int64).copy()


def pending_batch(pending: list[Tensor], steps: int, who: str) -> Tensor:
    """The last ``steps`` per-step values ``[N]`` observed, stacked ``[T, N]``; raises when fewer
    were observed (``compute`` must score the steps ``observe`` saw)."""
    if len(pending) < steps:
        raise RuntimeError(
            f"{who} needs observe() on each of the batch's {steps} steps before compute(); "
            f"only {len(pending)} were observed"
        )
    return torch.stack(pending[-steps:])


class EpisodeVisits:
    """Visit counts of the states each env copy reaches in its current episode, for an
    episodic bonus: ``visit(step)`` counts ``step.next_obs`` and returns its count.

    Args:
        num_envs: N.
        key: "state" (``Transitions.state_keys``, an error where a step has none),
            "observation" (``byte_keys`` of the observation) or "auto" (state keys where the
            first observed step carries them, else the bytes).

    ``count_key`` is "state" or "observation", fixed by the constructor or, for "auto", by the
    first ``visit`` (None until then).

    Example:
        >>> import torch
        >>> visits = EpisodeVisits(num_envs=1, key="observation")
        >>> a, b = torch.zeros(1, 1, 2), torch.ones(1, 1, 2)
        >>> no = torch.zeros(1, 1, dtype=torch.bool)
        >>> step = lambda s, s2: Transitions(s, torch.zeros(1, 1), s2, torch.zeros(1, 1), no, no)
        >>> [visits.visit(step(a, b)).tolist(), visits.visit(step(b, a)).tolist()]
        [[1], [2]]
        >>> visits.count_key
        'observation'
    """

    def __init__(self, num_envs: int, key: KeyChoice = "auto") -> None:
        if key not in KEY_CHOICES:
            raise ValueError(f"unknown key {key!r}; choose one of: {', '.join(KEY_CHOICES)}")
        self.num_envs = num_envs
        self.key = key
        self.count_key: str | None = None if key == "auto" else key
        self.counts = EpisodicCounts(num_envs)
        self.starting = np.ones(num_envs, dtype=bool)  # [N]: the next obs begins an episode

    def _resolve(self, step: Transitions) -> str:
        offered = step.state_keys is not None
        if self.count_key is None:
            self.count_key = "state" if offered else "observation"
        if self.count_key == "state" and not offered:
            raise ValueError(
                "episodic counts keyed on the env's state key (key='state'"
                + (", chosen by key='auto' from the first steps" if self.key == "auto" else "")
                + ") got a step without Transitions.state_keys: this env offers none; use "
                "key='observation'"
            )
        return self.count_key

    def visit(self, step: Transitions) -> np.ndarray:
        """Count the visit of ``step.next_obs`` (``[1, N, ...]``) in each env's episode; returns
        ``[N]`` int64 the counts after it (1 on a first visit). An env whose episode ends at
        this step forgets its counts after the visit is counted."""
        mode = self._resolve(step)
        if mode == "state":
            assert step.state_keys is not None
            keys = step.state_keys[0].cpu().numpy().astype(np.uint64)
        else:
            keys = byte_keys(step.next_obs[0])
            starting = np.flatnonzero(self.starting)
            if len(starting):  # the episode's first observation counts as visited
                self.counts.add(byte_keys(step.obs[0][starting]), starting)
        counts = self.counts.add(keys)
        ended = (step.terminated[0] | step.truncated[0]).cpu().numpy()
        self.counts.reset(ended)
        self.starting = ended.copy()
        return counts

    def start_new_episodes(self, envs: np.ndarray) -> None:
        """Forget the episodes of the envs where ``envs`` ``[N]`` bool is True: their next
        observed ``obs`` starts a new one."""
        envs = np.asarray(envs, dtype=bool)
        self.counts.reset(envs)
        self.starting = self.starting | envs

    def state_dict(self) -> dict[str, Any]:
        """Tensors and a string only, so ``torch.load(weights_only=True)`` reads it back (the
        uint64 keys travel as int64 of the same bits)."""
        counts = self.counts.state_dict()
        return {
            "keys": torch.from_numpy(counts["keys"].view(np.int64)),
            "counts": torch.from_numpy(counts["counts"]),
            "size": torch.from_numpy(counts["size"]),
            "starting": torch.from_numpy(self.starting.copy()),
            "count_key": self.count_key,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = np.asarray(torch.as_tensor(state["keys"]).numpy(), dtype=np.int64)
        self.counts.load_state_dict(
            {
                "keys": keys.view(np.uint64),
                "counts": torch.as_tensor(state["counts"]).numpy(),
                "size": torch.as_tensor(state["size"]).numpy(),
            }
        )
        self.starting = torch.as_tensor(state["starting"]).numpy().astype(bool)
        saved = state.get("count_key")
        if saved is not None and self.key != "auto" and saved != self.key:
            raise ValueError(f"saved episodic counts are keyed on {saved}, not {self.key}")
        self.count_key = saved if saved is not None else self.count_key
