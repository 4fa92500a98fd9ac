"""Per-episode visit counts against a plain per-env dictionary, and the byte keys."""

import numpy as np
import torch

from explora.bonuses.visits import EpisodicCounts, byte_keys


def test_episodic_counts_match_a_dictionary_per_env_across_resets_and_growth():
    rng = np.random.default_rng(0)
    num_envs = 5
    counts = EpisodicCounts(num_envs, capacity=2)  # grows many times
    reference: list[dict[int, int]] = [{} for _ in range(num_envs)]
    for _ in range(400):
        keys = rng.integers(0, 30, size=num_envs).astype(np.uint64)
        got = counts.add(keys)
        for i, key in enumerate(keys.tolist()):
            reference[i][key] = reference[i].get(key, 0) + 1
            assert got[i] == reference[i][key]
        ended = rng.random(num_envs) < 0.05
        counts.reset(ended)
        for i in np.flatnonzero(ended):
            reference[i] = {}  # only that env's episode is forgotten
    probe = rng.integers(0, 30, size=num_envs).astype(np.uint64)
    want = [reference[i].get(k, 0) for i, k in enumerate(probe.tolist())]
    assert counts.peek(probe).tolist() == want


def test_episodic_counts_state_dict_round_trip():
    a = EpisodicCounts(3, capacity=2)
    for keys in ([1, 2, 3], [1, 5, 3], [4, 5, 6]):
        a.add(np.array(keys, dtype=np.uint64))
    b = EpisodicCounts(3)
    b.load_state_dict(a.state_dict())
    step = np.array([1, 5, 9], dtype=np.uint64)
    assert a.add(step).tolist() == b.add(step).tolist() == [3, 3, 1]


def test_byte_keys_tell_apart_float_views_that_integer_casts_merge():
    views = torch.tensor([[0.3, 1.0], [0.7, 1.0], [0.3, 1.0], [-0.0, 1.0], [0.0, 1.0]])
    keys = byte_keys(views)
    assert keys[0] == keys[2] and len(set(keys.tolist())) == 4
    grid = np.zeros((2, 7, 7, 3), dtype=np.uint8)
    grid[1, 3, 3, 0] = 1
    assert byte_keys(grid)[0] != byte_keys(grid)[1]
