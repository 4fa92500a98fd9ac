"""Any explora bonus inside Stable-Baselines3: ``BonusCallback``.

Install with ``pip install explora[sb3]``. One callback gives SB3's learners curiosity:

    from stable_baselines3 import PPO
    from explora.integrations.sb3 import BonusCallback

    model = PPO("MlpPolicy", "DeepSea-10", n_steps=128)        # ``import explora`` registers it
    model.learn(100_000, callback=BonusCallback("count", int_coef=1.0))

``bonus`` is a name of ``explora.bonuses.BONUSES`` (built with ``bonus_args``, e.g.
``BonusCallback("rnd", learning_rate=1e-3)``) or a ``Bonus`` object (``BonusCallback(RND())``).
The bonus is set up on the model's spaces when ``learn`` starts: a bonus that cannot take them
(``dora`` with SAC's Box actions, ``count`` on float observations) raises ``ValueError`` then,
before any env step; an unknown name or argument raises it when the callback is built.

**PPO and A2C** (on-policy). At every env step (``on_step``) the bonus sees the transition
``(obs, action, next_obs, terminated, truncated)``: ``next_obs`` is the true successor, the
episode's final observation ``infos[i]["terminal_observation"]`` where SB3's VecEnv has already
reset the env, and ``truncated`` is SB3's ``infos[i]["TimeLimit.truncated"]`` (SB3 folds both
ends into ``dones``; the bonus gets them apart). Its reward is that of ``explora.Curiosity``: the
raw bonus divided by the running std of its discounted return (per env, along time, discount
``int_gamma``, the model's ``gamma`` by default), as explora's PPO normalises it. SB3 computes
returns and advantages in ``collect_rollouts`` *before* ``callback.on_rollout_end``, so at the
rollout's end the callback rewrites the rollout buffer's rewards to

    ext_coef * r_ext + int_coef * r_int + (what SB3 added to the reward after on_step)

and calls the buffer's own ``compute_returns_and_advantage`` again with the bootstrap values SB3
used: ``last_values`` and ``dones`` are the locals of ``collect_rollouts`` that SB3 hands the
callback just before ``on_rollout_end``. "What SB3 added" is its timeout bootstrap:
``gamma * V(terminal_observation)`` on the reward of truncated steps; it is kept as it is (not
scaled by ``ext_coef``), because ``V`` is the value of the combined return the policy is trained
on. ``ext_coef=0`` is pure curiosity. Then the bonus trains on the rollout (``update``).
SB3's critic has one head, so the combined return is cut at episode ends as SB3 cuts it;
explora's own PPO keeps a second, non-episodic intrinsic head (``int_end="continue"``), so
results differ where that matters (long episodes, RND on MiniGrid); on DeepSea explora's preset
uses the episodic intrinsic return too.

A bonus with a random-policy warm-up (``warmup_steps``, e.g. RND's 128 steps per env for its
observation statistics) gets the first ``warmup_steps`` steps of training as its warm-up: they
fold into its statistics, carry no intrinsic reward and are not trained on. SB3's fresh policy
is close to uniform (its action layer starts at gain 0.01), so these are the random-policy steps
explora's PPO warms up with, without stepping the env outside SB3's loop.

**DQN, SAC, TD3** (off-policy): the bonus reaches every batch the learner samples, as in
explora's DQN. Design: the callback hooks the model's replay buffer (its ``_get_samples``, on
the instance) and adds ``int_coef * r_int / std`` to the sampled rewards (``ext_coef`` scales
the extrinsic part), ``std`` the running std of the raw bonus. A lifelong bonus (RND, counts) is
computed on the sampled transitions when they are sampled, read from the buffer's unnormalised
arrays, so it reflects what the bonus knows now; storing it at insertion would keep an old
state's novelty in the buffer for its whole life (a million steps for DQN's default). An
episodic bonus (``bonus.episodic``: per-episode counts, ``FirstVisit``) depends on the episode so
far, which a sampled batch does not hold: it is computed as each step happens and stored beside
the buffer at the slot SB3 writes the step to. Every sampled batch also trains the bonus
(``update``), as explora's DQN does. The bonus sees the env's actions (SAC/TD3 store actions
rescaled to [-1, 1]; they are mapped back with ``policy.unscale_action``). SB3's HER buffer is
not supported.

**VecNormalize.** The bonus sees unnormalised observations (``unnormalized_obs=True``): a count
or a hash of a moving normalisation would never repeat, and a bonus that needs whitening does
its own (RND). The callback reads ``get_original_obs()`` and, because ``VecNormalize``
overwrites ``infos[i]["terminal_observation"]`` with its normalised form (which
``unnormalize_obs`` cannot always undo: it clips at ``clip_obs`` std), it slips a pass-through
wrapper under the ``VecNormalize`` that keeps the raw final observation in the info under
``"explora_raw_terminal_observation"``. The bonus is then set up on the ``VecNormalize``'s own
observation space (before wrappers above it, such as SB3's image transposition).
``unnormalized_obs=False`` gives the bonus what the policy sees. With ``norm_reward=True`` the
extrinsic reward in the sum is SB3's normalised one, the intrinsic one explora's.

Dict observations: ``obs_key`` names the part the bonus reads (``obs_key="image"``).

Figures go to SB3's logger under ``bonus/``: the bonus's own (``bonus/losses/rnd``, ...),
``bonus/int_reward`` (mean normalised intrinsic reward, before ``int_coef``), and for on-policy
``bonus/int_return_std``. ``state_dict``/``load_state_dict`` save and restore the bonus and its
normaliser (SB3's ``model.save`` does not hold callbacks).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch

try:
    from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        "explora.integrations.sb3 needs Stable-Baselines3: pip install 'explora[sb3]'"
    ) from err

from explora.bonuses import Bonus, make_bonus
from explora.bonuses.base import RunningMeanStd, Transitions
from explora.curiosity import Curiosity

__all__ = ["RAW_TERMINAL_OBS", "BonusCallback", "add_bonus_to_rollout"]

RAW_TERMINAL_OBS = "explora_raw_terminal_observation"
"""Info key under which the raw final observation is kept beneath a ``VecNormalize``."""


def add_bonus_to_rollout(
    buffer: RolloutBuffer,
    ext_rewards: np.ndarray,
    int_rewards: np.ndarray,
    *,
    ext_coef: float,
    int_coef: float,
    last_values: torch.Tensor,
    dones: np.ndarray,
) -> None:
    """Put the combined reward into an SB3 ``RolloutBuffer`` that SB3 has filled, and recompute
    its returns and advantages with SB3's own ``compute_returns_and_advantage``.

    Args:
        buffer: the rollout buffer; ``buffer.rewards`` ``[T, N]`` holds each step's extrinsic
            reward plus what SB3 added after ``on_step`` (the timeout bootstrap).
        ext_rewards: ``[T, N]`` extrinsic rewards as the env returned them (seen in ``on_step``).
        int_rewards: ``[T, N]`` normalised intrinsic rewards.
        ext_coef, int_coef: weights of the two rewards.
        last_values: ``[N, 1]`` (or ``[N]``) values of the observations after the rollout, as
            SB3 computed them.
        dones: ``[N]`` bool, whether the rollout's last step ended each env's episode.
    """
    ext = np.asarray(ext_rewards, dtype=np.float32)
    added_by_sb3 = buffer.rewards - ext  # gamma * V(final obs) where truncated, 0 elsewhere
    combined = ext_coef * ext + int_coef * np.asarray(int_rewards, dtype=np.float32)
    buffer.rewards[:] = combined + added_by_sb3
    buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)


def _one_step(
    obs: np.ndarray,
    actions: np.ndarray,
    next_obs: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
) -> Transitions:
    """A ``T == 1`` batch of one vector step of ``N`` envs (``[N, ...]`` arrays)."""
    return Transitions(
        obs=torch.as_tensor(obs).unsqueeze(0),
        actions=torch.as_tensor(actions).unsqueeze(0),
        next_obs=torch.as_tensor(next_obs).unsqueeze(0),
        ext_rewards=torch.zeros(1, len(terminated)),
        terminated=torch.as_tensor(terminated).unsqueeze(0),
        truncated=torch.as_tensor(truncated).unsqueeze(0),
    )


class _KeepRawTerminalObs(VecEnvWrapper):
    """Pass-through VecEnv that copies each final observation to ``RAW_TERMINAL_OBS`` in its
    info, where a ``VecNormalize`` above it will not normalise it."""

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        for i in np.flatnonzero(dones):
            if "terminal_observation" in infos[i]:
                infos[i][RAW_TERMINAL_OBS] = infos[i]["terminal_observation"]
        return obs, rewards, dones, infos


class BonusCallback(BaseCallback):
    """An explora bonus for an SB3 learner (see the module docstring).

    Args:
        bonus: a bonus name (``"rnd"``, ``"count"``, ``"0.5*rnd+count"``, ...) or ``Bonus``.
        int_coef: weight of the normalised intrinsic reward.
        ext_coef: weight of the extrinsic reward; 0 switches it off.
        int_gamma: discount of the intrinsic return whose std normalises the bonus (on-policy);
            None: the model's ``gamma``.
        obs_key: the part of a Dict observation the bonus reads.
        unnormalized_obs: under a ``VecNormalize``, give the bonus the raw observations.
        warmup: use the first ``bonus.warmup_steps`` steps as the bonus's warm-up.
        verbose: SB3's verbosity.
        bonus_args: arguments of a bonus given by name.

    Example:
        >>> from stable_baselines3 import PPO          # doctest: +SKIP
        >>> model = PPO("MlpPolicy", "DeepSea-10")                 # doctest: +SKIP
        >>> model.learn(50_000, callback=BonusCallback("count"))  # doctest: +SKIP
    """

    def __init__(
        self,
        bonus: str | Bonus,
        *,
        int_coef: float = 1.0,
        ext_coef: float = 1.0,
        int_gamma: float | None = None,
        obs_key: str | None = None,
        unnormalized_obs: bool = True,
        warmup: bool = True,
        verbose: int = 0,
        **bonus_args: Any,
    ) -> None:
        super().__init__(verbose)
        for name, value in (("int_coef", int_coef), ("ext_coef", ext_coef)):
            if not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if int_gamma is not None and not 0 <= int_gamma <= 1:
            raise ValueError(f"int_gamma must be in [0, 1] or None, got {int_gamma!r}")
        if isinstance(bonus, str):
            bonus = make_bonus(bonus, **bonus_args)  # unknown names fail here, not in learn()
        elif bonus_args:
            raise ValueError("bonus_args apply to a bonus given by name, not to a Bonus object")
        elif not isinstance(bonus, Bonus):
            raise ValueError(
                f"bonus must be a name from explora.bonuses.BONUSES or a Bonus object, got "
                f"{type(bonus).__name__}"
            )
        self.bonus: Bonus = bonus
        self.int_coef, self.ext_coef, self.int_gamma = float(int_coef), float(ext_coef), int_gamma
        self.obs_key = obs_key
        self.unnormalized_obs = unnormalized_obs
        self.use_warmup = warmup
        self.curiosity: Curiosity | None = None
        self.int_rms = RunningMeanStd()  # off-policy: std of the raw bonus, as explora's DQN
        self._warmup_left = 0
        self._vec_normalize: VecNormalize | None = None
        self._obs: np.ndarray | None = None
        self._ext: list[np.ndarray] = []
        self._int: list[np.ndarray] = []
        self._stored: np.ndarray | None = None  # off-policy: episodic bonus per buffer slot
        self.int_rewards: np.ndarray | None = None
        """on-policy: ``[T, N]`` normalised intrinsic rewards of the last rollout"""
        self._checked_indices = False
        self._warned_no_terminal = False
        self._pending_state: dict[str, Any] | None = None

    # ---- setup -----------------------------------------------------------------------------

    @property
    def on_policy(self) -> bool:
        return isinstance(self.model, OnPolicyAlgorithm)

    def _init_callback(self) -> None:
        model = self.model
        if not isinstance(model, OnPolicyAlgorithm | OffPolicyAlgorithm):
            raise ValueError(
                f"BonusCallback works with SB3's on-policy (PPO, A2C) and off-policy (DQN, SAC, "
                f"TD3) algorithms, got {type(model).__name__}"
            )
        vn = model.get_vec_normalize_env()
        space = model.observation_space
        self._vec_normalize = None
        if vn is not None and vn.norm_obs and self.unnormalized_obs:
            self._vec_normalize = vn
            space = vn.observation_space  # what get_original_obs() returns
            if not isinstance(vn.venv, _KeepRawTerminalObs):
                vn.venv = _KeepRawTerminalObs(vn.venv)
        if isinstance(space, gym.spaces.Dict):
            if self.obs_key is None or self.obs_key not in space.spaces:
                raise ValueError(
                    f"the observation space is a Dict with keys {', '.join(space.spaces)}: name "
                    f"the one the bonus reads with obs_key=..., got {self.obs_key!r}"
                )
            space = space.spaces[self.obs_key]
        elif self.obs_key is not None:
            raise ValueError(
                f"obs_key={self.obs_key!r} needs a Dict observation space, got {space}"
            )
        num_envs = model.n_envs
        if self.curiosity is None:
            gamma = self.int_gamma if self.int_gamma is not None else float(model.gamma)
            self.curiosity = Curiosity(
                self.bonus, space, model.action_space, num_envs=num_envs, int_gamma=gamma
            )  # bonus.setup: a space it cannot take raises ValueError here
            self.bonus = self.curiosity.bonus
            self._warmup_left = self.bonus.warmup_steps if self.use_warmup else 0
            if self._pending_state is not None:
                state, self._pending_state = self._pending_state, None
                self.load_state_dict(state)
        elif self.curiosity.num_envs != num_envs:
            raise ValueError(
                f"this BonusCallback was set up for {self.curiosity.num_envs} envs, the model "
                f"has {num_envs}: use a new callback"
            )
        if not self.on_policy:
            self._hook_replay_buffer()

    def _hook_replay_buffer(self) -> None:
        buffer = self.model.replay_buffer  # type: ignore[attr-defined]
        if type(buffer).__name__ == "HerReplayBuffer" or not isinstance(buffer, ReplayBuffer):
            raise ValueError(
                f"BonusCallback adds the bonus to SB3's ReplayBuffer samples; "
                f"{type(buffer).__name__} is not supported"
            )
        if getattr(buffer, "_explora_hooked", None) is self:
            return
        if getattr(buffer, "_explora_hooked", None) is not None:
            raise ValueError("this replay buffer already feeds another BonusCallback")
        original = buffer._get_samples

        def get_samples(batch_inds: np.ndarray, env: VecNormalize | None = None) -> Any:
            return self._samples_with_bonus(original, batch_inds, env)

        buffer._get_samples = get_samples  # type: ignore[method-assign,assignment]
        buffer._explora_hooked = self  # type: ignore[attr-defined]
        if self.bonus.episodic:
            self._stored = np.zeros((buffer.buffer_size, buffer.n_envs), dtype=np.float32)

    # ---- per step --------------------------------------------------------------------------

    def _pick(self, obs: Any) -> np.ndarray:
        return np.asarray(obs[self.obs_key] if self.obs_key is not None else obs)

    def _current_obs(self) -> np.ndarray:
        if self._vec_normalize is not None:
            return self._pick(self._vec_normalize.get_original_obs())
        return self._pick(self.model._last_obs).copy()  # type: ignore[attr-defined]

    def _on_rollout_start(self) -> None:
        self._obs = self._current_obs()
        self._ext, self._int = [], []

    def _next_obs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(obs after the step, true successor)``: the latter with each ended env's final
        observation in place of its next episode's first."""
        new_obs = self.locals["new_obs"]
        if self._vec_normalize is not None:
            new_obs = self._vec_normalize.get_original_obs()
        after = self._pick(new_obs).copy()
        successor = after.copy()
        infos = self.locals["infos"]
        for i in np.flatnonzero(self.locals["dones"]):
            info = infos[i]
            final = info.get(RAW_TERMINAL_OBS if self._vec_normalize else "terminal_observation")
            if final is None:
                if not self._warned_no_terminal:
                    warnings.warn(
                        "the VecEnv gives no infos[i]['terminal_observation'] at an episode "
                        "end: the bonus sees the next episode's first observation instead",
                        stacklevel=2,
                    )
                    self._warned_no_terminal = True
                continue
            successor[i] = self._pick(final)
        return after, successor

    def _on_step(self) -> bool:
        assert self.curiosity is not None
        dones = np.asarray(self.locals["dones"], dtype=bool)
        infos = self.locals["infos"]
        truncated = dones & np.array([bool(i.get("TimeLimit.truncated", False)) for i in infos])
        terminated = dones & ~truncated
        # the actions the env took (on-policy: clipped to a Box's bounds)
        actions = np.asarray(self.locals["clipped_actions" if self.on_policy else "actions"])
        after, successor = self._next_obs()
        obs = self._obs if self._obs is not None else self._current_obs()
        n = self.curiosity.num_envs
        if self._warmup_left > 0:
            self.curiosity.warmup(obs, actions, successor, terminated, truncated)
            self._warmup_left -= 1
            r_int = np.zeros(n, dtype=np.float32)
        elif self.on_policy:
            r_int = np.asarray(
                self.curiosity.reward(obs, actions, successor, terminated, truncated)
            )
        else:
            step = _one_step(obs, actions, successor, terminated, truncated)
            self.bonus.observe(step)
            r_int = np.zeros(n, dtype=np.float32)
            if self.bonus.episodic:  # stored where SB3 is about to write this step
                raw = self.bonus.compute(step).float()[0]
                self.int_rms.update(raw)
                assert self._stored is not None
                self._stored[self.model.replay_buffer.pos] = raw.numpy()  # type: ignore[attr-defined]
        if self.on_policy:
            self._ext.append(np.asarray(self.locals["rewards"], dtype=np.float32).copy())
            self._int.append(r_int.astype(np.float32))
        self._obs = after
        return True

    # ---- on-policy: the rollout ------------------------------------------------------------

    def _on_rollout_end(self) -> None:
        if not self.on_policy:
            return
        assert self.curiosity is not None
        buffer: RolloutBuffer = self.model.rollout_buffer  # type: ignore[attr-defined]
        if len(self._ext) != buffer.buffer_size:
            raise RuntimeError(
                f"BonusCallback saw {len(self._ext)} steps of a {buffer.buffer_size}-step "
                "rollout: is it inside a CallbackList that skips on_step?"
            )
        ext, r_int = np.stack(self._ext), np.stack(self._int)
        self.int_rewards = r_int
        # collect_rollouts hands its locals over just before on_rollout_end: `values` is then
        # V(obs after the last step), `dones` that step's ends, what SB3 itself bootstrapped from
        add_bonus_to_rollout(
            buffer,
            ext,
            r_int,
            ext_coef=self.ext_coef,
            int_coef=self.int_coef,
            last_values=self.locals["values"],
            dones=self.locals["dones"],
        )
        metrics = self.curiosity.update()
        self._record(metrics, float(r_int.mean()))
        self.logger.record("bonus/int_return_std", self.curiosity.scale.std)

    def _record(self, metrics: dict[str, float], int_reward: float) -> None:
        for key, value in metrics.items():
            self.logger.record(f"bonus/{key}", value)
        self.logger.record("bonus/int_reward", int_reward)

    # ---- off-policy: sampled batches -------------------------------------------------------

    def _samples_with_bonus(self, original: Any, batch_inds: np.ndarray, env: Any) -> Any:
        buffer = self.model.replay_buffer  # type: ignore[attr-defined]
        # ReplayBuffer._get_samples draws the env index of each sample first, from numpy's
        # global generator: draw the same numbers here without moving the generator.
        state = np.random.get_state()
        env_inds = np.random.randint(0, high=buffer.n_envs, size=(len(batch_inds),))
        np.random.set_state(state)
        samples = original(batch_inds, env)
        buffer_actions = buffer.actions[batch_inds, env_inds]
        if not self._checked_indices:
            if not np.array_equal(
                samples.actions.cpu().numpy(),
                buffer_actions.astype(samples.actions.cpu().numpy().dtype),
            ):
                raise RuntimeError(
                    "BonusCallback could not tell which transitions SB3's replay buffer sampled "
                    "(its sampling changed); the bonus cannot be added to the batch"
                )
            self._checked_indices = True
        space = self.model.action_space
        if isinstance(space, gym.spaces.Box):  # stored rescaled to [-1, 1]: the env's actions
            actions = torch.as_tensor(self.model.policy.unscale_action(buffer_actions))  # type: ignore[attr-defined]
        else:
            actions = torch.as_tensor(buffer_actions).reshape(len(batch_inds), -1).squeeze(-1)
        observations = buffer.observations
        if buffer.optimize_memory_usage:
            next_observations = observations[(batch_inds + 1) % buffer.buffer_size, env_inds]
        else:
            next_observations = buffer.next_observations[batch_inds, env_inds]
        obs = observations[batch_inds, env_inds]
        dones = buffer.dones[batch_inds, env_inds].astype(bool)
        timeouts = buffer.timeouts[batch_inds, env_inds].astype(bool) & dones
        batch = Transitions(
            obs=torch.as_tensor(obs).unsqueeze(0),
            actions=actions.unsqueeze(0),
            next_obs=torch.as_tensor(next_observations).unsqueeze(0),
            ext_rewards=torch.zeros(1, len(batch_inds)),
            terminated=torch.as_tensor(dones & ~timeouts).unsqueeze(0),
            truncated=torch.as_tensor(timeouts).unsqueeze(0),
        )
        if self.bonus.episodic:
            assert self._stored is not None
            raw = torch.as_tensor(self._stored[batch_inds, env_inds])
        else:  # the bonus as it is now
            raw = self.bonus.compute(batch).float()[0]
            self.int_rms.update(raw)
        r_int = raw / math.sqrt(float(self.int_rms.var) + 1e-8)
        rewards = self.ext_coef * samples.rewards + self.int_coef * r_int.reshape(-1, 1).to(
            samples.rewards
        )
        metrics = self.bonus.update(batch)  # every bonus with models trains, as explora's DQN
        self._record(metrics, float(r_int.mean()))
        return samples._replace(rewards=rewards)

    # ---- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The bonus, its normalisers and the warm-up left (set up by a ``learn`` first)."""
        if self.curiosity is None:
            raise RuntimeError("the callback holds no bonus state before model.learn() set it up")
        return {
            "curiosity": self.curiosity.state_dict(),
            "int_rms": self.int_rms.state_dict(),
            "warmup_left": self._warmup_left,
            "stored": None if self._stored is None else self._stored.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``; call it after ``learn`` has set the callback up, or on a
        callback whose model has the same spaces (it is applied when ``learn`` starts)."""
        if self.curiosity is None:
            self._pending_state = state
            return
        self.curiosity.load_state_dict(state["curiosity"])
        self.int_rms.load_state_dict(state["int_rms"])
        self._warmup_left = int(state["warmup_left"])
        if state["stored"] is not None:
            self._stored = np.array(state["stored"])
