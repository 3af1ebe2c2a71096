"""Placement of the stage groups on the grid as a CP-SAT model.

An outer point (pp stages × dp replicas of an r×c tensor group) occupies pp·dp aligned r×c tiles
of the grid that contain no defective die. Variables, keyed by meaningful tuples:
  A[(stage, replica), tile]   the group sits on the tile (each group on one tile, each tile at most once)
  ROW[group], COL[group]      the origin of its tile (die coordinates)
  P2P[stage, replica]         die hops from a stage to the next one of the same replica
  DP[stage, replica]          die hops between neighbouring replicas of a stage (their gradient ring)
Objective, lexicographic through weights: the longest pipeline transfer first (it sits on the
critical path of every micro-batch), then the longest data-parallel ring edge, then all hops.

The transfer and ring costs themselves stay in the cost tables, computed from the placement.
"""

from __future__ import annotations

from hw.schema import Hardware
from hw.topology import grid_cycle, usable_tiles

from ..model.mapping import StageGroup
from ..model.tables import default_groups
from .backends import cpsat_solver, run_stoppable

Tile = tuple[int, int]
Placement = dict[tuple[int, int], Tile]  # (stage, replica) -> tile origin
MAX_DETERMINISTIC_TIME = 2.0  # CP-SAT work units: bounded and repeatable (one worker)
CACHE_SIZE = 256  # placements solved, kept per (machine, pp, dp, shape): outer points share them
_SOLVED: dict = {}


def _dist(a: Tile, b: Tile, hw: Hardware) -> int:
    """Die hops between corresponding dies of two tiles (wrapping on a torus)."""
    dr, dc = abs(a[0] - b[0]), abs(a[1] - b[1])
    if hw.topology.kind == "torus2d":
        dr, dc = min(dr, hw.rows - dr), min(dc, hw.cols - dc)
    return dr + dc


def hop_profile(place: Placement, pp: int, dp: int, hw: Hardware) -> tuple[int, int, int]:
    """(longest pipeline transfer, longest data-parallel ring edge, total hops) of a placement."""
    p2p = [_dist(place[(s, d)], place[(s + 1, d)], hw) for s in range(pp - 1) for d in range(dp)]
    ring = [_dist(place[(s, d)], place[(s, (d + 1) % dp)], hw) for s in range(pp) for d in range(dp)] if dp > 1 else []
    return max(p2p, default=0), max(ring, default=0), sum(p2p) + sum(ring)


def least_step(tiles: list[Tile], hw: Hardware) -> int:
    """The fewest hops between two distinct tiles: no placement does better on any edge."""
    return min((_dist(a, b, hw) for a in tiles for b in tiles if a != b), default=0)


def place_groups(hw: Hardware, pp: int, dp: int, shape: tuple[int, int]) -> tuple[StageGroup, ...] | None:
    """Where the pp·dp groups of `shape` sit (None if too few usable tiles). The snake of the
    tiling (tables.default_groups) chains each replica's stages — or, without a pipeline, the
    replicas — tile to neighbouring tile; it is kept unless a defective tile breaks that chain.
    Then CP-SAT places the groups by the lexicographic hop objective, hinted with the snake, on
    one worker with a deterministic time limit, so the answer is repeatable."""
    snake = default_groups(hw, pp, dp, shape)
    if snake is None or pp * dp == 1 or hw.topology.kind == "switched":
        return snake
    tiles = usable_tiles(hw, shape)
    start = {(g.stage, g.replica): g.origin for g in snake}
    step = least_step(tiles, hw)
    if pp > 1:
        chain = [_dist(start[(s, d)], start[(s + 1, d)], hw) for s in range(pp - 1) for d in range(dp)]
    else:
        chain = [_dist(start[(0, d)], start[(0, d + 1)], hw) for d in range(dp - 1)]
    if max(chain) <= step:
        return snake
    comb = _comb(hw, pp, dp, shape, tiles)
    if comb is not None:
        return tuple(StageGroup(stage=0, replica=d, origin=comb[(0, d)]) for d in range(dp))
    key = (hw.model_dump_json(), pp, dp, tuple(shape))
    if key not in _SOLVED:
        if len(_SOLVED) >= CACHE_SIZE:
            _SOLVED.pop(next(iter(_SOLVED)))
        _SOLVED[key] = _cpsat_placement(hw, pp, dp, tiles, start)
    found = _SOLVED[key]
    if found is None or hop_profile(found, pp, dp, hw) >= hop_profile(start, pp, dp, hw):
        return snake
    return tuple(StageGroup(stage=s, replica=d, origin=found[(s, d)]) for d in range(dp) for s in range(pp))


def _comb(hw: Hardware, pp: int, dp: int, shape: tuple[int, int], tiles: list[Tile]) -> Placement | None:
    """The replicas of one stage (pp = 1) filling a defect-free mesh, as a comb-shaped cycle of
    the R×C tile grid (topology.grid_cycle) whose 2·(n − 1) moves across the n tile rows (or
    columns) are the longer ones. It meets the lower bounds of the lexicographic objective, so no
    solver is needed: a ring crossing both a row cut and a column cut has an edge of at least
    max(r, c) hops, and a cycle crosses each of the C − 1 column cuts twice, so with c ≥ r its
    hops total at least 2·(C − 1)·c + (R·C − 2·(C − 1))·r (transposed likewise). None when the
    case does not apply or the cycle misses a bound (odd tile counts across the long moves)."""
    r, c = shape
    big_r, big_c = hw.rows // r, hw.cols // c
    if pp != 1 or hw.topology.kind != "mesh2d" or dp != big_r * big_c or len(tiles) != dp or min(big_r, big_c) < 2:
        return None
    if c >= r and big_c % 2 == 0:
        cycle = [(i, j) for (j, i) in grid_cycle(big_c, big_r)]
        least_total = 2 * (big_c - 1) * c + (dp - 2 * (big_c - 1)) * r
    elif r >= c and big_r % 2 == 0:
        cycle = grid_cycle(big_r, big_c)
        least_total = 2 * (big_r - 1) * r + (dp - 2 * (big_r - 1)) * c
    else:
        return None
    place = {(0, d): (i * r, j * c) for d, (i, j) in enumerate(cycle)}
    return place if hop_profile(place, 1, dp, hw) == (0, max(r, c), least_total) else None


def _cpsat_placement(hw: Hardware, pp: int, dp: int, tiles: list[Tile], hint: Placement) -> Placement | None:
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    groups = [(s, d) for d in range(dp) for s in range(pp)]
    torus = hw.topology.kind == "torus2d"
    A = {(g, t): m.NewBoolVar(f"A[{g},{t}]") for g in groups for t in tiles}
    for g in groups:
        m.AddExactlyOne(A[(g, t)] for t in tiles)
    for t in tiles:
        m.AddAtMostOne(A[(g, t)] for g in groups)
    ROW = {g: m.NewIntVar(0, hw.rows - 1, f"ROW[{g}]") for g in groups}
    COL = {g: m.NewIntVar(0, hw.cols - 1, f"COL[{g}]") for g in groups}
    for g in groups:
        m.Add(ROW[g] == sum(t[0] * A[(g, t)] for t in tiles))
        m.Add(COL[g] == sum(t[1] * A[(g, t)] for t in tiles))
    span = hw.rows + hw.cols

    def hops(a, b, label: str):
        """Die hops between the tiles of groups a and b (|Δrow| + |Δcol|, wrapped on a torus)."""
        parts = []
        for coord, n in ((ROW, hw.rows), (COL, hw.cols)):
            diff = m.NewIntVar(-n, n, f"d{label}")
            m.Add(diff == coord[a] - coord[b])
            dist = m.NewIntVar(0, n, f"abs{label}")
            m.AddAbsEquality(dist, diff)
            if torus:
                wrapped = m.NewIntVar(0, n, f"wrap{label}")
                m.AddMinEquality(wrapped, [dist, n - dist])
                dist = wrapped
            parts.append(dist)
        h = m.NewIntVar(0, span, f"H{label}")
        m.Add(h == sum(parts))
        return h

    P2P = {(s, d): hops((s, d), (s + 1, d), f"P2P[{s},{d}]") for s in range(pp - 1) for d in range(dp)}
    DP = {(s, d): hops((s, d), (s, (d + 1) % dp), f"DP[{s},{d}]") for s in range(pp) for d in range(dp)} if dp > 1 else {}
    p2p_max = m.NewIntVar(0, span, "P2PMAX")
    ring_max = m.NewIntVar(0, span, "DPMAX")
    for h in P2P.values():
        m.Add(p2p_max >= h)
    for h in DP.values():
        m.Add(ring_max >= h)
    total_ub = span * (len(P2P) + len(DP)) + 1
    m.Minimize(p2p_max * (span + 1) * total_ub + ring_max * total_ub + sum(P2P.values()) + sum(DP.values()))
    for g, t in hint.items():
        for u in tiles:
            m.AddHint(A[(g, u)], 1 if u == t else 0)
    solver = cpsat_solver()
    solver.parameters.num_workers = 1
    solver.parameters.max_deterministic_time = MAX_DETERMINISTIC_TIME
    status = run_stoppable(solver.Solve, solver.StopSearch, m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return {g: next(t for t in tiles if solver.Value(A[(g, t)])) for g in groups}


__all__ = ["place_groups", "hop_profile"]
