"""The tier variables H[c] of an inner model (tensor class c lives in DRAM) fixed to one subset of
classes, or restricted to a list of subsets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .inner import Inner


@contextmanager
def tiers_fixed(inner: Inner, subset: tuple[str, ...]) -> Iterator[None]:
    """Inside, H[c] is fixed to 1 for the classes in `subset` and to 0 for the others."""
    vs = inner.model.vars
    saved = {i: (vs[i].lb, vs[i].ub) for i in inner.H.values()}
    for c, i in inner.H.items():
        vs[i].lb = vs[i].ub = float(c in subset)
    try:
        yield
    finally:
        for i, (lo, hi) in saved.items():
            vs[i].lb, vs[i].ub = lo, hi


def restrict_tiers(inner: Inner, subsets: list[tuple[str, ...]]) -> None:
    """Only `subsets` (each the classes in DRAM) stay allowed: a class in all of them, or in none,
    is fixed; every other combination of the free classes is cut by a no-good row
    Σ_{c in combo} H[c] − Σ_{c free, not in combo} H[c] ≤ |combo| − 1."""
    H, lm = inner.H, inner.model
    if not H or not subsets:
        return
    chosen = {frozenset(s) for s in subsets}
    always = frozenset.intersection(*chosen)
    anywhere = frozenset.union(*chosen)
    for c, i in H.items():
        if c in always:
            lm.vars[i].lb = 1.0
        elif c not in anywhere:
            lm.vars[i].ub = 0.0
    free = [c for c in H if c in anywhere and c not in always]
    for mask in range(1 << len(free)):
        combo = {c for k, c in enumerate(free) if mask >> k & 1}
        if frozenset(combo) | always in chosen:
            continue
        lm.add({H[c]: 1.0 if c in combo else -1.0 for c in free}, "<=", len(combo) - 1.0, scale=1.0,
               name="tier subset cut")
