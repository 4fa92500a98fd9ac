"""Run-directory helpers."""

from types import SimpleNamespace

from explora.runs import rundir
from explora.runs.rundir import RunDir, frames_to_success


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
