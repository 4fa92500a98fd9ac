"""Run-directory helpers."""

import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from explora.runs import rundir
from explora.runs.rundir import (
    OutDirError,
    ResumeError,
    RunDir,
    check_writable,
    frames_to_success,
)


def test_frames_to_success_uses_a_trailing_window_of_episodes():
    episodes = [(10 * i, 0.0, 5, 0.0) for i in range(10)]
    episodes += [(100 + 10 * i, 1.0, 5, 1.0) for i in range(10)]
    # window 4 at 0.75: three successes in the last four first happen at the 3rd success
    assert frames_to_success(episodes, threshold=0.75, window=4) == 120
    assert frames_to_success(episodes, threshold=1.0, window=4) == 130
    assert frames_to_success(episodes[:10], threshold=0.5, window=4) is None
    assert frames_to_success(episodes, window=100) is None  # fewer episodes than the window


def test_a_checkpoint_falls_due_checkpoint_minutes_after_the_last(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(rundir, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    run = RunDir(tmp_path / "run", {"env": "x"}, progress=False, checkpoint_minutes=5)
    assert not run.checkpoint_due()
    clock[0] += 299.0
    assert not run.checkpoint_due()
    clock[0] += 1.0
    assert run.checkpoint_due()
    run.save_checkpoint({"frames": 0})
    assert not run.checkpoint_due()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_a_checkpoint_is_written_through_a_synced_temporary_file(tmp_path, monkeypatch):
    """temporary file, fsync of the file, rename over last.pt, fsync of the directory."""
    run = RunDir(tmp_path / "run", {"env": "x"}, progress=False)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src, dst):
        events.append(f"replace {Path(src).name} -> {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(rundir.os, "fsync", fsync)
    monkeypatch.setattr(rundir.os, "replace", replace)
    run.save_checkpoint({"frames": 7})
    assert events == ["fsync-file", "replace last.pt.tmp -> last.pt", "fsync-dir"]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.pt"]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert state["frames"] == 7 and state["run_config"] == {"env": "x"}


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run", {"env": "x"}, progress=False)
    run.save_checkpoint({"frames": 1})

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(rundir.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        run.save_checkpoint({"frames": 2})
    monkeypatch.undo()
    folder = tmp_path / "run" / "checkpoints"
    assert torch.load(folder / "last.pt", weights_only=False)["frames"] == 1
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]  # no half-written file left


def _resumable(tmp_path, config):
    run = RunDir(tmp_path / "run", config, progress=False)
    run.save_checkpoint({"frames": 4, "torch_rng": torch.get_rng_state(), "config": {"lr": 1}})
    run.close()


def test_resume_hands_over_the_checked_checkpoint(tmp_path):
    config = {"env": "x", "algo": "ppo", "algo_config": {"lr": 1, "total_frames": 8}}
    _resumable(tmp_path, config)
    bigger = {**config, "frames": 16, "algo_config": {"lr": 1, "total_frames": 16}}
    run = RunDir(tmp_path / "run", bigger, progress=False, resume=True)
    assert run.load_checkpoint()["frames"] == 4


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.write_bytes(b"\x00garbage" * 100), "it is not a readable checkpoint"),
        (lambda f: f.write_bytes(f.read_bytes()[:50]), "it is not a readable checkpoint"),
        (lambda f: torch.save([1, 2], f), "it is not an explora checkpoint (no frames"),
        (lambda f: torch.save({"frames": 1}, f), "(no torch_rng, config)"),
    ],
    ids=["garbage", "truncated", "a-list", "keys-missing"],
)
def test_a_damaged_checkpoint_is_refused_before_anything_is_written(tmp_path, damage, message):
    config = {"env": "x", "algo": "ppo", "algo_config": {"lr": 1}}
    _resumable(tmp_path, config)
    file = tmp_path / "run" / "checkpoints" / "last.pt"
    damage(file)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "run").rglob("*.*")}
    with pytest.raises(ResumeError, match=re.escape(message)) as raised:
        RunDir(tmp_path / "run", config, progress=False, resume=True)
    assert str(file) in str(raised.value) and "\n" not in str(raised.value)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "run").rglob("*.*")}
    assert after == before


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    _resumable(tmp_path / "a", {"env": "x", "algo": "dqn", "algo_config": {"lr": 1}})
    _resumable(tmp_path / "b", {"env": "x", "algo": "ppo", "algo_config": {"lr": 1}})
    shutil.copy(tmp_path / "a/run/checkpoints/last.pt", tmp_path / "b/run/checkpoints/last.pt")
    with pytest.raises(ResumeError, match="written by a different run; differs in algo"):
        RunDir(tmp_path / "b" / "run", {"env": "x", "algo": "ppo", "algo_config": {"lr": 1}},
               progress=False, resume=True)  # fmt: skip


def test_an_unstamped_checkpoint_is_compared_by_its_agent_settings(tmp_path):
    """Checkpoints written before they carried the run's record still resume, and still
    refuse other settings."""
    config = {"env": "x", "algo": "ppo", "algo_config": {"lr": 1, "total_frames": 8}}
    _resumable(tmp_path, config)
    file = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(file, weights_only=False)
    del state["run_config"]
    torch.save({**state, "config": {"lr": 1, "total_frames": 8}}, file)
    assert RunDir(tmp_path / "run", config, progress=False, resume=True).load_checkpoint()
    torch.save({**state, "config": {"lr": 2, "total_frames": 8}}, file)
    with pytest.raises(ResumeError, match="other agent settings .*differs in lr"):
        RunDir(tmp_path / "run", config, progress=False, resume=True)


def test_an_out_that_cannot_be_written_is_refused_up_front(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutDirError, match="afile is a file, not a directory"):
        check_writable(tmp_path / "afile" / "deeper" / "run")
    check_writable(tmp_path / "new" / "deeper" / "run")  # missing folders are fine
    assert not (tmp_path / "new").exists()
    if os.geteuid() != 0:  # root writes through mode bits
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(OutDirError, match="permission denied"):
            check_writable(tmp_path / "ro" / "run")


def test_a_setting_added_to_explora_after_a_run_started_does_not_block_its_resume():
    from explora.runs.rundir import _differences

    saved = {"env": "DeepSea-8", "algo_config": {"gamma": 0.99}}
    now = {"env": "DeepSea-8", "algo_config": {"gamma": 0.99, "clip_vloss": False}}
    assert _differences(saved, now) == []
    changed = {"env": "DeepSea-8", "algo_config": {"gamma": 0.9, "clip_vloss": False}}
    assert _differences(saved, changed) == ["algo_config.gamma"]
    assert _differences({**saved, "seed": 1}, {**now, "seed": 2}) == ["seed"]
