"""Pictures of what a bonus's generative model learned, written into the run directory.

Files (beside ``bonus_map.png``, for bonuses whose model offers them)::

    RUN/codebook_usage.png   VQ codes used per update (of K) and their perplexity, against frames
    RUN/code_map.npy         [H, W, G] int64: the most frequent code tuple of the views seen at
                             each grid cell, through the final model; -1 where none was seen
    RUN/code_map.png         the same, one categorical colour per distinct code tuple
    RUN/reconstructions.npz  ``views`` and ``reconstructions`` [k, *obs_shape] of the picture
    RUN/reconstructions.png  a few distinct views of the last rollout above their
                             reconstructions, cells decoded wrong outlined in red

The protocol (every part optional, looked up with ``getattr``, on the bonus or else on its
``model`` attribute, so a bonus built on ``explora.models`` needs no code of its own):

    reconstruct(obs) -> Tensor   ``[B, *obs_shape]`` -> the decoded observations, ``[B,
                                 *obs_shape]`` in the space's values (categorical spaces) or
                                 ``[B, ...]`` float features that reshape to ``obs_shape``
                                 (uint8 images: in [0, 1]); no gradient, no random numbers.
    codes(obs) -> Tensor         ``[B, *obs_shape]`` -> int64 ``[B, G]``, the discrete code tuple
    num_codes: int               of each observation, from a codebook of ``num_codes`` entries.

``VQCount`` has both through its ``VQVAE`` (``model``), ``AEHash`` has ``reconstruct`` through its
``BinaryAutoencoder``; a VAE bonus that keeps its model as ``model`` with a ``reconstruct``
method plugs in as it is. Wrappers are looked through: ``FirstVisit`` and ``ObsKey`` (its part of
a Dict observation) to ``inner``, ``Sum`` to each term (files then carry the term's name:
``code_map-vqcount.png`` when more than one term draws the same picture).

Scalars per update need no hook: what ``update`` returns is logged to ``metrics.csv``
(``vq/used_codes``, ``vq/perplexity``, ``vq/dead_restarts`` for ``VQCount``;
``bonus/<term>/vq/...`` inside a ``Sum``); ``codebook_usage.png`` is drawn from those columns.

``PictureRecorder`` is what an agent drives: ``record(next_obs, positions)`` after each rollout
keeps a sample of up to ``per_cell`` views per grid cell (a view at a cell overwrites one of the
cell's slots drawn at random by the recorder's own generator, so later rollouts dominate and a
cell reached once keeps its view; no agent or torch random numbers are drawn), and
``pictures()`` at the end runs the final models on them. The sample is not in checkpoints: after
a resume the code map is made from the views seen since. Cost: one vectorised copy of the
rollout's views a rollout (a 2,048-view MiniGrid rollout: 300 kB), and nothing for a bonus with
no model to picture.

Example (render a MiniGrid view as MiniGrid draws it):
    >>> import numpy as np
    >>> view = np.zeros((7, 7, 3), dtype=np.uint8); view[:, :, 0] = 1   # empty floor
    >>> view[3, 2] = (5, 4, 0)                                          # a yellow key ahead
    >>> render_minigrid_view(view, tile_size=8).shape
    (56, 56, 3)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from explora.bonuses.visits import byte_keys
from explora.models.vqvae import most_frequent_code
from explora.runs.rundir import METRICS, read_metrics

CHANNEL_CLASSES = (11, 6, 3)  # object, colour and state codes of MiniGrid's view
CODE_MAP, CODEBOOK_USAGE, RECONSTRUCTIONS = "code_map", "codebook_usage", "reconstructions"
PICTURE_FILES = (CODE_MAP, CODEBOOK_USAGE, RECONSTRUCTIONS)
"""stems of the PNGs a run may hold (``<stem>.png`` or ``<stem>-<term>.png``), for the report"""


# -- finding what a bonus can draw -----------------------------------------------------------
@dataclass
class PicturePart:
    """One bonus (a term of a sum, or the bonus inside wrappers) with a model to picture.

    ``view`` maps the agent's observations ``[B, *obs_shape]`` to what this part reads (an
    ``ObsKey``'s part of a Dict observation; else the identity)."""

    name: str
    view: Callable[[Tensor], Tensor]
    reconstruct: Callable[[Tensor], Tensor] | None = None
    codes: Callable[[Tensor], Tensor] | None = None
    num_codes: int | None = None


def _method(obj: Any, name: str) -> Any:
    """``obj.<name>`` or ``obj.model.<name>`` when callable (or, for ``num_codes``, an int)."""
    for owner in (obj, getattr(obj, "model", None)):
        if owner is None:
            continue
        found = getattr(owner, name, None)
        if name == "num_codes":
            if isinstance(found, int) and not isinstance(found, bool):
                return found
        elif callable(found):
            return found
    return None


def picture_parts(bonus: Any, name: str = "") -> list[PicturePart]:
    """The parts of ``bonus`` (looked through ``FirstVisit``, ``Sum`` and the observation views
    ``ObsKey``, ``NewestFrame``) that can reconstruct observations or give their codes; empty
    when none can (a bonus's model exists once it is set up).

    Example:
        >>> import gymnasium as gym, numpy as np
        >>> from explora.bonuses import VQCount, FirstVisit
        >>> bonus = FirstVisit(VQCount())
        >>> bonus.setup(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), gym.spaces.Discrete(7), 2)
        >>> [(p.name, p.num_codes) for p in picture_parts(bonus)]
        [('vqcount', 64)]
    """
    from explora.bonuses.combine import Sum
    from explora.bonuses.episodic import FirstVisit
    from explora.bonuses.view import ObservationView

    if bonus is None:
        return []
    if isinstance(bonus, Sum):
        return [p for term, inner in bonus.terms.items() for p in picture_parts(inner, term)]
    if isinstance(bonus, FirstVisit):
        return picture_parts(bonus.inner, name)
    if isinstance(bonus, ObservationView):
        parts = picture_parts(bonus.inner, name)
        for part in parts:
            inner_view = part.view

            def view(obs: Tensor, wrapper: Any = bonus, then: Any = inner_view) -> Tensor:
                return then(wrapper.view_obs(obs))

            part.view = view
        return parts
    reconstruct = _method(bonus, "reconstruct")
    codes, num_codes = _method(bonus, "codes"), _method(bonus, "num_codes")
    if codes is None or num_codes is None:
        codes = num_codes = None
    if reconstruct is None and codes is None:
        return []
    if not name:
        from explora.bonuses import BONUSES

        name = next((n for n, (cls, _) in BONUSES.items() if type(bonus) is cls), "")
        name = name or type(bonus).__name__.lower()
    return [PicturePart(name, lambda obs: obs, reconstruct, codes, num_codes)]


# -- recording during training -----------------------------------------------------------------
@dataclass
class PartPictures:
    """What one part's final model makes of the views kept (arrays, ready to be drawn)."""

    name: str
    code_map: np.ndarray | None = None  # [H, W, G] int64, -1 where no view was kept
    num_codes: int | None = None
    views: np.ndarray | None = None  # [k, *obs_shape] distinct views of the last rollout
    reconstructions: np.ndarray | None = None  # [k, *obs_shape] (float features: reshaped)


@dataclass
class Pictures:
    """The pictures of a run's bonus; ``write`` puts them in a run directory."""

    parts: list[PartPictures] = field(default_factory=list)

    def write(self, run_dir: str | os.PathLike[str], title: str = "") -> list[Path]:
        """Write the files of the module docstring into ``run_dir``; returns the PNGs written.
        ``codebook_usage.png`` reads ``run_dir/metrics.csv`` (written before, by the run)."""
        run_dir = Path(run_dir)
        written: list[Path] = []
        drawn = {
            CODE_MAP: [p for p in self.parts if p.code_map is not None],
            RECONSTRUCTIONS: [p for p in self.parts if p.views is not None],
            CODEBOOK_USAGE: [p for p in self.parts if p.num_codes is not None],
        }

        def stem(kind: str, part: PartPictures) -> str:
            return kind if len(drawn[kind]) == 1 else f"{kind}-{part.name}"

        for part in drawn[CODE_MAP]:
            assert part.code_map is not None
            np.save(run_dir / f"{stem(CODE_MAP, part)}.npy", part.code_map)
            out = run_dir / f"{stem(CODE_MAP, part)}.png"
            plot_code_map(part.code_map, out, title=f"{part.name} codes per cell {title}")
            written.append(out)
        for part in drawn[RECONSTRUCTIONS]:
            assert part.views is not None and part.reconstructions is not None
            base = run_dir / stem(RECONSTRUCTIONS, part)
            np.savez(
                base.with_suffix(".npz"), views=part.views, reconstructions=part.reconstructions
            )
            out = base.with_suffix(".png")
            plot_reconstructions(part.views, part.reconstructions, out, title=part.name)
            written.append(out)
        metrics = run_dir / METRICS
        for part in drawn[CODEBOOK_USAGE]:
            assert part.num_codes is not None
            out = run_dir / f"{stem(CODEBOOK_USAGE, part)}.png"
            multi = len(drawn[CODEBOOK_USAGE]) > 1
            if metrics.is_file() and plot_codebook_usage(
                metrics, out, part.num_codes, prefix=f"bonus/{part.name}/" if multi else None,
                title=f"{part.name} codebook {title}",
            ):  # fmt: skip
                written.append(out)
        return written


class PictureRecorder:
    """Keeps views per grid cell during training; makes ``Pictures`` with the final models.

    Args:
        parts: from ``picture_parts``.
        grid_shape: (H, W) of the grid the positions index, or None (no code map).
        per_cell: views kept per grid cell (16).
        num_views: views in the reconstruction picture (8).
        seed: of the recorder's own generator (slot choice).
    """

    def __init__(
        self,
        parts: list[PicturePart],
        grid_shape: tuple[int, int] | None,
        *,
        per_cell: int = 16,
        num_views: int = 8,
        seed: int = 0,
    ) -> None:
        self.parts = parts
        self.grid_shape = grid_shape if any(p.codes for p in parts) else None
        self.per_cell = per_cell
        self.num_views = num_views
        self.rng = np.random.default_rng(seed)
        self._store: Tensor | None = None  # [H * W, per_cell, *obs_shape]
        self._filled: np.ndarray | None = None  # [H * W, per_cell] bool
        self._last: Tensor | None = None  # the last rollout's next_obs [T, N, *obs_shape]
        self._steps: list[tuple[np.ndarray, np.ndarray | None]] = []  # record_step's, pending

    @classmethod
    def for_bonus(
        cls, bonus: Any, grid_shape: tuple[int, int] | None, seed: int = 0
    ) -> PictureRecorder | None:
        """A recorder for ``bonus``, or None when it has no model to picture."""
        parts = picture_parts(bonus)
        return cls(parts, grid_shape, seed=seed) if parts else None

    def record(self, next_obs: Tensor, positions: np.ndarray | None) -> None:
        """After a rollout: ``next_obs`` ``[T, N, *obs_shape]`` and the grid cells they show
        ``positions`` ``[T, N, 2]`` (row, col; -1 or outside the grid: skipped). ``next_obs``
        is kept by reference for the reconstructions: the agent's rollout buffer holds the last
        rollout when ``pictures`` is called."""
        self._last = next_obs
        if self.grid_shape is None or positions is None:
            return
        height, width = self.grid_shape
        flat = next_obs.reshape(-1, *next_obs.shape[2:])
        pos = np.asarray(positions).reshape(-1, 2)
        inside = (pos[:, 0] >= 0) & (pos[:, 0] < height) & (pos[:, 1] >= 0) & (pos[:, 1] < width)
        idx = np.flatnonzero(inside)
        if len(idx) == 0:
            return
        if self._store is None or self._filled is None:
            self._store = torch.zeros(
                (height * width, self.per_cell, *flat.shape[1:]), dtype=flat.dtype
            )
            self._filled = np.zeros((height * width, self.per_cell), dtype=bool)
        cells = pos[idx, 0] * width + pos[idx, 1]
        slots = self.rng.integers(0, self.per_cell, len(idx))
        self._store[torch.from_numpy(cells), torch.from_numpy(slots)] = flat[torch.from_numpy(idx)]
        self._filled[cells, slots] = True

    def record_step(
        self, next_obs: np.ndarray, positions: np.ndarray | None, every: int = 64
    ) -> None:
        """``record`` for an agent that steps one vector step at a time (DQN): ``next_obs``
        ``[N, *obs_shape]`` and ``positions`` ``[N, 2]`` are kept and recorded ``every`` steps
        at once, as one rollout (the reconstructions then draw on the last ``every`` steps)."""
        self._steps.append((np.array(next_obs), None if positions is None else np.array(positions)))
        if len(self._steps) >= every:
            self._flush()

    def _flush(self) -> None:
        if not self._steps:
            return
        obs = torch.from_numpy(np.stack([o for o, _ in self._steps]))
        known = all(p is not None for _, p in self._steps)
        positions = np.stack([p for _, p in self._steps]) if known else None  # type: ignore[misc]
        self._steps = []
        self.record(obs, positions)

    def _distinct_views(self, part: PicturePart) -> Tensor | None:
        """Up to ``num_views`` distinct views of the last rollout (as ``part`` reads them),
        spread evenly over their first appearances."""
        if self._last is None:
            return None
        views = part.view(self._last.reshape(-1, *self._last.shape[2:]))
        _, first = np.unique(byte_keys(views), return_index=True)
        first = np.sort(first)
        pick = first[np.unique(np.linspace(0, len(first) - 1, self.num_views).round().astype(int))]
        return views[torch.from_numpy(pick)].clone()

    @torch.no_grad()
    def pictures(self) -> Pictures:
        """Run the final models on the views kept: code maps, reconstructions. A part whose
        model fails here is left out with a warning: pictures never fail a finished run."""
        self._flush()
        out = Pictures()
        for part in self.parts:
            try:
                out.parts.append(self._part_pictures(part))
            except Exception as error:  # noqa: BLE001 - a picture is not worth the run
                warnings.warn(f"no pictures of {part.name}: {error!r}", stacklevel=2)
        return out

    def _part_pictures(self, part: PicturePart) -> PartPictures:
        pics = PartPictures(part.name, num_codes=part.num_codes)
        if part.codes is not None and self._store is not None and self.grid_shape:
            assert self._filled is not None
            cell, slot = np.nonzero(self._filled)
            views = part.view(self._store[torch.from_numpy(cell), torch.from_numpy(slot)])
            device = _device(part.codes)
            codes = torch.cat([part.codes(chunk.to(device)) for chunk in views.split(8192)])
            positions = np.stack([cell // self.grid_shape[1], cell % self.grid_shape[1]], 1)
            pics.code_map = most_frequent_code(codes.cpu().numpy(), positions, self.grid_shape)
        if part.reconstruct is not None:
            sample = self._distinct_views(part)
            if sample is not None and len(sample):
                decoded = part.reconstruct(sample.to(_device(part.reconstruct)))
                decoded = decoded.detach().cpu()
                if decoded.numel() == sample.numel():
                    decoded = decoded.reshape(sample.shape)
                pics.views, pics.reconstructions = sample.cpu().numpy(), decoded.numpy()
        return pics


def _device(method: Callable[..., Any]) -> torch.device:
    """Where the module a bound ``method`` belongs to keeps its weights (CPU otherwise)."""
    owner = getattr(method, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        for tensor in (*owner.parameters(), *owner.buffers()):
            return tensor.device
    return torch.device("cpu")


# -- drawing -------------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def is_minigrid_view(view: np.ndarray) -> bool:
    """MiniGrid's symbolic view: ``[W, H, 3]`` small integers (object, colour, state)."""
    view = np.asarray(view)
    return (
        view.ndim == 3
        and view.shape[-1] == 3
        and max(view.shape[:2]) <= 32
        and (np.issubdtype(view.dtype, np.integer))
        and int(view.min(initial=0)) >= 0
        and all(int(view[..., c].max(initial=0)) < n for c, n in enumerate(CHANNEL_CLASSES))
    )


def render_minigrid_view(
    view: np.ndarray, tile_size: int = 16, wrong: np.ndarray | None = None
) -> np.ndarray:
    """MiniGrid's symbolic view ``[W, H, 3]`` (indexed ``[x, y]`` as MiniGrid encodes it) drawn
    with MiniGrid's own tiles as the agent sees it (``get_pov_render``: the agent at the bottom
    centre facing up, the cells it sees highlighted, unseen cells black): uint8 ``[H * tile,
    W * tile, 3]``. Cells where ``wrong`` ``[W, H]`` is True get a red outline.
    """
    from minigrid.core.grid import Grid

    view = np.asarray(view, dtype=np.int64)
    clipped = np.stack([view[..., c].clip(0, n - 1) for c, n in enumerate(CHANNEL_CLASSES)], -1)
    grid, visible = Grid.decode(clipped)
    width, height = view.shape[:2]
    image = grid.render(
        tile_size, agent_pos=(width // 2, height - 1), agent_dir=3, highlight_mask=visible
    )
    if wrong is not None:
        line = max(1, tile_size // 8)
        for x, y in zip(*np.nonzero(np.asarray(wrong)), strict=True):
            top, left = y * tile_size, x * tile_size
            tile = image[top : top + tile_size, left : left + tile_size]
            tile[:line], tile[-line:] = (255, 0, 0), (255, 0, 0)
            tile[:, :line], tile[:, -line:] = (255, 0, 0), (255, 0, 0)
    return image


def observation_image(obs: np.ndarray) -> np.ndarray:
    """Any other observation as an image ``[h, w, 3]`` in [0, 1] to show: an image ``[H, W,
    C]`` or ``[C, H, W]`` (C in 1, 3, 4: the last frame of a stack when C is 4 and not RGBA
    is not guessed: channels 0-2 are shown, or the one channel in grey), a vector as a grey
    strip. uint8 values are divided by 255; floats are clipped to [0, 1]."""
    obs = np.asarray(obs)
    values = obs.astype(np.float64) / 255.0 if obs.dtype == np.uint8 else obs.astype(np.float64)
    if values.ndim == 3 and values.shape[0] in (1, 3, 4) and values.shape[-1] not in (1, 3, 4):
        values = values.transpose(1, 2, 0)
    if values.ndim == 3:
        values = values[..., :3] if values.shape[-1] >= 3 else values[..., :1].repeat(3, -1)
    elif values.ndim == 2:
        values = values[..., None].repeat(3, -1)
    else:
        values = values.reshape(1, -1)[..., None].repeat(3, -1)
    return values.clip(0.0, 1.0)


def plot_reconstructions(
    views: np.ndarray, decoded: np.ndarray, out_png: Path, title: str = ""
) -> None:
    """``views`` ``[k, *obs_shape]`` (top row) above their reconstructions ``decoded`` (bottom
    row). MiniGrid views are drawn with MiniGrid's tiles, the cells decoded wrong outlined in
    red and counted in the title; other observations as images, with their mean squared error.
    """
    plt = _plt()
    k = len(views)
    fig, axes = plt.subplots(2, k, figsize=(1.45 * k + 0.3, 3.5), squeeze=False)
    grid = all(is_minigrid_view(v) for v in views)
    for i in range(k):
        if grid:
            back = np.asarray(decoded[i]).round().astype(np.int64)
            wrong = (back != views[i]).any(-1)
            top = render_minigrid_view(views[i])
            bottom = render_minigrid_view(back, wrong=wrong)
            note = f"decoded: {int(wrong.sum())} cell{'s' if wrong.sum() != 1 else ''} wrong"
        else:
            top = observation_image(views[i])
            shown = np.asarray(decoded[i], dtype=np.float64)
            bottom = observation_image(shown)
            note = f"decoded: mse {float(np.square(bottom - top).mean()):.3g}"
        for row, (image, label) in enumerate(((top, "view"), (bottom, note))):
            ax = axes[row][i]
            ax.imshow(image, interpolation="nearest")
            wrong_cells = grid and row == 1 and not label.startswith("decoded: 0 ")
            ax.set_title(label, fontsize=7, color="#cf222e" if wrong_cells else "black")
            ax.set_xticks([])
            ax.set_yticks([])
    what = "cells decoded wrong outlined in red" if grid else "mean squared error"
    fig.suptitle(
        f"{title}: distinct views of the last rollout (top) and their reconstructions "
        f"through the final model (bottom; {what})",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def _categorical_colours(n: int) -> np.ndarray:
    """``[n, 4]`` RGBA: distinct colours (tab20, tab20b, tab20c, then evenly spread hues)."""
    plt = _plt()
    base = [plt.get_cmap(name).colors for name in ("tab20", "tab20b", "tab20c")]
    colours = [(*c, 1.0) for group in base for c in group]
    if n > len(colours):
        hsv = plt.get_cmap("hsv")
        colours += [hsv(i / (n - len(colours))) for i in range(n - len(colours))]
    return np.array(colours[:n])


def plot_code_map(code_map: np.ndarray, out_png: Path, title: str = "") -> None:
    """One categorical colour per distinct code tuple of ``code_map`` ``[H, W, G]``; cells with
    -1 (no view seen) light grey; each cell labelled with its code (G = 1) or tuple number."""
    from matplotlib.colors import ListedColormap

    plt = _plt()
    code_map = np.asarray(code_map).reshape(*code_map.shape[:2], -1)
    height, width, groups = code_map.shape
    seen = (code_map >= 0).all(-1)
    tuples, index = np.unique(code_map[seen], axis=0, return_inverse=True)
    ids = np.full((height, width), np.nan)
    ids[seen] = index.reshape(-1)
    n = max(len(tuples), 1)
    cmap = ListedColormap(_categorical_colours(n)).with_extremes(bad="#f0f0f0")
    side = min(6.0, 2.0 + 0.3 * max(height, width))
    fig, ax = plt.subplots(figsize=(max(side, 4.2), side))
    ax.imshow(np.ma.masked_invalid(ids), cmap=cmap, vmin=-0.5, vmax=n - 0.5,
              interpolation="nearest")  # fmt: skip
    if max(height, width) <= 24:
        size = max(4.0, 9.0 - 0.25 * max(height, width))
        for r, c in zip(*np.nonzero(seen), strict=True):
            label = str(code_map[r, c, 0]) if groups == 1 else f"#{int(ids[r, c])}"
            ax.text(c, r, label, ha="center", va="center", fontsize=size, color="black")
    ax.set_xticks([])
    ax.set_yticks([])
    kind = "codes" if groups == 1 else f"tuples of {groups} codes"
    ax.set_title(
        f"{title}\n{len(tuples)} distinct {kind} over {int(seen.sum())} cells reached\n"
        "(the most frequent code of the views seen there; grey: not reached)",
        fontsize=7,
    )
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def _column(columns: dict[str, np.ndarray], name: str, prefix: str | None) -> np.ndarray | None:
    """The metric column ``<prefix><name>`` (``prefix`` None: ``name`` under any prefix, the
    shortest column name first)."""
    if prefix is not None:
        return columns.get(prefix + name)
    matches = sorted((k for k in columns if k == name or k.endswith("/" + name)), key=len)
    return columns[matches[0]] if matches else None


def plot_codebook_usage(
    metrics_csv: Path, out_png: Path, num_codes: int, prefix: str | None = None, title: str = ""
) -> bool:
    """Codes used in each update's batch (of ``num_codes``) and the codes' perplexity, with the
    dead codes restarted so far, against frames, from ``metrics.csv`` columns ``vq/used_codes``,
    ``vq/perplexity``, ``vq/dead_restarts`` (under ``prefix`` when given, e.g.
    ``bonus/vqcount/``). Returns False (and draws nothing) when the columns are missing."""
    columns = read_metrics(metrics_csv)
    used = _column(columns, "vq/used_codes", prefix)
    perplexity = _column(columns, "vq/perplexity", prefix)
    if not columns or used is None or perplexity is None:
        return False
    restarts = _column(columns, "vq/dead_restarts", prefix)
    frames = columns["frames"]
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 4.4), sharex=True)
    ok = np.isfinite(used)
    top.plot(frames[ok], used[ok] / num_codes, color="tab:blue", label="codes used in the batch")
    top.set_ylim(0, 1.05)
    top.set_ylabel(f"fraction of {num_codes} codes")
    if restarts is not None:
        twin = top.twinx()
        total = np.nancumsum(restarts)
        twin.plot(frames, total, color="tab:red", lw=1, label="dead codes restarted (total)")
        twin.set_ylabel("restarts", color="tab:red")
        lines = top.get_lines() + twin.get_lines()
        top.legend(lines, [str(line.get_label()) for line in lines], loc="lower right", fontsize=7)
    ok = np.isfinite(perplexity)
    bottom.plot(frames[ok], perplexity[ok], color="tab:green", label="perplexity")
    bottom.axhline(num_codes, color="grey", ls="--", lw=1, label=f"K = {num_codes}")
    bottom.set_ylim(0, num_codes * 1.05)
    bottom.set_ylabel("perplexity")
    bottom.set_xlabel("frames")
    bottom.legend(loc="lower right", fontsize=7)
    from matplotlib.ticker import EngFormatter

    bottom.xaxis.set_major_formatter(EngFormatter())
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.set_title(f"{title}: usage per update".strip(": "), fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return True


def picture_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The picture PNGs of a run directory, code maps first, then codebook usage, then
    reconstructions (for the report)."""
    run_dir = Path(run_dir)
    found: list[Path] = []
    for kind in PICTURE_FILES:
        found += sorted(run_dir.glob(f"{kind}.png")) + sorted(run_dir.glob(f"{kind}-*.png"))
    return found
