"""A small gated PixelCNN: an exact autoregressive density over grids of categorical values.

PixelCNN (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu 2016,
"Conditional Image Generation with PixelCNN Decoders", NeurIPS) factorises the probability of an
``H x W`` grid with ``C`` categorical channels per cell into conditionals, cells in raster order
and the channels of a cell in their order:

    log rho(x) = sum_{i in raster order} sum_{c < C} log p(x_{i,c} | x_{<i}, x_{i,<c})

Every conditional is a softmax over the channel's ``K_c`` values, so ``log rho`` is exact (no
bound, no sampling) and the whole batch is scored in one pass. The conditioning is enforced by
masked convolutions: the first layer (mask A) lets the features of channel group ``c`` at cell
``i`` see all channels of the cells before ``i`` and the channels ``< c`` of cell ``i``; the
later layers (mask B) also let a group see its own group at the same cell, which by then holds
only what mask A let in. Hidden feature maps are split into ``C`` contiguous groups, one per
channel (van den Oord et al.'s colour-channel masks, generalised to channels of any number of
values); the input is the one-hot of each channel, so the model never treats codes as ordered.

Architecture (the density model of Ostrovski, Bellemare, van den Oord & Munos 2017,
"Count-Based Exploration with Neural Density Models", as the bonus-based-exploration
reimplementation builds it, ``intrinsic_motivation/intrinsic_rewards.py``):

    h = MaskedConv_A(7x7)(onehot(x))                                  hidden_size maps
    repeat num_layers:  a, b = MaskedConv_B(3x3)(h) + Conv1x1(e)       e: learned per-cell
                        h = h + MaskedConv_B(1x1)(tanh(a) * sigmoid(b))   embedding (4 maps)
    h = relu(h + Conv1x1(e));  h = relu(MaskedConv_B(1x1)(h))         head_size maps
    logits = MaskedConv_B(1x1)(h)                                      sum_c K_c maps

Defaults (that code's gin configs: ``_network_template.num_layers = 2``, ``hidden_units = 16``;
kernels 7 and 3, head 64 and the 4-map position embedding are in the network itself; weights
variance-scaling uniform with fan-in, zero biases). Deviations:
    * The gate is ``tanh(a) * sigmoid(b)`` (van den Oord et al.'s gated activation). The
      reimplementation computes ``tanh(a) + sigmoid(b)`` on interleaved channels, which looks
      like a slip: its sum is not a gate.
    * The input is one-hot per channel instead of the raw intensity as one float channel: the
      reimplementation only sees grey levels, which are ordered; MiniGrid's object, colour and
      state codes are not.
    * The reimplementation's single channel needs no channel groups; here they make a cell's
      several channels exact too.
Like the reimplementation (and unlike van den Oord et al.'s two-stack version) this is a single
masked stack, so a cell does not see the cells above and to the right of its receptive field
(the "blind spot"): the density stays exact, it just conditions on less.

Pixels: ``downsample_frames`` turns frames into Ostrovski et al.'s 42 x 42 grey images with
8 intensity levels, a grid with one channel of 8 values.

Example (fit on a batch of MiniGrid-like views and read the bits per observation):
    >>> import math, torch
    >>> model = GatedPixelCNN(7, 7, categories=(11, 6, 3))
    >>> x = torch.randint(0, 3, (64, 7, 7, 3))            # [B, H, W, C] integer codes
    >>> optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    >>> before = float(-model.log_prob(x).mean()) / math.log(2)
    >>> for _ in range(50):
    ...     optimizer.zero_grad()
    ...     loss = -model.log_prob(x).mean()
    ...     loss.backward()
    ...     optimizer.step()
    >>> after = float(-model.log_prob(x).mean()) / math.log(2)   # bits per observation
    >>> model.log_prob(x).shape, after < before
    (torch.Size([64]), True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: Ostrovski et al. (2017) and the reimplementation: frames to 42 x 42 with 8 grey levels.
FRAME_SIZE = 42
FRAME_LEVELS = 8


def channel_groups(size: int, groups: int) -> list[int]:
    """Group of each of ``size`` feature maps, split as evenly as possible into ``groups``
    contiguous groups: ``channel_groups(5, 2) == [0, 0, 0, 1, 1]``."""
    if size < groups:
        raise ValueError(f"need at least one feature map per channel: {size} maps < {groups}")
    return [j * groups // size for j in range(size)]


def autoregressive_mask(
    kernel: int, in_groups: Sequence[int], out_groups: Sequence[int], mask_type: str
) -> Tensor:
    """``[out, in, kernel, kernel]`` 0/1 mask of a convolution whose output cell sees the cells
    before it in raster order, and at its own cell the input groups below its own (mask "A") or
    up to its own (mask "B")."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"unknown mask type {mask_type!r}; choose one of: A, B")
    if kernel % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {kernel}")
    centre = kernel // 2
    mask = torch.zeros(len(out_groups), len(in_groups), kernel, kernel)
    mask[:, :, :centre, :] = 1.0  # rows above
    mask[:, :, centre, :centre] = 1.0  # same row, to the left
    g_in = torch.tensor(list(in_groups)).view(1, -1)
    g_out = torch.tensor(list(out_groups)).view(-1, 1)
    own = g_in < g_out if mask_type == "A" else g_in <= g_out
    mask[:, :, centre, centre] = own.float()
    return mask


def _variance_scaling_(weight: Tensor, fan_in: int) -> None:
    """TF's ``variance_scaling_initializer(distribution='uniform')``: U(+-sqrt(3 / fan_in))."""
    bound = math.sqrt(3.0 / max(1, fan_in))
    nn.init.uniform_(weight, -bound, bound)


class MaskedConv2d(nn.Conv2d):
    """A same-size convolution whose weight is multiplied by an autoregressive mask (a buffer,
    so it travels with ``state_dict`` and stays fixed under ``torch.func.functional_call``)."""

    mask: Tensor

    def __init__(
        self, in_groups: Sequence[int], out_groups: Sequence[int], kernel: int, mask_type: str
    ) -> None:
        super().__init__(len(in_groups), len(out_groups), kernel, padding=kernel // 2)
        self.register_buffer("mask", autoregressive_mask(kernel, in_groups, out_groups, mask_type))
        _variance_scaling_(self.weight, len(in_groups) * kernel * kernel)
        nn.init.zeros_(self.bias)  # type: ignore[arg-type]
        with torch.no_grad():
            self.weight.mul_(self.mask)  # masked entries never matter; keep them 0 to read

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 1)
    _variance_scaling_(conv.weight, in_channels)
    nn.init.zeros_(conv.bias)  # type: ignore[arg-type]
    return conv


class GatedPixelCNN(nn.Module):
    """Exact density over ``[B, H, W, C]`` grids whose channel ``c`` takes values
    ``0 .. categories[c] - 1``.

    Args:
        height, width: grid size.
        categories: number of values of each channel (MiniGrid: 11 objects, 6 colours,
            4 states, as ``explora.bonuses.pseudocount`` sets them; pixels: ``(8,)``).
        hidden_size: feature maps of the masked stack (split among the channels).
        num_layers: gated residual layers.
        first_kernel: side of the first (mask A) convolution.
        kernel: side of the gated layers' masked convolutions.
        head_size: feature maps of the 1x1 layer before the logits.
        position_size: maps of the learned per-cell embedding (0: none).

    ``log_prob(x)`` is ``[B]`` nats; calling the model on ``one_hot(x)`` gives the
    ``[B, H, W, C]`` terms of its sum (the form ``torch.func.functional_call`` takes).
    """

    def __init__(
        self,
        height: int,
        width: int,
        categories: Sequence[int],
        *,
        hidden_size: int = 16,
        num_layers: int = 2,
        first_kernel: int = 7,
        kernel: int = 3,
        head_size: int = 64,
        position_size: int = 4,
    ) -> None:
        super().__init__()
        self.categories = tuple(int(k) for k in categories)
        if not self.categories or min(self.categories) < 1:
            raise ValueError(f"categories must be >= 1 values per channel, got {categories}")
        if min(height, width) < 1 or num_layers < 0 or position_size < 0:
            raise ValueError("height, width must be >= 1; num_layers, position_size >= 0")
        self.height, self.width = int(height), int(width)
        channels = len(self.categories)
        self.dims = self.height * self.width * channels  # values per observation
        in_groups = [c for c, k in enumerate(self.categories) for _ in range(k)]
        hidden = channel_groups(hidden_size, channels)
        self.input = MaskedConv2d(in_groups, hidden, first_kernel, "A")
        self.gates = nn.ModuleList(
            [MaskedConv2d(hidden, hidden + hidden, kernel, "B") for _ in range(num_layers)]
        )
        self.mixes = nn.ModuleList(
            [MaskedConv2d(hidden, hidden, 1, "B") for _ in range(num_layers)]
        )
        self.position_size = position_size
        if position_size:
            self.position = nn.Parameter(torch.empty(1, position_size, self.height, self.width))
            _variance_scaling_(self.position, self.height * self.width)
            self.gate_positions = nn.ModuleList(
                [_conv1x1(position_size, 2 * hidden_size) for _ in range(num_layers)]
            )
            self.out_position = _conv1x1(position_size, hidden_size)
        self.head = MaskedConv2d(hidden, channel_groups(head_size, channels), 1, "B")
        self.logits_layer = MaskedConv2d(channel_groups(head_size, channels), in_groups, 1, "B")

    def one_hot(self, x: Tensor) -> Tensor:
        """``[B, H, W, C]`` integer values -> float32 ``[B, sum(categories), H, W]``."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.height, self.width, len(self.categories)):
            raise ValueError(
                f"expected [B, {self.height}, {self.width}, {len(self.categories)}] values, "
                f"got shape {tuple(x.shape)}"
            )
        x = x.long()
        parts = [F.one_hot(x[..., c], k) for c, k in enumerate(self.categories)]
        return torch.cat(parts, dim=-1).permute(0, 3, 1, 2).float()

    def logits(self, onehot: Tensor) -> list[Tensor]:
        """Per channel ``c``, ``[B, K_c, H, W]`` logits of its value given what precedes it."""
        h = self.input(onehot)
        for i, (gate, mix) in enumerate(zip(self.gates, self.mixes, strict=True)):
            pre = gate(h)
            if self.position_size:
                pre = pre + self.gate_positions[i](self.position)
            a, b = pre.chunk(2, dim=1)
            h = h + mix(torch.tanh(a) * torch.sigmoid(b))
        if self.position_size:
            h = h + self.out_position(self.position)
        h = F.relu(self.head(F.relu(h)))
        return list(self.logits_layer(h).split(self.categories, dim=1))

    def forward(self, onehot: Tensor) -> Tensor:
        """``[B, H, W, C]``: log p(x_{i,c} | x_{<i}, x_{i,<c}) in nats, from ``one_hot(x)``
        ``[B, sum(categories), H, W]``; ``log rho(x)`` is their sum."""
        values = onehot.split(self.categories, dim=1)
        terms = [
            (F.log_softmax(lg, dim=1) * v).sum(dim=1)
            for lg, v in zip(self.logits(onehot), values, strict=True)
        ]
        return torch.stack(terms, dim=-1)

    def log_prob(self, x: Tensor) -> Tensor:
        """``[B]`` log rho(x) in nats of ``x`` ``[B, H, W, C]`` integer values."""
        return self(self.one_hot(x)).sum(dim=(1, 2, 3))


def downsample_frames(
    frames: Tensor, size: int = FRAME_SIZE, levels: int = FRAME_LEVELS, channel_last: bool = False
) -> Tensor:
    """Frames to Ostrovski et al.'s density-model input: one grey frame, ``size x size``,
    ``levels`` intensity levels, as an int64 ``[B, size, size, 1]`` grid.

    ``frames`` is uint8 ``[B, H, W]`` (grey), ``[B, C, H, W]`` (``channel_last=False``: the last
    of ``C`` stacked frames is kept, as the reimplementation models the newest frame) or
    ``[B, H, W, C]`` (``channel_last=True``: RGB averaged to grey, else the last channel).
    Resizing averages over areas (for 84 -> 42, the mean of each 2 x 2 block; the
    reimplementation's bilinear resize at half-pixel centres gives the same there), then
    ``value // (256 // levels)`` as the reimplementation quantises.

    Example:
        >>> downsample_frames(torch.full((2, 84, 84), 255, dtype=torch.uint8)).unique().tolist()
        [7]
    """
    x = frames
    if x.dim() == 4:
        if channel_last:
            x = x.float().mean(dim=-1) if x.shape[-1] == 3 else x[..., -1]
        else:
            x = x[:, -1]
    if x.dim() != 3:
        raise ValueError(f"expected frames [B, H, W] or [B, C, H, W], got {tuple(frames.shape)}")
    grey = F.interpolate(x.float().unsqueeze(1), size=(size, size), mode="area")
    step = 256 // levels
    return (grey.squeeze(1) // step).clamp(0, levels - 1).long().unsqueeze(-1)
