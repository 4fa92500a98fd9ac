"""Q-networks as an ensemble of K independent MLPs evaluated in one batched call.

``EnsembleQ`` holds K heads (K = 1 for DQN), each an MLP on the flattened observation; with
``prior_scale > 0`` every head adds a fixed, randomly initialised prior network of the same shape
(Osband et al. 2018, "Randomized Prior Functions for Deep RL"):

    Q_k(s, .) = f_k(s, .) + prior_scale * p_k(s, .)        p_k never trained

Layers are ``EnsembleLinear``: weights ``[K, in, out]`` applied with one batched matmul, so 20
heads cost about what one wider layer does.

``init`` draws the weights: "uniform" is torch's ``nn.Linear`` default (weights and biases
uniform in +-1/sqrt(fan_in)); "truncated-normal" is haiku's ``hk.Linear`` default, which bsuite's
agents use (weights normal with std 1/sqrt(fan_in), cut at 2 std; biases 0). It matters for a
prior: with DeepSea-N's one-hot input, the first layer's output for a state is one weight row,
of size ~1/N, while uniform biases of the later layers reach 1/sqrt(50) and are the same for
every state. Measured with bootdqn: DeepSea-36 unsolved after 5,000 episodes with "uniform",
solved at episode 583 with "truncated-normal".

With ``one_hot=True`` (observations that are one-hot, like DeepSea's) the first layer is
``OneHotInput``, a lookup with sparse gradients (``lazy_adam``); otherwise ``EnsembleLinear``
looks rows up too, with a dense gradient. With ``noisy=True`` a layer is a factorised-Gaussian
NoisyNet layer (Fortunato et al. 2018): ``W = mu_W + sigma_W * (f(e_out) f(e_in)^T)``,
f(x) = sign(x) sqrt(|x|), sigma initialised to ``sigma0 / sqrt(in)`` with sigma0 = 0.5, new
noise drawn by ``reset_noise``.

Example:
    >>> q = EnsembleQ(in_dim=4, num_actions=2, heads=3, hidden=(16, 16), prior_scale=3.0)
    >>> q(torch.zeros(5, 4)).shape
    torch.Size([3, 5, 2])
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

INITS = ("uniform", "truncated-normal")


def _init_(weight: Tensor, bias: Tensor, fan_in: int, init: str) -> None:
    with torch.no_grad():
        if init == "uniform":  # torch's nn.Linear default range
            bound = 1.0 / math.sqrt(fan_in)
            weight.uniform_(-bound, bound)
            bias.uniform_(-bound, bound)
        elif init == "truncated-normal":  # haiku's hk.Linear default
            std = 1.0 / math.sqrt(fan_in)
            nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
            bias.zero_()
        else:
            raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")


class EnsembleLinear(nn.Module):
    """K independent linear layers; input ``[K, B, in]`` or ``[B, in]`` (shared by all)."""

    eps_in: Tensor
    eps_out: Tensor

    def __init__(
        self,
        heads: int,
        in_dim: int,
        out_dim: int,
        noisy: bool = False,
        sigma0: float = 0.5,
        init: str = "uniform",
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(heads, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(heads, 1, out_dim))
        _init_(self.weight, self.bias, in_dim, init)
        self._grad_buffer: Tensor | None = None  # see _add_row_grads
        self._dirty = torch.zeros(0, dtype=torch.bool)
        self.noisy = noisy
        if noisy:
            sigma = sigma0 / math.sqrt(in_dim)
            self.weight_sigma = nn.Parameter(torch.full((heads, in_dim, out_dim), sigma))
            self.bias_sigma = nn.Parameter(torch.full((heads, 1, out_dim), sigma))
            self.register_buffer("eps_in", torch.zeros(heads, in_dim, 1))
            self.register_buffer("eps_out", torch.zeros(heads, 1, out_dim))
            self.reset_noise()

    @staticmethod
    def _scaled(x: Tensor) -> Tensor:
        return x.sign() * x.abs().sqrt()

    def reset_noise(self) -> None:
        if self.noisy:
            self.eps_in.copy_(self._scaled(torch.randn_like(self.eps_in)))
            self.eps_out.copy_(self._scaled(torch.randn_like(self.eps_out)))

    def forward(self, x: Tensor | OneHot) -> Tensor:
        if isinstance(x, OneHot):  # x @ W for one-hot rows is a row lookup
            return self._lookup(x)
        weight: Tensor = self.weight
        bias: Tensor = self.bias
        if self.noisy:
            weight = weight + self.weight_sigma * (self.eps_in * self.eps_out)
            bias = bias + self.bias_sigma * self.eps_out
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
        return torch.baddbmm(bias, x, weight)

    def _lookup(self, x: OneHot) -> Tensor:
        weight: Tensor = self.weight
        if self.noisy:
            weight = weight + self.weight_sigma * (self.eps_in * self.eps_out)
            rows = weight.index_select(1, x.hot)
        elif torch.is_grad_enabled() and self.weight.requires_grad:
            rows = _RowsOf.apply(self.weight, x.hot, self)
        else:
            rows = self.weight.index_select(1, x.hot)
        rows = rows * x.present.view(1, -1, 1)
        bias = self.bias + self.bias_sigma * self.eps_out if self.noisy else self.bias
        return rows + bias

    def _add_row_grads(self, hot: Tensor, grad: Tensor) -> None:
        """Add ``grad`` ``[K, B, out]`` into rows ``hot`` of ``weight.grad``. The gradient lives
        in one buffer kept across steps: when an optimizer has reset ``weight.grad`` to None,
        only the rows written since the last reset (``_dirty``) are zeroed again. Autograd's own
        backward of a row lookup allocates and zero-fills a tensor the size of the whole table
        every step: with DeepSea-100's 10,000 inputs x 20 heads x 50 units that fill was half
        of the step."""
        if self._grad_buffer is None or self._grad_buffer.shape != self.weight.shape:
            self._grad_buffer = torch.zeros_like(self.weight)
            self._dirty = torch.zeros(self.weight.shape[1], dtype=torch.bool)
        buffer = self._grad_buffer
        if self.weight.grad is None:
            buffer.index_fill_(1, self._dirty.nonzero().squeeze(1), 0.0)
            self._dirty.zero_()
            self.weight.grad = buffer
        if self.weight.grad is buffer:
            self._dirty[hot] = True
        self.weight.grad.index_add_(1, hot, grad)


class _RowsOf(torch.autograd.Function):
    """``weight.index_select(1, hot)`` whose backward writes the table's gradient through
    ``EnsembleLinear._add_row_grads`` (returning None to autograd for ``weight``)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, hot: Tensor, layer: EnsembleLinear) -> Tensor:
        ctx.save_for_backward(hot)
        ctx.layer = layer
        return weight.index_select(1, hot)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, None]:
        (hot,) = ctx.saved_tensors
        ctx.layer._add_row_grads(hot, grad)
        return None, None, None


class OneHot(NamedTuple):
    """A batch of rows that are one-hot or all zero, stored as the hot position: ``x @ W`` is
    then ``W[index]`` (zero where ``present`` is 0), which costs a lookup instead of a matmul
    over the full width (DeepSea-N's N x N one-hot observation)."""

    hot: Tensor  # [B] long
    present: Tensor  # [B] float, 1 where the row has its one, 0 for an all-zero row


def as_inputs(obs: Tensor) -> Tensor | OneHot:
    """``[B, *shape]`` observations as network inputs: ``OneHot`` when every entry is 0 or 1
    and no row has more than one 1, else flattened float32."""
    flat = obs.reshape(obs.shape[0], -1)
    # max() over the whole batch is a fast vectorised pass; argmax and int64 sums are not
    # (DeepSea-100's batch of 128 x 10,000: 0.8 ms for this against 1.6 ms)
    if flat.dtype in (torch.uint8, torch.bool) and int(flat.max()) <= 1:
        counts = flat.sum(dim=1, dtype=torch.int32)
        if bool((counts <= 1).all()):
            present, hot = flat.max(dim=1)
            return OneHot(hot, present.float())
    return flat.float()


class OneHotInput(nn.Module):
    """The first layer of K heads for one-hot inputs, as an embedding table with sparse
    gradients: ``weight`` ``[in, K * out]`` (row s holds every head's weights for state s), so
    a batch touches only the rows of its states and ``torch.optim.SparseAdam`` updates only
    those. The dense alternative moves the whole table every step: for DeepSea-100 (10,000
    inputs x 20 heads x 50 units) that is 10M parameters per Adam step."""

    def __init__(self, heads: int, in_dim: int, out_dim: int, init: str = "uniform") -> None:
        super().__init__()
        self.heads, self.out_dim = heads, out_dim
        self.weight = nn.Parameter(torch.empty(in_dim, heads * out_dim))
        self.bias = nn.Parameter(torch.empty(heads, 1, out_dim))
        _init_(self.weight, self.bias, in_dim, init)

    def forward(self, x: Tensor | OneHot) -> Tensor:
        if not isinstance(x, OneHot):
            raise ValueError("this network was built for one-hot observations (as_inputs)")
        rows = nn.functional.embedding(x.hot, self.weight, sparse=True)  # [B, K * out]
        rows = rows * x.present.unsqueeze(1)
        return rows.view(-1, self.heads, self.out_dim).transpose(0, 1) + self.bias


def _mlp(
    heads: int, sizes: list[int], noisy: bool, one_hot: bool = False, init: str = "uniform"
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        first = OneHotInput(heads, a, b, init) if i == 0 and one_hot else None
        layers.append(first or EnsembleLinear(heads, a, b, noisy=noisy, init=init))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class EnsembleQ(nn.Module):
    """``[B, in_dim]`` float inputs (or ``OneHot``, see ``as_inputs``) -> ``[K, B, num_actions]``
    Q-values."""

    def __init__(
        self,
        in_dim: int,
        num_actions: int,
        heads: int = 1,
        hidden: tuple[int, ...] = (64, 64),
        prior_scale: float = 0.0,
        noisy: bool = False,
        one_hot: bool = False,
        init: str = "uniform",
    ) -> None:
        super().__init__()
        if noisy and one_hot:
            raise ValueError("NoisyNet layers take dense inputs; one_hot must be False")
        sizes = [in_dim, *hidden, num_actions]
        self.heads = heads
        self.net = _mlp(heads, sizes, noisy, one_hot, init)
        self.prior_scale = prior_scale
        self.prior = _mlp(heads, sizes, False, one_hot, init) if prior_scale > 0 else None
        self._prior_table: Tensor | None = None
        if self.prior is not None:
            self.prior.requires_grad_(False)

    def forward(self, x: Tensor | OneHot) -> Tensor:
        q = self.net(x)
        prior = self.prior_q(x)
        return q if prior is None else q + prior

    def _prior_of_states(self, x: OneHot) -> Tensor:
        """The fixed prior's outputs, looked up: with one-hot inputs there are only ``in_dim``
        distinct inputs (plus the all-zero one), so its table ``[in_dim + 1, K, A]`` is computed
        once and halves the cost of a forward pass."""
        if self._prior_table is None:
            assert self.prior is not None
            first = self.prior[0]
            assert isinstance(first, OneHotInput)
            n = first.weight.shape[0]
            every = OneHot(torch.arange(n + 1).clamp(max=n - 1), (torch.arange(n + 1) < n).float())
            self._prior_table = torch.cat(
                [self.prior(OneHot(every.hot[i : i + 4096], every.present[i : i + 4096]))
                 for i in range(0, n + 1, 4096)],
                dim=1,
            ).transpose(0, 1)  # fmt: skip
        index = torch.where(x.present > 0, x.hot, self._prior_table.shape[0] - 1)
        return self._prior_table[index].transpose(0, 1)

    def prior_q(self, x: Tensor | OneHot) -> Tensor | None:
        """``prior_scale * p_k(x)`` ``[K, B, A]``, the fixed part of every head (None without
        priors)."""
        if self.prior is None:
            return None
        with torch.no_grad():
            table = isinstance(x, OneHot) and isinstance(self.prior[0], OneHotInput)
            prior = self._prior_of_states(x) if table else self.prior(x)  # type: ignore[arg-type]
        return self.prior_scale * prior

    @torch.no_grad()
    def copy_heads_(self, dst_heads: Tensor, src: EnsembleQ, src_heads: Tensor) -> None:
        """Copy the trained part (``net``, not the prior) of ``src``'s heads ``src_heads`` into
        this ensemble's heads ``dst_heads`` (two index tensors of one length); the two
        ensembles must have the same layers, with any number of heads each."""
        for dst, source in zip(self.net, src.net, strict=True):
            if isinstance(dst, EnsembleLinear) and isinstance(source, EnsembleLinear):
                if dst.noisy or source.noisy:
                    raise ValueError("copy_heads_ does not copy NoisyNet layers")
                dst.weight[dst_heads] = source.weight[src_heads]
                dst.bias[dst_heads] = source.bias[src_heads]
            elif isinstance(dst, OneHotInput) and isinstance(source, OneHotInput):
                rows = dst.weight.shape[0]
                dst_w = dst.weight.view(rows, dst.heads, dst.out_dim)
                src_w = source.weight.view(rows, source.heads, source.out_dim)
                dst_w[:, dst_heads] = src_w[:, src_heads]
                dst.bias[dst_heads] = source.bias[src_heads]
            elif type(dst) is not type(source):
                kinds = f"{type(source).__name__} into a {type(dst).__name__}"
                raise ValueError(f"cannot copy a {kinds}")

    def reset_noise(self) -> None:
        for layer in self.net:
            if isinstance(layer, EnsembleLinear):
                layer.reset_noise()
