"""The command line and the run directory, used the way a user would."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import explora
from explora.agents import TrainingDiverged
from explora.cli import main
from explora.runs.rundir import read_metrics

SMALL = ["--algo-args", "num_steps=32", "minibatch_size=64"]


def run_cli(*args):
    return main(list(args))


def test_list_shows_every_algo_bonus_and_env_family(capsys):
    assert run_cli("list") == 0
    out = capsys.readouterr().out
    for name in ("ppo", "count", "rnd", "simhash", "MiniGrid-*", "DeepSea-<N>"):
        assert name in out


# Bad input (unknown names, out-of-range settings, impossible combinations, damaged
# checkpoints, ...) is tested case by case in test_bad_input.py.


def test_run_directory_holds_everything_and_refuses_to_be_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--env",
        "DeepSea-6",
        "--bonus",
        "count",
        "--frames",
        "4096",
        "--seed",
        "3",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert run_cli(*args) == 0
    printed = capsys.readouterr().out
    assert str(out / "summary.json") in printed and "learning_curve.png" in printed
    for name in (
        "config.json",
        "metrics.csv",
        "summary.json",
        "learning_curve.png",
        "checkpoints/last.pt",
        "visitation.npy",
    ):
        assert (out / name).exists(), name
    assert any((out / "tb").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "frames",
        "wall_time_s",
        "fps",
        "env_fps",
        "final_return",
        "success_rate",
        "unique_states",
    ):
        assert summary[key] is not None, key
    assert summary["frames"] == 4096 and summary["env_fps"] > summary["fps"] > 0
    # DeepSea-6's reachable cells are those with col <= row: 21; the count bonus visits them all
    assert summary["unique_states"] == 21
    config = json.loads((out / "config.json").read_text())
    assert config["env"] == "DeepSea-6" and config["bonus"] == "count" and config["seed"] == 3
    metrics = read_metrics(out / "metrics.csv")
    assert np.all(np.diff(metrics["frames"]) > 0)

    assert run_cli(*args) == 2
    assert "--resume" in capsys.readouterr().err
    assert run_cli(*args, "--overwrite") == 0


def test_resume_extends_a_finished_run_from_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    first = explora.train(
        "CartPole-v1",
        frames=4096,
        out=out,
        progress=False,
        algo_args={"num_steps": 32, "minibatch_size": 64},
    )
    assert first["frames"] == 4096
    second = explora.train(
        "CartPole-v1",
        frames=8192,
        out=out,
        progress=False,
        resume=True,
        algo_args={"num_steps": 32, "minibatch_size": 64},
    )
    assert second["frames"] == 8192
    frames = read_metrics(out / "metrics.csv")["frames"]
    assert frames[-1] == 8192 and len(frames) == 16 and np.all(np.diff(frames) > 0)


def test_resume_refuses_a_different_config(tmp_path):
    out = tmp_path / "run"
    explora.train("CartPole-v1", frames=2048, out=out, progress=False)
    with pytest.raises(ValueError, match="config differs in algo_config"):
        explora.train(
            "CartPole-v1",
            frames=2048,
            out=out,
            progress=False,
            resume=True,
            algo_args={"learning_rate": 1e-3},
        )


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "explora.cli",
        "train",
        "--env",
        "CartPole-v1",
        "--frames",
        "400000",
        "--out",
        str(out),
        "--no-progress",
        "--algo-args",
        "checkpoint_every=2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoints" / "last.pt"
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(ckpt, weights_only=False)["frames"]
    assert 0 < saved < 400_000
    summary = explora.train(
        "CartPole-v1",
        frames=int(saved) + 4096,
        out=out,
        progress=False,
        resume=True,
        algo_args={"checkpoint_every": 2},
    )
    frames = read_metrics(out / "metrics.csv")["frames"]
    assert summary["frames"] == int(saved) + 4096
    assert np.all(np.diff(frames) > 0), "rows after the checkpoint were logged twice"


class NaNAfter:
    """A bonus that turns NaN on its third rollout."""

    episodic, warmup_steps = False, 0

    def __init__(self):
        self.calls = 0

    def setup(self, observation_space, action_space, num_envs):
        pass

    def observe(self, step):
        pass

    def compute(self, batch):
        self.calls += 1
        value = float("nan") if self.calls >= 3 else 0.1
        return torch.full(batch.shape, value)

    def update(self, batch):
        return {}

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        explora.train(
            "CartPole-v1",
            bonus=NaNAfter(),
            frames=20_000,
            out=out,
            progress=False,
            algo_args={"checkpoint_every": 1, "num_steps": 32, "minibatch_size": 64},
        )
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert state["update"] == 2
    assert all(torch.isfinite(v).all() for v in state["agent"].values())
    assert Path(out / "metrics.csv").exists()


def test_a_bonus_run_keeps_the_mean_bonus_per_grid_cell(tmp_path):
    """bonus_map.npy: the raw bonus averaged per cell reached; with counts, rarely reached
    cells were paid more than the most visited ones; cells never reached stay NaN."""
    import numpy as np

    import explora

    out = tmp_path / "run"
    explora.train("DeepSea-6", bonus="count", frames=4096, out=out, progress=False)
    bonus_map = np.load(out / "bonus_map.npy")
    visits = np.load(out / "visitation.npy")
    assert bonus_map.shape == (6, 6) and (out / "bonus_map.png").is_file()
    paid = np.isfinite(bonus_map)
    assert paid.sum() > 6 and not (paid & (visits == 0)).any()
    reached = paid & (visits > 0)
    rare = bonus_map[reached][np.argmin(visits[reached])]
    common = bonus_map[reached][np.argmax(visits[reached])]
    assert rare > common


def test_env_args_reach_the_env_and_the_config_and_a_wrong_one_is_refused(tmp_path, capsys):
    from explora.cli import main

    out = tmp_path / "lake"
    code = main(["train", "--env", "FrozenLake-v1", "--frames", "2048", "--out", str(out),
                 "--no-progress", "--env-args", "map_name=8x8", "is_slippery=false"])  # fmt: skip
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["env_kwargs"] == {"map_name": "8x8", "is_slippery": False}
    bad = tmp_path / "bad"
    code = main(["train", "--env", "FrozenLake-v1", "--frames", "2048", "--out", str(bad),
                 "--no-progress", "--env-args", "map_size=8x8"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("explora: error: ")
    assert "map_size" in err[0] and not bad.exists()
