"""The binary-code autoencoder (explora.models.autoencoder) and the AE-SimHash bonus."""

from __future__ import annotations

import io
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
import torch
from bonus_batches import batch_of

from explora.bonuses import Bonus, make_bonus
from explora.bonuses.aehash import AEHash
from explora.models.autoencoder import (
    BinaryAutoencoder,
    binary_penalty,
    element_classes,
    render_reconstructions,
)

MINIGRID = gym.spaces.Box(0, 255, (7, 7, 3), dtype=np.uint8)
ACTIONS = gym.spaces.Discrete(7)


def observe_rollout(bonus: AEHash, next_obs: torch.Tensor) -> None:
    for t in range(next_obs.shape[0]):
        bonus.observe(batch_of(next_obs[t : t + 1]))


def prototype_views(count: int, prototypes: int = 24, seed: int = 0) -> torch.Tensor:
    """``[count, 7, 7, 3]`` MiniGrid-like views drawn from ``prototypes`` distinct ones."""
    gen = torch.Generator().manual_seed(seed)
    objects = torch.randint(0, 11, (prototypes, 7, 7, 1), generator=gen)
    colours = torch.randint(0, 6, (prototypes, 7, 7, 1), generator=gen)
    states = torch.randint(0, 3, (prototypes, 7, 7, 1), generator=gen)
    protos = torch.cat([objects, colours, states], -1).to(torch.uint8)
    return protos[torch.randint(0, prototypes, (count,), generator=gen)]


def make_bonus_setup(num_envs: int = 4, **kwargs) -> AEHash:
    settings = {"code_bits": 16, "hidden_size": 64, "warmup_steps": 0, **kwargs}
    bonus = AEHash(**settings)
    bonus.setup(MINIGRID, ACTIONS, num_envs)
    return bonus


# --- the model ---------------------------------------------------------------------------------


def _saturation(noise: float) -> float:
    """Code units saturated after fitting 256 distinct views with 8 bits, penalty off: a
    continuous code could carry them in intermediate values, the noise makes that useless."""
    torch.manual_seed(0)
    model = BinaryAutoencoder(MINIGRID, code_bits=8, hidden_size=32, noise=noise, penalty=0.0)
    views = prototype_views(2048, prototypes=256)
    model.fit(views, steps=600, batch_size=128, learning_rate=1e-2,
              generator=torch.Generator().manual_seed(0))  # fmt: skip
    return model.quality(views)["saturated"]


def test_noise_saturates_the_code() -> None:
    with_noise, without = _saturation(0.3), _saturation(0.0)
    # measured: 0.82 with U(-0.3, 0.3) against 0.57 without
    assert with_noise > 0.75 and with_noise > without + 0.15, (with_noise, without)


def test_penalty_by_hand_and_its_gradient_pulls_units_to_0_or_1() -> None:
    b = torch.tensor([[0.2, 0.7], [0.5, 1.0]], requires_grad=True)
    value = binary_penalty(b)
    # min(b^2, (1-b)^2): 0.04, 0.09, 0.25, 0 -> mean 0.095
    assert value.item() == pytest.approx(0.095)
    value.backward()
    assert b.grad is not None
    # d/db of the mean: 2b/4 below 0.5, -2(1-b)/4 above; a descent step moves 0.2 down, 0.7 up
    assert b.grad[0].tolist() == pytest.approx([0.1, -0.15])
    assert b.grad[1, 1].item() == 0.0  # a saturated unit feels no pull
    with torch.no_grad():
        stepped = b - 0.5 * b.grad
    assert stepped[0, 0] < 0.2 and stepped[0, 1] > 0.7


def test_penalty_alone_drives_a_code_to_0_and_1() -> None:
    logits = torch.tensor([[-0.3, 0.2, 0.9, -1.5]], requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=50.0)
    for _ in range(200):
        optimizer.zero_grad()
        binary_penalty(torch.sigmoid(logits)).backward()
        optimizer.step()
    b = torch.sigmoid(logits).detach()
    assert ((b - 0.5).abs() > 0.4).all(), b
    assert (b.round() == torch.tensor([[0.0, 1.0, 1.0, 0.0]])).all()  # each to its own side


def test_hash_is_the_rounded_code() -> None:
    torch.manual_seed(0)
    model = BinaryAutoencoder(MINIGRID, code_bits=32, hidden_size=32)
    views = prototype_views(64)
    b = model.code(views)
    assert torch.equal(model.hash(views), b.round().bool())
    assert ((b > 0) & (b < 1)).all()
    bonus = make_bonus_setup(code_bits=32)
    assert bonus.model is not None
    assert torch.equal(bonus.keys(views), bonus.model.code(views).round().bool())


def test_compressed_key_is_simhash_of_the_centred_code() -> None:
    bonus = make_bonus_setup(compress_bits=8, seed=3)
    assert bonus.model is not None
    views = prototype_views(32)
    code = bonus.model.code(views).round()
    expected = (2 * code - 1) @ bonus.projection.T >= 0
    assert bonus.keys(views).shape == (32, 8)
    assert torch.equal(bonus.keys(views), expected)


def test_loss_adds_noise_only_to_the_decoder_input() -> None:
    torch.manual_seed(0)
    model = BinaryAutoencoder(MINIGRID, code_bits=8, hidden_size=16, noise=0.3, penalty=2.0)
    views = prototype_views(16)
    gen = torch.Generator()
    loss_a, parts_a = model.loss(views, gen.manual_seed(1))
    loss_b, parts_b = model.loss(views, gen.manual_seed(2))
    assert parts_a["penalty"] == parts_b["penalty"] == binary_penalty(model.code(views)).detach()
    assert parts_a["reconstruction"] != parts_b["reconstruction"]  # the noise differs
    assert loss_a.item() == pytest.approx(
        (parts_a["reconstruction"] + 2.0 * parts_a["penalty"]).item()
    )
    quiet = BinaryAutoencoder(MINIGRID, code_bits=8, hidden_size=16, noise=0.0)
    quiet.load_state_dict(model.state_dict())
    _, q1 = quiet.loss(views, gen.manual_seed(1))
    _, q2 = quiet.loss(views, gen.manual_seed(2))
    assert q1["reconstruction"] == q2["reconstruction"]


def test_categorical_reconstruction_per_minigrid_channel_and_other_spaces() -> None:
    assert element_classes(MINIGRID) == [11, 6, 3] * 49
    assert element_classes(gym.spaces.Discrete(5, start=2)) == [5]
    assert element_classes(gym.spaces.MultiDiscrete([3, 4])) == [3, 4]
    assert element_classes(gym.spaces.Box(0, 1, (4, 4), np.uint8)) == [2] * 16  # DeepSea
    assert element_classes(gym.spaces.Box(0, 255, (50, 50, 3), np.uint8)) is None  # pixels
    assert element_classes(gym.spaces.Box(-1.0, 1.0, (3,))) is None
    # a perfectly fitted categorical model decodes values back with their offsets
    space = gym.spaces.MultiDiscrete([3, 4], start=[1, -2])
    torch.manual_seed(0)
    model = BinaryAutoencoder(space, code_bits=8, hidden_size=32)
    obs = torch.tensor([[1, -2], [3, 1], [2, 0]])
    model.fit(obs, steps=300, batch_size=3, learning_rate=1e-2)
    assert torch.equal(model.reconstruct(obs), obs)
    pixels = BinaryAutoencoder(gym.spaces.Box(0, 255, (36, 36, 3), np.uint8), code_bits=8)
    assert pixels.reconstruction == "mse"
    image = torch.randint(0, 255, (2, 36, 36, 3), dtype=torch.uint8)
    loss, _ = pixels.loss(image)
    assert loss.shape == () and pixels.reconstruct(image).shape == (2, 36, 36, 3)


def test_render_reconstructions_writes_a_png(tmp_path) -> None:
    model = BinaryAutoencoder(MINIGRID, code_bits=8, hidden_size=16)
    path = render_reconstructions(model, prototype_views(5), tmp_path / "recon.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="MiniGrid"):
        render_reconstructions(BinaryAutoencoder(gym.spaces.Discrete(4)), torch.zeros(2), "x")


# --- the bonus -----------------------------------------------------------------------------------


def test_never_seen_view_gets_more_bonus_than_a_frequent_one() -> None:
    torch.manual_seed(0)
    bonus = make_bonus_setup(num_envs=2, code_bits=32, beta=0.5)
    views = prototype_views(2, prototypes=2, seed=1)
    frequent, fresh = views[0], views[1]
    assert bonus.model is not None
    assert not torch.equal(bonus.keys(frequent[None]), bonus.keys(fresh[None]))
    steps = frequent.expand(9, 2, 7, 7, 3)  # 18 visits
    observe_rollout(bonus, steps)
    r = bonus.compute(batch_of(torch.stack([frequent, fresh])[None]))
    assert r.shape == (1, 2) and r.dtype == torch.float32
    assert r[0, 0].item() == pytest.approx(0.5 / 18**0.5)
    assert r[0, 1].item() == pytest.approx(0.5)  # never observed: n = 1


def test_sketch_counts_never_undercount() -> None:
    # 8-bit keys in a 3 x 5 sketch: 256 keys in 15 joint buckets, so collisions happen
    torch.manual_seed(0)
    bonus = make_bonus_setup(num_envs=8, code_bits=8, moduli=(3, 5))
    views = prototype_views(8 * 30, prototypes=64, seed=2).reshape(30, 8, 7, 7, 3)
    observe_rollout(bonus, views)
    keys = bonus.keys(views.reshape(-1, 7, 7, 3))
    truth = Counter(tuple(k) for k in keys.int().tolist())
    exact = torch.tensor([truth[tuple(k)] for k in keys.int().tolist()])
    assert bonus.sketch is not None
    estimate = bonus.sketch.count(keys)
    assert bool((estimate >= exact).all())
    assert bool((estimate > exact).any())  # collisions did happen
    # with the default moduli there are no collisions among so few keys: exact counts
    torch.manual_seed(0)
    exact_bonus = make_bonus_setup(num_envs=8, code_bits=8)
    observe_rollout(exact_bonus, views)
    assert exact_bonus.sketch is not None
    assert torch.equal(exact_bonus.sketch.count(keys), exact)


def test_warmup_trains_then_counts_its_views_with_the_trained_model() -> None:
    torch.manual_seed(0)
    bonus = make_bonus_setup(num_envs=4, warmup_steps=5, warmup_train_steps=50)
    assert bonus.model is not None and bonus.sketch is not None
    views = prototype_views(20, prototypes=20, seed=4).reshape(5, 4, 7, 7, 3)
    initial = {k: v.clone() for k, v in bonus.model.state_dict().items()}
    observe_rollout(bonus, views[:4])
    assert int(bonus.sketch.table.sum()) == 0  # nothing counted during the warm-up
    assert all(torch.equal(v, bonus.model.state_dict()[k]) for k, v in initial.items())
    observe_rollout(bonus, views[4:])
    assert not all(torch.equal(v, bonus.model.state_dict()[k]) for k, v in initial.items())
    rows = len(bonus.moduli)
    assert int(bonus.sketch.table.sum()) == 20 * rows  # each warm-up view counted once
    assert bonus.probe.shape == (20, 7, 7, 3)


def test_update_trains_on_schedule_logs_drift_and_freezes() -> None:
    torch.manual_seed(0)
    bonus = make_bonus_setup(num_envs=4, train_every=2, train_steps=3, train_until=2)
    assert bonus.model is not None
    views = prototype_views(32, seed=5).reshape(8, 4, 7, 7, 3)
    observe_rollout(bonus, views)

    def params() -> list[torch.Tensor]:
        assert bonus.model is not None
        return [p.detach().clone() for p in bonus.model.parameters()]

    trained = []
    for _ in range(6):
        before = params()
        metrics = bonus.update(batch_of(views))
        trained.append(any(not torch.equal(a, b) for a, b in zip(before, params(), strict=True)))
    assert trained == [False, True, False, True, False, False]  # every 2nd, 2 trainings
    assert 0.0 <= metrics["bonus/code_drift"] <= 1.0
    assert 0.0 <= metrics["bonus/code_saturation"] <= 1.0
    assert metrics["losses/aehash_reconstruction"] > 0


def test_eval_mode_neither_counts_nor_stores() -> None:
    bonus = make_bonus_setup()
    bonus.eval()
    observe_rollout(bonus, prototype_views(8).reshape(2, 4, 7, 7, 3))
    assert bonus.sketch is not None and int(bonus.sketch.table.sum()) == 0
    assert bonus._stored == 0


def test_setup_rejects_unsupported_spaces() -> None:
    space = gym.spaces.Dict({"image": MINIGRID})
    with pytest.raises(ValueError, match="aehash cannot take observations from Dict"):
        AEHash().setup(space, ACTIONS, 1)


def test_registered_and_built_by_name() -> None:
    bonus = make_bonus("aehash", code_bits=32)
    assert isinstance(bonus, AEHash) and isinstance(bonus, Bonus) and bonus.code_bits == 32
    with pytest.raises(ValueError, match="unknown argument bits"):
        make_bonus("aehash", bits=3)


def _save_load(bonus: AEHash, **kwargs) -> AEHash:
    buffer = io.BytesIO()
    torch.save(bonus.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)  # a fresh bonus starts from other weights, generator and projection
    restored = make_bonus_setup(**kwargs)
    restored.load_state_dict(torch.load(buffer))
    return restored


@pytest.mark.parametrize("compress_bits", [None, 8])
def test_state_dict_round_trip_with_model_optimiser_and_generator(compress_bits) -> None:
    kwargs = {
        "num_envs": 4,
        "warmup_steps": 2,
        "warmup_train_steps": 5,
        "compress_bits": compress_bits,
    }
    torch.manual_seed(0)
    bonus = make_bonus_setup(**kwargs)
    views = prototype_views(48, seed=6).reshape(12, 4, 7, 7, 3)
    observe_rollout(bonus, views[:6])
    bonus.update(batch_of(views[:6]))  # Adam has moments now
    snapshot = {k: v.clone() for k, v in bonus.state_dict().items() if torch.is_tensor(v)}
    restored = _save_load(bonus, **kwargs)
    # state_dict did not change the bonus
    assert all(torch.equal(v, bonus.state_dict()[k]) for k, v in snapshot.items())
    for b in (bonus, restored):
        observe_rollout(b, views[6:])
    probe = batch_of(torch.cat([views, prototype_views(8, seed=9).reshape(2, 4, 7, 7, 3)]))
    assert torch.equal(bonus.compute(probe), restored.compute(probe))
    assert bonus.update(batch_of(views)) == restored.update(batch_of(views))  # same steps
    assert torch.equal(bonus.compute(probe), restored.compute(probe))
    for a, b in zip(bonus.model.parameters(), restored.model.parameters(), strict=True):  # type: ignore[union-attr]
        assert torch.equal(a, b)


def test_reconstruction_loss_is_the_mean_cross_entropy_per_element_by_hand() -> None:
    """The grouped loss (classes on dim 1) equals, element by element, the cross-entropy of
    each element's own slice of logits, averaged over elements and batch."""
    torch.manual_seed(0)
    model = BinaryAutoencoder(MINIGRID, code_bits=8, hidden_size=16)
    views = prototype_views(5, prototypes=5, seed=3)
    out = torch.randn(5, sum(model.classes))
    target = model.targets(views)
    starts = np.concatenate([[0], np.cumsum(model.classes)[:-1]])
    by_hand = torch.stack(
        [
            torch.nn.functional.cross_entropy(
                out[b : b + 1, s : s + n], target[b, e : e + 1], reduction="sum"
            )
            for b in range(5)
            for e, (s, n) in enumerate(zip(starts, model.classes, strict=True))
        ]
    ).mean()
    torch.testing.assert_close(model.reconstruction_loss(out, target), by_hand)


def test_sketch_occupied_buckets_follow_adds_duplicates_and_loads() -> None:
    """``occupied`` (kept up to date by ``add``) equals the non-empty buckets of the table,
    with keys repeated within one add and across adds, and after ``load_state_dict``."""
    from explora.bonuses.sketch import CountMinSketch

    gen = torch.Generator().manual_seed(0)
    sketch = CountMinSketch(6, moduli=(7, 11, 13))
    assert sketch.occupied().tolist() == [0, 0, 0]
    for _ in range(5):
        codes = torch.randint(0, 2, (9, 6), generator=gen)
        sketch.add(torch.cat([codes, codes[:3]]))  # duplicates within the add
        assert torch.equal(sketch.occupied(), (sketch.table != 0).sum(dim=1))
    loaded = CountMinSketch(6, moduli=(7, 11, 13))
    loaded.occupied()  # a count taken before the load must not survive it
    loaded.load_state_dict(sketch.state_dict())
    assert torch.equal(loaded.occupied(), sketch.occupied())
    loaded.add(torch.ones(1, 6))
    assert torch.equal(loaded.occupied(), (loaded.table != 0).sum(dim=1))
