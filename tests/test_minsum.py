"""Min-sum variable elimination equals brute force over every joint assignment."""

import itertools

import numpy as np
import pytest

from optimizer.search.minsum import argmin_sum, min_sum


def brute(unary, pairs):
    batch = max(u.shape[0] for u in unary)
    best = np.full(batch, np.inf)
    for x in itertools.product(*(range(u.shape[1]) for u in unary)):
        total = sum(np.broadcast_to(u[:, x[i]], (batch,)) for i, u in enumerate(unary))
        total = total + sum(np.broadcast_to(p[:, x[i], x[j]], (batch,)) for (i, j), p in pairs.items())
        best = np.minimum(best, total)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_min_sum_matches_brute_force_on_cyclic_graphs(seed):
    rng = np.random.default_rng(seed)
    n = 6
    sizes = rng.integers(1, 4, n)
    batch = 3
    unary = [rng.normal(size=(batch, k)) for k in sizes]
    unary[0][:, 0] = np.inf  # a forbidden value
    edges = {(i, i + 1) for i in range(n - 1)} | {(n - 1, 0), (0, 2), (1, 4)}  # a ring with chords
    pairs = {(i, j): rng.normal(size=(1 if (i + j) % 2 else batch, sizes[i], sizes[j])) for i, j in edges}
    np.testing.assert_allclose(min_sum(unary, pairs), brute(unary, pairs), rtol=1e-12)


def test_min_sum_handles_isolated_variables_and_infeasibility():
    unary = [np.array([[1.0, 2.0]]), np.array([[5.0, 3.0]]), np.array([[0.5]])]
    pairs = {(0, 1): np.array([[[np.inf, 1.0], [0.0, np.inf]]])}
    # (0, 1): 1 + 3 + 1 = 5, or (1, 0): 2 + 5 + 0 = 7; plus the isolated 0.5
    assert min_sum(unary, pairs)[0] == pytest.approx(5.5)
    blocked = {(0, 1): np.full((1, 2, 2), np.inf)}
    assert min_sum(unary, blocked)[0] == np.inf


@pytest.mark.parametrize("seed", range(4))
def test_argmin_sum_returns_an_assignment_of_the_minimum(seed):
    rng = np.random.default_rng(10 + seed)
    n = 6
    sizes = rng.integers(1, 4, n)
    unary = [rng.normal(size=(1, k)) for k in sizes]
    edges = {(i, i + 1) for i in range(n - 1)} | {(n - 1, 0), (1, 3)}
    pairs = {(i, j): rng.normal(size=(1, sizes[i], sizes[j])) for i, j in edges}
    value, x = argmin_sum(unary, pairs)
    assert value == pytest.approx(brute(unary, pairs)[0], rel=1e-12)
    at_x = sum(u[0, x[i]] for i, u in enumerate(unary)) + sum(p[0, x[i], x[j]] for (i, j), p in pairs.items())
    assert at_x == pytest.approx(value, rel=1e-12)
