"""An autoencoder with a binary code layer: a learned hash of observations (Tang et al. 2017,
"#Exploration: A Study of Count-Based Exploration for Deep Reinforcement Learning", NeurIPS,
section "Learned hash codes"; the AE-SimHash of ``explora.bonuses.aehash``).

The encoder maps an observation s to D pre-activations z(s); the code is b(s) = sigmoid(z(s)) in
(0, 1)^D and the hash is round(b(s)) in {0, 1}^D. The decoder reconstructs s from the code. In
training, uniform noise U(-a, a) is added to b before the decoder: a unit near 0.5 then carries
no information through the noise, so the decoder only reads units that sit near 0 or 1, and the
encoder learns to saturate them. A penalty pulls each unit to 0 or 1 as well:

    loss(s) = reconstruction(s | b(s) + u)  +  lambda * (1/D) sum_i min((1 - b_i)^2, b_i^2),
    u ~ U(-a, a)^D

The penalty is taken on the noiseless b, averaged over the D units (the official code's
``T.mean``, i.e. Tang et al.'s lambda/K * sum_i) and over the batch.

Where the defaults come from (official code: ``sandbox/rein/dynamics_models/bnn/
conv_bnn_count.py`` with the launchers ``sandbox/rein/algos/embedding_theano_par/launch_*.py``
and ``sandbox/haoran/hashing/bonus_trpo/ae/launch_trpo_plus_lsh_atari_ram.py``, read in the
``rllab-curriculum`` sandbox):
    noise = 0.3: ``DiscreteEmbeddingNonlinearityLayer`` adds U(-0.3, 0.3) *after* the sigmoid
        (to b, not to its pre-activation), in training only; we do the same.
    code_bits (D), penalty (lambda): the official launchers disagree (D = 128, 448 or 1024;
        ``binary_penalty`` = 0.1, 1 or 10 with a convolutional AE on 52x52 Atari frames), so
        these are chosen here by measurement on MiniGrid-DoorKey-8x8 views (below).
    reconstruction: the official code's softmax over 64 intensity bins per pixel, with label
        smoothing 0.003. Here it depends on the observation space:
        * "categorical" for discrete data: MiniGrid's symbolic 7x7x3 view (per cell, one
          categorical over its 11 object codes, one over its 6 colours, one over its 3 states),
          Discrete / MultiDiscrete / MultiBinary spaces and integer Boxes whose declared range
          has at most 32 values (DeepSea's grid); the loss is the cross-entropy
          averaged over elements, like the official code's mean per pixel;
        * "mse" for everything else: pixels scaled to [0, 1] (uint8 images / 255), other floats
          as they are; the mean squared error over elements. It is simpler and cheaper than 64
          bins per pixel (the output layer would be 64x wider); on pixel observations this
          model is tested for shapes only, not tuned.
    Networks: the encoder is ``explora.models.dynamics.Embedding`` (an MLP with one hidden layer
        on ``obs_features``, or the Nature-DQN conv stack on images of side >= 36) ending in the
        D pre-activations; the decoder is an MLP with one hidden layer of ``hidden_size``. For
        MiniGrid's 7x7 views an MLP rather than convolutions: the grid is so small that weight
        sharing saves little, and a 7x7x3 MLP was measured ~3x cheaper per sample on this CPU
        than rl-starter-files' CNN (``explora.models.encoders.GridMLP``). Inputs are the grid
        scaled per channel (``obs_features``): measured against one-hot cells (980 inputs instead
        of 147) on the split below, D = 32, lambda = 1, 3,000 steps of 256: cell accuracy 0.986
        against 0.984, whole views 0.57 against 0.47 -- no gain for 6.7x the first layer.
    ``fit``'s learning_rate 3e-4 (official ``learning_rate=0.0003``, Adam).

Measured on MiniGrid-DoorKey-8x8 (``benchmarks/generative/aehash_quality.py``: fit on 100,000
random-policy views, 3,838 distinct; scored on 20,000 others, 1,417 distinct, 252 of them never
in the training views; 3,000 Adam steps of 256, hidden 256, lr 1e-3, one seed; "merged" =
distinct test views whose code another distinct view shares; noise 0.3 unless said). The
benchmark's rows:

    | D   | lambda | cell acc | view acc | saturated | codes / views | merged views |
    | 64  | 0.1    | 0.997    | 0.826    | 0.837     | 1412 / 1417   | 0.7%         |
BENCH_ROWS
and rows of a first prototype (same data and loss; PyTorch's default initialisation, ReLU):

    | 32  | 1      | 0.986    | 0.568    | 0.929     |  826 / 1417   | 60%          |
    | 32  | 0.1    | 0.989    | 0.691    | 0.773     | 1285 / 1417   | 17%          |
    | 64  | 0.1    | 0.993    | 0.784    | 0.765     | 1409 / 1417   | 1.1%         |
    | 32  | 0, no noise (one-hot inputs) | 0.940 | 0.094 | 0.670 | 1329 / 1417 | 12%      |
    | 32  | 0 (one-hot inputs)           | 0.986 | 0.573 | 0.828 | 1294 / 1417 | 16%      |

Choices: D = 64 and lambda = 0.1. The penalty saturates the code (0.93 of units at lambda = 1
against 0.77 at 0.1) but merges views: at lambda = 1 the 32-bit code kept 826 codes for 1,417
views, at 0.1 it kept 1,285; doubling D to 64 separates all but 16 of them. The noise is what
makes the rounded code decodable: without it the decoder learns to read continuous values and
the hash decodes 9% of whole views, with it 57% (same D, lambda = 0). At the official lr 3e-4
the same 3,000 steps give D = 64, lambda = 0.1: cell 0.990, views 0.509, saturated 0.784,
1,250 codes / 1,417 views. Not every space trains as well: on DeepSea-20's one-hot grid (1 of
400 elements set) the model settles on predicting all zeros (element accuracy 0.998, 1 to 3
distinct codes for 156 views after 200-500 steps at lr 3e-4 to 3e-3): the code is never
needed; DeepSea's ``obs_type="coords"`` trains (75 codes for 166 cells after 200 steps at lr
3e-3, 230-276 keys in a 30k-frame PPO run).

Example (fit on a batch of MiniGrid-like views, then read the codes):
    >>> import gymnasium as gym, numpy as np, torch
    >>> space = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> ae = BinaryAutoencoder(space, code_bits=16, hidden_size=64)
    >>> views = torch.randint(0, 3, (64, 7, 7, 3), dtype=torch.uint8)
    >>> losses = ae.fit(views, steps=50, batch_size=32)
    >>> sorted(losses)
    ['penalty', 'reconstruction']
    >>> codes = ae.hash(views)          # bool [64, 16]: round(b)
    >>> codes.shape, codes.dtype
    (torch.Size([64, 16]), torch.bool)
    >>> ae.reconstruct(views).shape     # the decoded views, in the observations' format
    torch.Size([64, 7, 7, 3])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from explora.models.dynamics import (
    MINIGRID_CHANNEL_MAX,
    Embedding,
    check_space,
    is_small_grid,
    obs_features,
)
from explora.models.encoders import layer_init

Reconstruction = Literal["categorical", "mse"]
MAX_CLASSES = 32  # an integer Box with at most this many values per element is categorical


def is_large_image(space: gym.Space) -> bool:
    """An image ``Embedding`` encodes with its conv stack: a 3-d Box of spatial side >= 36."""
    shape = tuple(space.shape or ())
    return isinstance(space, gym.spaces.Box) and len(shape) == 3 and min(shape[:2]) >= 36


def binary_penalty(b: Tensor) -> Tensor:
    """``mean over batch and units of min((1 - b)^2, b^2)`` for codes ``b`` ``[B, D]`` in
    (0, 1): 0 when every unit is 0 or 1, 0.25 at its largest (every unit at 0.5).

    Example:
        >>> binary_penalty(torch.tensor([[0.0, 1.0, 0.5, 0.9]]))  # (0 + 0 + 0.25 + 0.01) / 4
        tensor(0.0650)
    """
    return torch.minimum(b.square(), (1.0 - b).square()).mean()


def element_classes(space: gym.Space) -> list[int] | None:
    """Number of classes of each element of an observation of ``space`` (flattened, C order)
    when its reconstruction is categorical, else None (see the module docstring)."""
    if isinstance(space, gym.spaces.Discrete):
        return [int(space.n)]
    if isinstance(space, gym.spaces.MultiDiscrete):
        return [int(n) for n in np.asarray(space.nvec).reshape(-1)]
    if isinstance(space, gym.spaces.MultiBinary):
        return [2] * int(np.prod(space.shape))
    if not isinstance(space, gym.spaces.Box) or not np.issubdtype(space.dtype, np.integer):
        return None
    shape = tuple(int(d) for d in space.shape)
    if is_small_grid(space):  # MiniGrid declares 0..255 but uses the codes below
        per_cell = [int(m) + 1 for m in MINIGRID_CHANNEL_MAX]
        return per_cell * int(np.prod(shape[:-1]))
    span = np.asarray(space.high, dtype=np.int64) - np.asarray(space.low, dtype=np.int64) + 1
    if span.max() > MAX_CLASSES:
        return None
    return [int(n) for n in np.broadcast_to(span, shape).reshape(-1)]


class BinaryAutoencoder(nn.Module):
    """Autoencoder whose code layer is a sigmoid ``b(s)`` in (0, 1)^D; ``hash(s) = round(b(s))``.

    Args:
        space: the observation space (Box, Discrete, MultiDiscrete or MultiBinary).
        code_bits: D, the code length.
        hidden_size: width of the encoder's and the decoder's hidden layer.
        noise: a, the half-width of the uniform noise added to b in training.
        penalty: lambda, the weight of the binarising penalty.

    Shapes: ``obs`` arguments are ``[B, *obs_shape]`` in the observation space's dtype; codes
    are ``[B, D]``. ``reconstruction`` says which loss the space got ("categorical" or "mse").
    """

    target_offset: Tensor
    class_max: Tensor

    def __init__(
        self,
        space: gym.Space,
        *,
        code_bits: int = 64,
        hidden_size: int = 256,
        noise: float = 0.3,
        penalty: float = 0.1,
    ) -> None:
        super().__init__()
        check_space(space, "BinaryAutoencoder")
        if code_bits < 1 or hidden_size < 1:
            raise ValueError(
                f"code_bits and hidden_size must be >= 1, got {code_bits}, {hidden_size}"
            )
        if noise < 0 or penalty < 0:
            raise ValueError(f"noise and penalty must be >= 0, got {noise}, {penalty}")
        self.space = space
        self.code_bits = code_bits
        self.hidden_size = hidden_size
        self.noise = noise
        self.penalty = penalty
        self.obs_shape = tuple(int(d) for d in space.shape or ())
        classes = element_classes(space)
        self.reconstruction: Reconstruction = "mse" if classes is None else "categorical"
        self.classes = classes or []
        self.num_elements = len(self.classes) if classes else int(np.prod(self.obs_shape or (1,)))
        out_dim = sum(self.classes) if classes else self.num_elements
        # Large images go to the conv stack as they are; everything else as the flat features
        # of ``encoder_inputs``, through an MLP.
        self.raw_images = classes is None and is_large_image(space)
        in_dim = int(np.prod(self.obs_shape)) if not isinstance(space, gym.spaces.Discrete) else 0
        flat = gym.spaces.Box(-np.inf, np.inf, (in_dim or int(space.n),), np.float32)  # type: ignore[attr-defined]
        self.encoder = Embedding(
            space if self.raw_images else flat, feature_size=code_bits, hidden_size=hidden_size
        )
        self.decoder = nn.Sequential(
            layer_init(nn.Linear(code_bits, hidden_size)),
            nn.LeakyReLU(),
            layer_init(nn.Linear(hidden_size, out_dim), gain=1.0),
        )
        if classes:
            # Elements grouped by class count, so the loss takes one cross-entropy per group
            # instead of one per element: ``groups[n]`` = (element indices, logit offsets).
            offsets = np.concatenate([[0], np.cumsum(classes)[:-1]])
            self._groups: dict[int, tuple[Tensor, Tensor]] = {}
            for n in sorted(set(classes)):
                idx = np.flatnonzero(np.asarray(classes) == n)
                logit_idx = offsets[idx][:, None] + np.arange(n)[None, :]
                self._groups[n] = (torch.from_numpy(idx), torch.from_numpy(logit_idx))
            low = getattr(space, "start", None) if not isinstance(space, gym.spaces.Box) else None
            if isinstance(space, gym.spaces.Box) and not is_small_grid(space):
                low = np.broadcast_to(np.asarray(space.low, np.int64), self.obs_shape)
            offset = np.zeros(self.num_elements, np.int64) if low is None else np.array(low)
            self.register_buffer(
                "target_offset",
                torch.as_tensor(offset, dtype=torch.int64).reshape(-1).clone(),
                persistent=False,
            )
            self.register_buffer(
                "class_max", torch.tensor(classes, dtype=torch.int64) - 1, persistent=False
            )

    # --- codes -------------------------------------------------------------------------------

    def logits(self, obs: Tensor) -> Tensor:
        """z(s), the code's pre-activations: ``[B, *obs_shape]`` -> ``[B, D]``."""
        return self.encoder(obs if self.raw_images else self.encoder_inputs(obs))

    def code(self, obs: Tensor) -> Tensor:
        """b(s) = sigmoid(z(s)), noiseless: ``[B, D]`` in (0, 1)."""
        return torch.sigmoid(self.logits(obs))

    @torch.no_grad()
    def hash(self, obs: Tensor) -> Tensor:
        """round(b(s)): bool ``[B, D]`` (b = 0.5 exactly rounds to 0, as ``torch.round``)."""
        return self.code(obs).round().bool()

    # --- reconstruction ----------------------------------------------------------------------

    def decode(self, b: Tensor) -> Tensor:
        """Decoder outputs for codes ``b`` ``[B, D]``: ``[B, sum(classes)]`` logits
        ("categorical") or ``[B, num_elements]`` values ("mse")."""
        return self.decoder(b)

    def targets(self, obs: Tensor) -> Tensor:
        """What the decoder reconstructs: ``[B, num_elements]`` class indices ("categorical",
        int64) or ``obs_features`` ("mse", float32)."""
        batch = obs.shape[0]
        if self.reconstruction == "mse":
            return obs_features(obs, self.space)
        values = obs.reshape(batch, -1).long() - self.target_offset
        return torch.minimum(values.clamp_min(0), self.class_max)

    def encoder_inputs(self, obs: Tensor) -> Tensor:
        """The encoder's inputs ``[B, *obs_shape]`` -> float32 ``[B, features]``: categorical
        elements scaled to [0, 1] by their class range (MiniGrid: object / 10, colour / 5,
        state / 2; a one-hot grid as 0/1), a Discrete value one-hot, else ``obs_features``."""
        if self.reconstruction == "mse" or isinstance(self.space, gym.spaces.Discrete):
            return obs_features(obs, self.space)
        return self.targets(obs).float() / self.class_max.clamp_min(1)

    def reconstruction_loss(self, out: Tensor, target: Tensor) -> Tensor:
        """Mean over elements and batch: cross-entropy ("categorical") or squared error."""
        if self.reconstruction == "mse":
            return (out - target).square().mean()
        total = out.new_zeros(())
        for _n, (idx, logit_idx) in self._groups.items():
            # Classes on dim 1, elements last: [B, n, elements of n classes]. The same
            # cross-entropy as on [B * elements, n] rows, but torch's CPU log-softmax over a
            # last dim of 3-11 classes is not vectorised: this layout made the MiniGrid loss's
            # forward and backward ~5x faster (15.5 -> 2.8 ms for 256 views, measured roughly).
            logits = out[:, logit_idx.T.to(out.device)]
            labels = target[:, idx.to(out.device)]
            total = total + nn.functional.cross_entropy(logits, labels, reduction="sum")
        return total / (out.shape[0] * self.num_elements)

    def loss(
        self, obs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss on ``obs`` ``[B, *obs_shape]`` with fresh noise from ``generator``
        (torch's global one when None): ``(total, {"reconstruction", "penalty"})``."""
        b = self.code(obs)
        u = torch.rand(b.shape, generator=generator, device=b.device) if self.noise > 0 else None
        noisy = b + self.noise * (2.0 * u - 1.0) if u is not None else b
        recon = self.reconstruction_loss(self.decode(noisy), self.targets(obs))
        pen = binary_penalty(b)
        return recon + self.penalty * pen, {
            "reconstruction": recon.detach(),
            "penalty": pen.detach(),
        }

    @torch.no_grad()
    def reconstruct(self, obs: Tensor) -> Tensor:
        """Decode the hash round(b(s)) back to an observation ``[B, *obs_shape]``: the most
        likely class per element ("categorical", in the observations' dtype) or the decoded
        features ("mse", float32 in ``obs_features``' scale)."""
        out = self.decode(self.hash(obs).float())
        batch = obs.shape[0]
        if self.reconstruction == "mse":
            return out.reshape(batch, *self.obs_shape)
        values = torch.empty(batch, self.num_elements, dtype=torch.int64, device=out.device)
        for _n, (idx, logit_idx) in self._groups.items():
            values[:, idx] = out[:, logit_idx].argmax(-1)
        values = values + self.target_offset
        return values.reshape(batch, *self.obs_shape).to(obs.dtype)

    def fit(
        self,
        obs: Tensor,
        *,
        steps: int,
        batch_size: int = 256,
        learning_rate: float = 3e-4,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """Train on ``obs`` ``[B, *obs_shape]`` for ``steps`` Adam steps on minibatches drawn with
        replacement (a fresh optimiser each call; ``explora.bonuses.aehash`` keeps its own).
        Returns the mean losses of the last 10% of steps."""
        optimizer = torch.optim.Adam(self.parameters(), lr=learning_rate)
        recon, pen = [], []
        for _ in range(steps):
            idx = torch.randint(
                0, obs.shape[0], (min(batch_size, obs.shape[0]),), generator=generator
            )
            loss, parts = self.loss(obs[idx.to(obs.device)], generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            recon.append(parts["reconstruction"])
            pen.append(parts["penalty"])
        tail = max(1, steps // 10)
        return {
            "reconstruction": float(torch.stack(recon[-tail:]).mean()),
            "penalty": float(torch.stack(pen[-tail:]).mean()),
        }

    @torch.no_grad()
    def quality(self, obs: Tensor) -> dict[str, float]:
        """Figures of the model on ``obs`` ``[B, *obs_shape]``: ``saturated`` (fraction of code
        units with |b - 0.5| > 0.4), and for "categorical" data ``element_accuracy`` (fraction of
        elements that round(b) decodes right) and ``view_accuracy`` (whole observations)."""
        b = self.code(obs)
        out: dict[str, float] = {"saturated": float(((b - 0.5).abs() > 0.4).float().mean())}
        if self.reconstruction == "categorical":
            right = self.reconstruct(obs).reshape(obs.shape[0], -1) == obs.reshape(obs.shape[0], -1)
            out["element_accuracy"] = float(right.float().mean())
            out["view_accuracy"] = float(right.all(-1).float().mean())
        else:
            error = self.reconstruct(obs).reshape(obs.shape[0], -1) - self.targets(obs)
            out["mse"] = float(error.square().mean())
        return out


# --- pictures ---------------------------------------------------------------------------------

# MiniGrid's object codes (minigrid.core.constants.OBJECT_TO_IDX) and how a cell is drawn:
# a fill colour for the background objects, the object's own colour and a letter otherwise.
_OBJECT_LETTER = {4: "D", 5: "K", 6: "o", 7: "B", 10: "A"}
_BACKGROUND = {
    0: (0.0, 0.0, 0.0),  # unseen
    1: (0.15, 0.15, 0.15),  # empty
    2: (0.5, 0.5, 0.5),  # wall
    3: (0.25, 0.25, 0.3),  # floor
    8: (0.1, 0.8, 0.1),  # goal
    9: (1.0, 0.5, 0.0),  # lava
}
_COLOURS = [  # minigrid.core.constants.COLORS in COLOR_TO_IDX order, scaled to [0, 1]
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (0.44, 0.15, 0.76),
    (1.0, 1.0, 0.0),
    (0.39, 0.39, 0.39),
]
_DOOR_STATE = {0: "open", 1: "", 2: "lock"}


def grid_view_image(view: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """A MiniGrid symbolic view ``[W, H, 3]`` (object, colour, state per cell, indexed
    ``[x, y]`` as MiniGrid encodes it) as an RGB image ``[H, W, 3]`` in [0, 1] (rows are y, so
    the agent sits at the bottom centre) and the letters to write on it ``(y, x, text)``."""
    view = np.asarray(view)
    width, height = view.shape[:2]
    image = np.zeros((height, width, 3))
    letters = []
    for x in range(width):
        for y in range(height):
            obj, colour, state = (int(v) for v in view[x, y])
            if obj in _BACKGROUND:
                image[y, x] = _BACKGROUND[obj]
                continue
            image[y, x] = _COLOURS[colour % len(_COLOURS)]
            text = _OBJECT_LETTER.get(obj, "?")
            if obj == 4:
                text += _DOOR_STATE.get(state, "")
            letters.append((y, x, text))
    return image, letters


def render_reconstructions(
    model: BinaryAutoencoder, views: Tensor, path: str | Path, max_views: int = 8
) -> Path:
    """Draw up to ``max_views`` MiniGrid views ``[B, 7, 7, 3]`` (top row) above the views
    decoded from their hash round(b) (bottom row, titled with the cells decoded wrong) and write
    the figure to ``path`` (PNG). Needs matplotlib and a categorical small-grid model.

    Example:
        >>> import gymnasium as gym, numpy as np, torch, tempfile, os
        >>> ae = BinaryAutoencoder(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), code_bits=8)
        >>> views = torch.randint(0, 3, (4, 7, 7, 3), dtype=torch.uint8)
        >>> out = render_reconstructions(ae, views, os.path.join(tempfile.mkdtemp(), "r.png"))
        >>> out.stat().st_size > 0
        True
    """
    if not is_small_grid(model.space):
        raise ValueError(
            f"render_reconstructions draws MiniGrid's symbolic [H, W, 3] views; the model was "
            f"built for {model.space}"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = views[:max_views]
    decoded = model.reconstruct(views)
    n = int(views.shape[0])
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for i in range(n):
        wrong = int((decoded[i] != views[i]).any(-1).sum())
        for row, (grid, title) in enumerate(
            ((views[i], "view"), (decoded[i], f"decoded ({wrong} wrong)"))
        ):
            ax: Any = axes[row][i]
            image, letters = grid_view_image(grid.cpu().numpy())
            ax.imshow(image, interpolation="nearest")
            for y, x, text in letters:
                ax.text(x, y, text, ha="center", va="center", fontsize=7, color="white")
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
