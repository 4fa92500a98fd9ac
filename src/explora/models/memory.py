"""Per-episode memories of the memory-based bonuses (NGU, episodic curiosity), and the maths they
query them with, as pure functions batched over env copies.

- ``EpisodicMemory``: for each of N env copies, the rows added in its current episode, kept in
  padded ``[N, allocated, ...]`` tensors with a length per env (so one batched operation serves
  every env), bounded by ``capacity`` rows per env with a stated policy when full (``"fifo"``
  overwrites the oldest row, ``"random"`` a uniformly drawn one), reset per env.
- ``knn_sq_distances``: squared Euclidean distances from each env's query to its k nearest rows
  of its own memory, one batched matrix product for all envs.
- ``ngu_episodic_reward``: NGU's inverse-kernel pseudo-count reward from those distances.
- ``masked_percentile``: a percentile over each env's valid rows (numpy's "linear" rule), the
  aggregate of episodic curiosity.
- ``MovingAverage``: an exponential moving average with bias correction (NGU's running mean of
  kNN squared distances).

Example:
    >>> memory = EpisodicMemory(num_envs=2, capacity=3, fields={"phi": ((2,), torch.float32)})
    >>> memory.add(torch.tensor([True, True]), {"phi": torch.tensor([[0.0, 0.0], [1.0, 1.0]])})
    >>> memory.add(torch.tensor([True, False]), {"phi": torch.tensor([[3.0, 4.0], [9.0, 9.0]])})
    >>> memory.lengths.tolist()
    [2, 1]
    >>> dist, found = knn_sq_distances(torch.zeros(2, 2), memory.rows("phi"), memory.valid(), k=2)
    >>> dist.tolist(), found.tolist()
    ([[0.0, 25.0], [2.0, inf]], [[True, True], [True, False]])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

Replacement = Literal["fifo", "random"]


class EpisodicMemory:
    """Rows of named fields kept per env copy for its current episode.

    ``fields`` maps a name to ``(row_shape, dtype)``; ``memory[name]`` is the tensor
    ``[N, allocated, *row_shape]`` whose first ``lengths[i]`` rows of env i are valid;
    ``rows(name)`` cuts it to the longest env's length and ``valid()`` masks that. Storage
    grows by doubling up to ``capacity`` rows per env, so a short episode never pays for the
    capacity. When an env's memory is full, an added row overwrites the
    oldest one (``replacement="fifo"``, NGU's ring buffer in DeepMind's rlax) or a uniformly
    drawn one (``"random"``, episodic curiosity's official setting: the age of the rows then
    follows a geometric distribution, favouring fresh ones).
    """

    def __init__(
        self,
        num_envs: int,
        capacity: int,
        fields: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
        replacement: Replacement = "fifo",
        initial_rows: int = 64,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"memory capacity must be >= 1, got {capacity}")
        if replacement not in ("fifo", "random"):
            raise ValueError(f"unknown replacement {replacement!r}; choose one of: fifo, random")
        self.num_envs = num_envs
        self.capacity = capacity
        self.replacement = replacement
        self.fields = {name: (tuple(shape), dtype) for name, (shape, dtype) in fields.items()}
        self.lengths = torch.zeros(num_envs, dtype=torch.int64)  # valid rows per env
        self.added = torch.zeros(num_envs, dtype=torch.int64)  # rows added this episode
        self.data: dict[str, Tensor] = {}
        self._allocate(min(capacity, max(1, initial_rows)))

    def _allocate(self, rows: int) -> None:
        old = self.data
        self.data = {
            name: torch.zeros((self.num_envs, rows, *shape), dtype=dtype)
            for name, (shape, dtype) in self.fields.items()
        }
        for name, tensor in old.items():
            keep = min(rows, tensor.shape[1])
            self.data[name][:, :keep] = tensor[:, :keep]

    @property
    def allocated(self) -> int:
        return int(next(iter(self.data.values())).shape[1])

    def __getitem__(self, name: str) -> Tensor:
        return self.data[name]

    @property
    def width(self) -> int:
        """Rows a query must look at: the longest env's length (at least 1)."""
        return max(1, int(self.lengths.max()))

    def rows(self, name: str) -> Tensor:
        """``memory[name][:, :width]``: every held row of every env, ``[N, width, ...]``."""
        return self.data[name][:, : self.width]

    def valid(self) -> Tensor:
        """``[N, width]`` bool: which of ``rows(name)`` hold this episode's entries."""
        return torch.arange(self.width) < self.lengths[:, None]

    def add(
        self, envs: Tensor, rows: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> None:
        """Add ``rows[name][i]`` (``[N, *row_shape]`` per field) to env i's memory for every i
        where ``envs`` ``[N]`` bool is True. A full memory replaces a row by its policy;
        ``"random"`` draws the row from ``generator``."""
        envs = envs.to(torch.bool)
        if not bool(envs.any()):
            return
        full = self.added >= self.capacity
        slot = self.lengths.clone()
        if bool((full & envs).any()):
            if self.replacement == "fifo":
                slot = torch.where(full, self.added % self.capacity, slot)
            else:
                drawn = torch.randint(0, self.capacity, (self.num_envs,), generator=generator)
                slot = torch.where(full, drawn, slot)
        needed = int(slot[envs].max()) + 1
        if needed > self.allocated:
            self._allocate(min(self.capacity, max(needed, 2 * self.allocated)))
        index = torch.nonzero(envs).squeeze(1)
        for name, tensor in self.data.items():
            tensor[index, slot[index]] = rows[name][index].to(tensor.dtype)
        self.added += envs.to(torch.int64)
        self.lengths = torch.minimum(self.added, torch.tensor(self.capacity))

    def reset(self, envs: Tensor) -> None:
        """Forget the episodes of the envs where ``envs`` ``[N]`` bool is True."""
        envs = envs.to(torch.bool)
        self.lengths[envs] = 0
        self.added[envs] = 0

    def state_dict(self) -> dict[str, Any]:
        """The valid rows (padded to the longest memory) and the counters."""
        width = max(1, int(self.lengths.max()))
        return {
            "lengths": self.lengths.clone(),
            "added": self.added.clone(),
            "data": {name: tensor[:, :width].clone() for name, tensor in self.data.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        lengths = torch.as_tensor(state["lengths"], dtype=torch.int64)
        if lengths.shape != (self.num_envs,):
            raise ValueError(
                f"saved episodic memory is for {lengths.shape[0]} envs, not {self.num_envs}"
            )
        data = state["data"]
        width = int(next(iter(data.values())).shape[1])
        if width > self.capacity:
            raise ValueError(f"saved memory holds {width} rows, more than capacity {self.capacity}")
        self.data = {}
        self._allocate(max(width, min(self.capacity, 64)))
        for name, tensor in data.items():
            self.data[name][:, :width] = torch.as_tensor(tensor)
        self.lengths = lengths.clone()
        self.added = torch.as_tensor(state["added"], dtype=torch.int64).clone()


def knn_sq_distances(
    queries: Tensor,
    keys: Tensor,
    valid: Tensor,
    k: int,
    chunk_rows: int = 2048,
    key_sq_norms: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Squared Euclidean distances from each env's query to its ``k`` nearest valid keys.

    Args:
        queries: ``[N, D]``, one query per env.
        keys: ``[N, M, D]``, each env's memory.
        valid: ``[N, M]`` bool, which keys count.
        k: neighbours wanted.
        chunk_rows: memory rows per pass, so the ``[N, rows, D]`` temporary stays small.
        key_sq_norms: ``[N, M]``, ``|key|^2`` of each key, kept beside the memory; given, the
            neighbours are found by one batched matrix product (below).

    Returns:
        ``(distances, found)``, both ``[N, min(k, M)]`` and sorted nearest first: ``found`` is
        False (and the distance inf) where an env holds fewer than k valid keys.

    Without ``key_sq_norms``: all envs at once as ``sum_d (x - q)^2``, exact (an identical key
    is at 0). With them, the ranking ``|x|^2 - 2 q.x`` (``|q|^2`` is the same for a whole row)
    is one ``baddbmm``, then the k chosen keys' distances are taken exactly as above, so the
    values returned are the exact ones (an identical key still at 0); only near-ties within
    float32 rounding may pick a different but equally near key. Measured on one CPU thread,
    N = 64 envs, D = 32, per query step: 0.39 ms against 1.35 ms at M = 640 rows (a long
    DoorKey-8x8 episode), 0.17 against 0.49 at M = 256, 0.06 against 0.13 at M = 64 (the
    ranking alone; the exact distances of the k chosen add a gather of ``[N, k, D]``).
    """
    width = int(keys.shape[1])
    kk = min(k, width)
    if key_sq_norms is None:
        parts = [
            (keys[:, i : i + chunk_rows] - queries.unsqueeze(1)).square().sum(-1)
            for i in range(0, width, chunk_rows)
        ]
        sq = torch.cat(parts, dim=1).masked_fill(~valid, float("inf"))
        distances = sq.topk(kk, dim=1, largest=False, sorted=True).values
        return distances, torch.isfinite(distances)
    rank = torch.baddbmm(
        key_sq_norms.unsqueeze(1), queries.unsqueeze(1), keys.transpose(1, 2), alpha=-2.0
    ).squeeze(1)
    idx = rank.masked_fill(~valid, float("inf")).topk(kk, dim=1, largest=False).indices
    near = keys.gather(1, idx.unsqueeze(-1).expand(-1, -1, keys.shape[2]))
    sq = (
        (near - queries.unsqueeze(1))
        .square()
        .sum(-1)
        .masked_fill(~valid.gather(1, idx), float("inf"))
    )
    distances = sq.sort(dim=1).values
    return distances, torch.isfinite(distances)


def ngu_episodic_reward(
    sq_distances: Tensor,
    found: Tensor,
    mean_sq_distance: Tensor | float,
    *,
    kernel_epsilon: float,
    cluster_distance: float,
    pseudo_count_constant: float,
    max_similarity: float,
) -> Tensor:
    """NGU's episodic reward (Badia et al. 2020, algorithm 1) from kNN squared distances.

        d_n = max(d^2 / d_m^2 - xi, 0)          distances normalised, then clustered
        K   = eps / (d_n + eps)                 inverse kernel, 1 for an identical neighbour
        s   = sqrt(sum_kNN K) + c               similarity, a soft visit count's square root
        r   = 1 / s, or 0 where s > s_max

    Args:
        sq_distances: ``[N, k]`` squared distances to the k nearest neighbours.
        found: ``[N, k]`` bool; neighbours that do not exist add nothing to the sum.
        mean_sq_distance: d_m^2, the running mean of kNN squared distances (a scalar).

    Returns ``[N]`` float32.
    """
    mean = torch.as_tensor(mean_sq_distance, dtype=sq_distances.dtype).clamp_min(1e-12)
    rate = (sq_distances / mean - cluster_distance).clamp_min(0.0)
    kernel = torch.where(found, kernel_epsilon / (rate + kernel_epsilon), 0.0)
    similarity = kernel.sum(-1).sqrt() + pseudo_count_constant
    reward = torch.where(similarity > max_similarity, 0.0, 1.0 / similarity)
    return reward.to(torch.float32)


def masked_percentile(values: Tensor, valid: Tensor, q: float) -> Tensor:
    """The ``q``-th percentile (0..100) of each row's valid entries, by numpy's default
    ("linear": interpolated between the two nearest ranks); 0 for a row with none.

    Args:
        values: ``[N, M]``.
        valid: ``[N, M]`` bool.

    Returns ``[N]``, of ``values``' dtype.
    """
    count = valid.sum(1)
    ordered = values.masked_fill(~valid, float("inf")).sort(dim=1).values  # valid ones first
    position = (q / 100.0) * (count - 1).clamp_min(0).to(values.dtype)
    low = position.floor().long()
    high = torch.minimum(low + 1, (count - 1).clamp_min(0))
    below = ordered.gather(1, low.unsqueeze(1)).squeeze(1)
    above = ordered.gather(1, high.unsqueeze(1)).squeeze(1)
    result = below + (above - below) * (position - low.to(values.dtype))
    return torch.where(count > 0, result, torch.zeros_like(result))


class MovingAverage(nn.Module):
    """Exponential moving average with bias correction: after values x_1..x_t,
    ``mean = sum_i m^(t-i) (1 - m) x_i / (1 - m^t)`` (so the first value is the mean itself, not
    ``(1 - m) x_1``). Buffers, so it travels with ``state_dict``.

    Example:
        >>> average = MovingAverage(momentum=0.5)
        >>> average.update(torch.tensor(2.0)); average.update(torch.tensor(4.0))
        >>> float(average.mean)  # (0.5 * 0.5 * 2 + 0.5 * 4) / (1 - 0.25)
        3.3333333333333335
    """

    total: Tensor
    weight: Tensor

    def __init__(self, momentum: float) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer("total", torch.zeros((), dtype=torch.float64))
        self.register_buffer("weight", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, value: Tensor) -> None:
        self.total.mul_(self.momentum).add_((1.0 - self.momentum) * value.to(torch.float64))
        self.weight.mul_(self.momentum).add_(1.0 - self.momentum)

    @property
    def mean(self) -> Tensor:
        """The bias-corrected average (0 before any value)."""
        return self.total / self.weight.clamp_min(1e-300)
