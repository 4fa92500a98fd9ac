"""The VAE (explora.models.vae: cyclical KL annealing, per-dimension KL thresholding, the inverse
autoregressive flow posterior) and the ``dynamics`` bonus on its features."""

from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from explora.bonuses import Dynamics, Transitions, bonus_hparams, make_bonus
from explora.models.vae import (
    VAE,
    IAFStep,
    VAEFeatures,
    cyclical_beta,
    gaussian_kl,
    made_masks,
    threshold_kl,
)

MINIGRID = gym.spaces.Box(0, 255, (7, 7, 3), dtype=np.uint8)
ACTIONS = gym.spaces.Discrete(7)


def views(count: int, seed: int = 0, distinct: int | None = None) -> torch.Tensor:
    """MiniGrid-like views (object < 11, colour < 6, state < 3); with ``distinct``, ``count``
    draws from that many distinct views."""
    gen = torch.Generator().manual_seed(seed)
    size = distinct or count
    grid = torch.stack(
        [
            torch.randint(0, 11, (size, 7, 7), generator=gen),
            torch.randint(0, 6, (size, 7, 7), generator=gen),
            torch.randint(0, 3, (size, 7, 7), generator=gen),
        ],
        dim=-1,
    ).to(torch.uint8)
    if distinct is None:
        return grid
    return grid[torch.randint(0, size, (count,), generator=gen)]


def transitions(obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor) -> Transitions:
    t, n = int(obs.shape[0]), int(obs.shape[1])
    zeros = torch.zeros(t, n)
    return Transitions(obs, actions, next_obs, zeros, zeros.bool(), zeros.bool())


# ---- the inverse autoregressive flow ----------------------------------------------------------


def _scrambled_flow_vae(latent_dim: int, iaf_steps: int) -> VAE:
    """A small VAE whose flow steps are far from the identity (their output layers start near
    zero), so the log-density test has something to check."""
    vae = VAE(MINIGRID, latent_dim=latent_dim, hidden_size=16, iaf_steps=iaf_steps, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for step in vae.flow:
            assert isinstance(step, IAFStep)
            for layer in (step.m_out, step.s_out, step.h_out):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen))
    return vae


@pytest.mark.parametrize("iaf_steps", [1, 3])
def test_iaf_log_density_matches_the_change_of_variables(iaf_steps: int) -> None:
    """log q(z_K|x) from the flow's sigmas equals log N(eps; 0, I) - log|det dz_K/deps|, the
    Jacobian taken numerically through the whole posterior (initial Gaussian and flow)."""
    dim = 4
    vae = _scrambled_flow_vae(dim, iaf_steps)
    obs = views(3, seed=2)
    mu, logvar, h = vae.encode(obs)
    eps = torch.randn(3, dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    vae.double()
    mu, logvar, h = mu.double(), logvar.double(), h.double()
    z, log_q = vae.sample(mu, logvar, h, eps)
    for b in range(3):
        jac = jacobian(lambda e, b=b: vae.sample(mu[b : b + 1], logvar[b : b + 1],
                                                 h[b : b + 1], e[None])[0][0], eps[b])  # fmt: skip
        base = -0.5 * (eps[b].square() + math.log(2 * math.pi)).sum()
        direct = base - torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(log_q[b].sum(), direct, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(z, mu + (0.5 * logvar).exp() * eps)  # the flow did move z


def test_a_flow_step_is_autoregressive_in_its_ordering_and_the_next_step_reverses_it() -> None:
    dim = 4
    vae = _scrambled_flow_vae(dim, 2)
    h = torch.randn(1, 16, dtype=torch.float64)
    vae.double()
    z = torch.randn(dim, dtype=torch.float64)
    for t, expected in ((0, torch.tril), (1, torch.triu)):
        step = vae.flow[t]
        jac = jacobian(lambda x, step=step: step(x[None], h)[0][0], z)
        assert torch.equal(jac, expected(jac)), (t, jac)  # triangular, diagonal sigma
        sigma = step(z[None], h)[1][0].exp()
        torch.testing.assert_close(torch.diagonal(jac), sigma)
        assert (jac - torch.diag(torch.diagonal(jac))).abs().sum() > 0  # and not diagonal


def test_made_masks_connect_each_output_only_to_earlier_inputs() -> None:
    hidden, output = made_masks(4, 6, reverse=True)
    reach = (output @ hidden) > 0  # [out, in]
    # reversed order: output i may depend on inputs j > i only
    assert torch.equal(reach, torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1))


# ---- the KL schedule and the threshold ----------------------------------------------------------


def test_cyclical_beta_against_hand_values() -> None:
    # Fu et al.: 100 steps, M = 4 cycles of 25, beta rises over R * 25 = 12.5 steps
    expected = {0: 0.0, 1: 0.08, 5: 0.4, 12: 0.96, 13: 1.0, 24: 1.0, 25: 0.0, 30: 0.4, 75: 0.0,
                99: 1.0, 100: 1.0, 10_000: 1.0}  # fmt: skip
    for step, beta in expected.items():
        assert cyclical_beta(step, 100) == pytest.approx(beta), step
    # Optimus: one cycle, beta 0 for the first half, then a ramp over a quarter
    optimus = {0: 0.0, 49: 0.0, 50: 0.0, 55: 0.2, 70: 0.8, 75: 1.0, 99: 1.0}
    for step, beta in optimus.items():
        assert cyclical_beta(step, 100, 1, 0.25, 0.5) == pytest.approx(beta), step
    assert cyclical_beta(5, 0) == 1.0  # annealing off


def test_the_model_counts_its_steps_and_follows_the_schedule() -> None:
    vae = VAE(MINIGRID, latent_dim=4, hidden_size=16, anneal_steps=8, anneal_cycles=2, seed=0)
    obs = views(16)
    betas = [vae.train_step(obs)["vae/beta"] for _ in range(10)]
    assert betas == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert int(vae.steps) == 10
    off = VAE(MINIGRID, latent_dim=4, hidden_size=16, anneal_steps=0, seed=0)
    assert off.train_step(obs)["vae/beta"] == 1.0


def test_threshold_kl_by_hand_and_no_gradient_below_the_threshold() -> None:
    kl = torch.tensor([[0.1, 0.7, 0.5, 2.0]], requires_grad=True)
    out = threshold_kl(kl, 0.5)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.7, 0.5, 2.0]]))
    out.sum().backward()
    assert kl.grad is not None
    assert kl.grad[0, 0] == 0 and kl.grad[0, 1] == 1 and kl.grad[0, 3] == 1


def test_the_loss_thresholds_each_dimension_of_each_observation() -> None:
    """With a decoder that ignores z, the loss is -log p(x) + beta * sum_i max(lambda, KL_i),
    and its gradient reaches mu only in the dimensions whose KL is above lambda."""
    vae = VAE(MINIGRID, latent_dim=3, hidden_size=16, kl_threshold=0.5, seed=0)
    with torch.no_grad():
        vae.decoder[0].weight.zero_()  # type: ignore[operator]
    mu = torch.tensor([[0.5, 2.0, 0.0], [1.2, 0.1, 3.0]], requires_grad=True)
    logvar = torch.zeros(2, 3)
    h = torch.zeros(2, 16)
    vae.encode = lambda obs: (mu, logvar, h)  # type: ignore[method-assign]
    obs = views(2)
    loss, parts = vae.loss(obs, beta=0.8)
    value = float(loss.detach())
    # KL_i = mu^2 / 2 at logvar 0: [0.125, 2, 0] and [0.72, 0.005, 4.5]
    kl = torch.tensor([[0.125, 2.0, 0.0], [0.72, 0.005, 4.5]])
    thresholded = torch.tensor([[0.5, 2.0, 0.5], [0.72, 0.5, 4.5]])
    reconstruction = float(parts["reconstruction"])
    assert value == pytest.approx(reconstruction + 0.8 * float(thresholded.sum(1).mean()))
    assert float(parts["kl"]) == pytest.approx(float(kl.sum(1).mean()))
    assert float(parts["elbo"]) == pytest.approx(-reconstruction - float(kl.sum(1).mean()))
    loss.backward()
    assert mu.grad is not None
    # d/dmu of 0.8 * KL_i / B = 0.8 * mu / 2 above the threshold, 0 below it
    expected = torch.tensor([[0.0, 0.8, 0.0], [0.48, 0.0, 1.2]])
    torch.testing.assert_close(mu.grad, expected)


def test_gaussian_kl_by_hand() -> None:
    kl = gaussian_kl(torch.tensor([1.0]), torch.tensor([math.log(4.0)]))
    torch.testing.assert_close(kl, torch.tensor([0.5 * (1 + 4 - 1 - math.log(4.0))]))


# ---- likelihoods --------------------------------------------------------------------------------


def test_categorical_likelihood_by_hand() -> None:
    space = gym.spaces.MultiDiscrete([3, 2])
    vae = VAE(space, latent_dim=2, hidden_size=8, seed=0)
    out = torch.tensor([[0.3, -1.0, 2.0, 0.0, -0.5]])  # logits: element 1 (2 classes), then 0
    obs = torch.tensor([[2, 0]])
    expected = torch.log_softmax(out[0, 2:], 0)[2] + torch.log_softmax(out[0, :2], 0)[0]
    torch.testing.assert_close(vae.log_likelihood(obs, out), expected.reshape(1))


def test_gaussian_likelihood_by_hand() -> None:
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    vae = VAE(space, latent_dim=2, hidden_size=8, seed=0)
    assert vae.log_scale is not None
    with torch.no_grad():
        vae.log_scale.copy_(torch.tensor([0.0, math.log(2.0)]))
    obs, out = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.0, 1.0]])
    expected = -(0.5 * 0.25 + 0.5 * math.log(2 * math.pi)) - (
        0.5 * 1.0 + math.log(2.0) + 0.5 * math.log(2 * math.pi)
    )
    torch.testing.assert_close(vae.log_likelihood(obs, out), torch.tensor([expected]))
    batch = torch.rand(8, 2) * 2 - 1
    assert vae.mean(batch).shape == (8, 2) and vae.reconstruct(batch).shape == (8, 2)
    assert math.isfinite(vae.train_step(batch)["vae/elbo"])


def test_spaces_it_refuses() -> None:
    with pytest.raises(ValueError, match="VAE cannot take observations from Dict"):
        VAE(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}))
    with pytest.raises(ValueError, match="anneal_zero and anneal_ratio"):
        VAE(MINIGRID, anneal_zero=0.6, anneal_ratio=0.5)


# ---- training -----------------------------------------------------------------------------------


@pytest.mark.parametrize("iaf_steps", [0, 2])
def test_elbo_improves_on_a_small_dataset(iaf_steps: int) -> None:
    data = views(512, seed=4, distinct=16)
    vae = VAE(MINIGRID, latent_dim=8, hidden_size=64, iaf_steps=iaf_steps, anneal_steps=60,
              learning_rate=3e-3, seed=0)  # fmt: skip
    before = vae.evaluate(data)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        vae.train_step(data[torch.randint(0, len(data), (64,), generator=gen)])
    after = vae.evaluate(data)
    # 16 equally likely views: log p(x) <= -log 16 = -2.77 nats, a bound the ELBO approaches
    assert after["elbo"] > before["elbo"] + 100, (before, after)
    assert after["elbo"] > -25, after
    assert after["view_accuracy"] > 0.9, after


def test_model_state_dict_round_trip_with_optimiser_and_generator() -> None:
    a = VAE(MINIGRID, latent_dim=4, hidden_size=16, iaf_steps=2, anneal_steps=20, seed=0)
    obs = views(64)
    for _ in range(5):
        a.train_step(obs)
    b = VAE(MINIGRID, latent_dim=4, hidden_size=16, iaf_steps=2, anneal_steps=20, seed=1)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=False))
    assert int(b.steps) == 5
    for _ in range(5):  # Adam's moments, the schedule and the sample generator carried over
        assert a.train_step(obs[:32]) == b.train_step(obs[:32])
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert torch.equal(a.mean(obs), b.mean(obs))


# ---- dynamics(features="vae") -------------------------------------------------------------------

SMALL = {"feature_size": 8, "hidden_size": 32, "residual_blocks": 1, "learning_rate": 3e-3}


def make_dynamics(seed: int = 0, **kwargs) -> Dynamics:
    torch.manual_seed(seed)
    bonus = Dynamics(features="vae", **{**SMALL, **kwargs})
    bonus.setup(MINIGRID, ACTIONS, num_envs=4)
    return bonus


def test_dynamics_vae_features_are_the_posterior_mean_and_output_is_t_by_n() -> None:
    bonus = make_dynamics(warmup_steps=0)
    assert bonus.features == "vae" and bonus_hparams(bonus)["features"] == "vae"
    assert bonus.phi is not None and isinstance(bonus.phi.encoder, VAEFeatures)
    vae = bonus.phi.encoder.vae
    assert vae.latent_dim == 8 and vae.hidden_size == 32
    obs = views(8 * 4 * 2, seed=1).reshape(2, 8, 4, 7, 7, 3)
    batch = transitions(obs[0], torch.randint(0, 7, (8, 4)), obs[1])
    out = bonus.compute(batch)
    assert out.shape == (8, 4) and out.dtype == torch.float32 and not out.requires_grad
    # r = mean_d (f(mu(s), a) - mu(s'))^2 with mu the VAE's posterior mean
    with torch.no_grad():
        mu, mu_next = vae.mean(obs[0].reshape(32, 7, 7, 3)), vae.mean(obs[1].reshape(32, 7, 7, 3))
        by_hand = bonus.errors(mu, batch.actions.reshape(32), mu_next).reshape(8, 4)
    torch.testing.assert_close(out, by_hand)
    metrics = bonus.update(batch)
    assert set(metrics) == {"losses/dynamics_forward", "losses/dynamics_features"}
    # the VAE's loss trained it, one schedule step per gradient step (3 epochs x 8 minibatches)
    assert int(vae.steps) == 24


def test_dynamics_vae_trains_the_vae_and_the_forward_model() -> None:
    bonus = make_dynamics(warmup_steps=0)
    assert bonus.phi is not None and isinstance(bonus.phi.encoder, VAEFeatures)
    vae = bonus.phi.encoder.vae
    data = views(8 * 16 * 2, seed=2, distinct=8).reshape(2, 8, 16, 7, 7, 3)
    batch = transitions(data[0], torch.zeros(8, 16, dtype=torch.long), data[1])
    flat = data[0].reshape(-1, 7, 7, 3)
    before = vae.evaluate(flat)["elbo"]
    first = bonus.update(batch)
    for _ in range(8):
        last = bonus.update(batch)
    assert vae.evaluate(flat)["elbo"] > before + 50
    assert last["losses/dynamics_features"] < first["losses/dynamics_features"]


def test_dynamics_vae_pays_a_never_seen_transition_more_than_a_frequent_one() -> None:
    # a short schedule: while beta ramps up the features move, and so does the error
    bonus = make_dynamics(warmup_steps=0, vae_args={"anneal_steps": 200})
    frequent = views(2, seed=5)  # s -> s' under action 3, over and over
    obs = frequent[0].expand(8, 4, 7, 7, 3).clone()
    next_obs = frequent[1].expand(8, 4, 7, 7, 3).clone()
    actions = torch.full((8, 4), 3)
    for _ in range(25):
        bonus.update(transitions(obs, actions, next_obs))
    novel = views(2 * 4, seed=6).reshape(2, 1, 4, 7, 7, 3)
    test_obs = torch.cat([obs[:1], novel[0]])  # [2, 4]: the frequent step, then novel ones
    test_next = torch.cat([next_obs[:1], novel[1]])
    out = bonus.compute(transitions(test_obs, torch.full((2, 4), 3), test_next))
    assert float(out[1].min()) > 10 * float(out[0].max()), out


def test_dynamics_vae_state_dict_round_trip_gives_identical_results() -> None:
    kwargs = {"warmup_steps": 2, "vae_args": {"iaf_steps": 2, "anneal_steps": 40}}
    a = make_dynamics(seed=0, **kwargs)
    data = views(6 * 4 * 4 * 2, seed=7).reshape(6, 2, 4, 4, 7, 7, 3)
    actions = torch.randint(0, 7, (6, 4, 4), generator=torch.Generator().manual_seed(0))
    batches = [transitions(data[k, 0], actions[k], data[k, 1]) for k in range(6)]
    for k in range(2):
        a.observe(transitions(data[k, 0, :1], actions[k, :1], data[k, 1, :1]))
        a.update(batches[k])
    state = a.state_dict()
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in state.items() if torch.is_tensor(v))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    b = make_dynamics(seed=1, **kwargs)
    b.load_state_dict(torch.load(buffer, weights_only=False))
    results = []
    for bonus in (a, b):
        out = []
        for k in range(2, 6):
            out += [bonus.compute(batches[k]), bonus.update(batches[k])]
        results.append(out)
    for x, y in zip(*results, strict=True):
        if torch.is_tensor(x):
            assert torch.equal(x, y)
        else:
            assert x == y


def test_dynamics_vae_arguments_it_refuses() -> None:
    with pytest.raises(ValueError, match="layernorm .* not to 'vae' ones"):
        Dynamics(features="vae", layernorm=True)
    with pytest.raises(ValueError, match="vae_args apply to features='vae' only"):
        Dynamics(features="random", vae_args={"iaf_steps": 2})
    with pytest.raises(ValueError, match="must not set 'latent_dim'.*feature_size"):
        Dynamics(features="vae", vae_args={"latent_dim": 4})
    bonus = make_bonus("dynamics", features="vae")
    with pytest.raises(ValueError, match="dynamics cannot take observations from Tuple"):
        bonus.setup(gym.spaces.Tuple([gym.spaces.Discrete(2)]), ACTIONS, 1)
