"""Pictures of what a bonus's generative model learned (``explora.runs.pictures``): the files a
PPO+vqcount run writes, the code map against the cells visited, MiniGrid's view rendering, the
recorder against direct calls of the model, and the report's section."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import explora
from explora.bench.report import write_report
from explora.bonuses import RND, AEHash, FirstVisit, Sum, VQCount
from explora.models.vqvae import code_map as vqvae_code_map
from explora.runs.pictures import (
    PictureRecorder,
    most_frequent_code,
    picture_parts,
    plot_codebook_usage,
    render_minigrid_view,
)

ENV = "MiniGrid-DoorKey-5x5-v0"
PNG = b"\x89PNG\r\n\x1a\n"
VIEW_SPACE = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
SHORT = {"num_steps": 32}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("pictures") / "dk5-vqcount"
    summary = explora.train(  # three 64 x 32 rollouts: the VQ-VAE trains between them
        ENV, bonus="vqcount", frames=6_144, seed=0, out=out, progress=False, algo_args=SHORT
    )
    return {"out": out, "summary": summary}


def _view(seed: int) -> np.ndarray:
    """A MiniGrid-like view: floor, walls, a key and a door at cells chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    view = np.zeros((7, 7, 3), dtype=np.uint8)
    view[..., 0] = rng.choice([1, 2], size=(7, 7))  # empty or wall
    view[..., 1] = np.where(view[..., 0] == 2, 5, 0)  # walls grey
    view[rng.integers(7), rng.integers(6)] = (5, 4, 0)  # a yellow key
    view[rng.integers(7), rng.integers(6)] = (4, 2, 2)  # a locked blue door
    return view


def test_a_vqcount_run_writes_its_pictures(run: dict[str, Any]) -> None:
    out: Path = run["out"]
    for name in ("codebook_usage.png", "code_map.png", "reconstructions.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000, name
    code_map = np.load(out / "code_map.npy")
    assert code_map.shape == (5, 5, 1) and code_map.dtype == np.int64
    pairs = np.load(out / "reconstructions.npz")
    views, decoded = pairs["views"], pairs["reconstructions"]
    assert views.shape == decoded.shape and views.shape[1:] == (7, 7, 3)
    assert 2 <= len(views) <= 8
    keys = {v.tobytes() for v in views}
    assert len(keys) == len(views)  # distinct views


def test_code_map_holds_a_code_exactly_at_the_cells_reached(run: dict[str, Any]) -> None:
    out: Path = run["out"]
    codes = np.load(out / "code_map.npy")[..., 0]
    bonus_map = np.load(out / "bonus_map.npy")  # the same rollout positions, the same cells
    visits = np.load(out / "visitation.npy")
    np.testing.assert_array_equal(codes >= 0, np.isfinite(bonus_map))
    assert (codes >= 0).sum() >= 3
    assert (visits[codes >= 0] > 0).all()
    assert codes.max() < 64 and (codes[codes < 0] == -1).all()


def test_minigrid_view_renders_with_minigrid_tiles() -> None:
    a, b = _view(0), _view(1)
    image = render_minigrid_view(a, tile_size=12)
    assert image.shape == (84, 84, 3) and image.dtype == np.uint8
    assert not np.array_equal(image, render_minigrid_view(b, tile_size=12))

    # MiniGrid's key is yellow (255, 255, 0; lightened where the agent sees): a key cell
    # shows it, a view without the key not
    def yellow(im: np.ndarray) -> int:
        return int(((im[..., 0] > 200) & (im[..., 1] > 200) & (im[..., 2] < 100)).sum())

    keyless = a.copy()
    keyless[keyless[..., 0] == 5] = (1, 0, 0)
    assert yellow(image) > 0
    assert yellow(render_minigrid_view(keyless, tile_size=12)) == 0
    # a cell marked wrong gets a red outline: its tile's corner pixel is pure red
    wrong = np.zeros((7, 7), dtype=bool)
    wrong[2, 3] = True  # x = 2, y = 3
    marked = render_minigrid_view(a, tile_size=12, wrong=wrong)
    assert tuple(marked[3 * 12, 2 * 12]) == (255, 0, 0)
    assert tuple(image[3 * 12, 2 * 12]) != (255, 0, 0)
    np.testing.assert_array_equal(marked[:36], image[:36])  # rows above the cell untouched


def test_most_frequent_code_by_hand() -> None:
    codes = np.array([[1, 0], [2, 0], [2, 0], [1, 0], [7, 7], [3, 3]])
    positions = np.array([[0, 0], [0, 0], [0, 0], [0, 0], [1, 2], [0, 0]])
    out = most_frequent_code(codes, positions, (2, 3))
    assert out.shape == (2, 3, 2)
    # (1, 0) and (2, 0) seen twice each at (0, 0): the one seen first wins
    assert out[0, 0].tolist() == [1, 0]
    assert out[1, 2].tolist() == [7, 7]
    assert (out[0, 1:] == -1).all() and (out[1, :2] == -1).all()


def _set_up(bonus: Any) -> Any:
    bonus.setup(VIEW_SPACE, gym.spaces.Discrete(7), 2)
    return bonus


def test_picture_parts_look_through_wrappers() -> None:
    assert picture_parts(VQCount()) == []  # no model before setup
    (part,) = picture_parts(_set_up(FirstVisit(VQCount(num_codes=16))))
    assert part.name == "vqcount" and part.num_codes == 16 and part.codes is not None
    small = {"hidden_size": 16, "replay_size": 64}
    parts = picture_parts(_set_up(Sum({"rnd": RND(), "vq": VQCount(), "ae": AEHash(**small)})))
    assert [p.name for p in parts] == ["vq", "ae"]
    assert parts[1].reconstruct is not None and parts[1].codes is None  # AE: no codebook
    assert picture_parts(_set_up(RND())) == []
    assert PictureRecorder.for_bonus(_set_up(RND()), (5, 5)) is None


def test_recorder_gives_what_the_model_gives() -> None:
    torch.manual_seed(0)
    bonus = VQCount(num_codes=8, num_latents=2, warmup_steps=0)
    bonus.setup(VIEW_SPACE, gym.spaces.Discrete(7), 4)
    views = torch.from_numpy(np.stack([_view(s) for s in range(12)])).reshape(3, 4, 7, 7, 3)
    assert bonus.model is not None
    for _ in range(30):
        bonus.model.train_step(views.reshape(-1, 7, 7, 3))
    positions = np.array([[0, 0], [0, 1], [1, 1], [2, 2]])[None].repeat(3, 0)  # [3, 4, 2]
    positions[1:, 3] = -1  # no position reported: not in the map; (2, 2) keeps one view
    (part,) = picture_parts(bonus)
    recorder = PictureRecorder([part], (3, 4), per_cell=8, num_views=5)
    recorder.record(views, positions)
    (pics,) = recorder.pictures().parts
    flat_views, flat_pos = views.reshape(-1, 7, 7, 3), positions.reshape(-1, 2)
    codes = bonus.model.codes(flat_views).numpy()
    assert pics.code_map is not None and pics.num_codes == 8
    np.testing.assert_array_equal((pics.code_map >= 0).all(-1), [[1, 1, 0, 0], [0, 1, 0, 0],
                                                                 [0, 0, 1, 0]])  # fmt: skip
    # a cell's code is one its views got (slots are drawn at random: ties may go either way)
    for r, c in ((0, 0), (0, 1), (1, 1), (2, 2)):
        at_cell = codes[(flat_pos == (r, c)).all(1)]
        assert any((pics.code_map[r, c] == row).all() for row in at_cell), (r, c)
    kept = (flat_pos >= 0).all(1)
    expected = vqvae_code_map(bonus.model, flat_views[kept], flat_pos[kept], (3, 4))
    np.testing.assert_array_equal(pics.code_map[2, 2], expected[2, 2])  # its one view
    assert pics.views is not None and pics.reconstructions is not None
    assert len(pics.views) == 5
    np.testing.assert_array_equal(
        pics.reconstructions, bonus.model.reconstruct(torch.from_numpy(pics.views)).numpy()
    )


def test_codebook_usage_reads_prefixed_columns(tmp_path: Path) -> None:
    csv = tmp_path / "metrics.csv"
    csv.write_text(
        "frames,bonus/vq/vq/used_codes,bonus/vq/vq/perplexity,bonus/vq/vq/dead_restarts\n"
        "100,10,5.5,2\n200,12,7.0,0\n"
    )
    assert plot_codebook_usage(csv, tmp_path / "u.png", 16, prefix="bonus/vq/")
    assert (tmp_path / "u.png").read_bytes().startswith(PNG)
    assert plot_codebook_usage(csv, tmp_path / "v.png", 16)  # found under any prefix
    assert not plot_codebook_usage(csv, tmp_path / "w.png", 16, prefix="bonus/other/")
    assert not (tmp_path / "w.png").exists()


def test_report_shows_the_pictures_of_one_run(run: dict[str, Any], tmp_path: Path) -> None:
    s = run["summary"]
    record = {"method": "ppo+vqcount", "task": ENV, "seed": 0, "status": "done",
              "run_dir": str(run["out"]), "budget": 6_144, "score": s["success_rate"] or 0.0,
              "frames_to_solve": None, "fps": s["fps"], "env_fps": s["env_fps"],
              "success_rate": s["success_rate"], "final_return": s["final_return"]}  # fmt: skip
    page_path, _ = write_report([record], tmp_path / "report.html", reps=20)
    page = page_path.read_text()
    match = re.search(r'<section id="model-pictures">(.*?)</section>', page, re.S)
    assert match, "no model-pictures section"
    section = match.group(1)
    assert f"<h3>{ENV}</h3>" in section and "<h4>ppo+vqcount (seed 0)</h4>" in section
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)">', section)
    assert [alt for _, alt in images] == [
        f"{kind} of ppo+vqcount on {ENV}"
        for kind in ("code map", "codebook usage", "reconstructions")
    ]
    for data, _ in images:
        assert base64.b64decode(data).startswith(PNG)


@pytest.mark.parametrize(
    ("algo", "frames", "algo_args"),
    [("dqn", 1_024, {}), ("ppo", 4_096, {"frame_stack": 3, **SHORT})],
    ids=["dqn", "ppo-stacked"],
)
def test_pictures_of_other_agents_and_stacked_views(
    algo: str, frames: int, algo_args: dict[str, Any], tmp_path: Path
) -> None:
    # DQN records its steps in blocks; a stacked policy's bonus model reads the newest view:
    # both give pictures of single 7x7x3 views, and codes at exactly the cells reached
    out = tmp_path / algo
    explora.train(
        ENV, bonus="vqcount", algo=algo, frames=frames, seed=0, out=out, progress=False,
        algo_args=algo_args,
    )  # fmt: skip
    pairs = np.load(out / "reconstructions.npz")
    assert pairs["views"].shape[1:] == (7, 7, 3) and len(pairs["views"]) >= 2
    code_map = np.load(out / "code_map.npy")
    visits = np.load(out / "visitation.npy")
    assert ((code_map[..., 0] >= 0) == (visits > 0)).all()
