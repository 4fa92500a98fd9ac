"""Embeddings and dynamics models that prediction- and memory-based bonuses share.

- ``obs_features(obs, space)``: observations as float network inputs (MiniGrid's symbolic grid
  scaled per channel, pixels / 255, Discrete one-hot, anything else flattened).
- ``action_features(actions, space)``: a Discrete action one-hot, a Box action flattened.
- ``Embedding``: phi(s), an MLP on those inputs (or the Nature-DQN conv stack on large images;
  ``arch="minigrid-conv"``: RIDE's three stride-2 3x3 convolutions for MiniGrid's 7x7x3 grid).
- ``InverseDynamics``: phi trained to predict the action from (phi(s), phi(s')): cross-entropy
  for Discrete actions, squared error for Box actions of any dimension (Pathak et al. 2017's
  inverse model; the embedding of ICM, RIDE, E3B and NGU).
- ``ForwardModel``: f(phi(s), a) -> phi(s'), and its per-sample error (ICM's curiosity).
- ``CuriosityFeatures``: the feature space of forward-dynamics curiosity (Burda et al. 2018):
  "raw" observations, fixed "random" features, inverse-dynamics ("idf") features or an encoder
  object, behind an ``ObsWhitening`` of the inputs; ``EnsembleForwardModel``: K forward models
  of that study's shape in one batched computation (the dynamics and disagreement bonuses).

The widths are small on purpose: explora's bonuses run on a 2-core CPU next to the agent (RND
measured 256/128-wide nets at a sixth of the agent's cost, see ``bonuses/rnd.py``).

Example:
    >>> import gymnasium as gym, numpy as np, torch
    >>> obs_space = gym.spaces.Box(0, 10, (7, 7, 3), np.uint8)
    >>> idf = InverseDynamics(obs_space, gym.spaces.Discrete(7), feature_size=32)
    >>> s = torch.randint(0, 10, (16, 7, 7, 3), dtype=torch.uint8)
    >>> s2 = torch.randint(0, 10, (16, 7, 7, 3), dtype=torch.uint8)
    >>> a = torch.randint(0, 7, (16,))
    >>> idf.loss(s, a, s2).shape, idf.embed(s).shape
    (torch.Size([]), torch.Size([16, 32]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.models.encoders import layer_init
from explora.models.ensemble import EnsembleLinear

BONUS_SPACES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)
MINIGRID_CHANNEL_MAX = (10.0, 5.0, 2.0)  # MiniGrid's largest object, colour and state codes
EmbeddingArch = Literal["auto", "mlp", "minigrid-conv"]


def check_space(space: gym.Space, who: str) -> None:
    """Raise ``ValueError`` naming ``who`` for an observation space no embedding here takes."""
    if not isinstance(space, BONUS_SPACES):
        raise ValueError(
            f"{who} cannot take observations from {type(space).__name__}; accepted spaces: "
            "Box, Discrete, MultiDiscrete, MultiBinary"
        )


def check_actions(
    space: gym.Space,
    who: str,
    why: str = "its inverse-dynamics model predicts them",
    accepted: str = "",
) -> None:
    """Raise ``ValueError`` naming ``who`` (and ``why`` it needs them, then ``accepted``) for
    an action space the dynamics models do not take (not Discrete or Box)."""
    if not isinstance(space, gym.spaces.Discrete | gym.spaces.Box):
        raise ValueError(f"{who} needs Discrete or Box actions ({why}), got {space}{accepted}")


def iter_minibatches(
    total: int, proportion: float, epochs: int, minibatches: int, generator: torch.Generator
) -> Iterator[Tensor]:
    """Index minibatches for ``epochs`` passes, each over a random ``proportion`` of ``total``
    samples drawn without replacement and split into ``minibatches`` chunks. Lazy: an epoch's
    permutation is drawn from ``generator`` when its first minibatch is asked for, so a loop
    that draws from the same generator between minibatches keeps its order (with
    ``proportion=1`` an epoch is ``torch.randperm(total).chunk(minibatches)``)."""
    keep = max(1, round(proportion * total))
    for _ in range(epochs):
        yield from torch.randperm(total, generator=generator)[:keep].chunk(minibatches)


def sample_minibatches(
    total: int, proportion: float, epochs: int, minibatches: int, generator: torch.Generator
) -> list[Tensor]:
    """``iter_minibatches`` drawn all at once."""
    return list(iter_minibatches(total, proportion, epochs, minibatches, generator))


def _is_large_image(space: gym.Space) -> bool:
    shape = tuple(space.shape or ())
    return isinstance(space, gym.spaces.Box) and len(shape) == 3 and min(shape[:2]) >= 36


def _is_small_grid(space: gym.Space) -> bool:
    """MiniGrid's symbolic view: a small integer image with three channels."""
    shape = tuple(space.shape or ())
    return (
        isinstance(space, gym.spaces.Box)
        and len(shape) == 3
        and shape[-1] == 3
        and max(shape[:2]) <= 32
        and np.issubdtype(space.dtype, np.integer)
    )


is_small_grid = _is_small_grid  # the public name (bonuses pick MiniGrid's embedding with it)


def input_dim(space: gym.Space) -> int:
    """Width of ``obs_features`` for one observation of ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape or (1,)))


def obs_features(obs: Tensor, space: gym.Space) -> Tensor:
    """``[B, *obs_shape]`` -> float32 ``[B, input_dim(space)]``, roughly in [0, 1] where the
    space says how: MiniGrid grids divided by the largest code of each channel, uint8 images by
    255, Discrete values one-hot; anything else as it is."""
    batch = obs.shape[0]
    if isinstance(space, gym.spaces.Discrete):
        return nn.functional.one_hot(
            obs.long().reshape(batch) - int(space.start), int(space.n)
        ).float()
    x = obs.float()
    if _is_small_grid(space):
        x = x / x.new_tensor(MINIGRID_CHANNEL_MAX)
    elif isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and x.dim() >= 3:
        # pixels; a uint8 grid already in {0, 1} (DeepSea's one-hot) stays as it is
        if float(np.max(space.high)) > 1:
            x = x / 255.0
    return x.reshape(batch, -1)


def action_dim(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape or (1,)))
    raise ValueError(f"dynamics models take Discrete or Box actions, got {space}")


def action_features(actions: Tensor, space: gym.Space) -> Tensor:
    """``[B]`` Discrete actions -> one-hot ``[B, n]``; ``[B, *shape]`` Box actions -> ``[B, d]``."""
    if isinstance(space, gym.spaces.Discrete):
        return nn.functional.one_hot(actions.long() - int(space.start), int(space.n)).float()
    return actions.float().reshape(actions.shape[0], -1)


class Embedding(nn.Module):
    """phi(s): ``[B, *obs_shape]`` -> ``[B, out_dim]``.

    ``arch``:
        "auto": the Nature-DQN conv stack then a linear layer for images of side >= 36
            (``[H, W, C]`` with C <= 4, or ``[C, H, W]``), else "mlp".
        "mlp": an MLP with one hidden layer of ``hidden_size`` on ``obs_features``.
        "minigrid-conv": RIDE's MiniGrid embedding (facebookresearch/impact-driven-exploration,
            ``src/models.py`` ``MinigridStateEmbeddingNet``): three 3x3 convolutions of stride 2
            and padding 1 with 32, 32 and ``feature_size`` channels, each followed by ELU, on
            a small integer grid ``[H, W, 3]``; 7x7 shrinks to 1x1, so ``out_dim`` is
            ``feature_size`` (``feature_size * h * w`` on larger grids). Its inputs are the
            grid scaled by ``obs_features`` (RIDE divides the codes by 255).

    ``out_dim`` is ``feature_size`` except as said for "minigrid-conv".
    """

    def __init__(
        self,
        space: gym.Space,
        feature_size: int = 64,
        hidden_size: int = 128,
        arch: EmbeddingArch = "auto",
    ) -> None:
        super().__init__()
        if arch not in ("auto", "mlp", "minigrid-conv"):
            raise ValueError(f"unknown arch {arch!r}; choose one of: auto, minigrid-conv, mlp")
        self.space = space
        self.arch = arch
        self.out_dim = feature_size
        self.conv: nn.Module | None = None
        self.grid_conv: nn.Module | None = None
        shape = tuple(int(d) for d in space.shape or ())
        if arch == "minigrid-conv":
            if not _is_small_grid(space):
                raise ValueError(
                    f"arch='minigrid-conv' needs a small integer grid [H, W, 3] (MiniGrid's "
                    f"symbolic view), got {space}; use arch='auto' or 'mlp'"
                )
            self.grid_conv = nn.Sequential(
                layer_init(nn.Conv2d(3, 32, 3, stride=2, padding=1)),
                nn.ELU(),
                layer_init(nn.Conv2d(32, 32, 3, stride=2, padding=1)),
                nn.ELU(),
                layer_init(nn.Conv2d(32, feature_size, 3, stride=2, padding=1)),
                nn.ELU(),
                nn.Flatten(),
            )
            with torch.no_grad():
                self.out_dim = int(self.grid_conv(torch.zeros(1, 3, *shape[:2])).shape[1])
            self.head: nn.Module = nn.Identity()
        elif arch == "auto" and _is_large_image(space):
            self.channel_last = shape[-1] <= 4 < shape[0]
            channels = shape[-1] if self.channel_last else shape[0]
            self.conv = nn.Sequential(
                layer_init(nn.Conv2d(channels, 32, 8, stride=4)),
                nn.LeakyReLU(),
                layer_init(nn.Conv2d(32, 64, 4, stride=2)),
                nn.LeakyReLU(),
                layer_init(nn.Conv2d(64, 64, 3, stride=1)),
                nn.LeakyReLU(),
                nn.Flatten(),
            )
            with torch.no_grad():
                probe = torch.zeros(1, *shape)
                flat = int(self.conv(self._image(probe)).shape[1])
            self.head = layer_init(nn.Linear(flat, feature_size))
        else:
            self.head = nn.Sequential(
                layer_init(nn.Linear(input_dim(space), hidden_size)),
                nn.LeakyReLU(),
                layer_init(nn.Linear(hidden_size, feature_size)),
            )

    def _image(self, obs: Tensor) -> Tensor:
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
        return x.permute(0, 3, 1, 2) if self.channel_last else x

    def forward(self, obs: Tensor) -> Tensor:
        if self.grid_conv is not None:
            grid = obs_features(obs, self.space).reshape(obs.shape)
            return self.grid_conv(grid.permute(0, 3, 1, 2))
        if self.conv is not None:
            return self.head(self.conv(self._image(obs)))
        return self.head(obs_features(obs, self.space))


class InverseDynamics(nn.Module):
    """An embedding trained to tell which action led from s to s' (Pathak et al. 2017).

    ``loss(s, a, s')``: cross-entropy of g(phi(s), phi(s')) against a Discrete action, or half
    the squared error summed over the dimensions of a Box action, averaged over the batch.
    ``arch`` picks the embedding (``Embedding``); the inverse head is one hidden layer of
    ``hidden_size`` on the two embeddings.
    """

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        feature_size: int = 64,
        hidden_size: int = 128,
        arch: EmbeddingArch = "auto",
    ) -> None:
        super().__init__()
        self.action_space = action_space
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.embedding = Embedding(obs_space, feature_size, hidden_size, arch)
        self.inverse = nn.Sequential(
            layer_init(nn.Linear(2 * self.embedding.out_dim, hidden_size)),
            nn.ReLU(),
            layer_init(nn.Linear(hidden_size, action_dim(action_space)), gain=1.0),
        )

    def embed(self, obs: Tensor) -> Tensor:
        return self.embedding(obs)

    def embed_pair(self, obs: Tensor, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(phi(s), phi(s'))``, each ``[B, out_dim]``, for ``obs``, ``next_obs``
        ``[B, *obs_shape]``, in one pass of the embedding."""
        phi, phi_next = self.embed(torch.cat([obs, next_obs])).chunk(2)
        return phi, phi_next

    def inverse_loss(self, phi: Tensor, phi_next: Tensor, actions: Tensor) -> Tensor:
        """The inverse model's loss from embeddings already computed (shared with a forward
        model's loss by ICM)."""
        out = self.inverse(torch.cat([phi, phi_next], dim=-1))
        if self.discrete:
            target = actions.long().reshape(-1) - int(self.action_space.start)  # type: ignore[attr-defined]
            return nn.functional.cross_entropy(out, target)
        target = action_features(actions, self.action_space)
        return 0.5 * (out - target).square().sum(-1).mean()

    def loss(self, obs: Tensor, actions: Tensor, next_obs: Tensor) -> Tensor:
        return self.inverse_loss(*self.embed_pair(obs, next_obs), actions)


class ForwardModel(nn.Module):
    """f(phi(s), a) -> phi(s'): an MLP on the embedding and the action's features."""

    def __init__(self, feature_size: int, action_space: gym.Space, hidden_size: int = 128) -> None:
        super().__init__()
        self.action_space = action_space
        self.net = nn.Sequential(
            layer_init(nn.Linear(feature_size + action_dim(action_space), hidden_size)),
            nn.ReLU(),
            layer_init(nn.Linear(hidden_size, feature_size), gain=1.0),
        )

    def forward(self, phi: Tensor, actions: Tensor) -> Tensor:
        return self.net(torch.cat([phi, action_features(actions, self.action_space)], dim=-1))

    def error(self, phi: Tensor, actions: Tensor, phi_next: Tensor) -> Tensor:
        """``[B]``: half the squared error of the prediction, summed over features (ICM's
        ``0.5 * ||f(phi(s), a) - phi(s')||^2``)."""
        return 0.5 * (self(phi, actions) - phi_next).square().sum(-1)


# --- Forward-dynamics curiosity in a chosen feature space (Burda et al. 2018) ----------------

FEATURE_KINDS = ("raw", "random", "idf", "vae")
VAE_MISSING = (
    "features='vae' is the dynamics bonus's (dynamics features=vae: a VAE trained beside the "
    "forward model, explora.models.vae); here pass the encoder itself: features=<an nn.Module "
    "with an out_dim attribute and forward(obs) -> [B, out_dim]> (give it loss(obs, actions, "
    "next_obs) -> a scalar tensor to have it trained alongside the forward model), or any "
    "callable obs -> [B, d]"
)


def check_features(features: Any) -> str:
    """The name a run config records for ``features`` (the kind, or ``"<ClassName>"`` of an
    encoder object); raises ``ValueError`` for "vae" (only the dynamics bonus builds a VAE)
    and unknown values."""
    if isinstance(features, str):
        if features == "vae":
            raise ValueError(VAE_MISSING)
        if features not in FEATURE_KINDS:
            raise ValueError(
                f"unknown features {features!r}; choose one of: {', '.join(FEATURE_KINDS)}, "
                "or pass an encoder (an nn.Module with out_dim and forward(obs) -> [B, d])"
            )
        return features
    if callable(features):
        return f"<{type(features).__name__}>"
    raise ValueError(
        f"features must be one of {', '.join(FEATURE_KINDS)} or an encoder (an nn.Module with "
        f"out_dim and forward(obs) -> [B, d], or a callable), got {features!r}"
    )


class ObsWhitening(nn.Module):
    """``[B, *obs_shape]`` -> float32 ``[B, input_dim(space)]``: ``(obs_features(obs) - mean) /
    std`` with ``mean`` per input feature and ``std`` one number, the mean over input features
    of their standard deviations. This is how the large-scale curiosity code (Burda et al. 2018,
    ``utils.random_agent_ob_mean_std``, used by ``auxiliary_tasks.py`` and ``dynamics.py``)
    normalises observations: with a random agent's statistics, fixed for the run. The identity
    until ``set_statistics`` is called.

    Example:
        >>> w = ObsWhitening(gym.spaces.Box(0.0, 1.0, (2,)))
        >>> w.set_statistics(torch.tensor([1.0, 2.0]), torch.tensor([4.0, 16.0]))
        >>> w(torch.tensor([[4.0, 2.0]]))  # std = (2 + 4) / 2
        tensor([[1., 0.]])
    """

    mean: Tensor
    std: Tensor

    def __init__(self, space: gym.Space) -> None:
        super().__init__()
        self.space = space
        self.register_buffer("mean", torch.zeros(input_dim(space)))
        self.register_buffer("std", torch.ones(()))

    @torch.no_grad()
    def set_statistics(self, mean: Tensor, var: Tensor) -> None:
        """Fix the statistics from the per-input-feature ``mean`` and ``var`` ``[input_dim]``."""
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(var.clamp_min(0.0).sqrt().mean().clamp_min(1e-8).to(self.std.dtype))

    def forward(self, obs: Tensor) -> Tensor:
        return (obs_features(obs, self.space) - self.mean) / self.std


def layer_normalize(x: Tensor) -> Tensor:
    """``(x - mean) / (std + 1e-8)`` over the last dimension, no learned scale: the large-scale
    curiosity code's ``utils.layernorm`` (its ``--layernorm`` flag)."""
    mean = x.mean(dim=-1, keepdim=True)
    std = (x - mean).square().mean(dim=-1, keepdim=True).sqrt()
    return (x - mean) / (std + 1e-8)


class EnsembleForwardModel(nn.Module):
    """K forward models f_k(phi(s), a) -> phi(s') evaluated as one batched computation.

    The shape of the large-scale curiosity study's dynamics net (openai/large-scale-curiosity
    ``dynamics.py``, also the disagreement code's): a dense layer to ``hidden_size``, then
    ``residual_blocks`` blocks ``x + W2 [lrelu(W1 [x, a]), a]``, then a dense layer to
    ``feature_size``, with the action's features concatenated to the input of every layer;
    LeakyReLU with slope 0.2 (``tf.nn.leaky_relu``). Weights are Glorot-uniform and biases zero
    (``tf.layers.dense``'s defaults), drawn independently per member. Each layer is an
    ``EnsembleLinear`` (weights ``[K, in, out]``, one ``torch.baddbmm``), so K members cost one
    batched matmul per layer, not K calls.

    ``forward(phi, actions)``: ``phi`` ``[B, feature_size]`` (shared by all members) or
    ``[K, B, feature_size]``, ``actions`` ``[B, *action_shape]`` -> ``[K, B, feature_size]``.

    Example:
        >>> f = EnsembleForwardModel(5, 8, gym.spaces.Discrete(3), hidden_size=16)
        >>> f(torch.zeros(4, 8), torch.tensor([0, 1, 2, 0])).shape
        torch.Size([5, 4, 8])
    """

    def __init__(
        self,
        members: int,
        feature_size: int,
        action_space: gym.Space,
        hidden_size: int = 512,
        residual_blocks: int = 4,
    ) -> None:
        super().__init__()
        if members < 1 or residual_blocks < 0:
            raise ValueError(
                f"members must be >= 1 and residual_blocks >= 0, got {members}, {residual_blocks}"
            )
        self.members = members
        self.action_space = action_space
        act = action_dim(action_space)
        self.first = EnsembleLinear(members, feature_size + act, hidden_size)
        # residual block i: x + outer[i]([lrelu(inner[i]([x, a])), a])
        self.inner = nn.ModuleList(
            EnsembleLinear(members, hidden_size + act, hidden_size) for _ in range(residual_blocks)
        )
        self.outer = nn.ModuleList(
            EnsembleLinear(members, hidden_size + act, hidden_size) for _ in range(residual_blocks)
        )
        self.last = EnsembleLinear(members, hidden_size + act, feature_size)
        with torch.no_grad():
            for layer in self.modules():
                if isinstance(layer, EnsembleLinear):
                    fan_in, fan_out = layer.weight.shape[1], layer.weight.shape[2]
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    layer.weight.uniform_(-bound, bound)
                    layer.bias.zero_()

    def forward(self, phi: Tensor, actions: Tensor) -> Tensor:
        if isinstance(self.action_space, gym.spaces.Discrete):
            action: Tensor = actions.long().reshape(-1) - int(self.action_space.start)
        else:
            action = action_features(actions, self.action_space)  # [B, A]
        x = nn.functional.leaky_relu(self._layer(self.first, phi, action), 0.2)  # [K, B, hidden]
        for inner, outer in zip(self.inner, self.outer, strict=True):
            assert isinstance(inner, EnsembleLinear) and isinstance(outer, EnsembleLinear)
            res = nn.functional.leaky_relu(self._layer(inner, x, action), 0.2)
            x = x + self._layer(outer, res, action)
        return self._layer(self.last, x, action)

    def _layer(self, layer: EnsembleLinear, x: Tensor, action: Tensor) -> Tensor:
        """``layer([x, a])`` without building the concatenation: ``x @ W_x + a @ W_a + b``, where
        a one-hot action's ``a @ W_a`` is its row of ``W_a`` (measured: the concatenations took
        an eighth of a 5-member update). ``x`` ``[B, in]`` or ``[K, B, in]``; ``action`` ``[B]``
        Discrete indices or ``[B, A]`` Box features."""
        width = x.shape[-1]
        w_x, w_a = layer.weight[:, :width], layer.weight[:, width:]
        if action.dim() == 1:
            shift = w_a.index_select(1, action)  # [K, B, out]
        else:
            shift = torch.matmul(action, w_a)  # [B, A] @ [K, A, out] -> [K, B, out]
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, *x.shape)
        return torch.baddbmm(layer.bias + shift, x, w_x)


def _embedding_space(space: gym.Space) -> gym.spaces.Box:
    """The float Box that ``ObsWhitening``'s output, reshaped to the observation's shape, lives
    in: the space ``CuriosityFeatures`` builds its networks for (a large image still gets the
    conv stack, now on whitened pixels)."""
    if isinstance(space, gym.spaces.Discrete):
        shape: tuple[int, ...] = (int(space.n),)
    else:
        shape = tuple(int(d) for d in space.shape or ()) or (1,)
    return gym.spaces.Box(-np.inf, np.inf, shape, np.float32)


class CuriosityFeatures(nn.Module):
    """phi(s), the feature space in which a forward model's error is the curiosity (Burda et
    al. 2018, "Large-Scale Study of Curiosity-Driven Learning"; openai/large-scale-curiosity
    ``auxiliary_tasks.py``): ``[B, *obs_shape]`` -> ``[B, out_dim]``.

    ``features``:
        "raw": the observations themselves, ``obs_features`` whitened (``out_dim`` =
            ``input_dim(space)``); the paper's pixel variant (``JustPixels``).
        "random": a randomly initialised ``Embedding`` that is never trained (the code's default
            ``feat_learning="none"``).
        "idf": the embedding of an ``InverseDynamics`` model, trained by the inverse loss only:
            ``loss`` hands the forward model detached features, as the code's
            ``tf.stop_gradient`` does.
        "vae": the dynamics bonus only (``bonuses/dynamics.py``); elsewhere raises ``ValueError``
        naming what to pass instead.
        an encoder object: an ``nn.Module`` with ``out_dim`` and ``forward(obs) -> [B, d]`` (its
            parameters join this module's ``state_dict``), or any callable ``obs -> [B, d]``,
            given the raw observations. With a method ``loss(obs, actions, next_obs)`` returning
            a scalar tensor, that loss trains it (``trains`` is True); without one it is used
            as it is, never trained here.

    With ``whiten=True`` the networks of "raw", "random" and "idf" see ``ObsWhitening``'s output
    (``self.whitening``, the identity until its statistics are set); an encoder object gets the
    observations as they come. ``layernorm=True`` normalises the features of "random", "idf" or
    an encoder with ``layer_normalize`` (the code's ``--layernorm``, off by default; the code
    refuses it for raw pixels, and so does this class).

    Example:
        >>> space = gym.spaces.Box(0, 10, (7, 7, 3), np.uint8)
        >>> phi = CuriosityFeatures("random", space, gym.spaces.Discrete(7), feature_size=16)
        >>> phi(torch.zeros(5, 7, 7, 3, dtype=torch.uint8)).shape, phi.trains
        (torch.Size([5, 16]), False)
    """

    def __init__(
        self,
        features: str | nn.Module | Callable[[Tensor], Tensor],
        obs_space: gym.Space,
        action_space: gym.Space,
        feature_size: int = 512,
        hidden_size: int = 512,
        whiten: bool = True,
        layernorm: bool = False,
    ) -> None:
        super().__init__()
        name = check_features(features)
        self.kind = name if isinstance(features, str) else "encoder"
        if layernorm and self.kind == "raw":
            raise ValueError("layernorm applies to learned or random features, not to 'raw' ones")
        self.obs_space = obs_space
        self.layernorm = layernorm
        self.whitening = ObsWhitening(obs_space) if whiten and self.kind != "encoder" else None
        space = _embedding_space(obs_space) if self.whitening is not None else obs_space
        self.inner_shape = tuple(int(d) for d in space.shape or ())
        self.embedding: Embedding | None = None
        self.idf: InverseDynamics | None = None
        self.encoder: nn.Module | None = None
        self._encode: Callable[[Tensor], Tensor] | None = None
        self._encoder_loss: Callable[..., Tensor] | None = None
        if self.kind == "raw":
            self.out_dim = input_dim(obs_space)
        elif self.kind == "random":
            self.embedding = Embedding(space, feature_size, hidden_size)
            self.embedding.requires_grad_(False)
            self.out_dim = self.embedding.out_dim
        elif self.kind == "idf":
            self.idf = InverseDynamics(space, action_space, feature_size, hidden_size)
            self.out_dim = self.idf.embedding.out_dim
        else:
            assert callable(features)
            if isinstance(features, nn.Module):
                self.encoder = features
            else:
                self._encode = features
            loss = getattr(features, "loss", None)
            self._encoder_loss = loss if callable(loss) else None
            out_dim = getattr(features, "out_dim", None)
            if out_dim is None:
                with torch.no_grad():
                    probe = torch.zeros(1, *(obs_space.shape or ()), dtype=_torch_dtype(obs_space))
                    out_dim = int(features(probe).shape[-1])
            self.out_dim = int(out_dim)
        self.trains = self.kind == "idf" or self._encoder_loss is not None

    def _inputs(self, obs: Tensor) -> Tensor:
        if self.whitening is None:
            return obs
        return self.whitening(obs).reshape(obs.shape[0], *self.inner_shape)

    def forward(self, obs: Tensor) -> Tensor:
        if self.kind == "raw":
            if self.whitening is not None:
                return self.whitening(obs)
            return obs_features(obs, self.obs_space)
        if self.embedding is not None:
            phi = self.embedding(self._inputs(obs))
        elif self.idf is not None:
            phi = self.idf.embed(self._inputs(obs))
        else:
            encode = self.encoder if self.encoder is not None else self._encode
            assert encode is not None
            phi = encode(obs)
        return layer_normalize(phi) if self.layernorm else phi

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters ``loss`` trains: the inverse model's for "idf", an encoder's when it
        has a loss, none otherwise."""
        if not self.trains:
            return []
        return [p for p in self.parameters() if p.requires_grad]

    def loss(
        self, obs: Tensor, actions: Tensor, next_obs: Tensor
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """``(loss, phi(s), phi(s'))`` for ``obs``, ``next_obs`` ``[B, *obs_shape]`` and
        ``actions`` ``[B, *action_shape]``: the features' own training loss (None when they do
        not train) and the features, detached, for the forward model (whose loss must not reach
        them: the code's ``tf.stop_gradient``)."""
        both = torch.cat([obs, next_obs])
        if self.idf is not None:
            phi, phi_next = self(both).chunk(2)
            return self.idf.inverse_loss(phi, phi_next, actions), phi.detach(), phi_next.detach()
        with torch.no_grad():
            phi, phi_next = self(both).chunk(2)
        loss = self._encoder_loss(obs, actions, next_obs) if self._encoder_loss else None
        return loss, phi, phi_next


def _torch_dtype(space: gym.Space) -> torch.dtype:
    if isinstance(space, gym.spaces.Discrete):
        return torch.int64
    dtype = np.dtype(space.dtype) if space.dtype is not None else np.dtype(np.float32)
    return torch.from_numpy(np.zeros((), dtype=dtype)).dtype
