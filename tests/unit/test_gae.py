"""GAE against hand computations, including truncation and termination."""

import pytest
import torch

from explora.agents.returns import gae

REWARDS = torch.tensor([[1.0], [2.0], [3.0]])
VALUES = torch.tensor([[0.5], [0.6], [0.7]])
# t=0 -> V(s_1) = 0.6; t=1 the episode ends, V(final obs) = 2.0; t=2 -> bootstrap V = 0.8
NEXT_VALUES = torch.tensor([[0.6], [2.0], [0.8]])
NO = torch.zeros(3, 1, dtype=torch.bool)
AT_1 = torch.tensor([[False], [True], [False]])


def test_truncation_bootstraps_from_final_obs_and_cuts_the_chain():
    adv, ret = gae(REWARDS, VALUES, NEXT_VALUES, NO, AT_1, gamma=0.9, lam=0.8)
    # deltas: 1 + .9*.6 - .5 = 1.04; 2 + .9*2 - .6 = 3.2; 3 + .9*.8 - .7 = 3.02
    expected = torch.tensor([[1.04 + 0.72 * 3.2], [3.2], [3.02]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + VALUES)


def test_termination_zeroes_the_successor_value():
    adv, _ = gae(REWARDS, VALUES, NEXT_VALUES, AT_1, NO, gamma=0.9, lam=0.8)
    expected = torch.tensor([[1.04 + 0.72 * 1.4], [1.4], [3.02]])
    torch.testing.assert_close(adv, expected)


def test_non_episodic_return_bootstraps_through_termination_but_not_into_next_episode():
    adv, _ = gae(REWARDS, VALUES, NEXT_VALUES, AT_1, NO, gamma=0.9, lam=0.8, episodic=False)
    expected = torch.tensor([[1.04 + 0.72 * 3.2], [3.2], [3.02]])
    torch.testing.assert_close(adv, expected)


def test_no_episode_end_is_plain_gae_and_lambda_one_gives_discounted_returns():
    adv, ret = gae(
        REWARDS,
        VALUES,
        NEXT_VALUES * 0 + torch.tensor([[0.6], [0.7], [0.8]]),
        NO,
        NO,
        gamma=0.9,
        lam=1.0,
    )
    # lambda = 1: return = r0 + g r1 + g^2 r2 + g^3 V(s_3)
    expected_ret0 = 1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 0.8
    assert ret[0, 0].item() == pytest.approx(expected_ret0)


def _reference(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Per-env, per-step recursion written independently of the vectorised version."""
    T, N = rewards.shape
    out = torch.zeros(T, N)
    for n in range(N):
        acc = 0.0
        for t in reversed(range(T)):
            term, trunc = bool(terminated[t, n]), bool(truncated[t, n])
            succ = 0.0 if term else float(next_values[t, n])
            delta = float(rewards[t, n]) + gamma * succ - float(values[t, n])
            acc = delta + (0.0 if (term or trunc) else gamma * lam * acc)
            out[t, n] = acc
    return out


def test_matches_reference_on_random_rollouts():
    g = torch.Generator().manual_seed(0)
    T, N = 17, 5
    rewards, values, next_values = (torch.randn(T, N, generator=g) for _ in range(3))
    terminated = torch.rand(T, N, generator=g) < 0.1
    truncated = (torch.rand(T, N, generator=g) < 0.1) & ~terminated
    adv, _ = gae(rewards, values, next_values, terminated, truncated, 0.97, 0.9)
    torch.testing.assert_close(
        adv, _reference(rewards, values, next_values, terminated, truncated, 0.97, 0.9)
    )


def test_continuing_return_runs_through_an_episode_end_into_the_next_episode():
    """PPO's intrinsic return (RND's code, CleanRL): at an episode end the successor is the
    next observation of the rollout itself (the next episode's first), and the lambda-chain is
    not cut; the final observation's value is never used."""
    from explora.agents.ppo import continuing_next_values

    next_values = continuing_next_values(VALUES, torch.tensor([0.8]))
    torch.testing.assert_close(next_values, torch.tensor([[0.6], [0.7], [0.8]]))
    adv, _ = gae(REWARDS, VALUES, next_values, NO, NO, gamma=0.9, lam=0.8, episodic=False)
    # deltas: 1 + .9*.6 - .5 = 1.04; 2 + .9*.7 - .6 = 2.03; 3 + .9*.8 - .7 = 3.02
    a2 = 3.02
    a1 = 2.03 + 0.72 * a2
    a0 = 1.04 + 0.72 * a1
    torch.testing.assert_close(adv, torch.tensor([[a0], [a1], [a2]]))
