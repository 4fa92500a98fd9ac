"""Sum of bonuses (combine.py), the ``rnd+count`` names of make_bonus, per-term presets, and
one run each through ``explora.train`` and the command line."""

from __future__ import annotations

import json
import math
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import explora
from explora.bonuses import (
    RND,
    Count,
    FirstVisit,
    Sum,
    Transitions,
    bonus_hparams,
    combination_terms,
    make_bonus,
)
from explora.cli import main

train_module = sys.modules["explora.train"]  # the module (explora.train is the function)

OBS = gym.spaces.Box(0, 3, (2,), dtype=np.int64)
ACTIONS = gym.spaces.Discrete(2)


def step_of(next_obs: torch.Tensor, obs: torch.Tensor | None = None, ended=None) -> Transitions:
    """A ``T == 1`` step whose ``next_obs`` is ``next_obs`` ``[N, 2]``."""
    n = int(next_obs.shape[0])
    ended_t = torch.zeros(1, n, dtype=torch.bool) if ended is None else torch.tensor([ended])
    return Transitions(
        obs=(torch.zeros_like(next_obs) if obs is None else obs).unsqueeze(0),
        actions=torch.zeros(1, n, dtype=torch.int64),
        next_obs=next_obs.unsqueeze(0),
        ext_rewards=torch.zeros(1, n),
        terminated=ended_t,
        truncated=torch.zeros(1, n, dtype=torch.bool),
    )


def rollout(bonus, states: list[list[int]]) -> torch.Tensor:
    """Observe one step per row of ``states`` (``[T][N]`` state ids, obs = (id, 0)) and
    compute on the whole rollout; returns ``[T, N]``."""
    steps = [step_of(torch.tensor([[s, 0] for s in row])) for row in states]
    for step in steps:
        bonus.observe(step)
    batch = Transitions(
        obs=torch.cat([s.obs for s in steps]),
        actions=torch.cat([s.actions for s in steps]),
        next_obs=torch.cat([s.next_obs for s in steps]),
        ext_rewards=torch.cat([s.ext_rewards for s in steps]),
        terminated=torch.cat([s.terminated for s in steps]),
        truncated=torch.cat([s.truncated for s in steps]),
    )
    return bonus.compute(batch)


# --- the sum -------------------------------------------------------------------------------


def test_weighted_sum_of_counts_by_hand() -> None:
    bonus = Sum(
        {"a": Count(beta=1.0), "b": Count(beta=3.0)}, weights={"a": 0.5, "b": 2.0}, normalize="none"
    )
    bonus.setup(OBS, ACTIONS, num_envs=2)
    value = rollout(bonus, [[0, 1], [0, 0], [2, 0]])
    # counts after the rollout: state 0 seen 4 times, 1 once, 2 once
    n = torch.tensor([[4.0, 1.0], [4.0, 4.0], [1.0, 4.0]])
    expected = 0.5 * 1.0 / n.sqrt() + 2.0 * 3.0 / n.sqrt()
    assert value.dtype == torch.float32 and value.shape == (3, 2)
    torch.testing.assert_close(value, expected)


def test_rms_puts_terms_of_any_scale_at_the_same_size() -> None:
    """Each term is divided by the root mean square of its raw values so far: two counts whose
    scales differ by 1000x contribute equally, and the total's RMS over the batch is 2."""
    bonus = Sum({"small": Count(beta=1.0), "large": Count(beta=1000.0)})
    bonus.setup(OBS, ACTIONS, num_envs=2)
    value = rollout(bonus, [[0, 1], [0, 0], [2, 0]])
    raw = 1.0 / torch.tensor([[4.0, 1.0], [4.0, 4.0], [1.0, 4.0]]).sqrt()
    rms = raw.square().mean().sqrt()  # RunningMeanStd's prior of 1e-4 samples is negligible
    torch.testing.assert_close(value, 2 * raw / rms, rtol=1e-4, atol=0)
    # the statistics include this batch and carry on: a second rollout divides by both batches
    value2 = rollout(bonus, [[3, 3]])
    raw2 = 1.0 / torch.tensor([[2.0, 2.0]]).sqrt()
    rms2 = torch.cat([raw.flatten(), raw2.flatten()]).square().mean().sqrt()
    torch.testing.assert_close(value2, 2 * raw2 / rms2, rtol=1e-4, atol=0)


def test_eval_mode_freezes_the_scales() -> None:
    bonus = Sum({"a": Count(), "b": Count(beta=2.0)})
    bonus.setup(OBS, ACTIONS, num_envs=2)
    rollout(bonus, [[0, 1]])
    before = bonus.state_dict()["scales"]
    bonus.eval()
    rollout(bonus, [[0, 0], [0, 0]])
    after = bonus.state_dict()["scales"]
    for name in before:
        for key in before[name]:
            assert torch.equal(before[name][key], after[name][key]), (name, key)
    assert bonus.terms["a"].num_unique == 2  # type: ignore[attr-defined]  # counts frozen too


def test_flags_and_hooks_reach_every_term() -> None:
    first = FirstVisit(Count())
    bonus = Sum({"first": first, "rnd": RND(warmup_steps=7), "count": Count()})
    assert bonus.episodic and bonus.warmup_steps == 7
    assert not Sum({"rnd": RND(), "count": Count()}).episodic
    bonus = Sum({"first": first, "count": Count()}, normalize="none")
    bonus.setup(OBS, ACTIONS, num_envs=2)
    # env 0 goes 5 -> 6 -> 5: the return to 5 (its start view) pays no first-visit bonus
    bonus.observe(step_of(torch.tensor([[6, 0], [6, 0]]), obs=torch.tensor([[5, 0], [7, 0]])))
    bonus.start_new_episodes(np.array([False, True]))  # env 1 starts over
    bonus.observe(step_of(torch.tensor([[5, 0], [7, 0]]), obs=torch.tensor([[6, 0], [6, 0]])))
    value = bonus.compute(
        Transitions(
            obs=torch.zeros(1, 2, 2, dtype=torch.int64),
            actions=torch.zeros(1, 2, dtype=torch.int64),
            next_obs=torch.tensor([[[5, 0], [7, 0]]]),
            ext_rewards=torch.zeros(1, 2),
            terminated=torch.zeros(1, 2, dtype=torch.bool),
            truncated=torch.zeros(1, 2, dtype=torch.bool),
        )
    )
    # first-visit term: env 0 back at its start view -> 0; env 1's new episode began at 6
    # (the obs after start_new_episodes), so 7 is new -> 1/sqrt(1). Count term: 1/sqrt(1) each.
    torch.testing.assert_close(value, torch.tensor([[0.0 + 1.0, 1.0 + 1.0]]))


def test_update_logs_each_term_under_its_name() -> None:
    bonus = Sum({"count": Count()})
    bonus.setup(OBS, ACTIONS, num_envs=2)
    rollout(bonus, [[0, 1]])
    assert bonus.update(step_of(torch.tensor([[0, 0], [1, 0]]))) == {
        "bonus/count/unique_states": 2.0
    }
    assert bonus.num_unique == 2


def make_pair() -> Sum:
    torch.manual_seed(0)
    bonus = Sum(
        {"rnd": FirstVisit(RND(warmup_steps=2, update_proportion=1.0)), "count": Count()},
        weights={"count": 2.0},
    )
    bonus.setup(OBS, ACTIONS, num_envs=2)
    return bonus


def test_state_dict_round_trip_is_exact() -> None:
    gen = torch.Generator().manual_seed(1)
    states = torch.randint(0, 4, (12, 2), generator=gen).tolist()
    source = make_pair()
    rollout(source, states[:6])
    source.update(step_of(torch.tensor([[1, 0], [2, 0]])))
    rollout(source, states[6:8])  # observed but not computed: FirstVisit's pending flags
    source.observe(step_of(torch.tensor([[3, 0], [3, 0]])))
    state = source.state_dict()
    assert set(state) == {"terms", "scales"} and set(state["terms"]) == {"rnd", "count"}
    assert torch.equal(
        state["scales"]["count"]["count"], source.state_dict()["scales"]["count"]["count"]
    )

    target = make_pair()
    torch.manual_seed(123)  # a different init: everything must come from the state
    target.load_state_dict(state)
    later = step_of(torch.tensor([[0, 0], [3, 0]]))
    for bonus in (source, target):
        bonus.observe(later)
    tail = Transitions(
        obs=torch.zeros(2, 2, 2, dtype=torch.int64),
        actions=torch.zeros(2, 2, dtype=torch.int64),
        next_obs=torch.tensor([[[3, 0], [3, 0]], [[0, 0], [3, 0]]]),
        ext_rewards=torch.zeros(2, 2),
        terminated=torch.zeros(2, 2, dtype=torch.bool),
        truncated=torch.zeros(2, 2, dtype=torch.bool),
    )
    assert torch.equal(source.compute(tail), target.compute(tail))
    assert source.update(tail) == target.update(tail)


def test_state_dict_is_a_snapshot() -> None:
    """A saved state does not move with the bonus afterwards, and saving changes nothing."""
    bonus = Sum({"a": Count(), "b": Count(beta=2.0)})
    bonus.setup(OBS, ACTIONS, num_envs=2)
    rollout(bonus, [[0, 1]])
    state = bonus.state_dict()
    saved = {n: {k: v.clone() for k, v in s.items()} for n, s in state["scales"].items()}
    saved_counts = dict(state["terms"]["a"]["counts"])
    rollout(bonus, [[2, 2], [3, 3]])
    for name, stats in saved.items():
        for key, value in stats.items():
            assert torch.equal(state["scales"][name][key], value), (name, key)
    assert state["terms"]["a"]["counts"] == saved_counts


def test_load_refuses_a_state_of_other_terms() -> None:
    with pytest.raises(ValueError, match="holds the terms count, rnd; this sum has count"):
        Sum({"count": Count()}).load_state_dict(make_pair().state_dict())


# --- names, arguments, presets --------------------------------------------------------------


def test_names_parse_into_weighted_terms() -> None:
    assert combination_terms("rnd") is None
    assert combination_terms("rnd+count") == {"rnd": 1.0, "count": 1.0}
    assert combination_terms("0.5*rnd + count*2") == {"rnd": 0.5, "count": 2.0}
    bonus = make_bonus("0.5*rnd+count", **{"rnd.learning_rate": 1e-3, "count.beta": 3.0})
    assert isinstance(bonus, Sum) and bonus.name == "0.5*rnd+count"
    assert bonus.weights == {"rnd": 0.5, "count": 1.0}
    assert bonus.terms["rnd"].learning_rate == 1e-3  # type: ignore[attr-defined]
    assert bonus.terms["count"].beta == 3.0  # type: ignore[attr-defined]
    assert bonus_hparams(bonus)["terms"]["count"] == {"beta": 3.0, "key": "observation"}
    per_term = make_bonus("rnd+count", **{"rnd.first_visit": True}, normalize="none")
    assert isinstance(per_term, Sum) and isinstance(per_term.terms["rnd"], FirstVisit)
    assert per_term.normalize == "none"
    whole = make_bonus("rnd+count", first_visit=True)
    assert isinstance(whole, FirstVisit) and isinstance(whole.inner, Sum)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("rnd+cnt", {}, "'cnt' is not a bonus name.*names from: aehash, count"),
        ("rnd+rnd", {}, "names rnd twice"),
        ("rnd*-1+count", {}, "weight of rnd must be a finite number >= 0, got '-1'"),
        ("rnd*inf+count", {}, "weight of rnd must be a finite number >= 0"),
        ("rnd+", {}, "'' is not a bonus name"),
        (
            "rnd+count",
            {"learning_rate": 1e-3},
            "prefixed by the term's name .write rnd.learning_rate",
        ),
        ("rnd+count", {"rdn.learning_rate": 1e-3}, "'rdn' is not one of its terms .rnd, count."),
        ("rnd+count", {"rnd.lr": 1e-3}, "unknown argument rnd.lr.*accepted for rnd: rnd.encoder"),
        ("rnd+count", {"count.beta": -1.0}, "count bonus argument beta"),
        ("rnd+count", {"rnd.obs_key": "image"}, "obs_key applies to the whole combination"),
        ("rnd+count", {"normalize": "std"}, "normalize must be one of: none, rms"),
    ],
)
def test_bad_names_and_arguments_fail_clearly(name: str, args: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_bonus(name, **args)


def test_each_term_gets_its_env_family_preset() -> None:
    preset = train_module._preset("rnd+count", "MiniGrid-DoorKey-5x5-v0")
    assert preset == {
        f"rnd.{k}": v for k, v in train_module.bonus_preset("rnd", "MiniGrid-X").items()
    }
    assert preset["rnd.first_visit"] is True and preset["rnd.learning_rate"] == 1e-3
    bonus = make_bonus("rnd+count", **{**preset, "rnd.hidden_size": 32})  # the user's wins
    assert isinstance(bonus, Sum)
    rnd = bonus.terms["rnd"]
    assert isinstance(rnd, FirstVisit) and rnd.inner.hidden_size == 32  # type: ignore[attr-defined]
    assert rnd.inner.learning_rate == 1e-3  # type: ignore[attr-defined]
    deepsea = train_module._preset("count+dora", "DeepSea-10")
    assert deepsea == {
        f"dora.{k}": v for k, v in train_module.bonus_preset("dora", "DeepSea-1").items()
    }
    assert deepsea["dora.hidden_size"] == 0  # accepted although the table refuses 0 widths
    assert make_bonus("count+dora", **deepsea).terms["dora"].hidden_size == 0  # type: ignore[attr-defined]


# --- runs ----------------------------------------------------------------------------------


def test_train_with_a_sum_runs_and_resumes(tmp_path) -> None:
    out = tmp_path / "run"
    small = {"num_steps": 32, "minibatch_size": 64, "checkpoint_every": 1}
    summary = explora.train(
        "DeepSea-10", bonus="rnd+count", frames=2048, out=out, progress=False, algo_args=small
    )
    assert summary["bonus"] == "rnd+count" and summary["frames"] == 2048
    config = json.loads((out / "config.json").read_text())
    assert config["bonus_config"]["terms"].keys() == {"rnd", "count"}
    assert config["bonus_config"]["weights"] == {"rnd": 1.0, "count": 1.0}
    resumed = explora.train(
        "DeepSea-10",
        bonus="rnd+count",
        frames=4096,
        out=out,
        progress=False,
        resume=True,
        algo_args=small,
    )
    assert resumed["frames"] == 4096 and math.isfinite(resumed["final_return"])


def test_cli_trains_a_sum_and_refuses_an_unknown_term_argument(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--env", "DeepSea-6", "--bonus", "rnd+count", "--frames", "2000"]
    assert main([*args, "--out", str(out), "--no-progress", "--bonus-args", "count.beta=2"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["bonus"] == "rnd+count"
    assert config["bonus_config"]["terms"]["count"] == {"beta": 2.0, "key": "observation"}
    capsys.readouterr()
    bad = [*args, "--out", str(tmp_path / "bad"), "--no-progress", "--bonus-args", "beta=2"]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "unknown argument beta for bonus 'rnd+count'" in err and "write count.beta" in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("first_visit", [False, True])
def test_dqn_drives_a_lifelong_and_an_episodic_sum(tmp_path, first_visit: bool) -> None:
    """DQN values a lifelong sum on sampled windows and an episodic one (a first-visit term)
    per step as it happens; both train every term."""
    summary = explora.train(
        "DeepSea-6",
        algo="dqn",
        bonus="rnd+count",
        bonus_args={"rnd.first_visit": first_visit},
        frames=1500,
        out=tmp_path / "run",
        progress=False,
        algo_args={"learning_starts": 200},
    )
    assert summary["frames"] == 1500 and math.isfinite(summary["final_return"])
