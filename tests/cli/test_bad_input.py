"""Malformed input, through the command line and the Python API: a clear error, nothing lost.

Every CLI case must end with exactly one line ``explora: error: ...`` on stderr naming the bad
value, exit with status 2, show no traceback, create no new run directory, and leave every
byte (and mtime) of an existing run directory and result store as it was. Every API case
must raise ``ValueError`` (or ``FileExistsError``) naming the bad value and, where there is a
set of choices, the accepted ones. A few cases go through the installed ``explora`` script in
a child process, to show the real entry point prints no traceback either. tyro's own usage
errors (a flag of the wrong type, an unknown flag) print tyro's message: those must exit
non-zero without a traceback.

``NUM_CASES`` counts the distinct malformed inputs (the README quotes it).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import explora
from explora.bench.store import Store
from explora.bonuses import BONUSES, RND, make_bonus
from explora.cli import main
from explora.envs import make

TOY_MODULE = "explora_badinput_envs"
TOY_ENVS = textwrap.dedent(
    '''
    """Tiny envs for explora's bad-input tests, registered with gymnasium on import."""
    import gymnasium as gym
    import numpy as np
    from gymnasium.envs.registration import register


    class Toy(gym.Env):
        """A few steps of noise; +1 at the last step."""

        def __init__(self, obs_space=None, act_space=None, length=8):
            self.observation_space = obs_space or gym.spaces.Box(0.0, 1.0, (3,), np.float32)
            self.action_space = act_space or gym.spaces.Discrete(2)
            self.length, self.t = length, 0

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self.observation_space.sample(), {}

        def step(self, action):
            self.t += 1
            done = self.t >= self.length
            return self.observation_space.sample(), float(done), done, False, {}


    register("BadInputToy-v0", entry_point=Toy)
    register(
        "BadInputTuple-v0",
        entry_point=Toy,
        kwargs={"obs_space": gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Discrete(2)))},
    )
    register(
        "BadInputDict-v0",
        entry_point=Toy,
        kwargs={
            "obs_space": gym.spaces.Dict(
                {"a": gym.spaces.Discrete(3), "t": gym.spaces.Tuple((gym.spaces.Discrete(2),))}
            )
        },
    )
    register(
        "BadInputMultiBinaryAct-v0",
        entry_point=Toy,
        kwargs={"act_space": gym.spaces.MultiBinary(2)},
    )
    register(
        "BadInputBoxAct-v0",
        entry_point=Toy,
        kwargs={"act_space": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)},
    )
    '''
)
BROKEN_MODULE = "explora_badinput_broken"  # imports a dependency that does not exist

# The existing run every resume case points at (and the settings it was trained with).
RUN_ARGS = ["--env", "DeepSea-6", "--frames", "1024"]
RUN_API = ("DeepSea-6",)


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory: pytest.TempPathFactory):
    """A folder with the toy env modules, on sys.path here and on PYTHONPATH for children."""
    folder = tmp_path_factory.mktemp("toy_envs")
    (folder / f"{TOY_MODULE}.py").write_text(TOY_ENVS)
    (folder / f"{BROKEN_MODULE}.py").write_text("import explora_no_such_dependency_xyz\n")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished PPO run, a finished DQN run (its checkpoint is foreign to the PPO run) and an
    empty result store, built once; each case works on its own copy."""
    base = tmp_path_factory.mktemp("existing")
    explora.train(*RUN_API, frames=1024, out=base / "run", progress=False)
    explora.train(
        "DeepSea-6",
        algo="dqn",
        frames=1200,
        out=base / "dqn",
        progress=False,
        algo_args={"learning_starts": 200, "log_every": 400},
    )
    (base / "store").mkdir()
    Store(base / "store" / "store.db").close()
    return base


# ---- how a case changes its copy of the existing run before the command -----------------


def _checkpoint(tmp: Path) -> Path:
    return tmp / "run" / "checkpoints" / "last.pt"


def garbage_checkpoint(tmp: Path) -> None:
    _checkpoint(tmp).write_bytes(os.urandom(3000))


def truncated_checkpoint(tmp: Path) -> None:
    data = _checkpoint(tmp).read_bytes()
    _checkpoint(tmp).write_bytes(data[: len(data) // 2])


def empty_checkpoint(tmp: Path) -> None:
    _checkpoint(tmp).write_bytes(b"")


def foreign_checkpoint(tmp: Path) -> None:
    shutil.copy(tmp / "dqn" / "checkpoints" / "last.pt", _checkpoint(tmp))


def foreign_unstamped_checkpoint(tmp: Path) -> None:
    """A DQN checkpoint as written before checkpoints carried their run's record."""
    state = torch.load(tmp / "dqn" / "checkpoints" / "last.pt", weights_only=False)
    del state["run_config"]
    torch.save(state, _checkpoint(tmp))


def tensor_checkpoint(tmp: Path) -> None:
    torch.save(torch.zeros(3), _checkpoint(tmp))


def keyless_checkpoint(tmp: Path) -> None:
    torch.save({"frames": 512}, _checkpoint(tmp))


def garbage_config(tmp: Path) -> None:
    (tmp / "run" / "config.json").write_text("{ not json")


def regular_file(tmp: Path) -> None:
    (tmp / "afile").write_text("not a directory\n")


def text_store(tmp: Path) -> None:
    (tmp / "notes.db").write_text("these are my notes, not a database\n")


def empty_store(tmp: Path) -> None:
    (tmp / "empty.db").write_bytes(b"")


def foreign_sqlite(tmp: Path) -> None:
    db = sqlite3.connect(tmp / "other.db")
    db.execute("CREATE TABLE people (name TEXT)")
    db.commit()
    db.close()


def read_only_dir(tmp: Path) -> None:
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)


@dataclass
class Case:
    argv: list[str]
    message: str
    """a fragment of the error line: the bad value and, where there are choices, those"""
    setup: Callable[[Path], None] | None = None
    marks: list[pytest.MarkDecorator] = field(default_factory=list)


def train(*args: str, setup: Callable[[Path], None] | None = None, **kw) -> Case:
    """An ``explora train`` case; it writes to a new ``--out`` unless it names one."""
    message = kw.pop("message")
    argv = ["train", *args, "--no-progress"]
    if "--out" not in args:
        argv += ["--out", "{tmp}/new"]
    return Case(argv, message, setup, **kw)


def resume(*args: str, setup: Callable[[Path], None] | None = None, message: str) -> Case:
    """Resume the existing run, with ``args`` changing its settings."""
    return Case(
        ["train", *RUN_ARGS, *args, "--out", "{tmp}/run", "--resume", "--no-progress"],
        message,
        setup,
    )


def _box2d_missing() -> bool:
    try:
        import Box2D  # noqa: F401
    except ImportError:
        return True
    return False


TOY = f"{TOY_MODULE}:"
CP = ["--env", "CartPole-v1"]
ALL_BONUSES = ", ".join(sorted(BONUSES))  # the registry, as the error names it
DS = ["--env", "DeepSea-6"]
CLI_CASES: dict[str, Case] = {
    # ---- misspelt names ----------------------------------------------------------------
    "env-misspelt": train(
        "--env", "CartPol-v1", message="unknown env 'CartPol-v1'; accepted: MiniGrid-*"
    ),
    "algo-misspelt": train(
        *CP,
        "--algo",
        "sac",
        message="unknown algo 'sac'; choose one of: bandit, bootdqn, dqn, ppo, reinforce",
    ),
    "bonus-misspelt": train(
        *CP, "--bonus", "rdn", message=f"unknown bonus 'rdn'; choose one of: {ALL_BONUSES}"
    ),
    "backend-misspelt": train(
        "--env",
        "MiniGrid-Empty-5x5-v0",
        "--backend",
        "envpol",
        message="unknown backend 'envpol'; choose one of: envpool, gymnasium",
    ),
    "encoder-misspelt": train(
        *CP,
        "--algo-args",
        "encoder=cnn",
        message="unknown encoder 'cnn' for ppo; choose one of: auto, grid-mlp",
    ),
    "dqn-exploration-misspelt": train(
        *CP,
        "--algo",
        "dqn",
        "--algo-args",
        "exploration=thomson",
        message="unknown exploration 'thomson'; choose one of:",
    ),
    "reinforce-baseline-misspelt": train(
        *CP,
        "--algo",
        "reinforce",
        "--algo-args",
        "baseline=valu",
        message="unknown baseline 'valu'; choose one of:",
    ),
    "bandit-strategy-misspelt": train(
        "--env",
        "Bandit-Bernoulli-5",
        "--algo",
        "bandit",
        "--algo-args",
        "strategy=ucb",
        message="unknown bandit strategy 'ucb'; choose one of:",
    ),
    "rnd-encoder-misspelt": train(
        *CP,
        "--bonus",
        "rnd",
        "--bonus-args",
        "encoder=conv2",
        message="unknown encoder 'conv2' for rnd; choose one of: auto, mlp, conv",
    ),
    "algo-setting-misspelt": train(
        *CP, "--algo-args", "lr=3", message="unknown ppo setting(s) lr; accepted:"
    ),
    "bonus-argument-misspelt": train(
        *CP,
        "--bonus",
        "rnd",
        "--bonus-args",
        "lr=3",
        message="unknown argument lr for bonus 'rnd'; accepted:",
    ),
    "algo-args-not-key-value": train(
        *CP,
        "--algo-args",
        "learning_rate",
        message="--algo-args takes KEY=VALUE pairs, got 'learning_rate'",
    ),
    "bench-suite-misspelt": Case(
        ["bench", "--suite", "quik", "--store", "{store}", "--no-progress"], "unknown suite 'quik'"
    ),
    "bench-method-misspelt": Case(
        [
            "bench",
            "--suite",
            "smoke",
            "--methods",
            "ppo+rdn",
            "--store",
            "{store}",
            "--no-progress",
        ],
        "unknown method 'ppo+rdn'",
    ),
    "bench-backend-misspelt": Case(
        ["bench", "--suite", "smoke", "--backend", "slurm", "--store", "{store}", "--no-progress"],
        "unknown backend 'slurm'; choose one of: local, ray",
    ),
    "deepsea-algo-misspelt": Case(
        ["deepsea", "--algo", "bootdq", "--sizes", "10", "--store", "{store}", "--no-progress"],
        "unknown method 'bootdq'",
    ),
    # ---- hyper-parameters of the wrong type or out of range ------------------------------
    "learning-rate-zero": train(
        *CP,
        "--algo-args",
        "learning_rate=0",
        message="ppo setting learning_rate must be > 0, got 0",
    ),
    "learning-rate-negative": train(
        *CP,
        "--algo-args",
        "learning_rate=-1e-3",
        message="ppo setting learning_rate must be > 0, got -0.001",
    ),
    "learning-rate-string": train(
        *CP,
        "--algo-args",
        "learning_rate=abc",
        message="ppo setting learning_rate must be a number, got 'abc'",
    ),
    "learning-rate-nan": train(
        *CP,
        "--algo-args",
        "learning_rate=nan",
        message="ppo setting learning_rate must be a finite number, got nan",
    ),
    "gamma-above-one": train(
        *CP, "--algo-args", "gamma=1.5", message="ppo setting gamma must be in [0, 1], got 1.5"
    ),
    "gamma-below-zero": train(
        *CP, "--algo-args", "gamma=-0.1", message="ppo setting gamma must be in [0, 1], got -0.1"
    ),
    "int-gamma-above-one": train(
        *DS,
        "--bonus",
        "count",
        "--algo-args",
        "int_gamma=2",
        message="ppo setting int_gamma must be in [0, 1], got 2",
    ),
    "gae-lambda-above-one": train(
        *CP,
        "--algo-args",
        "gae_lambda=1.01",
        message="ppo setting gae_lambda must be in [0, 1], got 1.01",
    ),
    "hidden-zero": train(
        *CP, "--algo-args", "hidden=0", message="ppo setting hidden must be >= 1, got 0"
    ),
    "ent-coef-infinite": train(
        *CP,
        "--algo-args",
        "ent_coef=inf",
        message="ppo setting ent_coef must be a finite number, got inf",
    ),
    "num-steps-zero": train(
        *CP, "--algo-args", "num_steps=0", message="ppo setting num_steps must be >= 1, got 0"
    ),
    "minibatch-size-fraction": train(
        *CP,
        "--algo-args",
        "minibatch_size=64.5",
        message="ppo setting minibatch_size must be an integer, got 64.5",
    ),
    "bool-setting-number": train(
        *CP,
        "--algo-args",
        "anneal_lr=3",
        message="ppo setting anneal_lr must be true or false, got 3",
    ),
    "dqn-hidden-zero-width": train(
        *CP,
        "--algo",
        "dqn",
        "--algo-args",
        "hidden=(0, 50)",
        message="dqn setting hidden must hold only values >= 1, got (0, 50)",
    ),
    "dqn-hidden-not-tuple": train(
        *CP,
        "--algo",
        "dqn",
        "--algo-args",
        "hidden=64",
        message="dqn setting hidden must be a tuple of integers, got 64",
    ),
    "dqn-epsilon-above-one": train(
        *CP,
        "--algo",
        "dqn",
        "--algo-args",
        "epsilon_start=1.5",
        message="dqn setting epsilon_start must be in [0, 1], got 1.5",
    ),
    "bootdqn-mask-prob-zero": train(
        *DS,
        "--algo",
        "bootdqn",
        "--algo-args",
        "mask_prob=0",
        message="bootdqn setting mask_prob must be in (0, 1], got 0",
    ),
    "bandit-epsilon-above-one": train(
        "--env",
        "Bandit-Bernoulli-5",
        "--algo",
        "bandit",
        "--algo-args",
        "epsilon=2",
        message="bandit setting epsilon must be in [0, 1], got 2",
    ),
    "reinforce-value-lr-zero": train(
        *CP,
        "--algo",
        "reinforce",
        "--algo-args",
        "value_learning_rate=0",
        message="reinforce setting value_learning_rate must be > 0, got 0",
    ),
    "seed-negative": train(*CP, "--seed", "-1", message="seed must be >= 0, got -1"),
    "state-key-on-an-env-without-one": train(
        "--env",
        "FrozenLake-v1",
        "--bonus",
        "rnd+ride",
        "--bonus-args",
        "ride.key=state",
        message="RIDE with key='state' counts the env's state key",
    ),
    "count-key-misspelt": train(
        "--env",
        "DeepSea-6",
        "--bonus",
        "count",
        "--bonus-args",
        "key=cell",
        message="unknown key 'cell'; choose one of: observation, state",
    ),
    "rnd-learning-rate-zero": train(
        *CP,
        "--bonus",
        "rnd",
        "--bonus-args",
        "learning_rate=0",
        message="rnd bonus argument learning_rate must be > 0, got 0",
    ),
    "rnd-hidden-size-zero": train(
        *CP,
        "--bonus",
        "rnd",
        "--bonus-args",
        "hidden_size=0",
        message="rnd bonus argument hidden_size must be >= 1, got 0",
    ),
    "rnd-feature-size-string": train(
        *CP,
        "--bonus",
        "rnd",
        "--bonus-args",
        "feature_size=abc",
        message="rnd bonus argument feature_size must be an integer, got 'abc'",
    ),
    "rnd-update-proportion-above-one": train(
        *CP,
        "--bonus",
        "rnd",
        "--bonus-args",
        "update_proportion=1.5",
        message="rnd bonus argument update_proportion must be in (0, 1], got 1.5",
    ),
    "rnd-max-grad-norm-negative": train(
        *CP,
        "--bonus",
        "rnd",
        "--bonus-args",
        "max_grad_norm=-1",
        message="rnd bonus argument max_grad_norm must be > 0, got -1",
    ),
    "rnd-first-visit-not-bool": train(
        *CP,
        "--bonus",
        "rnd",
        "--bonus-args",
        "first_visit=maybe",
        message="rnd bonus argument first_visit must be true or false, got 'maybe'",
    ),
    "count-beta-negative": train(
        *DS,
        "--bonus",
        "count",
        "--bonus-args",
        "beta=-1",
        message="count bonus argument beta must be >= 0, got -1",
    ),
    "count-beta-nan": train(
        *DS,
        "--bonus",
        "count",
        "--bonus-args",
        "beta=nan",
        message="count bonus argument beta must be a finite number, got nan",
    ),
    "simhash-num-bits-zero": train(
        *CP,
        "--bonus",
        "simhash",
        "--bonus-args",
        "num_bits=0",
        message="simhash bonus argument num_bits must be >= 1, got 0",
    ),
    "simhash-num-bits-fraction": train(
        *CP,
        "--bonus",
        "simhash",
        "--bonus-args",
        "num_bits=2.5",
        message="simhash bonus argument num_bits must be an integer, got 2.5",
    ),
    # ---- frames and env counts -----------------------------------------------------------
    "frames-zero": train(*CP, "--frames", "0", message="frames must be >= 1, got 0"),
    "frames-negative": train(*CP, "--frames", "-5", message="frames must be >= 1, got -5"),
    "frames-below-one-rollout": train(*CP, "--frames", "10", message="less than one rollout"),
    "num-envs-zero": train(*CP, "--num-envs", "0", message="num_envs must be >= 1, got 0"),
    "num-envs-negative": train(*CP, "--num-envs", "-3", message="num_envs must be >= 1, got -3"),
    "bench-seeds-zero": Case(
        ["bench", "--suite", "smoke", "--seeds", "0", "--store", "{store}", "--no-progress"],
        "seeds must be >= 1, got 0",
    ),
    "bench-workers-zero": Case(
        ["bench", "--suite", "smoke", "--workers", "0", "--store", "{store}", "--no-progress"],
        "workers must be >= 1, got 0",
    ),
    "deepsea-episodes-zero": Case(
        ["deepsea", "--episodes", "0", "--sizes", "10", "--store", "{store}", "--no-progress"],
        "--episodes must be >= 1, got 0",
    ),
    "deepsea-sizes-zero": Case(
        ["deepsea", "--sizes", "0", "--store", "{store}", "--no-progress"],
        "--sizes must be DeepSea sizes N >= 1, got [0]",
    ),
    # ---- env ids no backend has ------------------------------------------------------------
    "env-unknown": train("--env", "NoSuchEnv-v0", message="unknown env 'NoSuchEnv-v0'; accepted:"),
    "minigrid-unknown": train(
        "--env", "MiniGrid-Nope-v0", message="unknown env 'MiniGrid-Nope-v0'; accepted:"
    ),
    "deepsea-size-zero": train(
        "--env",
        "DeepSea-0",
        message="DeepSea size must be a positive integer N, as in DeepSea-20, got '0'",
    ),
    "deepsea-size-negative": train(
        "--env",
        "DeepSea--3",
        message="DeepSea size must be a positive integer N, as in DeepSea-20, got '-3'",
    ),
    "deepsea-size-word": train(
        "--env",
        "DeepSea-abc",
        message="DeepSea size must be a positive integer N, as in DeepSea-20, got 'abc'",
    ),
    "deepsea-size-fraction": train(
        "--env",
        "DeepSea-1.5",
        message="DeepSea size must be a positive integer N, as in DeepSea-20, got '1.5'",
    ),
    "deepsea-too-large": train(
        "--env",
        "DeepSea-100000",
        message="DeepSea-100000 is too large: its one-hot observation is N x N uint8, "
        "9.3 GiB per env copy",
    ),
    "bandit-one-arm": train("--env", "Bandit-Gaussian-1", "--algo", "bandit", message="K >= 2"),
    "bandit-kind-unknown": train(
        "--env", "Bandit-Poisson-5", "--algo", "bandit", message="Bandit-Poisson-5"
    ),
    "envpool-backend-for-gymnasium-id": train(
        *CP,
        "--backend",
        "envpool",
        message="backend='envpool' is supported for MiniGrid-* and BabyAI-* ids only",
    ),
    "bandit-env-for-ppo": train(
        "--env", "Bandit-Gaussian-5", message="Bandit-* envs are for --algo bandit, not ppo"
    ),
    "bandit-algo-for-cartpole": train(
        *CP, "--algo", "bandit", message="bandit runs only Bandit-* envs, got 'CartPole-v1'"
    ),
    "bandit-with-bonus": train(
        "--env",
        "Bandit-Bernoulli-10",
        "--algo",
        "bandit",
        "--bonus",
        "count",
        message="bandit takes no bonus",
    ),
    "gymnasium-dependency-missing": train(
        "--env",
        "CarRacing-v3",
        message="cannot build env 'CarRacing-v3': Box2D is not installed",
        marks=[pytest.mark.skipif(not _box2d_missing(), reason="Box2D is installed")],
    ),
    # ---- module:EnvId ----------------------------------------------------------------------
    "env-module-missing": train(
        "--env",
        "explora_no_such_module:Foo-v0",
        message="cannot import module 'explora_no_such_module' of env "
        "'explora_no_such_module:Foo-v0': No module named 'explora_no_such_module'",
    ),
    "env-module-dependency-missing": train(
        "--env",
        f"{BROKEN_MODULE}:Foo-v0",
        message=f"cannot import module '{BROKEN_MODULE}' of env '{BROKEN_MODULE}:Foo-v0': "
        "No module named 'explora_no_such_dependency_xyz'",
    ),
    "env-id-not-registered": train(
        "--env",
        TOY + "Nope-v0",
        message=f"module '{TOY_MODULE}' did not register an env 'Nope-v0'; it registered: "
        "BadInputBoxAct-v0, BadInputDict-v0",
    ),
    "env-module-empty": train(
        "--env",
        ":Foo-v0",
        message="env ':Foo-v0' has an empty module or id; the form is <module>:<id>",
    ),
    # ---- spaces an agent cannot take -----------------------------------------------------
    "tuple-observations": train(
        "--env", TOY + "BadInputTuple-v0", message="ppo cannot take Tuple observations"
    ),
    "dict-observations-with-a-tuple-part": train(
        "--env",
        TOY + "BadInputDict-v0",
        "--algo",
        "dqn",
        message="Dict observation part 't' is a Tuple; explora takes Dict parts that are Box",
    ),
    "multibinary-actions": train(
        "--env", TOY + "BadInputMultiBinaryAct-v0", message="ppo cannot output MultiBinary actions"
    ),
    "multibinary-actions-reinforce": train(
        "--env",
        TOY + "BadInputMultiBinaryAct-v0",
        "--algo",
        "reinforce",
        message="reinforce cannot output MultiBinary actions",
    ),
    "continuous-actions-dqn": train(
        "--env", "Pendulum-v1", "--algo", "dqn", message="dqn needs Discrete actions, got Box"
    ),
    "continuous-actions-bootdqn": train(
        "--env",
        TOY + "BadInputBoxAct-v0",
        "--algo",
        "bootdqn",
        message="bootdqn needs Discrete actions, got Box",
    ),
    "image-encoder-on-vector": train(
        *CP,
        "--algo-args",
        "encoder=grid-mlp",
        message="encoder 'grid-mlp' needs [H, W, C] image observations",
    ),
    "count-on-float-observations": train(*CP, "--bonus", "count", message="Use 'simhash'"),
    # ---- an --out that cannot hold a run ---------------------------------------------------
    "out-under-read-only-dir": train(
        *CP, "--out", "{read_only}/run", setup=read_only_dir, message="{read_only}"
    ),
    "out-under-regular-file": train(
        *CP,
        "--out",
        "{tmp}/afile/run",
        setup=regular_file,
        message="{tmp}/afile is a file, not a directory",
    ),
    "out-is-regular-file": train(
        *CP,
        "--out",
        "{tmp}/afile",
        setup=regular_file,
        message="--out {tmp}/afile exists and is not a directory",
    ),
    "out-holds-a-run": train(
        *RUN_ARGS, "--out", "{tmp}/run", message="{tmp}/run already holds a run; pass --resume"
    ),
    "resume-and-overwrite": train(
        *RUN_ARGS,
        "--out",
        "{tmp}/run",
        "--resume",
        "--overwrite",
        message="choose one of --resume and --overwrite, not both",
    ),
    # ---- damaged or foreign checkpoints with --resume ----------------------------------------
    "checkpoint-garbage": resume(
        setup=garbage_checkpoint,
        message="cannot resume from {tmp}/run/checkpoints/last.pt: it is not a readable checkpoint",
    ),
    "checkpoint-truncated": resume(
        setup=truncated_checkpoint,
        message="cannot resume from {tmp}/run/checkpoints/last.pt: it is not a readable checkpoint",
    ),
    "checkpoint-empty": resume(
        setup=empty_checkpoint,
        message="cannot resume from {tmp}/run/checkpoints/last.pt: it is not a readable checkpoint",
    ),
    "checkpoint-of-another-algo": resume(
        setup=foreign_checkpoint,
        message="cannot resume from {tmp}/run/checkpoints/last.pt: it was written by a "
        "different run; differs in algo, algo_config",
    ),
    "checkpoint-of-another-algo-unstamped": resume(
        setup=foreign_unstamped_checkpoint, message="it was written with other agent settings"
    ),
    "checkpoint-not-a-dict": resume(
        setup=tensor_checkpoint,
        message="cannot resume from {tmp}/run/checkpoints/last.pt: it is not an explora checkpoint",
    ),
    "checkpoint-missing-keys": resume(
        setup=keyless_checkpoint, message="it is not an explora checkpoint (no torch_rng, config)"
    ),
    "config-json-garbage": resume(
        setup=garbage_config, message="cannot resume {tmp}/run: {tmp}/run/config.json is unreadable"
    ),
    # ---- --resume with changed settings ------------------------------------------------------
    "resume-changed-env": Case(
        [
            "train",
            "--env",
            "DeepSea-8",
            "--frames",
            "1024",
            "--out",
            "{tmp}/run",
            "--resume",
            "--no-progress",
        ],
        "cannot resume {tmp}/run: the config differs in env",
    ),
    "resume-changed-algo": resume(
        "--algo", "dqn", message="cannot resume {tmp}/run: the config differs in algo, algo_config"
    ),
    "resume-changed-setting": resume(
        "--algo-args", "learning_rate=1e-3", message="the config differs in algo_config"
    ),
    "resume-changed-bonus": resume(
        "--bonus", "count", message="the config differs in bonus, bonus_config"
    ),
    "resume-changed-seed": resume(
        "--seed", "3", message="the config differs in algo_config.seed, seed"
    ),
    # ---- stores that are missing or not explora's ---------------------------------------
    "report-store-missing": Case(
        ["report", "--store", "{tmp}/missing.db", "--out", "{tmp}/r.html"],
        "no store at {tmp}/missing.db",
    ),
    "report-store-text-file": Case(
        ["report", "--store", "{tmp}/notes.db", "--out", "{tmp}/r.html"],
        "--store {tmp}/notes.db is not an explora store: it is not an SQLite file",
        text_store,
    ),
    "report-store-empty-file": Case(
        ["report", "--store", "{tmp}/empty.db", "--out", "{tmp}/r.html"],
        "--store {tmp}/empty.db is not an explora store: it is an empty file",
        empty_store,
    ),
    "report-store-directory": Case(
        ["report", "--store", "{tmp}/run", "--out", "{tmp}/r.html"],
        "--store {tmp}/run is a directory",
    ),
    "report-store-other-sqlite": Case(
        ["report", "--store", "{tmp}/other.db", "--out", "{tmp}/r.html"],
        "is an SQLite file but not an explora store (it has no runs table)",
        foreign_sqlite,
    ),
    "report-store-without-runs": Case(
        ["report", "--store", "{store}", "--out", "{tmp}/r.html"], "{store} holds no runs"
    ),
    "report-out-under-regular-file": Case(
        ["report", "--store", "{store}", "--out", "{tmp}/afile/r.html"],
        "--out {tmp}/afile/r.html: {tmp}/afile is a file, not a directory",
        regular_file,
    ),
    "bench-store-text-file": Case(
        ["bench", "--suite", "smoke", "--store", "{tmp}/notes.db", "--no-progress"],
        "--store {tmp}/notes.db is not an explora store: it is not an SQLite file",
        text_store,
    ),
    "bench-store-under-regular-file": Case(
        ["bench", "--suite", "smoke", "--store", "{tmp}/afile/store.db", "--no-progress"],
        "--store {tmp}/afile/store.db: {tmp}/afile is a file, not a directory",
        regular_file,
    ),
}

# tyro's own usage errors: tyro prints them (not as `explora: error:`), exit 2, no traceback.
TYRO_CASES: dict[str, list[str]] = {
    "frames-not-a-number": ["train", "--env", "CartPole-v1", "--frames", "abc"],
    "unknown-flag": ["train", "--env", "CartPole-v1", "--bogus", "1"],
    "unknown-subcommand": ["trian", "--env", "CartPole-v1"],
    "env-missing": ["train"],
}

# Through the installed script in a child process: the real entry point shows no traceback.
SUBPROCESS_CASES: dict[str, Case] = {
    "script-env-misspelt": CLI_CASES["env-misspelt"],
    "script-deepsea-too-large": CLI_CASES["deepsea-too-large"],
    "script-env-module-missing": CLI_CASES["env-module-missing"],
    "script-checkpoint-garbage": CLI_CASES["checkpoint-garbage"],
    "script-report-store-text-file": CLI_CASES["report-store-text-file"],
    "script-frames-not-a-number": Case(TYRO_CASES["frames-not-a-number"], ""),
}


def _api_train(tmp: Path, env: str = "CartPole-v1", **kwargs) -> None:
    explora.train(env, out=tmp / "new", progress=False, **kwargs)


# (call, exception type, message fragment); each call gets the case's tmp folder.
API_CASES: dict[str, tuple[Callable[[Path], object], type[Exception], str]] = {
    "train-env-misspelt": (
        lambda t: _api_train(t, "CartPol-v1"),
        ValueError,
        "unknown env 'CartPol-v1'; accepted: MiniGrid-*",
    ),
    "train-env-not-a-string": (
        lambda t: _api_train(t, 123),
        ValueError,
        "env id must be a string, got 123",
    ),
    "train-algo-misspelt": (
        lambda t: _api_train(t, algo="sac"),
        ValueError,
        "unknown algo 'sac'; choose one of: bandit, bootdqn, dqn, ppo, reinforce",
    ),
    "train-bonus-misspelt": (
        lambda t: _api_train(t, bonus="rdn"),
        ValueError,
        f"unknown bonus 'rdn'; choose one of: {ALL_BONUSES}",
    ),
    "train-bonus-not-a-bonus": (
        lambda t: _api_train(t, bonus=5),
        ValueError,
        f"bonus must be a name ({ALL_BONUSES}) or a Bonus object, got 5",
    ),
    "train-bonus-args-with-object": (
        lambda t: _api_train(t, bonus=RND(), bonus_args={"learning_rate": 1e-3}),
        ValueError,
        "bonus_args apply to a bonus given by name",
    ),
    "train-backend-misspelt": (
        lambda t: _api_train(t, "MiniGrid-Empty-5x5-v0", backend="envpol"),
        ValueError,
        "unknown backend 'envpol'; choose one of: envpool, gymnasium",
    ),
    "train-frames-zero": (
        lambda t: _api_train(t, frames=0),
        ValueError,
        "frames must be >= 1, got 0",
    ),
    "train-frames-fraction": (
        lambda t: _api_train(t, frames=2.5),
        ValueError,
        "frames must be an integer or None, got 2.5",
    ),
    "train-num-envs-zero": (
        lambda t: _api_train(t, num_envs=0),
        ValueError,
        "num_envs must be >= 1, got 0",
    ),
    "train-seed-negative": (
        lambda t: _api_train(t, seed=-1),
        ValueError,
        "seed must be >= 0, got -1",
    ),
    "train-learning-rate-zero": (
        lambda t: _api_train(t, algo_args={"learning_rate": 0.0}),
        ValueError,
        "ppo setting learning_rate must be > 0, got 0.0",
    ),
    "train-gamma-nan": (
        lambda t: _api_train(t, algo_args={"gamma": math.nan}),
        ValueError,
        "ppo setting gamma must be a finite number, got nan",
    ),
    "train-learning-rate-string": (
        lambda t: _api_train(t, algo_args={"learning_rate": "fast"}),
        ValueError,
        "ppo setting learning_rate must be a number, got 'fast'",
    ),
    "train-hidden-zero": (
        lambda t: _api_train(t, algo_args={"hidden": 0}),
        ValueError,
        "ppo setting hidden must be >= 1, got 0",
    ),
    "train-num-envs-bool": (
        lambda t: _api_train(t, algo_args={"num_envs": True}),
        ValueError,
        "ppo setting num_envs must be an integer, got True",
    ),
    "train-rnd-hidden-size-zero": (
        lambda t: _api_train(t, bonus="rnd", bonus_args={"hidden_size": 0}),
        ValueError,
        "rnd bonus argument hidden_size must be >= 1, got 0",
    ),
    "train-deepsea-too-large": (
        lambda t: _api_train(t, "DeepSea-100000"),
        ValueError,
        "the largest accepted is DeepSea-8192",
    ),
    "train-env-module-missing": (
        lambda t: _api_train(t, "explora_no_such_module:Foo-v0"),
        ValueError,
        "cannot import module 'explora_no_such_module'",
    ),
    "train-tuple-observations": (
        lambda t: _api_train(t, TOY + "BadInputTuple-v0"),
        ValueError,
        "ppo cannot take Tuple observations",
    ),
    "train-out-holds-a-run": (
        lambda t: explora.train(*RUN_API, out=t / "run", progress=False),
        FileExistsError,
        "already holds a run; pass --resume",
    ),
    "make-deepsea-size-zero": (
        lambda t: make("DeepSea-0"),
        ValueError,
        "DeepSea size must be a positive integer N, as in DeepSea-20, got '0'",
    ),
    "make-deepsea-size-word": (
        lambda t: make("DeepSea-abc"),
        ValueError,
        "got 'abc' in 'DeepSea-abc'",
    ),
    "make-deepsea-too-large": (
        lambda t: make("DeepSea-100000", num_envs=1),
        ValueError,
        "DeepSea-100000 is too large: its one-hot observation is N x N uint8",
    ),
    "make-num-envs-zero": (
        lambda t: make("CartPole-v1", num_envs=0),
        ValueError,
        "num_envs must be an integer >= 1, got 0",
    ),
    "make-num-envs-string": (
        lambda t: make("CartPole-v1", num_envs="4"),
        ValueError,
        "num_envs must be an integer >= 1, got '4'",
    ),
    "make-env-unknown": (
        lambda t: make("NoSuchEnv-v0"),
        ValueError,
        "unknown env 'NoSuchEnv-v0'; accepted:",
    ),
    "make-backend-misspelt": (
        lambda t: make("MiniGrid-Empty-5x5-v0", backend="envpol"),
        ValueError,
        "unknown backend 'envpol'; choose one of: envpool, gymnasium",
    ),
    "make-env-module-missing": (
        lambda t: make("explora_no_such_module:Foo-v0"),
        ValueError,
        "No module named 'explora_no_such_module'",
    ),
    "make-env-id-not-registered": (
        lambda t: make(TOY + "Nope-v0"),
        ValueError,
        f"module '{TOY_MODULE}' did not register an env 'Nope-v0'",
    ),
    "make-bonus-misspelt": (
        lambda t: make_bonus("rdn"),
        ValueError,
        f"unknown bonus 'rdn'; choose one of: {ALL_BONUSES}",
    ),
    "make-bonus-argument-misspelt": (
        lambda t: make_bonus("rnd", lr=1e-3),
        ValueError,
        "unknown argument lr for bonus 'rnd'; accepted:",
    ),
    "make-bonus-learning-rate-zero": (
        lambda t: make_bonus("rnd", learning_rate=0),
        ValueError,
        "rnd bonus argument learning_rate must be > 0, got 0",
    ),
    "make-bonus-learning-rate-string": (
        lambda t: make_bonus("rnd", learning_rate="1e-3"),
        ValueError,
        "rnd bonus argument learning_rate must be a number, got '1e-3'",
    ),
    "make-bonus-hidden-size-bool": (
        lambda t: make_bonus("rnd", hidden_size=True),
        ValueError,
        "rnd bonus argument hidden_size must be an integer, got True",
    ),
    "make-bonus-encoder-misspelt": (
        lambda t: make_bonus("rnd", encoder="conv2"),
        ValueError,
        "unknown encoder 'conv2' for rnd; choose one of: auto, mlp, conv",
    ),
    "make-bonus-beta-nan": (
        lambda t: make_bonus("count", beta=math.nan),
        ValueError,
        "count bonus argument beta must be a finite number, got nan",
    ),
    "make-bonus-num-bits-zero": (
        lambda t: make_bonus("simhash", num_bits=0),
        ValueError,
        "simhash bonus argument num_bits must be >= 1, got 0",
    ),
    "make-bonus-moduli-one": (
        lambda t: make_bonus("simhash", moduli=(1, 3)),
        ValueError,
        "simhash bonus argument moduli must hold only values >= 2, got (1, 3)",
    ),
    "make-bonus-first-visit-string": (
        lambda t: make_bonus("rnd", first_visit="yes"),
        ValueError,
        "rnd bonus argument first_visit must be true or false, got 'yes'",
    ),
}

NUM_CASES = len(CLI_CASES) + len(TYRO_CASES) + len(API_CASES)
"""Distinct malformed inputs; the installed-script cases repeat some of them."""


# ---- helpers --------------------------------------------------------------------------------


def snapshot(*roots: Path) -> dict[str, tuple[int, str] | None]:
    """Every file and folder under ``roots``: files by mtime and bytes, folders by name."""
    state: dict[str, tuple[int, str] | None] = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")]):
            if path.is_dir():
                state[str(path)] = None
            else:
                data = path.read_bytes()
                state[str(path)] = (path.stat().st_mtime_ns, hashlib.sha256(data).hexdigest())
    return state


def prepare(case: Case, existing: Path, tmp: Path) -> tuple[list[str], str, list[Path]]:
    """Copy the existing run and store into ``tmp``, apply the case's setup and fill in the
    placeholders; returns the argv, the expected fragment and the folders to snapshot."""
    shutil.copytree(existing / "run", tmp / "run")
    shutil.copytree(existing / "dqn", tmp / "dqn")
    shutil.copytree(existing / "store", tmp / "store")
    if case.setup is not None:
        case.setup(tmp)
    read_only = tmp / "ro"
    if case.setup is read_only_dir and os.access(read_only, os.W_OK):
        # root writes through any mode bits; the kernel's /sys and /proc refuse even root
        # (explora runs on Linux: one of them is there, so the case is never skipped)
        read_only = next(p for p in (Path("/sys"), Path("/proc")) if p.is_dir())
    values = {
        "tmp": str(tmp),
        "store": str(tmp / "store" / "store.db"),
        "read_only": str(read_only),
    }
    argv = [arg.format(**values) for arg in case.argv]
    return argv, case.message.format(**values), [tmp / "run", tmp / "store"]


def assert_one_error_line(err: str, message: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("explora: error: "), lines[0]
    assert message in lines[0], f"{message!r} not in {lines[0]!r}"


def _explora_script() -> Path:
    return Path(sys.executable).parent / "explora"


# ---- the tests ------------------------------------------------------------------------------


def test_the_case_count_is_at_least_fifty():
    print(
        f"\nmalformed-input cases: {NUM_CASES} ({len(CLI_CASES)} CLI, {len(TYRO_CASES)} tyro "
        f"usage errors, {len(API_CASES)} Python API; {len(SUBPROCESS_CASES)} of them again "
        "through the installed script)"
    )
    assert NUM_CASES >= 50


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=name, marks=c.marks) for name, c in CLI_CASES.items()],
)
def test_cli_bad_input_is_one_line_and_changes_nothing(
    case, existing, toy_path, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a default --out or store would land here, not in the repo
    argv, message, kept = prepare(case, existing, tmp_path)
    before = snapshot(*kept)
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert_one_error_line(err, message)
    assert snapshot(*kept) == before, "a file of the existing run or store changed"
    assert not (tmp_path / "new").exists(), "a run directory was created"
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("argv", list(TYRO_CASES.values()), ids=list(TYRO_CASES))
def test_tyro_usage_errors_exit_non_zero_without_a_traceback(argv, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert err.strip() or out.strip(), "tyro said nothing"


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES.values()), ids=list(SUBPROCESS_CASES))
def test_the_installed_script_prints_no_traceback(case, existing, toy_path, tmp_path):
    argv, message, kept = prepare(case, existing, tmp_path)
    before = snapshot(*kept)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(toy_path), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [str(_explora_script()), *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    if message:
        assert_one_error_line(proc.stderr, message)
    assert snapshot(*kept) == before
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "call, error, message",
    list(API_CASES.values()),
    ids=list(API_CASES),
)
def test_python_api_raises_value_error_naming_the_value(
    call, error, message, existing, toy_path, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(existing / "run", tmp_path / "run")
    before = snapshot(tmp_path / "run")
    with pytest.raises(error) as raised:
        call(tmp_path)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert snapshot(tmp_path / "run") == before
    assert not (tmp_path / "new").exists()


# ---- the good path of the same features -----------------------------------------------------


def test_a_module_env_trains_from_the_cli_in_a_child_process_and_from_python(toy_path, tmp_path):
    """``module:EnvId``: the module is imported from the env string alone (as in a sweep's
    child process, which gets nothing else), then the id trains through gymnasium."""
    env_id = f"{TOY_MODULE}:BadInputToy-v0"
    small = ["num_steps=64", "minibatch_size=32"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(toy_path), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "explora.cli", "train", "--env", env_id, "--frames", "512",
           "--num-envs", "2", "--out", str(tmp_path / "cli"), "--no-progress",
           "--algo-args", *small]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli" / "summary.json").exists()

    summary = explora.train(
        env_id,
        frames=512,
        num_envs=2,
        out=tmp_path / "api",
        progress=False,
        algo_args={"num_steps": 64, "minibatch_size": 32},
    )
    assert summary["frames"] == 512


def test_settings_of_the_right_type_are_accepted_and_normalised():
    from explora.agents import algo_config

    config = algo_config("dqn", "CartPole-v1", {"hidden": [32, 32], "total_frames": 1e4})
    assert config.hidden == (32, 32) and config.total_frames == 10_000
    assert isinstance(config.total_frames, int)
    # an int where a float is expected is fine; None where the field allows it too
    assert (
        algo_config("ppo", "CartPole-v1", {"learning_rate": 1, "target_kl": None}).learning_rate
        == 1
    )


def test_fields_missing_from_the_limits_table_get_the_type_check_only():
    """Configs grow new fields: those need no entry in the table to be checked by type."""
    from dataclasses import dataclass as dc

    from explora.validate import LIMITS, check_settings, hints_of

    @dc(frozen=True)
    class Future:
        clip_vloss: bool = True
        brand_new_weight: float = 0.5

    assert "brand_new_weight" not in LIMITS
    hints = hints_of(Future)
    assert check_settings("x setting", {"brand_new_weight": -3.0}, hints) == {
        "brand_new_weight": -3.0
    }
    with pytest.raises(ValueError, match="x setting clip_vloss must be true or false, got 'yes'"):
        check_settings("x setting", {"clip_vloss": "yes"}, hints)
    with pytest.raises(ValueError, match="must be a finite number"):
        check_settings("x setting", {"brand_new_weight": math.inf}, hints)


def test_a_resumed_run_continues_from_its_stamped_checkpoint(existing, tmp_path):
    shutil.copytree(existing / "run", tmp_path / "run")
    summary = explora.train(
        "DeepSea-6", frames=2048, out=tmp_path / "run", progress=False, resume=True
    )
    assert summary["frames"] == 2048
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert state["run_config"]["env"] == "DeepSea-6" and state["frames"] == 2048
