"""Geometry of a die grid: rectangles, rings, routes, and the per-link loads of collectives.

Collectives use ring algorithms. On a mesh or torus every ring edge is routed dimension-ordered
(XY; shortest way round on a torus) and each ring runs as two counter-rotating half rings, so a
Hamiltonian cycle of neighbours loads each link with half the ring volume per direction while a
line (whose ring closes back over the same links) loads each link with the full volume. Rings
that run at the same time add their loads on shared links. Time = busiest link's bytes / link
bandwidth + ring steps × (longest edge's hops × hop latency).

On a switched cluster (row = node, col = device) a group inside one node rings over the first
level; a group spanning nodes runs hierarchically: the local part over level 0, the
cross-node part over level 1 on every local rank's own NIC at once (rail-optimised).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .schema import Hardware, Topology

Die = tuple[int, int]
Ring = tuple[Die, ...]

# ring volume per edge, as a multiple of the assembled tensor's bytes M, for k members
VOLUME = {
    "all_gather": lambda k: (k - 1) / k,
    "reduce_scatter": lambda k: (k - 1) / k,
    "all_reduce": lambda k: 2 * (k - 1) / k,
    "all_to_all": lambda k: (k - 1) / k,  # on a ring: each shard travels on average k/2 hops, half each way
}
STEPS = {"all_gather": lambda k: k - 1, "reduce_scatter": lambda k: k - 1,
         "all_reduce": lambda k: 2 * (k - 1), "all_to_all": lambda k: k - 1}


@dataclass(frozen=True)
class CommCost:
    """Seconds, and bytes × hops moved over links (for energy)."""

    time_s: float = 0.0
    byte_hops: float = 0.0

    def __add__(self, other: "CommCost") -> "CommCost":
        return CommCost(self.time_s + other.time_s, self.byte_hops + other.byte_hops)

    def scaled(self, k: float) -> "CommCost":
        return CommCost(self.time_s * k, self.byte_hops * k)


ZERO = CommCost()


def rectangle(origin: Die, shape: tuple[int, int]) -> tuple[Die, ...]:
    """Dies of an r×c rectangle at origin, row-major."""
    (r0, c0), (r, c) = origin, shape
    return tuple((r0 + i, c0 + j) for i in range(r) for j in range(c))


def snake(rows: int, cols: int) -> list[Die]:
    """Boustrophedon order of a rows×cols grid (consecutive entries are neighbours)."""
    return [(i, j if i % 2 == 0 else cols - 1 - j) for i in range(rows) for j in range(cols)]


def usable_tiles(hw: Hardware, shape: tuple[int, int]) -> list[Die]:
    """Origins of the aligned r×c tiles of the grid without a defective die, in snake order of
    the tiling. A shape that does not divide the grid tiles its top-left (rows − rows mod r) ×
    (cols − cols mod c) part; the dies beyond stay idle (empty if r > rows or c > cols)."""
    r, c = shape
    tiles = [(i * r, j * c) for (i, j) in snake(hw.rows // r, hw.cols // c)]
    return [t for t in tiles if all(hw.usable(d) for d in rectangle(t, shape))]


def ring_order(origin: Die, shape: tuple[int, int], wraps: bool = False) -> Ring:
    """A ring through an r×c rectangle: a Hamiltonian cycle of neighbours when one exists
    (r, c ≥ 2 and r·c even); on a line, the folded line (or the line itself when it spans a torus
    dimension, `wraps`, and closes over the wrap link); else the snake."""
    r, c = shape
    r0, c0 = origin
    if r >= 2 and c >= 2 and (r * c) % 2 == 0:
        if r % 2 == 1:  # transpose so the row count is even
            return tuple((r0 + i, c0 + j) for (j, i) in grid_cycle(c, r))
        return tuple((r0 + i, c0 + j) for (i, j) in grid_cycle(r, c))
    path = tuple((r0 + i, c0 + j) for (i, j) in snake(r, c))
    if (r == 1 or c == 1) and not wraps:
        return fold(path)
    return path


def fold(line: tuple[Die, ...]) -> Ring:
    """A ring through the dies of a line with edges of at most 2 hops: out over the even
    positions, back over the odd ones. Same link loads as closing the ring over the whole line,
    but each step waits for 2 hops instead of len − 1."""
    return tuple(line[0::2]) + tuple(reversed(line[1::2]))


def grid_cycle(r: int, c: int) -> list[Die]:
    """Hamiltonian cycle of an r×c grid with r even: row 0 left to right, snake back through
    columns 1..c-1, then up column 0."""
    path = [(0, j) for j in range(c)]
    for i in range(1, r):
        cols = range(c - 1, 0, -1) if i % 2 == 1 else range(1, c)
        path += [(i, j) for j in cols]
    path += [(i, 0) for i in range(r - 1, 0, -1)]
    return path


def _step(a: int, b: int, n: int, wrap: bool) -> int:
    if a == b:
        return 0
    if not wrap:
        return 1 if b > a else -1
    fwd = (b - a) % n
    return 1 if fwd <= n - fwd else -1


def route(src: Die, dst: Die, topo: Topology) -> list[tuple[Die, Die]]:
    """Directed links of the XY route from src to dst (column first, then row)."""
    wrap = topo.kind == "torus2d"
    links = []
    r, c = src
    while c != dst[1]:
        nc = (c + _step(c, dst[1], topo.cols, wrap)) % topo.cols
        links.append(((r, c), (r, nc)))
        c = nc
    while r != dst[0]:
        nr = (r + _step(r, dst[0], topo.rows, wrap)) % topo.rows
        links.append(((r, c), (nr, c)))
        r = nr
    return links


@lru_cache(maxsize=4096)
def ring_profile(rings: tuple[Ring, ...], topo: Topology) -> tuple[float, int, float]:
    """For rings running at once, each edge carrying volume 1 (split over both directions):
    (load of the busiest directed link, hops of the longest edge, total link-hops)."""
    load: dict[tuple[Die, Die], float] = {}
    max_hops = 0
    total = 0.0
    for ring in rings:
        k = len(ring)
        if k < 2:
            continue
        for i in range(k):
            a, b = ring[i], ring[(i + 1) % k]
            for direction, (s, d) in ((0, (a, b)), (1, (b, a))):
                path = route(s, d, topo)
                max_hops = max(max_hops, len(path))
                for link in path:
                    load[link] = load.get(link, 0.0) + 0.5
                total += 0.5 * len(path)
    return (max(load.values()) if load else 0.0), max_hops, total


def mesh_collective(kind: str, rings: tuple[Ring, ...], nbytes: float, hw: Hardware) -> CommCost:
    """A ring collective on each of `rings` at once; `nbytes` is the assembled tensor per ring."""
    k = max((len(r) for r in rings), default=1)
    if k < 2 or nbytes <= 0:
        return ZERO
    busiest, hops, total = ring_profile(rings, hw.topology)
    vol = VOLUME[kind](k) * nbytes
    link = hw.topology.link
    assert link is not None
    t = vol * busiest / link.bandwidth + STEPS[kind](k) * hops * link.latency_s
    return CommCost(t, vol * total)


def switched_collective(kind: str, group: tuple[Die, ...], nbytes: float, hw: Hardware) -> CommCost:
    """Hierarchical ring collective of one group on a switched cluster (groups do not contend).

    Bandwidth: a local phase on level 0, the cross-node phase on the last level with 1/local of the
    data per device (every device of a node drives its own NIC), a local phase again for an
    all-reduce. Latency: the ring visits every member, so a collective takes STEPS(k) steps, and a
    ring advances at its slowest link each step (the member after a node boundary receives every
    step over the network): STEPS(k) × the latency of the last level it crosses — level 0's inside
    one node. mesh_collective charges its longest edge's hops each step alike."""
    k = len(group)
    if k < 2 or nbytes <= 0:
        return ZERO
    levels = hw.topology.levels
    nodes: dict[int, int] = {}
    for node, _ in group:
        nodes[node] = nodes.get(node, 0) + 1
    n, local = len(nodes), max(nodes.values())
    lo, hi = levels[0], levels[-1]
    steps = STEPS[kind]
    latency = steps(k) * (hi.latency_s if n > 1 else lo.latency_s)

    def ring(kd: str, members: int, size: float, lvl) -> CommCost:
        if members < 2:
            return ZERO
        vol = VOLUME[kd](members) * size
        return CommCost(vol / lvl.effective_bandwidth, vol * members * lvl.hops)

    if n == 1:
        phases = ring(kind, local, nbytes, lo)
    elif local == 1:
        phases = ring(kind, n, nbytes, hi)
    else:
        cross = ring(kind, n, nbytes / local, hi)
        cross = CommCost(cross.time_s, cross.byte_hops * local)
        if kind == "all_reduce":
            phases = ring("reduce_scatter", local, nbytes, lo) + cross + ring("all_gather", local, nbytes, lo)
        else:
            phases = ring(kind, local, nbytes, lo) + cross
    return CommCost(phases.time_s + latency, phases.byte_hops)


def least_collective_s(kind: str, k: int, nbytes: float, hw: Hardware) -> float:
    """Seconds below collective(kind, rings, nbytes, hw) for rings of k members placed anywhere:
    on a mesh or torus every ring edge loads some directed link with at least half its volume (a
    ring of two: its two edges share their route, so the whole volume) and crosses at least one
    hop (mesh_collective); on a switched cluster 0 (not bounded here)."""
    if k < 2 or nbytes <= 0 or hw.topology.kind == "switched":
        return 0.0
    link = hw.topology.link
    assert link is not None
    load = 1.0 if k == 2 else 0.5
    return VOLUME[kind](k) * nbytes * load / link.bandwidth + STEPS[kind](k) * link.latency_s


def collective(kind: str, rings: tuple[Ring, ...], nbytes: float, hw: Hardware) -> CommCost:
    """Cost of one collective run at once on every ring of `rings` (each assembling `nbytes`)."""
    if hw.topology.kind == "switched":
        return switched_collective(kind, rings[0], nbytes, hw) if rings else ZERO
    return mesh_collective(kind, rings, nbytes, hw)


def transfer(pairs: tuple[tuple[Die, Die], ...], nbytes: float, hw: Hardware) -> CommCost:
    """Point-to-point sends of `nbytes` each, all at once (e.g. a pipeline stage boundary)."""
    if not pairs or nbytes <= 0:
        return ZERO
    if hw.topology.kind == "switched":
        lvl = hw.topology.levels[0] if all(a[0] == b[0] for a, b in pairs) else hw.topology.levels[-1]
        return CommCost(nbytes / lvl.effective_bandwidth + lvl.latency_s, nbytes * lvl.hops * len(pairs))
    busiest, hops, total = _pair_profile(pairs, hw.topology)
    link = hw.topology.link
    assert link is not None
    return CommCost(nbytes * busiest / link.bandwidth + hops * link.latency_s, nbytes * total)


@lru_cache(maxsize=4096)
def _pair_profile(pairs: tuple[tuple[Die, Die], ...], topo: Topology) -> tuple[float, int, float]:
    load: dict[tuple[Die, Die], float] = {}
    hops = 0
    total = 0.0
    for a, b in pairs:
        path = route(a, b, topo)
        hops = max(hops, len(path))
        total += len(path)
        for link in path:
            load[link] = load.get(link, 0.0) + 1.0
    return (max(load.values()) if load else 0.0), hops, total


def hops(a: Die, b: Die, topo: Topology) -> int:
    """Link hops between two dies."""
    return len(route(a, b, topo))
