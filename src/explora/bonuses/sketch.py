"""A count-min sketch over k-bit binary codes (Cormode & Muthukrishnan 2005), as SimHash uses it.

Tang et al. (2017, "#Exploration", official ``HashingBonusEvaluator``) count SimHash codes in
one table row per modulus ``p_j``; the code ``b`` (bits ``b_0 .. b_{k-1}``) lands in bucket

    index_j(b) = (sum_i b_i * 2^i) mod p_j

and its count is the minimum over rows, which can overcount (when another code shares the bucket
in every row) but never undercounts. The default moduli are the official code's six primes just
below 10^6 (a 6 x 999983 table).

The integer value of a k-bit code overflows int64 for k > 63, so it is never formed: each row
holds ``2^i mod p_j`` for every bit, and ``b @ (2^i mod p_j)`` is a sum of at most k terms below
``p_j``, reduced mod ``p_j`` afterwards -- exact for any k. The product runs in float64 (integer
sums below 2^53 are exact there, and float64 matmul also runs on GPUs, unlike int64).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

TANG_PRIMES: tuple[int, ...] = (999931, 999953, 999959, 999961, 999979, 999983)
"""Moduli of the official #Exploration code (``bucket_sizes``): six primes just below 10^6."""


class CountMinSketch(nn.Module):
    """Approximate counts of binary codes ``[B, num_bits]``; never undercounts.

    ``table`` ``[rows, max(moduli)]`` int32 is a buffer, so ``state_dict`` holds the counts
    (int32: 2^31 visits per bucket is far beyond any run here, and halves the 6M-bucket table).

    Example:
        >>> sketch = CountMinSketch(num_bits=8)
        >>> codes = torch.tensor([[1, 0, 1, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0, 0, 0]])
        >>> sketch.add(codes)
        >>> sketch.count(codes[:1])
        tensor([2])
    """

    table: Tensor
    moduli: Tensor
    powers: Tensor

    def __init__(self, num_bits: int, moduli: Sequence[int] = TANG_PRIMES) -> None:
        super().__init__()
        moduli = [int(p) for p in moduli]
        if num_bits < 1:
            raise ValueError(f"num_bits must be >= 1, got {num_bits}")
        if not moduli or min(moduli) < 2:
            raise ValueError(f"moduli must be a non-empty list of integers >= 2, got {moduli}")
        if num_bits * max(moduli) >= 2**53:
            raise ValueError(
                f"num_bits * max(moduli) = {num_bits * max(moduli)} must stay below 2^53 for "
                "exact bucket indices; use smaller moduli"
            )
        self.num_bits = num_bits
        powers = torch.empty(num_bits, len(moduli), dtype=torch.float64)
        for j, p in enumerate(moduli):
            power = 1
            for i in range(num_bits):
                powers[i, j] = power
                power = power * 2 % p
        # Derived from (num_bits, moduli): rebuilt by the constructor, not saved.
        self.register_buffer("powers", powers, persistent=False)
        self.register_buffer("moduli", torch.tensor(moduli, dtype=torch.int64), persistent=False)
        self.register_buffer("table", torch.zeros(len(moduli), max(moduli), dtype=torch.int32))
        # Occupied buckets per row, kept up to date by ``add`` (None: count them from the table
        # at the next ``occupied`` call, as after ``load_state_dict``): counting a 6 x 999983
        # table per rollout took ~36 ms, about half of plain PPO's time per rollout.
        self._occupied: Tensor | None = None

    def indices(self, codes: Tensor) -> Tensor:
        """Bucket of each code in each row: 0/1 or bool ``[B, num_bits]`` -> int64 ``[B, rows]``."""
        if codes.shape[-1] != self.num_bits:
            raise ValueError(
                f"expected codes of {self.num_bits} bits, got shape {tuple(codes.shape)}"
            )
        weighted = codes.to(device=self.powers.device, dtype=torch.float64) @ self.powers
        return weighted.to(torch.int64) % self.moduli

    @torch.no_grad()
    def add(self, codes: Tensor) -> None:
        """Count each code of ``codes`` ``[B, num_bits]`` once."""
        idx = self.indices(codes)  # [B, rows]
        rows = torch.arange(idx.shape[1], device=idx.device).expand_as(idx)
        if self._occupied is not None:  # buckets empty before this add, each counted once
            empty = self.table[rows, idx] == 0
            fresh = torch.unique(rows[empty] * self.table.shape[1] + idx[empty])
            self._occupied += torch.bincount(
                fresh // self.table.shape[1], minlength=self.table.shape[0]
            )
        ones = torch.ones(idx.numel(), dtype=self.table.dtype, device=idx.device)
        self.table.index_put_((rows.reshape(-1), idx.reshape(-1)), ones, accumulate=True)

    @torch.no_grad()
    def occupied(self) -> Tensor:
        """Number of non-empty buckets in each row, int64 ``[rows]`` (kept up to date by
        ``add``; counted from the table once after a load). Valid while the table changes only
        through ``add`` and ``load_state_dict``: code that writes ``table`` itself (vqcount
        rebuilds it) must count ``(table != 0).sum(dim=1)`` instead."""
        if self._occupied is None:
            self._occupied = (self.table != 0).sum(dim=1)
        return self._occupied.clone()

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._occupied = None  # the table changed: count again when asked

    def count(self, codes: Tensor) -> Tensor:
        """Estimated count of each code, ``[B, num_bits]`` -> ``[B]`` int64 (min over rows)."""
        idx = self.indices(codes)  # [B, rows]
        return self.table.gather(1, idx.T).min(dim=0).values.to(torch.int64)
