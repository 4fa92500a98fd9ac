"""The PixelCNN density model and the pseudo-count bonus: formula, masks, batched rho'."""

from __future__ import annotations

import copy
import itertools
import math
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
import torch
from bonus_batches import batch_of

from explora.bonuses import BONUSES, PseudoCount, make_bonus
from explora.bonuses.pseudocount import pseudo_count, reward_from_gain
from explora.models.pixelcnn import GatedPixelCNN, autoregressive_mask, downsample_frames

ACTIONS = gym.spaces.Discrete(7)
MINIGRID = gym.spaces.Box(0, 255, (7, 7, 3), dtype=np.uint8)


def minigrid_views(count: int, seed: int = 0) -> torch.Tensor:
    """``[count, 7, 7, 3]`` uint8 views with MiniGrid's code ranges (objects, colours, states)."""
    gen = torch.Generator().manual_seed(seed)
    parts = [torch.randint(0, k, (count, 7, 7, 1), generator=gen) for k in (11, 6, 3)]
    return torch.cat(parts, dim=-1).to(torch.uint8)


def bonus_for(space: gym.Space = MINIGRID, seed: int = 0, **kwargs) -> PseudoCount:
    torch.manual_seed(seed)
    bonus = PseudoCount(**kwargs)
    bonus.setup(space, ACTIONS, num_envs=4)
    return bonus


# --- the pseudo-count formula ------------------------------------------------------------------


class EmpiricalCounts:
    """A density "model" whose probabilities are known: rho(x) = n(x) / n over what it saw, and
    rho'(x) = (n(x) + 1) / (n + 1), its density after seeing x once more."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()

    def observe(self, x: int) -> None:
        self.counts[x] += 1

    def log_rho(self, x: int) -> float:
        n = sum(self.counts.values())
        return math.log(self.counts[x] / n) if self.counts[x] else -math.inf

    def log_rho_prime(self, x: int) -> float:
        n = sum(self.counts.values())
        return math.log((self.counts[x] + 1) / (n + 1))


def test_pseudo_count_of_the_empirical_count_model_is_the_true_count() -> None:
    model = EmpiricalCounts()
    rng = np.random.default_rng(0)
    for x in rng.choice(6, size=200, p=[0.5, 0.25, 0.15, 0.07, 0.03, 0.0]):
        model.observe(int(x))
    states = range(6)
    log_rho = torch.tensor([model.log_rho(x) for x in states], dtype=torch.float64)
    log_rho_prime = torch.tensor([model.log_rho_prime(x) for x in states], dtype=torch.float64)
    n_hat = pseudo_count(log_rho, log_rho_prime)
    truth = torch.tensor([model.counts[x] for x in states], dtype=torch.float64)
    assert truth[5] == 0 and truth[0] > 50  # a never-seen state and a frequent one
    torch.testing.assert_close(n_hat, truth, rtol=1e-9, atol=1e-9)


def test_log_space_pseudo_count_equals_the_direct_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    rho = torch.rand(1000, generator=gen, dtype=torch.float64) * 0.9 + 1e-6
    rho_prime = rho + (1 - rho) * torch.rand(1000, generator=gen, dtype=torch.float64)
    direct = rho * (1 - rho_prime) / (rho_prime - rho)
    torch.testing.assert_close(pseudo_count(rho.log(), rho_prime.log()), direct, rtol=1e-8, atol=0)
    # A 147-value view has rho far below the smallest double: the direct form divides 0 by 0,
    # the log-space form stays exact (here ~ 1 / (e^PG - 1), as 1 - rho' is 1).
    log_rho = torch.tensor([-800.0, -800.0], dtype=torch.float64)
    gain = torch.tensor([1e-3, 2.0], dtype=torch.float64)
    assert float(log_rho.exp().max()) == 0.0
    torch.testing.assert_close(pseudo_count(log_rho, log_rho + gain), 1 / torch.expm1(gain))


def test_gain_at_or_below_zero_means_infinite_count_and_no_bonus() -> None:
    # PG <= 0: training on x did not make x likelier. N_hat = 1 / (e^PG - 1) would be negative
    # or infinite; it is +inf (the limit at PG -> 0+), so the bonus goes to 0 continuously and
    # float noise on a well-known view never becomes the largest bonus (clipping N_hat at 0
    # would pay beta / sqrt(0 + 0.01) there).
    log_rho = torch.full((4,), -50.0, dtype=torch.float64)
    gain = torch.tensor([-1.0, -1e-9, 0.0, 1e-9], dtype=torch.float64)
    n_hat = pseudo_count(log_rho, log_rho + gain)
    assert torch.isinf(n_hat[:3]).all() and n_hat[:3].gt(0).all()
    assert 1e8 < float(n_hat[3]) < math.inf
    reward = reward_from_gain(gain, trained=1, gain_decay=1.0, scale=1.0)
    assert reward[:3].tolist() == [0.0, 0.0, 0.0]
    assert 0 < float(reward[3]) < 1e-4


def test_reward_is_scale_over_sqrt_count_of_the_decayed_gain_by_hand() -> None:
    gain = torch.tensor([0.5, 2.0, 40.0], dtype=torch.float64)
    reward = reward_from_gain(gain, trained=400, gain_decay=0.1, scale=3.0)
    decayed = 0.1 * gain / math.sqrt(400)  # c * n^(-1/2) * PG
    expected = 3.0 * torch.sqrt(torch.expm1(decayed))
    torch.testing.assert_close(reward, expected)
    log_rho = torch.full((3,), -100.0, dtype=torch.float64)  # rho' ~ e^-100: 1 - rho' is 1
    torch.testing.assert_close(reward, 3.0 / pseudo_count(log_rho, log_rho + decayed).sqrt())
    # n = 0 (nothing trained yet) counts as 1; the decayed gain is capped so expm1 stays finite
    assert float(reward_from_gain(torch.tensor([1.0]), 0, 0.1, 1.0)[0]) == pytest.approx(
        math.sqrt(math.expm1(0.1))
    )
    assert math.isfinite(float(reward_from_gain(torch.tensor([1e6]), 1, 1.0, 1.0)[0]))


# --- the model --------------------------------------------------------------------------------


def random_model(height: int, width: int, categories: tuple[int, ...], **kwargs) -> GatedPixelCNN:
    torch.manual_seed(0)
    model = GatedPixelCNN(height, width, categories, **kwargs)
    with torch.no_grad():  # large random weights (masked entries stay masked in forward)
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    return model


def test_masks_by_hand() -> None:
    mask_a = autoregressive_mask(3, in_groups=[0, 1], out_groups=[0, 1], mask_type="A")
    mask_b = autoregressive_mask(3, in_groups=[0, 1], out_groups=[0, 1], mask_type="B")
    above_left = torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]])
    for out in range(2):
        for inp in range(2):
            expected = above_left.clone()
            expected[1, 1] = float(inp < out)
            torch.testing.assert_close(mask_a[out, inp], expected)
            expected[1, 1] = float(inp <= out)
            torch.testing.assert_close(mask_b[out, inp], expected)


def test_the_model_is_autoregressive_over_cells_and_channels() -> None:
    """The conditional of value (i, c) -- its logits -- has zero gradient with respect to every
    input value at or after (i, c) in the order (cells in raster order, channels within a cell),
    so the log-prob of cell i does not depend on cells >= i except through its own value."""
    height, width, categories = 3, 4, (3, 2, 4)
    model = random_model(height, width, categories, hidden_size=9, head_size=6)
    x = torch.stack([torch.randint(0, k, (1, height, width)) for k in categories], dim=-1)
    onehot = model.one_hot(x).requires_grad_(True)
    channel_of_input = torch.tensor([c for c, k in enumerate(categories) for _ in range(k)])
    order_of_input = torch.arange(height * width).view(height, width)[None] * len(
        categories
    ) + channel_of_input.view(
        -1, 1, 1
    )  # [sum K, H, W]: position of each input value in the autoregressive order
    seen_any_earlier = False
    for i in range(height * width):
        row, col = divmod(i, width)
        for c in range(len(categories)):
            logits = model.logits(onehot)[c][0, :, row, col]
            (grad,) = torch.autograd.grad(logits.sum(), onehot, retain_graph=True)
            depends = grad[0].abs() > 0
            position = i * len(categories) + c
            assert not depends[order_of_input >= position].any(), (i, c)
            seen_any_earlier |= bool(depends[order_of_input < position].any())
    assert seen_any_earlier  # not vacuous: values do depend on what precedes them

    # the same by perturbation: scrambling cells >= i leaves the log-probs of cells < i alone
    cells = model(model.one_hot(x))[0]  # [H, W, C]
    for i in range(height * width):
        scrambled = x.clone().view(1, -1, len(categories))
        for c, k in enumerate(categories):
            scrambled[0, i:, c] = (scrambled[0, i:, c] + 1) % k
        other = model(model.one_hot(scrambled.view_as(x)))[0]
        torch.testing.assert_close(other.view(-1, 3)[:i], cells.view(-1, 3)[:i])


def test_the_density_sums_to_one_over_every_grid() -> None:
    model = random_model(2, 2, (2, 3), hidden_size=4, head_size=4)
    values = list(itertools.product(range(2), range(3)))
    grids = torch.tensor(
        [[v for cell in combo for v in cell] for combo in itertools.product(values, repeat=4)]
    ).view(-1, 2, 2, 2)
    assert len(grids) == 6**4
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(grids).double(), dim=0).exp()
    assert float(total) == pytest.approx(1.0, abs=1e-5)


def test_log_prob_shapes_and_fitting_lowers_the_bits() -> None:
    model = GatedPixelCNN(7, 7, (11, 6, 3))
    x = minigrid_views(32).long()
    assert model.log_prob(x).shape == (32,)
    assert model(model.one_hot(x)).shape == (32, 7, 7, 3)
    with pytest.raises(ValueError, match=r"\[B, 7, 7, 3\]"):
        model.log_prob(x[..., :2])
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    before = float(-model.log_prob(x).mean().detach())
    for _ in range(30):
        optimizer.zero_grad()
        (-model.log_prob(x).mean()).backward()
        optimizer.step()
    assert float(-model.log_prob(x).mean().detach()) < before - 30


def test_downsample_frames_by_hand() -> None:
    frames = torch.zeros(1, 84, 84, dtype=torch.uint8)
    frames[0, 0, 0] = 255  # one bright pixel of a 2x2 block: block mean 63.75 -> level 1
    frames[0, 2:4, 2:4] = 200  # a whole block at 200 -> 200 // 32 = 6
    grid = downsample_frames(frames)
    assert grid.shape == (1, 42, 42, 1) and grid.dtype == torch.int64
    assert grid[0, 0, 0, 0] == 1 and grid[0, 1, 1, 0] == 6 and grid[0, 5, 5, 0] == 0
    stacked = torch.stack([torch.zeros(84, 84), torch.full((84, 84), 255.0)]).to(torch.uint8)
    assert downsample_frames(stacked[None]).unique().tolist() == [7]  # the last frame is kept
    rgb = torch.full((1, 84, 84, 3), 96, dtype=torch.uint8)
    assert downsample_frames(rgb, channel_last=True).unique().tolist() == [3]


# --- the bonus -------------------------------------------------------------------------------


def test_registered_and_built_by_name() -> None:
    assert BONUSES["pseudocount"][0] is PseudoCount
    bonus = make_bonus("pseudocount", learning_rate=1e-3)
    assert isinstance(bonus, PseudoCount) and bonus.learning_rate == 1e-3
    assert bonus.episodic is False and bonus.warmup_steps == 0


def test_setup_accepts_discrete_grids_and_pixels_and_rejects_floats() -> None:
    cases = [
        (MINIGRID, (7, 7, 3), (11, 6, 4)),
        (gym.spaces.Box(0, 1, (10, 10), np.uint8), (10, 10, 1), (2,)),  # DeepSea
        (gym.spaces.Box(0, 255, (84, 84), np.uint8), (42, 42, 1), (8,)),
        (gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), (42, 42, 1), (8,)),
        (gym.spaces.Box(0, 255, (210, 160, 3), np.uint8), (42, 42, 1), (8,)),
        (gym.spaces.Discrete(5, start=2), (1, 1, 1), (5,)),
        (gym.spaces.MultiDiscrete([3, 4]), (1, 2, 1), (4,)),
        (gym.spaces.MultiBinary(6), (1, 6, 1), (2,)),
        (gym.spaces.Box(0, 9, (2,), np.int64), (1, 2, 1), (10,)),
    ]
    for space, grid_shape, categories in cases:
        bonus = bonus_for(space)
        assert bonus.model is not None and bonus.model.categories == categories, space
        if space is MINIGRID:  # its Box declares 0..255; MiniGrid's codes are 0..10, 0..5, 0..2
            obs = minigrid_views(6).view(2, 3, 7, 7, 3)
        else:
            samples = np.stack([space.sample() for _ in range(6)])
            obs = torch.as_tensor(samples).view(2, 3, *space.shape)
        assert tuple(bonus.grid(obs).shape) == (6, *grid_shape), space
        assert bonus.compute(batch_of(obs)).shape == (2, 3), space
    with pytest.raises(ValueError, match="simhash") as info:
        bonus_for(gym.spaces.Box(-1.0, 1.0, (4,), np.float32))
    assert "float32" in str(info.value)
    with pytest.raises(ValueError, match="Dict"):
        bonus_for(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}))
    with pytest.raises(ValueError, match="learning_rate"):
        PseudoCount(learning_rate=0.0)


def train_on(bonus: PseudoCount, views: torch.Tensor, updates: int) -> None:
    for _ in range(updates):
        bonus.update(batch_of(views.view(4, -1, 7, 7, 3)))


@pytest.mark.parametrize("gain_momentum", [False, True])
def test_batched_rho_prime_equals_one_step_at_a_time(gain_momentum: bool) -> None:
    """PG from vmap(grad) and a functional step equals, row by row, a real RMSprop step of a
    copy of the model and optimiser on that row alone (without the momentum carried over from
    training unless ``gain_momentum``)."""
    bonus = bonus_for(learning_rate=1e-2, gain_momentum=gain_momentum, chunk_size=3)
    train_on(bonus, minigrid_views(64, seed=1), updates=2)  # optimiser state is not empty
    assert bonus.model is not None and bonus.optimizer is not None
    x = bonus.grid(minigrid_views(7, seed=2).unsqueeze(0))
    log_rho, gain = bonus.prediction_gain(x)
    for k in range(len(x)):
        model = copy.deepcopy(bonus.model)
        optimizer = torch.optim.RMSprop(model.parameters())
        optimizer.load_state_dict(copy.deepcopy(bonus.optimizer.state_dict()))
        assert optimizer.param_groups[0]["momentum"] == 0.9  # the training optimiser's
        if not gain_momentum:
            optimizer.param_groups[0]["momentum"] = 0.0
        before = model.log_prob(x[k : k + 1])
        optimizer.zero_grad()
        (-before.sum() / model.dims).backward()
        optimizer.step()
        with torch.no_grad():
            after = model.log_prob(x[k : k + 1])
        assert float(log_rho[k]) == pytest.approx(float(before), abs=1e-4)
        assert float(gain[k]) == pytest.approx(float(after - before), abs=2e-4, rel=1e-4)
    assert gain.abs().min() > 1e-2  # the gains compared are far from rounding noise


def test_momentum_carried_over_from_training_favours_familiar_views() -> None:
    """Why the gain leaves out RMSprop's momentum by default: the buffer points towards the
    views just trained on, so with it a step on a familiar view raised that view's density more
    than a step on a never-seen view raised its own (measured here at the official lr 1e-4)."""
    gains = {}
    for gain_momentum in (False, True):
        bonus = bonus_for(learning_rate=1e-4, minibatch_size=16, gain_momentum=gain_momentum)
        common = minigrid_views(4, seed=4)
        train_on(bonus, common[torch.arange(64) % 4], updates=20)
        x = bonus.grid(torch.stack([common, minigrid_views(4, seed=5)]))
        gains[gain_momentum] = bonus.prediction_gain(x)[1].view(2, 4)
    assert float(gains[False][1].min()) > float(gains[False][0].max())  # novel > familiar
    assert float(gains[True][0].mean()) > float(gains[True][1].mean())  # familiar > novel


def test_prediction_gain_changes_neither_model_nor_optimiser() -> None:
    bonus = bonus_for(learning_rate=1e-2)
    train_on(bonus, minigrid_views(64, seed=1), updates=1)
    assert bonus.model is not None and bonus.optimizer is not None
    params = [p.detach().clone() for p in bonus.model.parameters()]
    state = copy.deepcopy(bonus.optimizer.state_dict())
    bonus.prediction_gain(bonus.grid(minigrid_views(5).unsqueeze(0)))
    for p, q in zip(bonus.model.parameters(), params, strict=True):
        assert torch.equal(p, q)
    for key, value in bonus.optimizer.state_dict()["state"].items():
        for name, tensor in value.items():
            assert torch.equal(tensor, state["state"][key][name])


def test_compute_shape_and_identical_views_share_their_gain() -> None:
    bonus = bonus_for(learning_rate=1e-2)
    train_on(bonus, minigrid_views(64, seed=1), updates=2)
    views = minigrid_views(3, seed=3)
    next_obs = views[torch.tensor([[0, 1, 0, 2], [2, 2, 1, 0]])]  # [T=2, N=4, 7, 7, 3]
    reward = bonus.compute(batch_of(next_obs))
    assert reward.shape == (2, 4) and reward.dtype == torch.float32
    _, gain = bonus.prediction_gain(bonus.grid(views.unsqueeze(0)))
    n = int(bonus.trained) + 8  # n counts the batch being scored
    expected = reward_from_gain(gain, n, 0.1, 1.0).float()
    torch.testing.assert_close(reward, expected[torch.tensor([[0, 1, 0, 2], [2, 2, 1, 0]])])


def test_never_seen_view_gets_more_bonus_than_a_frequent_one() -> None:
    bonus = bonus_for(learning_rate=1e-3, minibatch_size=16)
    common = minigrid_views(4, seed=4)
    rollout = common[torch.arange(64) % 4]  # four views, each seen 16 times per rollout
    train_on(bonus, rollout, updates=20)
    novel = minigrid_views(4, seed=5)
    reward = bonus.compute(batch_of(torch.stack([common, novel])))  # [2, 4]
    assert float(reward[1].min()) > 3 * float(reward[0].max()), reward


def test_update_trains_on_duplicates_as_on_every_copy() -> None:
    """Scoring a distinct view once with its multiplicity as weight gives the same step as
    scoring every copy: one full-batch step from the same start lands on the same parameters."""
    views = minigrid_views(5, seed=6)[torch.tensor([0, 0, 0, 1, 2, 2, 3, 4])]
    bonus = bonus_for(learning_rate=1e-2, minibatch_size=8)
    assert bonus.model is not None
    reference = copy.deepcopy(bonus.model)
    optimizer = torch.optim.RMSprop(
        reference.parameters(), lr=1e-2, alpha=0.9, eps=1e-4, momentum=0.9
    )  # the official optimiser's settings
    metrics = bonus.update(batch_of(views.view(2, 4, 7, 7, 3)))
    log_rho = reference.log_prob(views.long())
    (-log_rho.mean() / reference.dims).backward()
    optimizer.step()
    for p, q in zip(bonus.model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert metrics["losses/pseudocount_bits"] == pytest.approx(
        float(-log_rho.mean()) / math.log(2), rel=1e-5
    )
    assert int(bonus.trained) == 8  # n counts the observations trained on


def test_bonus_decays_with_training_on_the_same_views() -> None:
    bonus = bonus_for(learning_rate=1e-3)
    views = minigrid_views(64, seed=7)
    batch = batch_of(views.view(4, 16, 7, 7, 3))
    first = bonus.compute(batch).mean()
    bits = [bonus.update(batch)["losses/pseudocount_bits"] for _ in range(10)]
    assert bits[-1] < bits[0]
    assert float(bonus.compute(batch).mean()) < float(first)


def test_state_dict_round_trip() -> None:
    source = bonus_for(learning_rate=1e-3, minibatch_size=16)
    train_on(source, minigrid_views(64, seed=8), updates=2)
    batch = batch_of(minigrid_views(64, seed=9).view(4, 16, 7, 7, 3))
    source.compute(batch)  # a rollout scored, not yet trained on: its mean gain is pending
    state = source.state_dict()
    again = source.state_dict()  # taking it changes nothing
    assert all(torch.equal(state[k], again[k]) for k in state if isinstance(state[k], torch.Tensor))
    target = bonus_for(learning_rate=1e-3, minibatch_size=16, seed=123)
    target.load_state_dict(state)
    # the resumed update reports the gain scored before the checkpoint, as the source does
    assert target.update(batch) == source.update(batch)
    torch.testing.assert_close(target.compute(batch), source.compute(batch), rtol=0, atol=0)
    for _ in range(2):  # same minibatch order (generator) and optimiser state
        assert target.update(batch) == source.update(batch)
    torch.testing.assert_close(target.compute(batch), source.compute(batch), rtol=0, atol=0)
    assert int(target.trained) == int(source.trained) == 2 * 64 + 3 * 64
    # the optimiser state was copied, not shared
    assert source.optimizer is not None and target.optimizer is not None
    a = next(iter(source.optimizer.state.values()))["square_avg"]
    b = next(iter(target.optimizer.state.values()))["square_avg"]
    assert a.data_ptr() != b.data_ptr()
