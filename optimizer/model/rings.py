"""The dies the collectives of one outer point run on: the rings of a tensor group (its rows, its
columns, the whole group), the data-parallel rings across replicas, the pairs of dies across each
stage boundary, and a collective on several rings at once.
"""

from __future__ import annotations

from hw.schema import Hardware
from hw.topology import CommCost, collective, fold, rectangle, ring_order

from .mapping import StageGroup


def group_rings(hw: Hardware, origin: tuple[int, int], shape: tuple[int, int]) -> dict:
    """The rings of the tensor group at `origin`: "group" (all its dies), 1 (its rows), 0 (its columns)."""
    r, c = shape
    dies = rectangle(origin, shape)
    torus = hw.topology.kind == "torus2d"
    row_wraps, col_wraps = torus and c == hw.cols, torus and r == hw.rows
    rows = tuple(tuple(dies[i * c:(i + 1) * c]) for i in range(r))
    cols = tuple(tuple(dies[i * c + j] for i in range(r)) for j in range(c))
    rows = rows if row_wraps else tuple(fold(x) for x in rows)
    cols = cols if col_wraps else tuple(fold(x) for x in cols)
    wraps = (r == 1 and row_wraps) or (c == 1 and col_wraps)
    return {"group": (ring_order(origin, shape, wraps),), 1: rows, 0: cols}


def dp_rings(groups: tuple[StageGroup, ...], pp: int, dp: int, shape: tuple[int, int]) -> tuple:
    """Per stage and position in the tensor group: the ring of that die in every replica."""
    by = {(g.stage, g.replica): g for g in groups}
    offsets = rectangle((0, 0), shape)
    rings = []
    for s in range(pp):
        reps = [by[(s, d)] for d in range(dp)]
        for off in offsets:
            rings.append(tuple((g.origin[0] + off[0], g.origin[1] + off[1]) for g in reps))
    return tuple(rings)


def p2p_pairs(groups: tuple[StageGroup, ...], pp: int, dp: int, shape: tuple[int, int]) -> tuple:
    """Per stage boundary, replica and position in the tensor group: (sending die, receiving die)."""
    by = {(g.stage, g.replica): g for g in groups}
    offsets = rectangle((0, 0), shape)
    pairs = []
    for s in range(pp - 1):
        for d in range(dp):
            (ar, ac), (br, bc) = by[(s, d)].origin, by[(s + 1, d)].origin
            pairs.extend(((ar + i, ac + j), (br + i, bc + j)) for i, j in offsets)
    return tuple(pairs)


def on_rings(hw: Hardware, rings: tuple, kind: str, nbytes: float) -> CommCost:
    """One collective on every ring at once."""
    if hw.topology.kind == "switched":  # rings do not contend: time of one, traffic of all
        one = collective(kind, rings[:1], nbytes, hw)
        return CommCost(one.time_s, one.byte_hops * len(rings))
    return collective(kind, rings, nbytes, hw)
