"""Exact minimum of a sum of unary and pairwise cost tables over discrete variables (min-sum
variable elimination, batched over a leading axis of independent cost sets).

Used by the solver's bounds: one transformer block's ops are the variables, their (option,
recompute) choices the values, resharding between neighbouring ops the pairwise tables, and each
batch entry one Lagrange multiplier on memory. A block's op graph is small and nearly a chain, so
greedy min-degree elimination keeps every intermediate table at a few ops.
"""

from __future__ import annotations

import numpy as np

MAX_TABLE = 1 << 23  # entries of the largest intermediate table per batch chunk (64 MiB of float64)


def min_sum(unary: list[np.ndarray], pairs: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """min over x of Σ_i unary[i][:, x_i] + Σ_(i,j) pairs[(i, j)][:, x_i, x_j], per batch entry.

    unary[i]: (batch, values of i); pairs[(i, j)]: (batch, values of i, values of j), batch 1 to
    share one table across the batch; inf marks a forbidden value or pair. Returns (batch,)."""
    batch = max(u.shape[0] for u in unary)
    sizes = [u.shape[1] for u in unary]
    order, widest = _elimination_order(len(unary), pairs.keys())
    chunk = max(1, MAX_TABLE // max(int(np.prod([sizes[v] for v in widest])), 1))
    return np.concatenate([_eliminate([u[lo:lo + chunk] if u.shape[0] > 1 else u for u in unary],
                                      {k: (p[lo:lo + chunk] if p.shape[0] > 1 else p) for k, p in pairs.items()},
                                      order)
                           for lo in range(0, batch, chunk)])


def argmin_sum(unary: list[np.ndarray], pairs: dict[tuple[int, int], np.ndarray]) -> tuple[float, list[int]]:
    """min_sum of one cost set (batch axis of size 1 everywhere) and a minimizing assignment,
    recovered by substituting back through the elimination in reverse order."""
    order, _ = _elimination_order(len(unary), pairs.keys())
    factors: list[tuple[tuple[int, ...], np.ndarray]] = [((i,), u) for i, u in enumerate(unary)]
    factors += [((i, j), p) for (i, j), p in pairs.items()]
    total = 0.0
    steps: list[tuple[int, tuple[int, ...], np.ndarray]] = []  # (variable, the rest of its scope, argmin over it)
    for v in order:
        acc, scope, factors = _combine(v, factors)
        axis = 1 + scope.index(v)
        rest = tuple(x for x in scope if x != v)
        steps.append((v, rest, acc.argmin(axis=axis)[0]))
        reduced = acc.min(axis=axis)
        if rest:
            factors.append((rest, reduced))
        else:
            total = total + float(reduced[0])
    x: dict[int, int] = {}
    for v, rest, arg in reversed(steps):
        x[v] = int(arg[tuple(x[r] for r in rest)])
    return float(total), [x[i] for i in range(len(unary))]


def _combine(v: int, factors: list) -> tuple[np.ndarray, tuple[int, ...], list]:
    """The sum of the factors touching v over their joint scope, that scope, the other factors."""
    touching = [f for f in factors if v in f[0]]
    scope = tuple(sorted({x for vs, _t in touching for x in vs}))
    acc = None
    for vs, t in touching:
        t = _expand(vs, t, scope)
        acc = t if acc is None else acc + t
    return acc, scope, [f for f in factors if v not in f[0]]


def _elimination_order(n: int, edges) -> tuple[list[int], tuple[int, ...]]:
    """Greedy min-degree order of n variables joined by `edges`, and the largest clique it forms."""
    nb: dict[int, set[int]] = {v: set() for v in range(n)}
    for i, j in edges:
        if i != j:
            nb[i].add(j)
            nb[j].add(i)
    order: list[int] = []
    widest: tuple[int, ...] = ()
    left = set(range(n))
    while left:
        v = min(left, key=lambda x: (len(nb[x]), x))
        clique = (v, *sorted(nb[v]))
        if len(clique) > len(widest):
            widest = clique
        for a in nb[v]:
            nb[a] |= nb[v] - {a}
            nb[a].discard(v)
        left.remove(v)
        order.append(v)
        del nb[v]
    return order, widest


def _eliminate(unary: list[np.ndarray], pairs: dict, order: list[int]) -> np.ndarray:
    """Variable elimination: factors are (variables, table with a leading batch axis)."""
    factors: list[tuple[tuple[int, ...], np.ndarray]] = [((i,), u) for i, u in enumerate(unary)]
    factors += [((i, j), p) for (i, j), p in pairs.items()]
    total = 0.0
    for v in order:
        acc, scope, factors = _combine(v, factors)
        reduced = acc.min(axis=1 + scope.index(v))
        rest = tuple(x for x in scope if x != v)
        if rest:
            factors.append((rest, reduced))
        else:
            total = total + reduced
    return np.asarray(total, dtype=float).reshape(-1)


def _expand(vs: tuple[int, ...], table: np.ndarray, scope: tuple[int, ...]) -> np.ndarray:
    """A factor's table with its axes in `scope` order and size-1 axes for the variables it lacks."""
    perm = sorted(range(len(vs)), key=lambda k: vs[k])
    t = np.transpose(table, (0, *(1 + k for k in perm)))
    present = sorted(vs)
    shape = [t.shape[0]] + [t.shape[1 + present.index(x)] if x in present else 1 for x in scope]
    return t.reshape(shape)
