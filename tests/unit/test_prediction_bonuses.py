"""The prediction-error bonuses: ICM, forward dynamics in a feature space, ensemble disagreement,
and the models they share (``explora.models.dynamics``)."""

from __future__ import annotations

import copy
import io
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from explora.bonuses import (
    BONUSES,
    ICM,
    Bonus,
    Disagreement,
    Dynamics,
    Transitions,
    bonus_hparams,
    make_bonus,
)
from explora.models.dynamics import (
    CuriosityFeatures,
    EnsembleForwardModel,
    ObsWhitening,
    action_features,
    obs_features,
)
from explora.models.ensemble import EnsembleLinear

MINIGRID = gym.spaces.Box(0, 255, (7, 7, 3), dtype=np.uint8)
ACTIONS = gym.spaces.Discrete(7)
SMALL = {"feature_size": 16, "hidden_size": 32}
SMALL_DYN = {**SMALL, "residual_blocks": 1}


def transitions(obs, actions, next_obs) -> Transitions:
    """A batch ``[T, N, ...]`` with zero rewards and no episode ends."""
    t, n = int(obs.shape[0]), int(obs.shape[1])
    zeros = torch.zeros(t, n)
    return Transitions(obs, actions, next_obs, zeros, zeros.bool(), zeros.bool())


def step(batch: Transitions, t: int) -> Transitions:
    """Step ``t`` of ``batch`` as ``observe`` gets it (``T == 1``)."""
    return transitions(batch.obs[t : t + 1], batch.actions[t : t + 1], batch.next_obs[t : t + 1])


def minigrid_batch(t: int, n: int, seed: int) -> Transitions:
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 11, (t + 1, n, 7, 7, 3), dtype=torch.uint8, generator=gen)
    actions = torch.randint(0, 7, (t, n), generator=gen)
    return transitions(obs[:-1], actions, obs[1:])


def small_bonus(name: str, **kwargs) -> Bonus:
    cls = {"icm": ICM, "dynamics": Dynamics, "disagreement": Disagreement}[name]
    sizes = SMALL if name == "icm" else SMALL_DYN
    return cls(**{**sizes, **kwargs})  # type: ignore[no-any-return]


PREDICTION = ["icm", "dynamics", "disagreement"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread, as the agents run (``PPOConfig.torch_threads``): on a loaded 2-core
    machine two OpenMP threads made a 4-sample update 70x slower (3.7 s against 0.05 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- ICM -------------------------------------------------------------------------------------


def _set(layer: nn.Linear, weight: list[list[float]], bias: list[float]) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))


def test_icm_bonus_by_hand_on_a_tiny_model() -> None:
    icm = ICM(eta=2.0, feature_size=2, hidden_size=2)
    icm.setup(gym.spaces.Box(0.0, 10.0, (2,)), gym.spaces.Discrete(2), num_envs=2)
    assert icm.inverse_model is not None and icm.forward_model is not None
    head = icm.inverse_model.embedding.head
    _set(head[0], [[1, 0], [0, 1]], [0, 0])  # positive inputs: LeakyReLU passes them as they are
    _set(head[2], [[1, 1], [0, 2]], [0, 0])  # phi(s) = (s0 + s1, 2 s1)
    net = icm.forward_model.net
    _set(net[0], [[1, 0, 1, 0], [0, 1, 0, 1]], [0, 0])  # h = phi + onehot(a), positive
    _set(net[2], [[0.5, 0], [0, 0.5]], [1, -1])  # f = h / 2 + (1, -1)
    obs = torch.tensor([[[1.0, 2.0], [0.0, 1.0]]])  # [T=1, N=2, 2]
    next_obs = torch.tensor([[[2.0, 1.0], [1.0, 1.0]]])
    actions = torch.tensor([[1, 0]])
    # env 0: phi = (3, 4), h = (3, 5), f = (2.5, 1.5), phi' = (3, 2): 0.5 * (0.25 + 0.25) = 0.25
    # env 1: phi = (1, 2), h = (2, 2), f = (2, 0),     phi' = (2, 2): 0.5 * (0 + 4)       = 2.0
    r = icm.compute(transitions(obs, actions, next_obs))
    assert r.dtype == torch.float32 and r.shape == (1, 2) and not r.requires_grad
    torch.testing.assert_close(r, torch.tensor([[2.0 * 0.25, 2.0 * 2.0]]))
    forward, _ = icm.errors(obs[0], actions[0], next_obs[0])
    torch.testing.assert_close(forward, torch.tensor([0.25, 2.0]), check_dtype=False)


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_icm_forward_loss_reaches_the_embedding_as_in_the_official_code() -> None:
    """Two ICMs in the same state, one with its forward model's output layer perturbed: if the
    forward loss reaches phi (noreward-rl: no stop_gradient), their embeddings train apart."""
    torch.manual_seed(0)
    icm = ICM(**SMALL)
    icm.setup(MINIGRID, ACTIONS, num_envs=4)
    other = ICM(**SMALL)
    other.setup(MINIGRID, ACTIONS, num_envs=4)
    other.load_state_dict(icm.state_dict())
    assert other.forward_model is not None and icm.inverse_model is not None
    with torch.no_grad():
        other.forward_model.net[2].weight.mul_(3.0)
    batch = minigrid_batch(8, 4, seed=1)
    icm.update(batch)
    other.update(batch)
    assert other.inverse_model is not None
    assert not _same(_params(icm.inverse_model.embedding), _params(other.inverse_model.embedding))
    # the inverse head sees the embedding only, and no forward gradient reaches it directly
    only_forward = ICM(**SMALL, forward_weight=1.0)
    only_forward.setup(MINIGRID, ACTIONS, num_envs=4)
    assert only_forward.inverse_model is not None
    head, embedding = only_forward.inverse_model.inverse, only_forward.inverse_model.embedding
    before_head, before_embedding = _params(head), _params(embedding)
    only_forward.update(batch)
    assert _same(before_head, _params(head))
    assert not _same(before_embedding, _params(embedding))


def test_icm_without_forward_weight_leaves_the_forward_model_alone() -> None:
    icm = ICM(**SMALL, forward_weight=0.0)
    icm.setup(MINIGRID, ACTIONS, num_envs=4)
    assert icm.forward_model is not None
    before = _params(icm.forward_model)
    icm.update(minigrid_batch(8, 4, seed=2))
    assert _same(before, _params(icm.forward_model))


def test_icm_learns_a_three_dimensional_box_action() -> None:
    """s' = s + a M with a in Box(-1, 1, (3,)): trained on such transitions, the inverse model
    recovers the 3-d action of new ones (half squared error summed over the dimensions), and
    the forward model takes the action as a 3-vector."""
    torch.manual_seed(0)
    actions_space = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    obs_space = gym.spaces.Box(-10.0, 10.0, (4,), dtype=np.float32)
    icm = ICM(**SMALL, learning_rate=3e-3)
    icm.setup(obs_space, actions_space, num_envs=8)
    gen = torch.Generator().manual_seed(3)
    mixing = torch.randn(3, 4, generator=gen)

    def batch_of_moves() -> Transitions:
        obs = torch.randn(32, 8, 4, generator=gen)
        actions = torch.rand(32, 8, 3, generator=gen) * 2 - 1
        return transitions(obs, actions, obs + actions @ mixing)

    train, test = batch_of_moves(), batch_of_moves()
    r = icm.compute(train)
    assert r.shape == (32, 8) and r.dtype == torch.float32 and torch.isfinite(r).all()
    assert icm.forward_model is not None and icm.inverse_model is not None
    assert icm.forward_model.net[0].in_features == 16 + 3  # phi and the 3-d action
    for _ in range(30):
        icm.update(train)
    with torch.no_grad():
        obs, next_obs = test.obs.reshape(-1, 4), test.next_obs.reshape(-1, 4)
        phi = icm.inverse_model.embed(torch.cat([obs, next_obs]))
        guess = icm.inverse_model.inverse(torch.cat(phi.chunk(2), dim=-1))
    actions = test.actions.reshape(-1, 3)
    unexplained = (guess - actions).square().mean() / actions.var()
    assert unexplained < 0.2, float(unexplained)


def test_icm_rejects_spaces_it_cannot_take() -> None:
    with pytest.raises(ValueError, match="icm needs Discrete or Box actions.*MultiDiscrete"):
        ICM().setup(MINIGRID, gym.spaces.MultiDiscrete([3, 3]), num_envs=2)
    with pytest.raises(ValueError, match="icm cannot take observations from Dict"):
        ICM().setup(gym.spaces.Dict({"a": MINIGRID}), ACTIONS, num_envs=2)
    with pytest.raises(ValueError, match="forward_weight must be in"):
        ICM(forward_weight=1.5)


# --- Shared model pieces ---------------------------------------------------------------------


def _member_forward(model: EnsembleForwardModel, k: int, phi, actions) -> torch.Tensor:
    """Member k by the definition: every layer on the concatenation [x, a], one member at a
    time."""
    a = action_features(actions, model.action_space)

    def layer(lin: EnsembleLinear, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, a], dim=-1) @ lin.weight[k] + lin.bias[k, 0]

    x = nn.functional.leaky_relu(layer(model.first, phi), 0.2)
    for inner, outer in zip(model.inner, model.outer, strict=True):
        x = x + layer(outer, nn.functional.leaky_relu(layer(inner, x), 0.2))
    return layer(model.last, x)


@pytest.mark.parametrize(
    "space", [gym.spaces.Discrete(4, start=1), gym.spaces.Box(-1.0, 1.0, (3,), np.float32)]
)
def test_ensemble_forward_model_is_k_concatenation_mlps(space: gym.Space) -> None:
    torch.manual_seed(0)
    model = EnsembleForwardModel(3, 5, space, hidden_size=8, residual_blocks=2)
    phi = torch.randn(6, 5)
    if isinstance(space, gym.spaces.Discrete):
        actions = torch.tensor([1, 2, 3, 4, 1, 2])
    else:
        actions = torch.rand(6, 3) * 2 - 1
    out = model(phi, actions)
    assert out.shape == (3, 6, 5)
    for k in range(3):
        torch.testing.assert_close(out[k], _member_forward(model, k, phi, actions))
    assert not torch.allclose(out[0], out[1])  # members start from independent weights


def test_obs_whitening_and_feature_kinds() -> None:
    w = ObsWhitening(gym.spaces.Box(-5.0, 5.0, (2,)))
    w.set_statistics(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(w(torch.tensor([[4.0, 2.0]])), torch.tensor([[2.0, 0.0]]))
    with pytest.raises(ValueError, match=r"dynamics features=vae.*nn.Module"):
        CuriosityFeatures("vae", MINIGRID, ACTIONS)
    with pytest.raises(ValueError, match="unknown features 'pixels'; choose one of"):
        CuriosityFeatures("pixels", MINIGRID, ACTIONS)
    with pytest.raises(ValueError, match="not to 'raw' ones"):
        CuriosityFeatures("raw", MINIGRID, ACTIONS, layernorm=True)
    raw = CuriosityFeatures("raw", MINIGRID, ACTIONS)
    assert raw.out_dim == 147 and not raw.trains and raw.trainable_parameters() == []
    idf = CuriosityFeatures("idf", MINIGRID, ACTIONS, feature_size=8, hidden_size=16)
    assert idf.out_dim == 8 and idf.trains
    normed = CuriosityFeatures("random", MINIGRID, ACTIONS, feature_size=8, layernorm=True)
    phi = normed(torch.randint(0, 11, (5, 7, 7, 3), dtype=torch.uint8))
    torch.testing.assert_close(phi.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)


def test_obs_features_keeps_a_binary_uint8_grid_in_zero_one() -> None:
    """DeepSea's one-hot Box(0, 1, (N, N), uint8) is not divided by 255; pixels are."""
    grid = torch.zeros(2, 4, 4, dtype=torch.uint8)
    grid[0, 1, 2] = 1
    binary = obs_features(grid, gym.spaces.Box(0, 1, (4, 4), np.uint8))
    assert binary.max() == 1.0
    pixels = obs_features(grid * 255, gym.spaces.Box(0, 255, (4, 4), np.uint8))
    assert pixels.max() == 1.0


# --- Dynamics --------------------------------------------------------------------------------


def test_dynamics_raw_bonus_by_hand_with_warmup_whitening() -> None:
    """Whitening from the warm-up (mean per input, one std: the mean of the per-input stds) and
    a forward model whose output is a constant c: r = mean_d (c - phi(s'))^2."""
    bonus = Dynamics(features="raw", residual_blocks=0, hidden_size=4, warmup_steps=2)
    bonus.setup(gym.spaces.Box(-10.0, 10.0, (2,)), gym.spaces.Discrete(3), num_envs=2)
    seen = torch.tensor([[[0.0, 0.0], [2.0, 4.0]]])  # [1, N=2, 2]
    for _ in range(2):
        bonus.observe(transitions(seen, torch.zeros(1, 2, dtype=torch.long), seen))
    # mean (1, 2); per-input std (1, 2), so std = 1.5; later steps change nothing
    bonus.observe(transitions(seen * 7, torch.zeros(1, 2, dtype=torch.long), seen * 7))
    assert bonus.phi is not None and bonus.phi.whitening is not None
    torch.testing.assert_close(bonus.phi.whitening.mean, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(bonus.phi.whitening.std, torch.tensor(1.5))
    assert bonus.forward_model is not None
    with torch.no_grad():
        for layer in (bonus.forward_model.first, bonus.forward_model.last):
            layer.weight.zero_()
            layer.bias.zero_()
        bonus.forward_model.last.bias[0, 0] = torch.tensor([1.0, -1.0])
    next_obs = torch.tensor([[[4.0, 2.0], [1.0, 5.0]]])
    # phi' = (2, 0): ((1 - 2)^2 + (-1 - 0)^2) / 2 = 1;  phi' = (0, 2): (1 + 9) / 2 = 5
    r = bonus.compute(transitions(torch.zeros_like(next_obs), torch.tensor([[0, 2]]), next_obs))
    torch.testing.assert_close(r, torch.tensor([[1.0, 5.0]]))


@pytest.mark.parametrize("cls", [Dynamics, Disagreement])
def test_random_features_never_change_during_update(cls: type) -> None:
    torch.manual_seed(0)
    bonus = cls(features="random", **SMALL_DYN, learning_rate=1e-2, warmup_steps=2)
    bonus.setup(MINIGRID, ACTIONS, num_envs=4)
    batch = minigrid_batch(8, 4, seed=4)
    for t in range(2):
        bonus.observe(step(batch, t))
    phi = bonus.phi
    model = bonus.forward_model if cls is Dynamics else bonus.ensemble
    features_before, state_before = _params(phi), copy.deepcopy(phi.state_dict())
    model_before = _params(model)
    for _ in range(3):
        bonus.update(batch)
    assert _same(features_before, _params(phi))
    assert all(torch.equal(v, phi.state_dict()[k]) for k, v in state_before.items())
    assert not _same(model_before, _params(model))


@pytest.mark.parametrize("cls", [Dynamics, Disagreement])
def test_idf_features_change_only_through_the_inverse_loss(cls: type) -> None:
    """Two bonuses in the same state, one with its forward model perturbed: the inverse-dynamics
    embedding trains identically in both (the forward loss does not reach it), and it does
    train."""
    torch.manual_seed(0)
    bonus = cls(features="idf", **SMALL_DYN)
    bonus.setup(MINIGRID, ACTIONS, num_envs=4)
    other = cls(features="idf", **SMALL_DYN)
    other.setup(MINIGRID, ACTIONS, num_envs=4)
    other.load_state_dict(bonus.state_dict())
    model = other.forward_model if cls is Dynamics else other.ensemble
    with torch.no_grad():
        model.last.weight.mul_(5.0)
    before = _params(bonus.phi)
    batch = minigrid_batch(8, 4, seed=5)
    for _ in range(2):
        bonus.update(batch)
        other.update(batch)
    assert not _same(before, _params(bonus.phi))  # trained by its inverse loss
    assert _same(_params(bonus.phi), _params(other.phi))


def test_dynamics_takes_an_encoder_object_and_trains_it_only_with_a_loss() -> None:
    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out_dim = 6
            self.net = nn.Linear(147, 6)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.net(obs.float().reshape(obs.shape[0], -1) / 10.0)

    class TrainedEncoder(Encoder):
        def loss(self, obs, actions, next_obs) -> torch.Tensor:
            return self(obs).square().mean()

    batch = minigrid_batch(8, 4, seed=6)
    fixed = Dynamics(features=Encoder(), **SMALL_DYN)
    fixed.setup(MINIGRID, ACTIONS, num_envs=4)
    assert fixed.features == "<Encoder>" and fixed.phi is not None and fixed.phi.out_dim == 6
    before = _params(fixed.phi)
    assert set(fixed.update(batch)) == {"losses/dynamics_forward"}
    assert _same(before, _params(fixed.phi))
    trained = Dynamics(features=TrainedEncoder(), **SMALL_DYN)
    trained.setup(MINIGRID, ACTIONS, num_envs=4)
    assert "phi.encoder.net.weight" in trained.state_dict()
    before = _params(trained.phi)
    assert "losses/dynamics_features" in trained.update(batch)
    assert not _same(before, _params(trained.phi))
    by_function = Disagreement(features=lambda obs: obs.float().reshape(obs.shape[0], -1)[:, :5])
    by_function.setup(MINIGRID, ACTIONS, num_envs=4)
    assert by_function.phi is not None and by_function.phi.out_dim == 5
    assert by_function.compute(batch).shape == (8, 4)


def test_features_vae_is_the_dynamics_bonus_s_and_elsewhere_says_what_to_pass() -> None:
    assert Dynamics(features="vae").features == "vae"  # tests/unit/test_vae.py trains it
    with pytest.raises(ValueError, match=r"dynamics features=vae.*features=<an nn.Module"):
        make_bonus("disagreement", features="vae")
    with pytest.raises(ValueError, match="unknown features 'rnd'; choose one of: raw, random, idf"):
        make_bonus("dynamics", features="rnd")


# --- Disagreement ----------------------------------------------------------------------------


def test_disagreement_is_the_variance_over_members_by_hand() -> None:
    torch.manual_seed(0)
    bonus = Disagreement(num_members=4, **SMALL_DYN, warmup_steps=0)
    bonus.setup(MINIGRID, ACTIONS, num_envs=3)
    batch = minigrid_batch(5, 3, seed=7)
    assert bonus.phi is not None and bonus.ensemble is not None
    obs = batch.obs.reshape(15, 7, 7, 3)
    actions = batch.actions.reshape(15)
    with torch.no_grad():
        phi = bonus.phi(obs)
        members = torch.stack([_member_forward(bonus.ensemble, k, phi, actions) for k in range(4)])
    expected = torch.var(members, dim=0, unbiased=False).mean(dim=-1).reshape(5, 3)
    r = bonus.compute(batch)
    assert r.shape == (5, 3) and r.dtype == torch.float32 and not r.requires_grad
    torch.testing.assert_close(r, expected)


def test_disagreement_members_part_only_through_their_own_samples() -> None:
    """Members started from one set of weights stay together when each trains on every sample
    (keep_prob 1), and part when each keeps its own 80% of each minibatch (the official
    dropout on the per-sample loss)."""
    batch = minigrid_batch(8, 4, seed=8)
    bonus_of = {}
    for keep in (1.0, 0.8):
        torch.manual_seed(0)
        bonus = Disagreement(keep_prob=keep, **SMALL_DYN, learning_rate=1e-2, warmup_steps=0)
        bonus.setup(MINIGRID, ACTIONS, num_envs=4)
        assert bonus.ensemble is not None
        with torch.no_grad():
            for layer in bonus.ensemble.modules():
                if isinstance(layer, EnsembleLinear):
                    layer.weight.copy_(layer.weight[:1].expand_as(layer.weight))
                    layer.bias.copy_(layer.bias[:1].expand_as(layer.bias))
        assert float(bonus.compute(batch).max()) == 0.0
        for _ in range(3):
            bonus.update(batch)
        bonus_of[keep] = float(bonus.compute(batch).mean())
    assert bonus_of[1.0] < 1e-10 < bonus_of[0.8], bonus_of


def test_disagreement_needs_two_members() -> None:
    with pytest.raises(ValueError, match="num_members must be >= 2"):
        Disagreement(num_members=1)


# --- All three -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PREDICTION)
def test_trained_transitions_get_less_bonus_than_new_ones(name: str) -> None:
    torch.manual_seed(0)
    bonus = small_bonus(name, learning_rate=1e-3)
    bonus.setup(MINIGRID, ACTIONS, num_envs=4)
    seen, unseen = minigrid_batch(8, 4, seed=10), minigrid_batch(8, 4, seed=11)
    for _ in range(60):
        bonus.update(seen)
    r_seen, r_unseen = bonus.compute(seen).mean(), bonus.compute(unseen).mean()
    assert r_seen < 0.5 * r_unseen, (float(r_seen), float(r_unseen))


@pytest.mark.parametrize("name", PREDICTION)
def test_state_dict_round_trip_continues_bit_exact(name: str) -> None:
    """Mid-warm-up, after updates: a bonus loaded from another's checkpoint (networks, Adam's
    moments, generator, statistics) computes and trains exactly as the original goes on to."""
    torch.manual_seed(0)
    bonus = small_bonus(name, warmup_steps=4)
    bonus.setup(MINIGRID, ACTIONS, num_envs=4)
    batch = minigrid_batch(8, 4, seed=12)
    for t in range(2):
        bonus.observe(step(batch, t))
    bonus.update(batch)
    state = bonus.state_dict()
    again = bonus.state_dict()  # taking a state changes nothing
    assert state.keys() == again.keys()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    torch.manual_seed(99)
    restored = small_bonus(name, warmup_steps=4)
    restored.setup(MINIGRID, ACTIONS, num_envs=4)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    assert torch.equal(restored.compute(batch), bonus.compute(batch))
    for b in (bonus, restored):  # the rest of the warm-up, then training
        for t in range(2, 4):
            b.observe(step(batch, t))
    assert bonus.update(batch) == restored.update(batch)
    probe = minigrid_batch(4, 4, seed=13)
    assert torch.equal(bonus.compute(probe), restored.compute(probe))
    assert torch.equal(bonus.generator.get_state(), restored.generator.get_state())


@pytest.mark.parametrize("name", PREDICTION)
def test_registry_builds_them_with_json_configs(name: str) -> None:
    bonus = make_bonus(name, learning_rate=1e-3)
    assert isinstance(bonus, Bonus) and name in BONUSES and not bonus.episodic
    hparams = bonus_hparams(bonus)
    assert hparams["learning_rate"] == 1e-3
    json.dumps(hparams)
    bonus.setup(MINIGRID, ACTIONS, num_envs=2)
    r = bonus.compute(minigrid_batch(3, 2, seed=14))
    assert r.shape == (3, 2) and r.dtype == torch.float32 and bool(torch.isfinite(r).all())


@pytest.mark.parametrize("name", PREDICTION)
def test_continuous_actions_and_eval_mode(name: str) -> None:
    """A 3-dimensional Box action through compute and update; in eval mode ``observe`` gathers
    no statistics."""
    bonus = small_bonus(name, warmup_steps=2) if name != "icm" else small_bonus(name)
    bonus.setup(gym.spaces.Box(-1.0, 1.0, (5,)), gym.spaces.Box(-1.0, 1.0, (3,)), num_envs=2)
    gen = torch.Generator().manual_seed(15)
    obs = torch.randn(4, 2, 5, generator=gen)
    batch = transitions(obs, torch.rand(4, 2, 3, generator=gen) * 2 - 1, obs.roll(1, 0))
    bonus.eval()  # type: ignore[attr-defined]
    for t in range(2):
        bonus.observe(step(batch, t))
    if name != "icm":
        assert bonus._observed == 0  # type: ignore[attr-defined]
    bonus.train()  # type: ignore[attr-defined]
    assert bonus.compute(batch).shape == (4, 2)
    losses = bonus.update(batch)
    assert all(math.isfinite(v) for v in losses.values())


# ---- the shared training pieces (explora.bonuses._shared, explora.models.dynamics) ----------


def test_iter_minibatches_is_lazy_and_matches_a_permutation_per_epoch() -> None:
    from explora.models.dynamics import iter_minibatches, sample_minibatches

    gen, ref = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    seen = []
    for idx in iter_minibatches(10, 1.0, 2, 3, gen):
        seen.append(idx)
        torch.rand(1, generator=gen)  # a draw between minibatches, as Disagreement's mask
    expected = []
    for _ in range(2):
        chunks = torch.randperm(10, generator=ref).chunk(3)
        for chunk in chunks:
            expected.append(chunk)
            torch.rand(1, generator=ref)
    assert [c.tolist() for c in seen] == [c.tolist() for c in expected]
    part = sample_minibatches(10, 0.4, 3, 2, torch.Generator().manual_seed(0))
    assert [len(c) for c in part] == [2, 2] * 3  # round(0.4 * 10) = 4 samples per epoch
    assert all(len(set(torch.cat(part[i : i + 2]).tolist())) == 4 for i in (0, 2, 4))


def test_train_minibatches_steps_once_per_minibatch_and_averages_the_logs() -> None:
    from explora.bonuses._shared import train_minibatches

    weight = nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        loss = (weight * x[idx]).sum()
        return loss, {"loss": loss, "never": None}

    metrics = train_minibatches(
        optimizer, [weight], 1.0, [torch.tensor([0, 1]), torch.tensor([3])], step
    )
    # step 1: loss 1 * 3 = 3, gradient 3 clipped to 1, w = 0.5; step 2: loss 0.5 * 4 = 2, w = 0
    assert metrics == {"loss": pytest.approx(2.5)}
    assert float(weight.detach()) == pytest.approx(0.0, abs=1e-5)


def test_load_training_state_copies_the_optimizer_and_skips_a_state_saved_before_setup() -> None:
    from explora.bonuses._shared import load_training_state, training_state

    weight = nn.Parameter(torch.ones(2))
    optimizer = torch.optim.Adam([weight])
    weight.grad = torch.ones(2)
    optimizer.step()
    gen = torch.Generator().manual_seed(5)
    saved = training_state(optimizer, gen)
    other = nn.Parameter(torch.ones(2))
    loaded = torch.optim.Adam([other])
    gen2 = torch.Generator()
    load_training_state(saved, gen2, loaded)
    moment = loaded.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moment, optimizer.state_dict()["state"][0]["exp_avg"])
    assert moment.data_ptr() != optimizer.state_dict()["state"][0]["exp_avg"].data_ptr()
    assert torch.equal(gen2.get_state(), gen.get_state())

    def not_set_up() -> torch.optim.Optimizer:
        raise RuntimeError("call setup() first")

    before_setup = training_state(None, torch.Generator().manual_seed(9))
    load_training_state(before_setup, gen2, not_set_up)  # the getter is not called
    with pytest.raises(RuntimeError, match="setup"):
        load_training_state(saved, gen2, not_set_up)


def test_shared_argument_checks_name_the_first_bad_value() -> None:
    from explora.bonuses._shared import check_at_least_one, check_positive

    check_at_least_one(a=1, b=2)
    with pytest.raises(ValueError, match="b must be >= 1, got 0"):
        check_at_least_one(a=1, b=0, c=0)
    with pytest.raises(ValueError, match="lr must be > 0, got nan"):
        check_positive(eps=1.0, lr=math.nan)
