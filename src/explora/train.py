"""``explora.train``: one call from an env id (and a bonus) to a finished run directory.

Example:
    >>> import explora
    >>> from explora.bonuses import RND
    >>> summary = explora.train("MiniGrid-DoorKey-5x5-v0", bonus=RND(), frames=200_000,
    ...                         out="runs/doorkey5-rnd")          # doctest: +SKIP
    >>> summary["success_rate"]                                   # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

from explora.agents import ALGOS, algo_config
from explora.bonuses import (
    BONUSES,
    Bonus,
    FirstVisit,
    ObsKey,
    Sum,
    bonus_hparams,
    combination_terms,
    make_bonus,
)
from explora.bonuses.base import bonus_parts, state_keys_from_info, wrapper_chain
from explora.bonuses.obs_key import for_env
from explora.bonuses.view import NewestFrame
from explora.envs import check_env_id, make, measure_env_fps
from explora.envs.atari import LastFrame, atari_task, rnd_on_last_frame
from explora.envs.base import VecEnv
from explora.envs.deepsea import bsuite_deep_sea_solved_at
from explora.envs.frame_stack import FrameStack
from explora.presets import bonus_preset
from explora.runs.episodes import DEEP_SEA_SOLVED_BELOW
from explora.runs.rundir import RunDir, check_out_dir, frames_to_success
from explora.validate import check_settings


def _bonus_name(bonus: str | Bonus | None) -> str | None:
    if bonus is None or isinstance(bonus, str):
        return bonus
    if isinstance(bonus, FirstVisit | ObsKey):
        return _bonus_name(bonus.inner)
    if isinstance(bonus, Sum):
        return bonus.name
    for name, (cls, _) in BONUSES.items():
        if type(bonus) is cls:
            return name
    return type(bonus).__name__


def _bonus_input(bonus: Any) -> dict[str, Any]:
    """What a set-up bonus reads, for config.json: the Dict observation part (``ObsKey``) and
    what its episodic counts are keyed on (``count_key``: the env's state key or the
    observation's bytes), where the bonus has them."""
    out: dict[str, Any] = {}
    for part in wrapper_chain(bonus):
        if isinstance(part, ObsKey):
            out["obs_key"] = part.key
        key = vars(part).get("count_key")
        if key is not None:
            out["count_key"] = key
    return out


def _state_key_parts(bonus: Any) -> list[str]:
    """Names of the parts of ``bonus`` (through wrappers and a ``Sum``'s terms) that count on
    the env's state key alone (``key="state"``: count, ride, noveld)."""
    return [
        type(part).__name__
        for part in bonus_parts(bonus)
        if not isinstance(part, ObsKey) and vars(part).get("key") == "state"
    ]


def _check_state_keys(bonus: Any, vec_env: VecEnv, env: str, seed: int) -> None:
    """Fail before training when a bonus counts on state keys that ``env`` does not offer
    (its adapter reports no agent position), instead of at the first step."""
    parts = _state_key_parts(bonus)
    if not parts:
        return
    _, info = vec_env.reset(seed=seed)
    if state_keys_from_info(info) is None:
        raise ValueError(
            f"{', '.join(sorted(set(parts)))} with key='state' counts the env's state key "
            f"(a grid's agent cell and direction, DeepSea's cell), but {env} offers none; use "
            "key='observation'"
        )


def _preset(bonus: str, env: str) -> dict[str, Any]:
    """The env family's preset of a bonus given by name; of a combination (``rnd+count``),
    each term's own preset under its prefix (``rnd.first_visit``), as ``make_bonus`` reads it."""
    terms = combination_terms(bonus)
    if terms is None:
        return bonus_preset(bonus, env)
    return {f"{t}.{k}": v for t in terms for k, v in bonus_preset(t, env).items()}


def _is_bonus(obj: object) -> bool:
    """Has the methods of the ``Bonus`` protocol (a structural check: any class may be one)."""
    return all(callable(getattr(obj, m, None)) for m in ("setup", "observe", "compute", "update"))


def train(
    env: str,
    *,
    algo: str = "ppo",
    bonus: str | Bonus | None = None,
    frames: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    num_envs: int | None = None,
    backend: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    algo_args: dict[str, Any] | None = None,
    bonus_args: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Train ``algo`` on ``env`` with an optional curiosity ``bonus``; returns the summary.

    Every argument is checked before anything is built, and every check that needs the env
    (its spaces against the algo and the bonus) before anything is written: an unknown env,
    algo or bonus, an unknown hyper-parameter or one of the wrong type or out of range, an
    ``out`` that cannot be written, an existing ``out`` without ``resume``/``overwrite``, or a
    ``resume`` whose checkpoint is damaged or from other settings raises ``ValueError`` (or
    ``FileExistsError``) naming the bad value and what is accepted, and changes no file.

    Args:
        env: a MiniGrid/BabyAI id, ``DeepSea-<N>`` or any Gymnasium id.
        algo: a name from ``explora.agents.ALGOS``.
        bonus: a bonus name (``count``, ``rnd``, ``simhash``, ...) or a ``Bonus`` object.
        frames: environment frames to train for (default: the algo's preset for this env).
        out: run directory (default: ``runs/<env>-<algo>-<bonus>-s<seed>``).
        algo_args: hyper-parameters of the algo's config, e.g. ``{"learning_rate": 3e-4}``.
        bonus_args: constructor arguments of a bonus given by name.
        env_kwargs: arguments of the env, passed to ``explora.envs.make`` (gymnasium.make,
            EnvPool or the native envs), e.g. ``{"map_name": "8x8", "is_slippery": False}``;
            recorded in ``config.json``. One the env does not take raises ``ValueError``.
        device: where PPO's networks run: cpu (the default), cuda, cuda:<index> or auto
            (``PPOConfig.device``); the other algos run on the CPU.
    """
    if not isinstance(algo, str) or algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; choose one of: {', '.join(sorted(ALGOS))}")
    check_settings(
        "",
        {"frames": frames, "num_envs": num_envs, "seed": seed},
        {"frames": int | None, "num_envs": int | None, "seed": int},
    )
    for arg, value in (("frames", frames), ("num_envs", num_envs)):
        if value is not None and value < 1:
            raise ValueError(f"{arg} must be >= 1, got {value}")
    if not (bonus is None or isinstance(bonus, str) or _is_bonus(bonus)):
        raise ValueError(
            f"bonus must be a name ({', '.join(sorted(BONUSES))}) or a Bonus object, got {bonus!r}"
        )
    chosen_backend = check_env_id(env, backend)
    ALGOS[algo].check(algo, env, bonus)
    if isinstance(bonus, str):
        bonus = make_bonus(bonus, **{**_preset(bonus, env), **(bonus_args or {})})
    elif bonus_args:
        raise ValueError("bonus_args apply to a bonus given by name, not to a Bonus object")
    name = _bonus_name(bonus)
    overrides = dict(algo_args or {})
    if frames is not None:
        overrides["total_frames"] = frames
    if num_envs is not None:
        overrides["num_envs"] = num_envs
    overrides["seed"] = seed
    if device is not None:
        if "device" in {f.name for f in dataclasses.fields(ALGOS[algo].config)}:
            overrides["device"] = device
        elif device != "cpu":
            raise ValueError(f"device {device!r}: {algo} runs on the CPU only; use --algo ppo")
    config = algo_config(algo, env, overrides)
    config.check()
    stack = getattr(config, "frame_stack", 1)
    if stack > 1 and atari_task(env) is not None:
        raise ValueError(
            f"frame_stack={stack}: Atari envs stack their frames already "
            "(--env-args stack_num=K sets how many)"
        )
    if out is None:
        out = Path("runs") / f"{env}-{algo}-{(name or 'none').replace('*', 'x')}-s{seed}"
    check_out_dir(out, overwrite, resume)

    env_kwargs = dict(env_kwargs or {})
    record = {
        "env": env,
        "env_kwargs": env_kwargs,
        "algo": algo,
        "bonus": name,
        "bonus_config": bonus_hparams(bonus) if bonus is not None else None,
        "seed": seed,
        "backend": chosen_backend,
        "frames": config.total_frames,
        "algo_config": dataclasses.asdict(config),
    }
    # DeepSea's solved rule: the agent's setting where it has one (DQNConfig), else bsuite's
    threshold = getattr(config, "solved_threshold", DEEP_SEA_SOLVED_BELOW)
    if bonus is not None and atari_task(env) is not None:
        bonus = rnd_on_last_frame(bonus)  # as the RND paper: the newest frame (envs/atari.py)
        record["bonus_frames"] = "last" if isinstance(bonus, LastFrame) else "all"
    vec_env = make(env, num_envs=config.num_envs, seed=seed, backend=backend, **env_kwargs)
    if stack > 1:
        try:
            vec_env = FrameStack(vec_env, stack)
        except ValueError:
            vec_env.close()
            raise
        if bonus is not None:  # a bonus sees the newest view alone
            bonus = NewestFrame(bonus, channels=vec_env.channels)
    try:
        ALGOS[algo].check_env(algo, vec_env, config)
        if bonus is not None:
            # Set up a copy on the env's spaces, so a bonus that cannot take them (exact counts
            # of float observations) fails here, before the run directory is written. The
            # agent sets the bonus itself up again, after seeding torch.
            probe = for_env(copy.deepcopy(bonus), vec_env.single_observation_space)
            assert probe is not None
            probe.setup(
                vec_env.single_observation_space, vec_env.single_action_space, config.num_envs
            )
            record["bonus_input"] = _bonus_input(probe)
            _check_state_keys(probe, vec_env, env, seed)
        env_fps = measure_env_fps(vec_env, seed=seed)
        run = RunDir(
            out,
            record,
            overwrite=overwrite,
            resume=resume,
            progress=progress,
            total_frames=config.total_frames,
        )
        try:
            result = ALGOS[algo].train(vec_env, config, bonus, run)
        finally:
            run.close()
        summary = {
            "env": env,
            "algo": algo,
            "bonus": name,
            "seed": seed,
            "num_envs": config.num_envs,
            "frames": result["frames"],
            "wall_time_s": result["wall_time_s"],
            "fps": result["fps"],
            "env_fps": env_fps,
            "final_return": result["final_return"],
            "success_rate": result["success_rate"],
            "unique_states": result["unique_states"],
            "episodes_in_final_window": result["final_episodes"],
            "frames_to_success_0.9": frames_to_success(result["episodes"])
            if vec_env.has_success
            else None,
            "solved_at_episode": bsuite_deep_sea_solved_at(result["bad_episodes"], threshold)
            if result.get("bad_episodes")
            else None,
            "solved_threshold": threshold if result.get("bad_episodes") else None,
            "cumulative_regret": result.get("cumulative_regret"),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
            "run_dir": str(Path(out)),
        }
        frame_skip = getattr(vec_env, "frame_skip", None)  # Atari: 4 emulator frames a step
        if frame_skip is not None:
            summary["emulator_frames"] = result["frames"] * frame_skip
        if getattr(vec_env, "has_rooms", False):  # Montezuma: unique_states counts rooms
            summary["rooms"] = result["unique_states"]
        run.finish(
            summary,
            result.get("visits"),
            result.get("episodes"),
            result.get("bonus_map"),
            pictures=result.get("pictures"),
        )
        return summary
    finally:
        vec_env.close()
