"""Atari on EnvPool (``explora.envs.atari``): the RND paper's preprocessing, episode ends, rooms
read from Montezuma's RAM, RND on the newest frame, a tiny PPO+RND run and its resume after a
kill, and ``--device``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

import explora
from explora.agents.ppo import PPOConfig, resolve_device
from explora.bonuses import RND, FirstVisit, make_bonus
from explora.bonuses.base import Transitions
from explora.envs import check_env_id, make
from explora.envs.atari import PYRAMID, LastFrame, atari_task, rnd_on_last_frame, room_cells
from explora.runs.episodes import EpisodeTracker
from explora.runs.rundir import read_metrics

pytestmark = pytest.mark.skipif(
    atari_task("MontezumaRevenge-v5") is None, reason="EnvPool's Atari ROMs are not installed"
)

MONTEZUMA = "ALE/MontezumaRevenge-v5"
LEAVE_FIRST_ROOM = (
    "qmmmmhhhhhkffjjoooobbbbbbdnnnnnnnnhkpppppppppppppppffffffmmmmmmmmmmmmmmmmmcccccccccmmmmoooo"
    "oojjjjjjjjjjjjjjjjjjjjjjjjjjjrrrrrrrrqqqqnmppphhhhhhhhhhhhnnnnnnnnnnnnnnnnrgggggggggggggggg"
    "gffcccccccclllllllljjjohhhhhhhnnnnnnnoccoooocccccqqqaaarrrrrrrrrrrrrrrrkkkkkkljjjjirrrrffff"
    "pbrrrrkkkkkpppppcccccccccbgghhhhhlffffffffffffffffffffffffffffffffffqqqqqqqqqqqqqqqqqqq"
)
"""360 actions (a = 0 ... r = 17) that, without sticky actions, take the key of Montezuma's
first room (+100), open the right-hand door (+300) and walk into the room to its right, at the
last step. Found by a Go-Explore-style search over RAM cells (room, level, inventory, x, y)."""
RUN_ARGS = {"num_steps": 32, "minibatch_size": 64, "checkpoint_every": 1}
TINY = {"num_envs": 4, "algo_args": RUN_ARGS, "bonus_args": {"warmup_steps": 8}}


def _actions(text: str) -> list[int]:
    return [ord(c) - ord("a") for c in text]


def test_atari_ids_route_to_envpool_and_others_do_not():
    for env_id in (MONTEZUMA, "MontezumaRevenge-v5", "ALE/Breakout-v5"):
        assert check_env_id(env_id) == "envpool"
    assert atari_task(MONTEZUMA) == "montezuma_revenge"
    assert atari_task("Ant-v5") is None and atari_task("CartPole-v1") is None
    assert atari_task("ALE/NoSuchGame-v5") is None
    with pytest.raises(ValueError, match="EnvPool only"):
        check_env_id(MONTEZUMA, backend="gymnasium")
    with pytest.raises(ValueError, match="does not take"):
        make(MONTEZUMA, num_envs=1, no_such_setting=1)


def test_observations_are_84x84_grey_with_4_frames_newest_last():
    env = make(MONTEZUMA, num_envs=2, seed=0)
    assert env.single_observation_space == gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    assert env.single_action_space == gym.spaces.Discrete(18)  # Montezuma's minimal set
    assert env._env.config["repeat_action_probability"] == 0.25
    assert env._env.config["max_episode_steps"] == 4500 and env._env.config["frame_skip"] == 4
    obs, info = env.reset()
    assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8 and obs.flags.c_contiguous
    assert (obs == obs[..., :1]).all()  # a fresh episode: the first frame four times
    assert info["room"].tolist() == [1, 1] and info["lives"].tolist() == [6, 6]
    previous = obs
    for action in (0, 5, 5, 5):  # NOOP, then DOWN the ladder
        step = env.step(np.full(2, action))
        np.testing.assert_array_equal(step.obs[..., :-1], previous[..., 1:])
        previous = step.obs
    assert not (step.obs[..., -1] == step.obs[..., 0]).all()
    env.close()
    breakout = make("Breakout-v5", num_envs=1)
    assert breakout.single_action_space == gym.spaces.Discrete(4)
    assert breakout.grid_shape is None and "room" not in breakout.reset()[1]
    breakout.close()


def test_sticky_actions_make_the_same_actions_diverge():
    """Two copies (seeded apart) fed the same actions: identical without sticky actions,
    different with the default p = 0.25."""
    script = _actions(LEAVE_FIRST_ROOM[:80])
    for settings, same in (({"repeat_action_probability": 0.0}, True), ({}, False)):
        env = make(MONTEZUMA, num_envs=2, seed=0, **settings)
        env.reset()
        differ = False
        for action in script:
            step = env.step(np.full(2, action))
            differ |= not np.array_equal(step.obs[0], step.obs[1])
        assert differ is not same, settings
        env.close()


def test_game_over_terminates_and_the_step_limit_truncates_with_the_true_final_obs():
    env = make(MONTEZUMA, num_envs=2, seed=0, repeat_action_probability=0.0, max_episode_steps=150)
    first, _ = env.reset()
    # copy 0 stands still (the limit truncates it at step 150); copy 1 walks RIGHT off the
    # platform and dies, six lives in 127 steps: a game over, terminated
    ends = {}
    for t in range(1, 160):
        step = env.step(np.array([0, 3]))
        for i in np.flatnonzero(step.terminated | step.truncated):
            ends.setdefault(int(i), (t, bool(step.terminated[i]), bool(step.truncated[i])))
            if i == 0 and t == 150:
                # the final obs is the episode's last (stood still: no reset frame four times),
                # obs is the next episode's first, the same as the reset one
                assert not (step.final_obs[0] == step.final_obs[0][..., :1]).all()
                np.testing.assert_array_equal(step.obs[0], first[0])
            if i == 1 and step.terminated[1]:
                assert step.info["lives"][1] == 0
                assert not np.array_equal(step.final_obs[1], step.obs[1])
    assert ends[0] == (150, False, True)
    assert ends[1][1:] == (True, False) and ends[1][0] < 150
    env.close()
    # a game over on the step limit's last step is a termination (EnvPool says truncated)
    died_at = ends[1][0]
    env = make(MONTEZUMA, num_envs=1, repeat_action_probability=0.0, max_episode_steps=died_at)
    env.reset()
    for _ in range(died_at):
        step = env.step(np.array([3]))
    assert step.terminated.tolist() == [True] and step.truncated.tolist() == [False]
    env.close()


def test_room_is_read_from_ram_and_changes_with_the_screen():
    env = make(MONTEZUMA, num_envs=1, seed=3, repeat_action_probability=0.0)
    obs, info = env.reset()
    tracker = EpisodeTracker(1, env.grid_shape)
    tracker.record_positions(info)
    assert tracker.unique_states == 1
    rooms, scores, changes = [], 0.0, []
    for action in _actions(LEAVE_FIRST_ROOM):
        step = env.step(np.array([action]))
        tracker.step(step, 0)
        rooms.append(int(step.info["room"][0]))
        scores += float(step.info["score"][0])
        changes.append(float(np.abs(step.obs[0, ..., -1].astype(int) - obs[0, ..., -1]).mean()))
        obs = step.obs
    assert rooms[:-1] == [1] * (len(rooms) - 1) and rooms[-1] == 2
    assert scores == 400.0  # the key (100) and the door (300)
    # the screen changes at exactly that step: its frame differs from the last far more
    # than any step's in room 1
    assert changes[-1] > 3 * max(changes[:-1])
    assert step.info["map_cell"][0].tolist() == [0, 5] and PYRAMID[0][5] == 2
    assert tracker.unique_states == 2
    assert room_cells(np.array([1, 0, 23])).tolist() == [[0, 4], [0, 3], [3, 8]]
    env.close()


def _batch(obs: torch.Tensor) -> Transitions:
    T, N = obs.shape[:2]
    z = torch.zeros(T, N)
    return Transitions(obs, torch.zeros(T, N, dtype=torch.long), obs, z, z.bool(), z.bool())


def test_rnd_reads_the_newest_frame_only():
    space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    act = gym.spaces.Discrete(18)
    torch.manual_seed(0)
    wrapped = LastFrame(RND(hidden_size=32, feature_size=16))
    wrapped.setup(space, act, 2)
    assert wrapped.inner.input_dim == 84 * 84
    torch.manual_seed(0)
    alone = RND(hidden_size=32, feature_size=16)
    alone.setup(gym.spaces.Box(0, 255, (84, 84, 1), np.uint8), act, 2)
    obs = torch.randint(0, 255, (3, 2, 84, 84, 4), dtype=torch.uint8)
    for bonus, seen in ((wrapped, obs), (alone, obs[..., -1:])):
        bonus.observe(_batch(seen[:1]))
        bonus.update(_batch(seen))
    torch.testing.assert_close(wrapped.compute(_batch(obs)), alone.compute(_batch(obs[..., -1:])))
    older = obs.clone()
    older[..., :-1] = 0  # the older frames do not matter
    torch.testing.assert_close(wrapped.compute(_batch(obs)), wrapped.compute(_batch(older)))
    assert wrapped.state_dict().keys() == alone.state_dict().keys()  # transparent to checkpoints
    assert isinstance(rnd_on_last_frame(RND()), LastFrame)
    assert isinstance(rnd_on_last_frame(FirstVisit(RND())), LastFrame)
    assert not isinstance(rnd_on_last_frame(make_bonus("count")), LastFrame)


def test_tiny_ppo_rnd_run_on_montezuma_writes_rooms(tmp_path):
    out = tmp_path / "run"
    summary = explora.train(
        MONTEZUMA, bonus="rnd", frames=288, seed=0, out=out, progress=False, **TINY
    )
    assert summary["frames"] == 32 + 2 * 128  # warm-up 8 steps x 4 envs, then two rollouts
    assert summary["emulator_frames"] == 4 * summary["frames"]
    assert summary["rooms"] == summary["unique_states"] >= 1
    config = json.loads((out / "config.json").read_text())
    assert config["bonus_frames"] == "last"
    assert config["bonus_config"]["hidden_size"] == 512  # the Atari preset
    assert config["algo_config"]["gamma"] == 0.999 and config["algo_config"]["device"] == "cpu"
    assert (read_metrics(out / "metrics.csv")["charts/unique_states"] >= 1).all()
    for name in ("rooms.png", "rooms_map.png", "visitation.npy", "learning_curve.png"):
        assert (out / name).exists(), name
    assert np.load(out / "visitation.npy").shape == (4, 9)
    # the bonus map is per room: the first room (pyramid row 0, column 4) was paid a bonus
    bonus_map = np.load(out / "bonus_map.npy")
    assert bonus_map.shape == (4, 9) and np.isfinite(bonus_map[0, 4])


def test_killed_atari_run_resumes_from_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "explora.cli", "train", "--env", MONTEZUMA, "--bonus", "rnd",
        "--frames", "1000000", "--num-envs", "4", "--out", str(out), "--no-progress",
        "--algo-args", *(f"{k}={v}" for k, v in RUN_ARGS.items()),
        "--bonus-args", "warmup_steps=8",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), proc.stderr.read().decode() if proc.poll() is not None else "timeout"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = int(torch.load(ckpt, weights_only=False)["frames"])
    assert 0 < saved < 1_000_000
    summary = explora.train(
        MONTEZUMA, bonus="rnd", frames=saved + 128, out=out, progress=False, resume=True, **TINY
    )
    assert summary["frames"] == saved + 128 and summary["rooms"] >= 1
    frames = read_metrics(out / "metrics.csv")["frames"]
    assert frames[-1] == saved + 128 and np.all(np.diff(frames) > 0)


def test_device_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        PPOConfig(device="tpu").check()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no GPU"):
            PPOConfig(device="cuda").check()
    with pytest.raises(ValueError, match="CPU only"):
        explora.train("DeepSea-4", algo="dqn", device="cuda", frames=100, progress=False)


def test_only_rnd_follows_the_agent_to_its_device():
    from explora.agents.ppo import device_modules
    from explora.bonuses import FirstVisit, make_bonus
    from explora.bonuses.view import NewestFrame

    rnd, other = RND(), RND()
    assert device_modules(rnd) == [rnd]
    assert device_modules(NewestFrame(FirstVisit(rnd), channels=1)) == [rnd]
    both = make_bonus("rnd+icm")
    assert [type(m).__name__ for m in device_modules(both)] == ["RND"]
    assert device_modules(make_bonus("icm")) == [] and device_modules(None) == []
    assert device_modules(LastFrame(other)) == [other]
