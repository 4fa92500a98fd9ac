"""PPO with a curiosity bonus in one file, CleanRL style: ``explora.Curiosity`` in a bare loop.

    python examples/cleanrl_ppo.py                        # PPO + count bonus, DoorKey-5x5
    python examples/cleanrl_ppo.py --bonus rnd --bonus-args '{"learning_rate": 1e-3}'
    python examples/cleanrl_ppo.py --int-coef 0           # plain PPO (no bonus is built)

Curiosity costs three calls, marked ``# curiosity``: build it from the env's spaces, ask it for
a reward at every step, train it after every rollout. The default bonus counts the raw 7x7x3
views, ``r = 1/sqrt(N(s'))``, paid on a view's first visit in an episode only (``first_visit``,
as explora's MiniGrid preset does for RND). Two choices matter:

- The bonus must see the true successor of each observation. Gymnasium's vector envs reset an
  ended episode on the same step here (``AutoresetMode.SAME_STEP``): the returned observation is
  already the next episode's first one and the final one is in ``info["final_obs"]``, which is
  what ``next_obs`` gets where an episode ended. (With the default next-step autoreset, pass
  ``valid=~prev_done`` to ``reward`` instead: the step that only resets an env is no transition.)
- Two value heads, as CleanRL's ``ppo_rnd_envpool.py`` and explora's own PPO. The extrinsic
  return stops at episode ends (bootstrapped from ``V_ext(final obs)`` at a time limit); the
  intrinsic one runs on across episode ends (the RND paper: ending an episode should not cut the
  stream of novelty, or the agent learns to die early or to avoid the goal). One head cannot
  learn both, and two heads let ``--int-coef`` weigh the two advantages:
  ``A = ext_coef * A_ext + int_coef * A_int``, whitened per minibatch.

Hyper-parameters follow explora's MiniGrid PPO (``explora.presets``: rl-starter-files' lr 7e-4,
short rollouts, an MLP on the 7x7x3 symbolic view with each channel scaled to [0, 1]).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import tyro
from minigrid.wrappers import ImgObsWrapper
from torch import nn

from explora import Curiosity


@dataclass
class Args:
    env_id: str = "MiniGrid-DoorKey-5x5-v0"
    total_timesteps: int = 100_000
    num_envs: int = 16
    num_steps: int = 32
    bonus: str = "count"
    """any name of `explora list` (count, rnd, simhash, ...)"""
    first_visit: bool = True
    """pay a view only on its first visit in an episode (explora's MiniGrid preset for RND)"""
    bonus_args: str = "{}"
    """the bonus's keyword arguments as JSON, e.g. '{"beta": 0.5}'"""
    int_coef: float = 1.0
    """weight of the intrinsic advantage; 0: plain PPO"""
    ext_coef: float = 1.0
    learning_rate: float = 7e-4
    gamma: float = 0.99
    int_gamma: float = 0.99
    gae_lambda: float = 0.95
    update_epochs: int = 4
    minibatch_size: int = 128
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    seed: int = 1


def layer(n_in: int, n_out: int, std: float = np.sqrt(2)) -> nn.Linear:
    lin = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.zeros_(lin.bias)
    return lin


class Agent(nn.Module):
    """An MLP on the [7, 7, 3] grid codes, a policy head and two value heads [V_ext, V_int]."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int) -> None:
        super().__init__()
        self.register_buffer("scale", 1 / torch.tensor([10.0, 5.0, 2.0]))  # object/colour/state
        self.trunk = nn.Sequential(
            layer(int(np.prod(obs_shape)), 128), nn.ReLU(), layer(128, 64), nn.ReLU()
        )
        self.actor, self.critic = layer(64, n_actions, 0.01), layer(64, 2, 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.distributions.Categorical, torch.Tensor]:
        h = self.trunk((obs.float() * self.scale).flatten(1))
        return torch.distributions.Categorical(logits=self.actor(h)), self.critic(h)


def gae(rewards, values, next_values, dones, gamma: float, lam: float) -> torch.Tensor:
    """Advantages ``[T, N]``; ``dones[t]``: the episode ended at step t (nothing flows back)."""
    adv, last = torch.zeros_like(rewards), torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        keep = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_values[t] * keep - values[t]
        adv[t] = last = delta + gamma * lam * keep * last
    return adv


def main(args: Args) -> dict[str, float]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    envs = gym.make_vec(
        args.env_id, num_envs=args.num_envs, vectorization_mode="sync", wrappers=[ImgObsWrapper],
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )  # fmt: skip
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    agent = Agent(obs_space.shape, act_space.n)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    curiosity = None  # curiosity
    if args.int_coef > 0:
        curiosity = Curiosity(args.bonus, obs_space, act_space, num_envs=args.num_envs,
                              int_gamma=args.int_gamma, first_visit=args.first_visit,
                              **json.loads(args.bonus_args))  # fmt: skip

    T, N = args.num_steps, args.num_envs
    obs_buf = torch.zeros((T, N, *obs_space.shape), dtype=torch.uint8)
    actions, logprobs = torch.zeros(T, N, dtype=torch.long), torch.zeros(T, N)
    rew_ext, rew_int, dones = torch.zeros(T, N), torch.zeros(T, N), torch.zeros(T, N)
    values = torch.zeros(T, N, 2)
    episode_returns, running = [], np.zeros(N)
    obs, _ = envs.reset(seed=args.seed)
    iterations, start = args.total_timesteps // (T * N), time.time()
    for iteration in range(iterations):
        optimizer.param_groups[0]["lr"] = args.learning_rate * (1 - iteration / iterations)
        for t in range(T):
            obs_buf[t] = torch.from_numpy(obs)
            with torch.no_grad():
                dist, values[t] = agent(obs_buf[t])
            actions[t] = dist.sample()
            logprobs[t] = dist.log_prob(actions[t])
            next_obs, reward, term, trunc, info = envs.step(actions[t].numpy())
            done = term | trunc
            real_next = next_obs.copy()  # the true successor: the final obs where one ended
            if done.any():
                real_next[done] = np.stack(info["final_obs"][done])
            if curiosity is not None:  # curiosity
                rew_int[t] = torch.from_numpy(
                    curiosity.reward(obs, actions[t].numpy(), real_next, term, trunc)
                )
            running += reward
            episode_returns += running[done].tolist()
            running[done] = 0.0
            cut = trunc & ~term  # a time limit: bootstrap from the final observation
            if cut.any():
                with torch.no_grad():
                    v_final = agent(torch.from_numpy(real_next[cut]))[1][:, 0]
                reward[cut] += args.gamma * v_final.numpy()
            rew_ext[t], dones[t] = torch.from_numpy(reward), torch.from_numpy(done).float()
            obs = next_obs

        with torch.no_grad():
            next_values = torch.cat([values[1:], agent(torch.from_numpy(obs))[1][None]])
        adv_ext = gae(rew_ext, values[..., 0], next_values[..., 0], dones,
                      args.gamma, args.gae_lambda)  # fmt: skip
        adv_int = gae(rew_int, values[..., 1], next_values[..., 1], torch.zeros_like(dones),
                      args.int_gamma, args.gae_lambda)  # non-episodic  # fmt: skip
        returns = torch.stack([adv_ext, adv_int], -1) + values
        advantages = args.ext_coef * adv_ext + args.int_coef * adv_int
        bonus_metrics = curiosity.update() if curiosity is not None else {}  # curiosity

        b_obs, b_act, b_logp = obs_buf.flatten(0, 1), actions.flatten(), logprobs.flatten()
        b_adv, b_ret = advantages.flatten(), returns.flatten(0, 1)
        for _ in range(args.update_epochs):
            for mb in torch.randperm(T * N).split(args.minibatch_size):
                dist, value = agent(b_obs[mb])
                ratio = (dist.log_prob(b_act[mb]) - b_logp[mb]).exp()
                adv = (b_adv[mb] - b_adv[mb].mean()) / (b_adv[mb].std() + 1e-8)
                pg_loss = torch.max(
                    -adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                ).mean()
                v_loss = 0.5 * ((value - b_ret[mb]) ** 2).sum(-1).mean()
                loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * dist.entropy().mean()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

        if (iteration + 1) % 20 == 0 or iteration + 1 == iterations:
            recent = episode_returns[-100:]
            print(f"frames {(iteration + 1) * T * N:>8}  episodes {len(episode_returns):>5}  "
                  f"return(last 100) {np.mean(recent) if recent else 0:.3f}  "
                  f"r_int {rew_int.mean():.3f}  {bonus_metrics}  "
                  f"fps {(iteration + 1) * T * N / (time.time() - start):.0f}")  # fmt: skip
    envs.close()
    recent = episode_returns[-100:]
    return {
        "frames": iterations * T * N,
        "episodes": len(episode_returns),
        "mean_return": float(np.mean(recent)) if recent else 0.0,
        "success_rate": float(np.mean(np.array(recent) > 0)) if recent else 0.0,
        "seconds": time.time() - start,
    }


if __name__ == "__main__":
    print(json.dumps(main(tyro.cli(Args))))
