"""The benchmark report: one self-contained HTML page and a Markdown summary from real runs.

Four tiny DeepSea-6 runs (PPO with and without a count bonus, two seeds, 9,000 frames: enough
to solve it) are trained once for the module; failed and unfinished records are added around
them. The page is checked as text and, when /usr/bin/chromium is installed
(``scripts/install_chromium.sh``), rendered headless.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import explora
from explora.bench.report import (
    _methods_as_rows,
    _runs_at_low_reference,
    _score_matrices,
    write_report,
)
from explora.bench.store import Store
from explora.bench.suites import Suite, deepsea_task, plan

CHROMIUM = Path("/usr/bin/chromium")
TITLE = "tiny <sweep> & co"
SECTIONS = (
    "learning-curves",
    "aggregate",
    "profile",
    "improvement",
    "final-success",
    "frames-to-solve",
    "fps",
    "visitation",
    "failed",
    "notes",
)


def _record(method: str, seed: int, status: str, **fields: Any) -> dict[str, Any]:
    blank = dict.fromkeys(
        ("run_dir", "score", "frames_to_solve", "fps", "env_fps", "success_rate", "final_return")
    )
    return {"method": method, "task": "DeepSea-6", "seed": seed, "status": status,
            "budget": 9_000, **blank, **fields}  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("report")
    records = []
    for bonus in (None, "count"):
        for seed in (0, 1):
            out = root / f"ds6-{bonus}-{seed}"
            s = explora.train("DeepSea-6", bonus=bonus, frames=9_000, seed=seed, out=out,
                              progress=False)  # fmt: skip
            records.append(
                _record(
                    "ppo" if bonus is None else f"ppo+{bonus}",
                    seed,
                    "done",
                    run_dir=str(out),
                    score=s["final_return"] / 0.99,  # DeepSea's references: 0 and 0.99
                    frames_to_solve=s["frames_to_success_0.9"],
                    fps=s["fps"],
                    env_fps=s["env_fps"],
                    success_rate=s["success_rate"],
                    final_return=s["final_return"],
                )
            )
    # A failed run pointing at a real run directory: counted, but must not be analysed.
    records.append(_record("ppo+ghost", 0, "failed", run_dir=records[0]["run_dir"], score=0.5,
                           fps=1.0, env_fps=1.0, error="exit code 1\nboom"))  # fmt: skip
    records.append(_record("ppo", 2, "running", run_dir=str(root / "never")))
    records.append(_record("ppo+count", 2, "pending"))
    html_path, md_path = write_report(records, root / "out" / "report.html", title=TITLE, reps=200)
    return {
        "root": root,
        "html_path": html_path,
        "md_path": md_path,
        "html": html_path.read_text(),
        "md": md_path.read_text(),
    }


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def _section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert match, f"no section {sid!r}"
    return match.group(1)


def test_returns_both_paths_beside_each_other(report: dict[str, Any]) -> None:
    assert report["html_path"].name == "report.html" and report["html_path"].is_file()
    assert report["md_path"] == report["html_path"].with_suffix(".md")
    assert sorted(p.name for p in report["html_path"].parent.iterdir()) == [
        "report.html",
        "report.md",
    ]


def test_html_is_self_contained_with_every_section(report: dict[str, Any]) -> None:
    page = report["html"]
    tags = _tags(page)
    images = [attrs for tag, attrs in tags if tag == "img"]
    assert len(images) >= 5
    for tag, attrs in tags:
        for key in ("src", "href", "srcset", "data"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith("data:image/png;base64,"), (tag, key, value[:80])
        assert tag not in ("link", "iframe", "object", "embed"), tag
    for attrs in images:
        png = base64.b64decode(str(attrs["src"]).split(",", 1)[1], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2_000
        assert attrs.get("alt")
    assert "url(" not in page and "@import" not in page
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page
    # the title is escaped wherever it appears; the raw text never reaches the page
    assert "<title>tiny &lt;sweep&gt; &amp; co</title>" in page
    assert "<h1>tiny &lt;sweep&gt; &amp; co</h1>" in page
    assert "<sweep>" not in page


def test_header_counts_failed_and_unfinished_runs(report: dict[str, Any]) -> None:
    header = report["html"].split("</header>")[0]
    assert "7 runs: 4 done, 1 failed, 2 unfinished (1 running, 1 pending)" in header
    # per method: done, failed, unfinished, seeds in the scores
    rows = {}
    for row in re.findall(r"<tr><td class=l>.*?</tr>", header):
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        rows[cells[0]] = cells[1:]
    assert rows == {
        "ppo": ["2", "0", "1", "0, 1"],
        "ppo+count": ["2", "0", "1", "0, 1"],
        "ppo+ghost": ["0", "1", "0", "—"],
    }


def test_failed_and_unfinished_runs_are_scored_0_or_left_out(report: dict[str, Any]) -> None:
    page, md = report["html"], report["md"]
    for sid in ("frames-to-solve", "fps", "visitation"):
        assert "ppo+ghost" not in _section(page, sid), sid
    assert "ppo+ghost" not in md.split("## Frames to solve")[1]
    assert "ppo+ghost" in _section(page, "failed") and "exit code 1" in _section(page, "failed")
    # Method, runs, scored 0 / left out: seed 2 of ppo is running, of ppo+count pending, and
    # ppo+ghost only failed (its stale score of 0.5 is not used).
    aggregate = _section(page, "aggregate")
    every, finished = aggregate.split("Finished runs only")
    assert "All runs (3 runs without a score scored 0)" in every
    assert re.search(r"<td class=l>ppo</td><td>3</td><td>1</td>", every)
    assert re.search(r"<td class=l>ppo\+count</td><td>3</td><td>1</td>", every)
    assert re.search(r"<td class=l>ppo\+ghost</td><td>1</td><td>1</td><td>0.000 \[0.000", every)
    assert finished.startswith(" (3 runs left out)")
    assert re.search(r"<td class=l>ppo</td><td>2</td><td>1</td>", finished)
    assert re.search(r"<td class=l>ppo\+ghost</td><td>0</td><td>1</td><td>—</td>", finished)
    assert "ppo+ghost" in _section(page, "improvement")
    fps = _section(page, "fps")
    assert len(re.findall(r"<td class=l>DeepSea-6</td>", fps)) == 2  # one row per done method


def test_markdown_has_the_tables(report: dict[str, Any]) -> None:
    md = report["md"]
    assert md.startswith(f"# {TITLE}\n")
    for heading, header in (
        (
            "### All runs (3 runs without a score scored 0)",
            "| Method | Runs | Scored 0 | IQM | Mean | Median | Optimality gap |",
        ),
        (
            "### Finished runs only (3 runs left out)",
            "| Method | Runs | Left out | IQM | Mean | Median | Optimality gap |",
        ),
        ("## Frames to solve", "| Task | ppo | ppo+count |"),
        ("## Frames per second", "| Task | Method | Runs | Training fps | Env fps |"),
        ("## Probability of improvement", "| X | Y | P(X > Y), all runs | P(X > Y), finished"),
    ):
        assert f"{heading}\n\n{header}" in md
    interval = r"-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]"
    assert re.search(rf"\| ppo\+count \| 3 \| 1 \| {interval} \| {interval} \|", md)
    assert re.search(rf"\| ppo\+count \| 2 \| 1 \| {interval} \| {interval} \|", md)
    assert re.search(rf"\| ppo \| ppo\+ghost \| {interval} \| — \|", md)
    assert re.search(r"\| DeepSea-6 \| \d\S*k \(\d/2\) \| \S+ \(\d/2\) \|\n", md)


def test_final_success_is_the_mean_over_seeds_with_its_range(report: dict[str, Any]) -> None:
    md = report["md"]
    assert "## Final success\n\n| Task | ppo | ppo+count |" in md
    runs = {
        method: [
            json.loads((report["root"] / f"ds6-{bonus}-{seed}" / "summary.json").read_text())[
                "success_rate"
            ]
            for seed in (0, 1)
        ]
        for method, bonus in (("ppo", None), ("ppo+count", "count"))
    }
    cells = [f"{np.mean(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in runs.values()]
    assert f"| DeepSea-6 | {cells[0]} | {cells[1]} |" in md  # the failed ghost run is not in it


def test_heatmap_for_the_grid_task(report: dict[str, Any]) -> None:
    visitation = _section(report["html"], "visitation")
    assert "<h3>DeepSea-6</h3>" in visitation
    assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="state visitation on '
                     r'DeepSea-6">', visitation)  # fmt: skip


def test_bonus_map_for_the_methods_with_a_bonus(report: dict[str, Any]) -> None:
    maps = _section(report["html"], "bonus-maps")
    assert "<h3>DeepSea-6</h3>" in maps
    assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="bonus per cell on '
                     r'DeepSea-6">', maps)  # fmt: skip


def test_scores_use_only_seeds_present_on_every_task() -> None:
    done = [
        {"method": "a", "task": "t1", "seed": 0, "score": 0.1},
        {"method": "a", "task": "t1", "seed": 1, "score": 0.2},
        {"method": "a", "task": "t2", "seed": 0, "score": 0.3},
        {"method": "b", "task": "t1", "seed": 0, "score": 0.4},  # no run on t2 at all
        {"method": "c", "task": "t1", "seed": 0, "score": None},
        {"method": "c", "task": "t2", "seed": 0, "score": 0.5},
    ]
    scores, seeds, notes = _score_matrices(done, ["t1", "t2"])
    assert set(scores) == {"a"}
    np.testing.assert_allclose(scores["a"], [[0.1, 0.3]])
    assert seeds == {"a": [0]}
    text = " ".join(notes)
    assert "a: seed(s) 1 lack" in text and "b: no scored run on t2" in text
    assert "1 finished run(s) have no score" in text


def test_a_run_without_a_finished_score_is_scored_at_the_low_reference() -> None:
    records = [
        {"method": "a", "task": "t", "seed": 0, "status": "done", "score": 0.7},
        {"method": "a", "task": "t", "seed": 0, "status": "failed", "score": None},  # another suite
        {"method": "a", "task": "t", "seed": 1, "status": "failed", "score": 0.9},  # stale
        {"method": "a", "task": "t", "seed": 2, "status": "pending", "score": None},
        {"method": "a", "task": "t", "seed": 3, "status": "done", "score": None},
    ]
    runs = _runs_at_low_reference(records)
    assert [(r["seed"], r["score"], r["scored_low"]) for r in runs] == [
        (0, 0.7, False),
        (1, 0.0, True),
        (2, 0.0, True),
        (3, 0.0, True),
    ]


def _rows_with_a_failed_run(tmp_path: Path) -> list[dict[str, Any]]:
    """A store's rows: ppo and ppo+count, 3 seeds each on DeepSea-6; ppo's seed 2 failed."""
    suite = Suite("t", "test", tasks=(deepsea_task(6, 100),), methods=("ppo", "ppo+count"))
    scores = {("ppo", 0): 0.6, ("ppo", 1): 0.8}
    db = Store(tmp_path / "store.db")
    runs = plan(suite)
    db.add(runs, tmp_path / "runs")
    for run in runs:
        if (run.method.name, run.seed) == ("ppo", 2):
            db.mark_failed(run.key, "exit code 1\nboom", max_attempts=1)
            continue
        score = scores.get((run.method.name, run.seed), 0.5)
        db.mark_done(run.key, {"final_return": 0.99 * score, "fps": 1e3}, None, score)
    rows = db.rows()
    db.close()
    return rows


def _md_rows(md: str, heading: str) -> dict[str, list[str]]:
    """The cells of the Markdown table under ``heading``, by their first cell."""
    assert heading + "\n" in md, f"no {heading!r} in the Markdown:\n{md}"
    lines = md.split(heading + "\n", 1)[1].lstrip("\n").splitlines()
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines))
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in table[2:]]
    return {row[0]: row[1:] for row in cells}


def _point(cell: str) -> float:
    return float(cell.split()[0])


def test_a_failed_run_is_scored_low_and_the_aggregates_are_shown_both_ways(
    tmp_path: Path,
) -> None:
    html_path, md_path = write_report(_rows_with_a_failed_run(tmp_path), tmp_path / "r.html",
                                      reps=50)  # fmt: skip
    md, page = md_path.read_text(), html_path.read_text()
    every = _md_rows(md, "### All runs (1 run without a score scored 0)")
    finished = _md_rows(md, "### Finished runs only (1 run left out)")
    # Method | Runs | Scored 0 (or Left out) | IQM | Mean | Median | Optimality gap
    assert every["ppo"][:2] == ["3", "1"] and finished["ppo"][:2] == ["2", "1"]
    assert every["ppo+count"][:2] == ["3", "0"] and finished["ppo+count"][:2] == ["3", "0"]
    # ppo: 0.6, 0.8 and the failed run at 0 -> mean 1.4 / 3; without it 0.7
    assert _point(every["ppo"][3]) == pytest.approx(1.4 / 3, abs=1e-3)
    assert _point(finished["ppo"][3]) == pytest.approx(0.7, abs=1e-3)
    for i in (2, 3, 4):  # IQM, mean, median: lower with the failed run in
        assert _point(every["ppo"][i]) < _point(finished["ppo"][i])
    assert _point(every["ppo"][5]) > _point(finished["ppo"][5])  # optimality gap: larger
    assert every["ppo+count"][2:] == finished["ppo+count"][2:]
    # P(ppo > ppo+count): both finished runs beat all three 0.5s; the failed one loses to them.
    poi = _md_rows(md, "## Probability of improvement")
    assert poi["ppo"][0] == "ppo+count"
    assert _point(poi["ppo"][1]) == pytest.approx(6 / 9, abs=1e-3)
    assert _point(poi["ppo"][2]) == 1.0
    aggregate = _section(page, "aggregate")
    assert "All runs (1 run without a score scored 0)" in aggregate
    assert "Finished runs only (1 run left out)" in aggregate


def test_a_method_can_have_finished_scores_but_none_over_all_runs(tmp_path: Path) -> None:
    # b never ran on B, whose only run failed: all runs cover tasks A and B (b left out),
    # finished runs only task A (a and b both in).
    records = [
        {"method": "a", "task": "A", "seed": 0, "status": "done", "score": 0.9},
        {"method": "a", "task": "B", "seed": 0, "status": "failed", "score": None},
        {"method": "b", "task": "A", "seed": 0, "status": "done", "score": 0.4},
    ]
    _, md_path = write_report(records, tmp_path / "r.html", reps=20)
    md = md_path.read_text()
    every = _md_rows(md, "### All runs (1 run without a score scored 0)")
    finished = _md_rows(md, "### Finished runs only (1 run left out)")
    assert every["a"][:3] == ["2", "1", "0.450 [0.450, 0.450]"]
    assert every["b"] == ["0", "—", "—", "—", "—", "—"]
    assert finished["b"][:3] == ["1", "—", "0.400 [0.400, 0.400]"]
    assert _md_rows(md, "## Probability of improvement")["a"] == ["b", "—", "1.000 [1.000, 1.000]"]
    assert "b: no scored run on B" in md


def test_env_without_success_gets_return_curves_and_no_heatmap(tmp_path: Path) -> None:
    records = []
    for seed in (0, 1):
        run = tmp_path / f"cartpole-{seed}"
        run.mkdir()
        rows = [f"{200 * (i + 1)},{10.0 + i + seed},{20},\n" for i in range(150)]
        (run / "episodes.csv").write_text("frames,return,length,success\n" + "".join(rows))
        records.append(
            {
                "method": "ppo",
                "task": "CartPole-v1",
                "seed": seed,
                "status": "done",
                "run_dir": str(run),
                "budget": 30_000,
                "score": 0.5 + 0.1 * seed,
                "frames_to_solve": None,
                "fps": 1e4,
                "env_fps": None,
                "success_rate": None,
                "final_return": 150.0,
            }  # fmt: skip
        )
    html_path, md_path = write_report(records, tmp_path / "cp.html", reps=50)
    page, md = html_path.read_text(), md_path.read_text()
    assert "<img" in _section(page, "learning-curves")
    assert "<img" not in _section(page, "visitation")
    assert "No finished run has a visitation.npy" in _section(page, "visitation")
    assert "Needs at least two methods" in _section(page, "improvement")
    assert "| CartPole-v1 | — (0/2) |" in md
    assert "| CartPole-v1 | ppo | 2 | 10k | — | — |" in md


def test_unknown_status_is_refused(tmp_path: Path) -> None:
    record = _record("ppo", 0, "crashed")
    with pytest.raises(ValueError, match="unknown status 'crashed'; choose one of: done"):
        write_report([record], tmp_path / "r.html")


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *extra,
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium missing; run scripts/install_chromium.sh"
)
def test_page_renders_in_headless_chromium(report: dict[str, Any], tmp_path: Path) -> None:
    images = sum(1 for tag, _ in _tags(report["html"]) if tag == "img")
    dom = _chromium(report["html_path"], tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:2000]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("data-errors") == "0", attrs
    assert attrs.get("data-images-total") == str(images), attrs
    assert attrs.get("data-images-loaded") == str(images), attrs
    assert images >= 5

    shot = tmp_path / "page.png"
    result = _chromium(
        report["html_path"],
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,3000",
        "--hide-scrollbars",
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (3000, 1280)
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"screenshot has only {len(colours)} colours"
    assert pixels.std() > 0.05
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_noisy_tv_tasks_get_the_fraction_of_steps_on_the_tv(tmp_path: Path) -> None:
    """A task whose runs logged ``tv_fraction`` gets a table of it per method (mean over seeds,
    min-max in brackets); a report without such runs has no such section."""
    task = "MiniGrid-DoorKey-8x8-NoisyTV-v0"
    fractions = {("ppo+icm", 0): 0.30, ("ppo+icm", 1): 0.50, ("ppo+ride", 0): 0.02}
    records = [
        _record(
            method,
            seed,
            "done",
            task=task,
            score=0.5,
            success_rate=0.25,
            summary=json.dumps({"tv_fraction": tv}),
        )  # fmt: skip
        for (method, seed), tv in fractions.items()
    ]
    html_path, md_path = write_report(records, tmp_path / "tv.html", reps=20)
    rows = _md_rows(md_path.read_text(), "## Steps on the noisy TV")
    assert rows["ppo+icm"] == [task, "2", "40.0% (30.0%-50.0%)", "0.25"]
    assert rows["ppo+ride"] == [task, "1", "2.0%", "0.25"]
    assert 'id="noisy-tv"' in html_path.read_text()
    plain = write_report(_rows_with_a_failed_run(tmp_path), tmp_path / "plain.html", reps=20)
    assert "noisy TV" not in plain[1].read_text()


def test_wide_method_tables_put_the_methods_in_rows() -> None:
    methods = [f"m{i}" for i in range(8)]
    header, rows = ["Task", *methods], [["A", *"01234567"], ["B", *"abcdefgh"]]
    turned_header, turned = _methods_as_rows(header, rows)
    assert turned_header == ["Method", "A", "B"]
    assert turned[0] == ["m0", "0", "a"] and turned[7] == ["m7", "7", "h"]
    narrow = (["Task", "ppo", "ppo+rnd"], [["A", "1", "2"]])
    assert _methods_as_rows(*narrow) == narrow
