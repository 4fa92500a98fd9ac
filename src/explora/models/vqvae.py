"""VQ-VAE with an EMA codebook: discrete codes of observations, for counting.

van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning" (NeurIPS;
the EMA dictionary update is its appendix A.1); the same update in FQ-GAN (Zhao et al. 2020)
and sonnet's ``VectorQuantizerEMA`` (``sonnet/src/nets/vqvae.py``, read 2026-12). An encoder maps
an observation to ``G`` vectors ``h_1 .. h_G`` (the *code grid*), each is replaced by its
nearest codebook vector, and a decoder reconstructs the observation from them:

    k_g      = argmin_k ||h_g - e_k||^2                     the code of slot g
    loss     = recon(x, dec(e_{k_1}, .., e_{k_G})) + beta * mean_g ||h_g - sg(e_{k_g})||^2

with the straight-through gradient: the decoder's input is ``h + sg(e - h)``, so the
reconstruction gradient reaches the encoder as if quantisation were the identity. The codebook
gets no gradient; it follows exponential moving averages of the vectors assigned to each code
(one training step, ``n_k`` vectors assigned to code k):

    N_k <- lambda * N_k + (1 - lambda) * n_k                 cluster size
    m_k <- lambda * m_k + (1 - lambda) * sum_{h -> k} h     cluster sum
    N~_k = (N_k + eps) / (n + K * eps) * n,   n = sum_k N_k  Laplace smoothing
    e_k  = m_k / N~_k

As in sonnet, the smoothed sizes only divide: ``N_k`` itself is stored unsmoothed, and the codes
and the loss of a step use the codebook as it was before that step's update.

The code of a view is the tuple ``(k_1, .., k_G)``; ``codes(obs)`` returns it, ``perplexity``
measures how evenly a batch uses the codebook (``exp`` of the entropy of the empirical code
distribution over the batch's ``B * G`` assignments; K when all codes are used equally, 1 when
one code takes everything), ``used_codes`` how many codes a batch uses.

Defaults and where they come from (sonnet's VQ-VAE example, METHODS.md, unless said):
    decay lambda = 0.99, epsilon = 1e-5, commitment beta = 0.25, Adam lr = 3e-4 (sonnet).
    num_codes K = 64 and code_dim = 16, num_latents G = 1 (sonnet: 512 codes of size 64 on
        32x32 image latents): chosen for MiniGrid's 7x7 views with
        ``benchmarks/generative/vqvae_quality.py`` and the bonus's measurements (see
        ``explora.bonuses.vqcount``). A 7x7x3 symbolic view carries ~9 bits under a random
        policy on DoorKey-8x8 (1,488 distinct views in 20,000), so 512 codes would almost name
        each view and count like exact view counts; K = 64 makes cells of similar views.
    hidden_size = 128: the width of RND's MiniGrid preset; an MLP rather than a conv stack
        (explora's grid MLP costs a third of the rl-starter CNN per sample on this CPU).

Deviations, each a choice where the sources leave one:
    * Initialisation: sonnet draws the codebook at random and starts its (debiased) EMAs at 0;
      here the first training step places every code on a random encoder output of that batch
      (data-dependent init, so no code starts out of reach), with ``N_k = 1`` and
      ``m_k = e_k``.
    * Dead-code restarts (not in sonnet; Dhariwal et al. 2020's Jukebox and Zeghidour et al.
      2021's SoundStream do the like): a code that no vector chose for ``dead_after``
      consecutive training steps is moved to a random encoder output of the current batch, with
      ``N_k = 1, m_k = h``. Why: a code the encoder never reaches is wasted capacity (fewer
      cells, coarser counts) and, in an EMA codebook, never moves by itself (an unused code's
      ``N_k`` and ``m_k`` decay together, so ``e_k`` stays put until the smoothing ``eps``
      dominates, ~1,150 steps at lambda 0.99, and then it collapses to the origin). An encoder
      output drawn at random lands where the data is dense, so the code splits a crowded cell.
      ``dead_after`` = 200 steps: long enough that a code kept alive by a rare view is not
      taken as soon as that view is out of the batch for a while (which would move the rare
      view into a crowded cell: drift where counts matter most), short enough that codes left
      dead by the initialisation come back within a few hundred training steps. The bonus
      (``explora.bonuses.vqcount``) takes one step per rollout and passes 20 (measured there).
    * Reconstruction: the input is categorical where the space says so (MiniGrid's object,
      colour and state codes: 11, 6 and 3 classes; Discrete; MultiDiscrete; MultiBinary;
      integer Boxes of at most 32 values per element) -- one-hot in, cross-entropy out,
      averaged over elements -- and Gaussian (squared error on ``obs_features``) otherwise.

Example (fit on a batch of observations, then read its codes):
    >>> import gymnasium as gym, numpy as np, torch
    >>> space = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)      # MiniGrid's view
    >>> model = VQVAE(space, num_codes=8, num_latents=2, seed=0)
    >>> obs = torch.randint(0, 3, (64, 7, 7, 3), dtype=torch.uint8)
    >>> for _ in range(20):
    ...     metrics = model.train_step(obs)
    >>> model.codes(obs[:5]).shape                                 # [B, num_latents]
    torch.Size([5, 2])
    >>> sorted(metrics)
    ['vq/commitment', 'vq/dead_restarts', 'vq/perplexity', 'vq/reconstruction', 'vq/used_codes']
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from explora.models.dynamics import (
    MINIGRID_CHANNEL_MAX,
    _is_small_grid,
    check_space,
    input_dim,
    obs_features,
)
from explora.models.encoders import layer_init
from explora.models.optim import load_training_state, training_state

MAX_CLASSES = 32  # an integer Box with more values per element is reconstructed as a float


def perplexity(codes: Tensor, num_codes: int) -> float:
    """``exp(-sum_k p_k log p_k)`` of the empirical distribution of ``codes`` (any shape, ints in
    ``[0, num_codes)``): K when all K codes are used equally often, 1 when one code takes all.

    Example:
        >>> round(perplexity(torch.tensor([0, 0, 1, 1]), 4), 6)
        2.0
    """
    counts = torch.bincount(codes.reshape(-1), minlength=num_codes).to(torch.float64)
    p = counts / counts.sum().clamp_min(1.0)
    return float(torch.exp(-torch.special.xlogy(p, p).sum()))


def _categories(space: gym.Space) -> tuple[np.ndarray, np.ndarray] | None:
    """``(classes, low)``, each ``[E]`` over the flattened elements of an observation, for a
    space whose elements are categorical; None for a float observation."""
    if isinstance(space, gym.spaces.Discrete):
        return np.array([int(space.n)]), np.array([int(space.start)])
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec, dtype=np.int64).reshape(-1)
        return nvec, np.asarray(space.start, dtype=np.int64).reshape(-1)
    if isinstance(space, gym.spaces.MultiBinary):
        size = int(np.prod(space.shape))
        return np.full(size, 2), np.zeros(size, dtype=np.int64)
    if not isinstance(space, gym.spaces.Box):
        return None
    if _is_small_grid(space):  # MiniGrid: object, colour and state codes per cell
        cells = int(np.prod(space.shape[:-1]))
        classes = np.array([int(c) + 1 for c in MINIGRID_CHANNEL_MAX])
        return np.tile(classes, cells), np.zeros(cells * 3, dtype=np.int64)
    dtype = np.dtype(space.dtype)
    if not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        return None
    low = np.asarray(space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(space.high, dtype=np.float64).reshape(-1)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        return None
    classes = high - low + 1
    if classes.max() > MAX_CLASSES:
        return None
    return classes.astype(np.int64), low.astype(np.int64)


class CategoricalElements(nn.Module):
    """The flattened elements of a categorical observation (``_categories``), and a decoder's
    logits over their classes: the output model both the VQ-VAE and the VAE use.

    Elements with the same number of classes form a group whose logits are one contiguous block
    of the decoder's output, viewed as ``[B, classes, members]``: classes first, because a
    softmax over a short last axis ran ~9x slower on this CPU (43 ms against 4.8 ms for 512
    MiniGrid views), and no gather or padding. The encoders read each element's class index
    scaled to [0, 1] (MiniGrid: the features the agent's grid MLP sees); one-hot inputs cost 7x
    more in the first layer. Its buffers are not saved: they follow from the space.

    Example:
        >>> import gymnasium as gym
        >>> cat = CategoricalElements.for_space(gym.spaces.MultiDiscrete([3, 2, 3]))
        >>> cat.num_elements, cat.out_dim
        (3, 8)
        >>> cat.predict(torch.arange(8.0).unsqueeze(0)).tolist()  # logits 0..2 | 3..4 | 5..7
        [[2, 1, 2]]
    """

    classes: Tensor
    low: Tensor

    def __init__(self, classes: np.ndarray, low: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("classes", torch.as_tensor(classes), persistent=False)
        self.register_buffer("low", torch.as_tensor(low), persistent=False)
        self.group_sizes: list[int] = []  # classes of each group of elements
        for i, size in enumerate(np.unique(classes).tolist()):
            members = np.flatnonzero(classes == size)
            self.register_buffer(f"group{i}", torch.as_tensor(members), persistent=False)
            self.group_sizes.append(int(size))
        self.num_elements = len(classes)
        self.out_dim = int(np.sum(classes))

    @classmethod
    def for_space(cls, space: gym.Space) -> CategoricalElements | None:
        """The elements of ``space``, None when its observations are not categorical."""
        categories = _categories(space)
        return None if categories is None else cls(*categories)

    def targets(self, obs: Tensor) -> Tensor:
        """Class index of each element: ``[B, *obs_shape]`` -> int64 ``[B, E]`` (clamped)."""
        flat = obs.reshape(obs.shape[0], -1).long() - self.low
        return torch.minimum(flat.clamp_min(0), self.classes - 1)

    def inputs(self, obs: Tensor) -> Tensor:
        """An encoder's input ``[B, E]``: class indices scaled to [0, 1]."""
        return self.targets(obs).float() / (self.classes - 1).clamp_min(1).float()

    def blocks(self, out: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Decoder output ``[B, out_dim]`` -> ``(members, logits [B, classes, members])`` per
        group of elements."""
        blocks, start = [], 0
        for i, size in enumerate(self.group_sizes):
            members = getattr(self, f"group{i}")
            width = size * len(members)
            blocks.append((members, out[:, start : start + width].reshape(-1, size, len(members))))
            start += width
        return blocks

    def cross_entropy(self, out: Tensor, obs: Tensor) -> Tensor:
        """``[B, E]``: -log p(element's class) under the logits ``out``."""
        targets = self.targets(obs)
        ce = out.new_empty(targets.shape)
        for members, block in self.blocks(out):
            ce[:, members] = F.cross_entropy(block, targets[:, members], reduction="none")
        return ce

    def predict(self, out: Tensor) -> Tensor:
        """Most likely class of each element, int64 ``[B, E]``."""
        classes = torch.empty(out.shape[0], self.num_elements, dtype=torch.int64, device=out.device)
        for members, block in self.blocks(out):
            classes[:, members] = block.argmax(1)
        return classes

    def values(self, classes: Tensor, like: Tensor) -> Tensor:
        """Class indices ``[B, E]`` as observations shaped and typed as ``like``."""
        return (classes + self.low).reshape(like.shape).to(like.dtype)


class VectorQuantizerEMA(nn.Module):
    """A codebook of ``num_codes`` vectors of size ``code_dim``, updated by moving averages.

    Buffers: ``codebook`` ``[K, D]`` (e_k), ``cluster_size`` ``[K]`` (N_k), ``cluster_sum``
    ``[K, D]`` (m_k), ``idle`` ``[K]`` (training steps since each code was last chosen) and
    ``initialised``. See the module docstring for the update and the restarts.
    """

    codebook: Tensor
    cluster_size: Tensor
    cluster_sum: Tensor
    idle: Tensor
    initialised: Tensor

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        *,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        commitment: float = 0.25,
        dead_after: int | None = 200,
    ) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        if num_codes < 1 or code_dim < 1:
            raise ValueError(f"num_codes and code_dim must be >= 1, got {num_codes}, {code_dim}")
        if dead_after is not None and dead_after < 1:
            raise ValueError(f"dead_after must be >= 1 or None, got {dead_after}")
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.decay = decay
        self.epsilon = epsilon
        self.commitment = commitment
        self.dead_after = dead_after
        bound = math.sqrt(3.0 / code_dim)  # sonnet's VarianceScaling(uniform), fan-in code_dim
        self.register_buffer("codebook", torch.empty(num_codes, code_dim).uniform_(-bound, bound))
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("cluster_sum", self.codebook.clone())
        self.register_buffer("idle", torch.zeros(num_codes, dtype=torch.int64))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def nearest(self, h: Tensor) -> Tensor:
        """Code of each vector: ``h`` ``[..., D]`` -> int64 ``[...]`` (ties: the lowest index)."""
        flat = h.reshape(-1, self.code_dim)
        distances = (
            flat.square().sum(1, keepdim=True)
            - 2 * flat @ self.codebook.T
            + self.codebook.square().sum(1)
        )
        return distances.argmin(dim=1).reshape(h.shape[:-1])

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``h`` ``[..., D]`` -> ``(quantized, codes, commitment_loss)``: ``quantized`` has
        ``h``'s shape and the straight-through gradient (``h + sg(e - h)``), ``codes`` int64
        ``[...]``, the loss ``beta * mean ||h - sg(e)||^2`` (mean over all elements, as sonnet).
        Does not touch the codebook (``ema_update`` does)."""
        codes = self.nearest(h)
        e = self.codebook[codes]
        loss = self.commitment * (h - e).square().mean()
        quantized = h + (e - h).detach()
        return quantized, codes, loss

    @torch.no_grad()
    def ema_update(self, h: Tensor, codes: Tensor) -> None:
        """One EMA step of N_k, m_k and e_k from ``h`` ``[..., D]`` and their ``codes``."""
        flat = h.detach().reshape(-1, self.code_dim).to(self.codebook.dtype)
        idx = codes.reshape(-1)
        counts = torch.bincount(idx, minlength=self.num_codes).to(flat.dtype)
        sums = torch.zeros_like(self.cluster_sum).index_add_(0, idx, flat)
        lam = self.decay
        self.cluster_size.mul_(lam).add_(counts, alpha=1 - lam)
        self.cluster_sum.mul_(lam).add_(sums, alpha=1 - lam)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.num_codes * self.epsilon) * n
        self.codebook.copy_(self.cluster_sum / smoothed.unsqueeze(1))
        self.idle.add_(1).masked_fill_(counts > 0, 0)

    @torch.no_grad()
    def restart(self, which: Tensor, h: Tensor, generator: torch.Generator) -> int:
        """Move the codes where ``which`` ``[K]`` bool is True onto encoder outputs drawn
        uniformly (with replacement) from ``h`` ``[..., D]``; ``N_k = 1``, ``m_k = e_k``.
        Returns how many moved."""
        chosen = which.nonzero().reshape(-1)
        if len(chosen) == 0:
            return 0
        flat = h.detach().reshape(-1, self.code_dim).to(self.codebook.dtype)
        picks = torch.randint(0, flat.shape[0], (len(chosen),), generator=generator)
        self.codebook[chosen] = flat[picks.to(flat.device)]
        self.cluster_sum[chosen] = self.codebook[chosen]
        self.cluster_size[chosen] = 1.0
        self.idle[chosen] = 0
        return len(chosen)

    @torch.no_grad()
    def initialise(self, h: Tensor, generator: torch.Generator) -> None:
        """Place every code on a random vector of ``h`` ``[..., D]`` (distinct ones when there
        are at least K of them)."""
        flat = h.detach().reshape(-1, self.code_dim).to(self.codebook.dtype)
        if flat.shape[0] >= self.num_codes:
            picks = torch.randperm(flat.shape[0], generator=generator)[: self.num_codes]
        else:
            picks = torch.randint(0, flat.shape[0], (self.num_codes,), generator=generator)
        self.codebook.copy_(flat[picks.to(flat.device)])
        self.cluster_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.idle.zero_()
        self.initialised.fill_(True)

    def dead(self) -> Tensor:
        """``[K]`` bool: codes unused for at least ``dead_after`` steps (none if it is None)."""
        if self.dead_after is None:
            return torch.zeros_like(self.idle, dtype=torch.bool)
        return self.idle >= self.dead_after


class VQVAE(nn.Module):
    """Encoder -> ``num_latents`` codes from an EMA codebook -> decoder, for one space.

    Args:
        observation_space: the space of one observation (Box, Discrete, MultiDiscrete,
            MultiBinary).
        num_codes: codebook size K.
        code_dim: size D of each code vector.
        num_latents: codes per observation G (the code grid; the cell is their tuple).
        hidden_size: width of the encoder's and decoder's two hidden layers.
        decay, epsilon, commitment: the EMA decay lambda, Laplace epsilon and beta.
        learning_rate: Adam step size of the encoder and decoder.
        dead_after: training steps without use after which a code is restarted (None: never).
        seed: seed of the weights, the initial codebook and the restarts; None draws them from
            torch's global generator.

    ``train_step(obs)`` takes one Adam step on a batch ``[B, *obs_shape]`` and updates the
    codebook; ``codes(obs)`` gives int64 ``[B, num_latents]``; ``reconstruct(obs)`` the decoded
    observation. ``state_dict`` holds the networks, the codebook buffers, Adam's state and the
    generator. See the module docstring for an example.
    """

    classes: Tensor
    low: Tensor

    def __init__(
        self,
        observation_space: gym.Space,
        *,
        num_codes: int = 64,
        code_dim: int = 16,
        num_latents: int = 1,
        hidden_size: int = 128,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        commitment: float = 0.25,
        learning_rate: float = 3e-4,
        dead_after: int | None = 200,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        check_space(observation_space, "vqvae")
        if num_latents < 1 or hidden_size < 1:
            raise ValueError(f"num_latents and hidden_size must be >= 1, got {num_latents}, "
                             f"{hidden_size}")  # fmt: skip
        self.space = observation_space
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.num_latents = num_latents
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else int(seed))
        self.elements = CategoricalElements.for_space(observation_space)
        self.categorical = self.elements is not None
        if self.elements is not None:
            in_dim, out_dim = self.elements.num_elements, self.elements.out_dim
        else:
            in_dim = out_dim = input_dim(observation_space)
        self.in_dim, self.out_dim = in_dim, out_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (), generator=self.generator)))
            self.encoder = nn.Sequential(
                layer_init(nn.Linear(in_dim, hidden_size)),
                nn.ReLU(),
                layer_init(nn.Linear(hidden_size, hidden_size)),
                nn.ReLU(),
                layer_init(nn.Linear(hidden_size, num_latents * code_dim), gain=1.0),
            )
            self.decoder = nn.Sequential(
                layer_init(nn.Linear(num_latents * code_dim, hidden_size)),
                nn.ReLU(),
                layer_init(nn.Linear(hidden_size, hidden_size)),
                nn.ReLU(),
                layer_init(nn.Linear(hidden_size, out_dim), gain=1.0),
            )
            self.quantizer = VectorQuantizerEMA(
                num_codes,
                code_dim,
                decay=decay,
                epsilon=epsilon,
                commitment=commitment,
                dead_after=dead_after,
            )
        self.learning_rate = learning_rate
        self.optimizer = torch.optim.Adam(
            [*self.encoder.parameters(), *self.decoder.parameters()], lr=learning_rate
        )

    # ---- inputs and outputs ----------------------------------------------------------------

    def _elements(self) -> CategoricalElements:
        if self.elements is None:
            raise RuntimeError("this VQ-VAE models a float observation: it has no classes")
        return self.elements

    def inputs(self, obs: Tensor) -> Tensor:
        """Encoder input ``[B, in]``: class indices scaled to [0, 1] per element (categorical
        spaces) or ``obs_features``."""
        if self.elements is None:
            return obs_features(obs, self.space)
        return self.elements.inputs(obs)

    def encode(self, obs: Tensor) -> Tensor:
        """Encoder outputs before quantisation: ``[B, *obs_shape]`` -> ``[B, G, D]``."""
        h = self.encoder(self.inputs(obs))
        return h.reshape(obs.shape[0], self.num_latents, self.code_dim)

    def decode(self, quantized: Tensor) -> Tensor:
        """Decoder output ``[B, out]`` for codes ``[B, G, D]``: the logits of every element's
        classes, group by group (categorical spaces), or the predicted features."""
        return self.decoder(quantized.reshape(quantized.shape[0], -1))

    def predict(self, out: Tensor) -> Tensor:
        """Most likely class of each element, int64 ``[B, E]``, from decoder output ``[B, out]``."""
        return self._elements().predict(out)

    def reconstruction_loss(self, obs: Tensor, out: Tensor) -> Tensor:
        """Cross-entropy per element (categorical) or squared error per feature, averaged."""
        if self.elements is None:
            return (out - obs_features(obs, self.space)).square().mean()
        return self.elements.cross_entropy(out, obs).mean()

    @torch.no_grad()
    def codes(self, obs: Tensor) -> Tensor:
        """The cell of each observation: ``[B, *obs_shape]`` -> int64 ``[B, num_latents]``."""
        return self.quantizer.nearest(self.encode(obs))

    @torch.no_grad()
    def reconstruct(self, obs: Tensor) -> Tensor:
        """Decoded observations through the codes: the most likely class of each element
        (categorical: ``[B, *obs_shape]`` int64 in the space's values) or the predicted
        features ``[B, in]``."""
        quantized, _, _ = self.quantizer(self.encode(obs))
        out = self.decode(quantized)
        if self.elements is None:
            return out
        return (self.elements.predict(out) + self.elements.low).reshape(obs.shape)

    # ---- training ----------------------------------------------------------------------------

    def loss(self, obs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, parts)`` on a batch ``[B, *obs_shape]``; ``parts`` holds the encoder outputs
        ``h`` ``[B, G, D]``, their ``codes`` and the two loss terms."""
        h = self.encode(obs)
        quantized, codes, commitment = self.quantizer(h)
        recon = self.reconstruction_loss(obs, self.decode(quantized))
        return recon + commitment, {
            "h": h,
            "codes": codes,
            "reconstruction": recon,
            "commitment": commitment,
        }

    def train_step(self, obs: Tensor) -> dict[str, float]:
        """One Adam step on ``obs`` ``[B, *obs_shape]``, then one EMA step of the codebook on
        the same encoder outputs, then restarts of dead codes. The first call places the codes
        on the batch's encoder outputs first. Returns ``vq/*`` scalars of this batch."""
        quantizer = self.quantizer
        if not bool(quantizer.initialised):
            with torch.no_grad():
                quantizer.initialise(self.encode(obs), self.generator)
        loss, parts = self.loss(obs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        h, codes = parts["h"].detach(), parts["codes"]
        quantizer.ema_update(h, codes)
        restarted = quantizer.restart(quantizer.dead(), h, self.generator)
        return {
            "vq/reconstruction": float(parts["reconstruction"].detach()),
            "vq/commitment": float(parts["commitment"].detach()),
            "vq/perplexity": perplexity(codes, self.num_codes),
            "vq/used_codes": float(torch.unique(codes).numel()),
            "vq/dead_restarts": float(restarted),
        }

    @torch.no_grad()
    def evaluate(self, obs: Tensor, batch_size: int = 4096) -> dict[str, float]:
        """Quality on held-out ``obs`` ``[B, *obs_shape]``: reconstruction loss, element and
        whole-observation accuracy (categorical spaces), perplexity of the codes, the fraction
        of codes no observation uses (dead), and the number of distinct cells (code tuples)."""
        losses, right, exact, all_codes = [], 0.0, 0.0, []
        for chunk in obs.split(batch_size):
            h = self.encode(chunk)
            quantized, codes, _ = self.quantizer(h)
            out = self.decode(quantized)
            losses.append(float(self.reconstruction_loss(chunk, out)) * len(chunk))
            all_codes.append(codes)
            if self.elements is not None:
                hit = self.elements.predict(out) == self.elements.targets(chunk)
                right += float(hit.float().mean(1).sum())
                exact += float(hit.all(1).float().sum())
        codes = torch.cat(all_codes)
        used = torch.unique(codes).numel()
        result = {
            "reconstruction": sum(losses) / len(obs),
            "perplexity": perplexity(codes, self.num_codes),
            "dead_fraction": 1.0 - used / self.num_codes,
            "distinct_cells": float(torch.unique(codes, dim=0).shape[0]),
        }
        if self.categorical:
            result["element_accuracy"] = right / len(obs)
            result["view_accuracy"] = exact / len(obs)
        return result

    def get_extra_state(self) -> dict[str, Any]:
        return training_state(self.optimizer, self.generator)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        load_training_state(state, self.generator, self.optimizer)


def code_map(
    model: VQVAE, views: Tensor, positions: np.ndarray | Tensor, grid_shape: tuple[int, int]
) -> np.ndarray:
    """Which cell the views seen at each grid position get: ``[H, W, G]`` int64, the most
    frequent code tuple among ``views`` ``[B, *obs_shape]`` taken at ``positions`` ``[B, 2]``
    (row, col), ``-1`` where no view was taken. For pictures: colour each grid cell by its
    code (G = 1) or by its tuple. Ties go to the tuple seen first.

    Example:
        >>> import gymnasium as gym, numpy as np, torch
        >>> model = VQVAE(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), num_codes=4, seed=0)
        >>> views = torch.zeros(3, 7, 7, 3, dtype=torch.uint8)
        >>> code_map(model, views, np.array([[1, 1], [1, 1], [2, 3]]), (4, 5)).shape
        (4, 5, 1)
    """
    codes = model.codes(views).cpu().numpy()
    return most_frequent_code(codes, np.asarray(positions), grid_shape)


def most_frequent_code(
    codes: np.ndarray, positions: np.ndarray, grid_shape: tuple[int, int]
) -> np.ndarray:
    """``[H, W, G]`` int64: at each grid cell, the most frequent row of ``codes`` ``[B, G]``
    among those taken at ``positions`` ``[B, 2]`` (row, col); ties go to the row seen first;
    -1 where none was taken.

    Example:
        >>> most_frequent_code(np.array([[1], [2], [2], [5]]),
        ...                    np.array([[0, 0], [0, 0], [0, 0], [1, 1]]), (2, 2))[..., 0]
        array([[ 2, -1],
               [-1,  5]])
    """
    codes = np.asarray(codes, dtype=np.int64).reshape(len(codes), -1)
    height, width = grid_shape
    out = np.full((height, width, codes.shape[1]), -1, dtype=np.int64)
    if len(codes) == 0:
        return out
    pos = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    flat = pos[:, 0] * width + pos[:, 1]
    pairs = np.concatenate([flat[:, None], codes], axis=1)
    uniq, first, counts = np.unique(pairs, axis=0, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts, uniq[:, 0]))  # by cell, most frequent, first seen
    ranked = uniq[order]
    keep = np.concatenate([[True], ranked[1:, 0] != ranked[:-1, 0]])
    best = ranked[keep]
    out.reshape(-1, codes.shape[1])[best[:, 0]] = best[:, 1:]
    return out
