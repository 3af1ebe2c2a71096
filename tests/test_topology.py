"""Collective and point-to-point costs on meshes, tori and switched clusters.

Ring algorithms (Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms for clusters of
workstations", JPDC 2009; NCCL): on p members a ring all-reduce sends 2·(p−1)/p·n bytes per member
over its ring edge, all-gather and reduce-scatter (p−1)/p·n, in 2(p−1) and (p−1) steps.
On a grid (hw/topology.py): a Hamiltonian cycle of neighbours run as two counter-rotating half
rings loads each directed link with half that volume; a line closes its ring back over the same
links, so each link carries the full volume; time = busiest link bytes / link bandwidth +
steps × hops of the longest ring edge × hop latency.
"""

from __future__ import annotations

import pytest

import hw
from hw.schema import Die, Energy, Hardware, Link, Topology
from hw.topology import collective, hops, ring_order, transfer

BW = 1.0e12  # bytes/s per direction of the hand-built links
LAT = 1.0e-7  # seconds per hop
N = 3.0e9  # bytes assembled by the collective


def grid(rows: int, cols: int, kind: str = "mesh2d", latency: float = 0.0) -> Hardware:
    die = Die(peak_flops={"bf16": 1e14}, matmul_efficiency=0.5, sram_bytes=1e9, sram_bandwidth=1e13,
              area_mm2=100, power_w=100)
    return Hardware(name=f"{kind}-{rows}x{cols}", die=die,
                    topology=Topology(kind=kind, rows=rows, cols=cols, link=Link(bandwidth=BW, latency_s=latency)),
                    energy=Energy(flop_j=0, sram_byte_j=0, link_byte_hop_j=0, dram_byte_j=0))


LINE = ring_order((0, 0), (1, 8))  # 8 dies in a row: a folded ring, out over even dies, back over odd
RECT = ring_order((0, 0), (2, 4))  # 2×4 rectangle: a Hamiltonian cycle of neighbours


def test_ring_orders():
    assert LINE == ((0, 0), (0, 2), (0, 4), (0, 6), (0, 7), (0, 5), (0, 3), (0, 1))
    # on a torus row the plain order closes over the wrap link
    assert ring_order((0, 0), (1, 8), wraps=True) == tuple((0, j) for j in range(8))
    assert sorted(RECT) == sorted((i, j) for i in range(2) for j in range(4))
    topo = grid(2, 4).topology
    assert all(hops(RECT[i], RECT[(i + 1) % 8], topo) == 1 for i in range(8))  # a cycle of neighbours


def test_all_reduce_line_bandwidth_term():
    # bidirectional ring on a line: every link carries the full ring volume 2·(p−1)/p·n
    t = collective("all_reduce", (LINE,), N, grid(1, 8)).time_s
    assert t == pytest.approx(2 * (7 / 8) * N / BW, rel=1e-12)


def test_all_reduce_rectangle_hamiltonian_cycle():
    # bidirectional Hamiltonian cycle: each direction carries half: (7/8)·n/B
    t = collective("all_reduce", (RECT,), N, grid(2, 4)).time_s
    assert t == pytest.approx((7 / 8) * N / BW, rel=1e-12)


def test_latency_term_is_steps_times_hops_times_hop_latency():
    # tmac-wafer preset: 4 TB/s links, 200 ns per hop (documented assumptions in its YAML)
    wafer = hw.load("tmac-wafer")
    B, lat = wafer.topology.link.bandwidth, wafer.topology.link.latency_s
    # folded line: 2(p−1) = 14 steps, the longest edge spans 2 hops
    t = collective("all_reduce", (LINE,), N, wafer).time_s
    assert t - 14 * 2 * lat == pytest.approx(2 * (7 / 8) * N / B, rel=1e-12)
    # closing over the whole line instead: same bandwidth term, 7-hop steps
    t = collective("all_reduce", (tuple((0, j) for j in range(8)),), N, wafer).time_s
    assert t - 14 * 7 * lat == pytest.approx(2 * (7 / 8) * N / B, rel=1e-12)
    # rectangle: 14 steps of 1 hop
    t = collective("all_reduce", (RECT,), N, wafer).time_s
    assert t - 14 * 1 * lat == pytest.approx((7 / 8) * N / B, rel=1e-12)
    # with a hand-built hop latency, the same split
    t = collective("all_reduce", (RECT,), N, grid(2, 4, latency=LAT)).time_s
    assert t == pytest.approx((7 / 8) * N / BW + 14 * LAT, rel=1e-12)


@pytest.mark.parametrize("kind", ["all_gather", "reduce_scatter"])
def test_all_gather_reduce_scatter_volume(kind):
    p = 8
    # (p−1)/p·n per member; on the Hamiltonian cycle half of it per direction, on the line all of it
    assert collective(kind, (RECT,), N, grid(2, 4)).time_s == pytest.approx((p - 1) / p * N / BW / 2, rel=1e-12)
    assert collective(kind, (LINE,), N, grid(1, 8)).time_s == pytest.approx((p - 1) / p * N / BW, rel=1e-12)
    # all-reduce = reduce-scatter + all-gather
    ar = collective("all_reduce", (RECT,), N, grid(2, 4)).time_s
    assert ar == pytest.approx(2 * collective(kind, (RECT,), N, grid(2, 4)).time_s, rel=1e-12)
    # (p−1) steps of latency
    t = collective(kind, (RECT,), N, grid(2, 4, latency=LAT)).time_s
    assert t == pytest.approx((p - 1) / p * N / BW / 2 + (p - 1) * LAT, rel=1e-12)


def test_shared_links_are_slower_than_disjoint():
    h = grid(2, 8)
    even = tuple((0, j) for j in range(0, 8, 2))
    odd = tuple((0, j) for j in range(1, 8, 2))  # interleaved with `even` along the same row
    odd_other_row = tuple((1, j) for j in range(1, 8, 2))  # same shape, its own row
    alone = collective("all_reduce", (even,), N, h).time_s
    disjoint = collective("all_reduce", (even, odd_other_row), N, h).time_s
    shared = collective("all_reduce", (even, odd), N, h).time_s
    assert disjoint == pytest.approx(alone, rel=1e-12)  # no common link: no slowdown
    assert shared > disjoint * 1.5  # both rings load the same row links


def test_torus_wrap_closes_the_ring():
    # a 1×8 ring on an 8-wide torus: the wrap link makes it a cycle of neighbours: (7/8)·n/B
    wrapped = ring_order((0, 0), (1, 8), wraps=True)
    for rows in (1, 8):
        torus = grid(rows, 8, kind="torus2d", latency=LAT)
        t = collective("all_reduce", (wrapped,), N, torus).time_s
        assert t == pytest.approx((7 / 8) * N / BW + 14 * 1 * LAT, rel=1e-12)
    # the folded ring on a mesh of the same size is twice as slow in its bandwidth term
    mesh = collective("all_reduce", (LINE,), N, grid(1, 8)).time_s
    torus = collective("all_reduce", (wrapped,), N, grid(1, 8, kind="torus2d")).time_s
    assert mesh == pytest.approx(2 * torus, rel=1e-12)


@pytest.mark.parametrize("dst,k", [((0, 1), 1), ((0, 5), 5), ((3, 4), 7), ((7, 7), 14)])
def test_p2p_latency_is_hops_times_hop_latency(dst, k):
    h = grid(8, 8, latency=LAT)
    assert hops((0, 0), dst, h.topology) == k  # XY routing: Manhattan distance
    tiny = transfer((((0, 0), dst),), 1.0, h)
    assert tiny.time_s == pytest.approx(1.0 / BW + k * LAT, rel=1e-12)
    assert tiny.byte_hops == k
    big = transfer((((0, 0), dst),), N, h)
    assert big.time_s == pytest.approx(N / BW + k * LAT, rel=1e-12)


def test_p2p_torus_takes_the_short_way():
    h = grid(8, 8, kind="torus2d", latency=LAT)
    assert hops((0, 0), (7, 7), h.topology) == 2
    assert transfer((((0, 0), (0, 7)),), 1.0, h).time_s == pytest.approx(1 / BW + LAT, rel=1e-12)


# --- switched cluster: dgx-a100 ------------------------------------------------------------------

def test_dgx_a100_all_reduce_within_a_node():
    # NVLink 300 GB/s per direction per GPU (NVIDIA A100 datasheet: 600 GB/s bidirectional);
    # NCCL's ring step latency on NVLink (3.4 µs, tuning.cc); the level's fitted efficiency
    dgx = hw.load("dgx-a100")
    nv = dgx.topology.levels[0]
    assert nv.bandwidth == 300e9 and nv.latency_s == 3.4e-6
    node = tuple((0, j) for j in range(8))
    t = collective("all_reduce", (node,), N, dgx).time_s
    assert t == pytest.approx(2 * (7 / 8) * N / (300e9 * nv.efficiency) + 2 * 7 * nv.latency_s, rel=1e-12)


def test_dgx_a100_all_reduce_across_nodes():
    # InfiniBand 25 GB/s per GPU (SC21 Sec. 5: 8 × 200 Gb/s HDR per node); one GPU in each of 4 nodes
    dgx = hw.load("dgx-a100")
    ib = dgx.topology.levels[-1]
    assert ib.bandwidth == 25e9 and ib.latency_s == 9.6e-6
    group = tuple((node, 0) for node in range(4))
    bw = 25e9 * ib.efficiency
    t = collective("all_reduce", (group,), N, dgx).time_s
    assert t == pytest.approx(2 * (3 / 4) * N / bw + 2 * 3 * ib.latency_s, rel=1e-12)
    # all-gather across the same nodes: (p−1)/p·n
    t = collective("all_gather", (group,), N, dgx).time_s
    assert t == pytest.approx((3 / 4) * N / bw + 3 * ib.latency_s, rel=1e-12)


def test_dgx_a100_p2p():
    dgx = hw.load("dgx-a100")
    nv, ib = dgx.topology.levels[0], dgx.topology.levels[-1]
    assert transfer((((0, 0), (0, 1)),), N, dgx).time_s == pytest.approx(N / nv.effective_bandwidth + nv.latency_s)
    assert transfer((((0, 0), (1, 0)),), N, dgx).time_s == pytest.approx(N / ib.effective_bandwidth + ib.latency_s)


@pytest.mark.parametrize("kind", ["all_gather", "all_reduce", "reduce_scatter"])
@pytest.mark.parametrize("torus", [False, True])
def test_least_collective_is_below_every_placement(kind, torus):
    """least_collective_s bounds the collective of k members on any tiles: every ring of 2 to 6
    members drawn from a 6×6 grid (1,000 random draws) costs at least that much."""
    import random

    from hw.topology import least_collective_s

    topo = "torus" if torus else "mesh"
    h = hw.load("tmac-wafer", rows=6, cols=6)
    if torus:
        h = h.model_copy(update={"topology": h.topology.model_copy(update={"kind": "torus2d"})})
    rng = random.Random(0)
    dies = [(r, c) for r in range(6) for c in range(6)]
    for _ in range(1000):
        k = rng.randint(2, 6)
        ring = tuple(rng.sample(dies, k))
        assert collective(kind, (ring,), 1e6, h).time_s >= least_collective_s(kind, k, 1e6, h) * (1 - 1e-12), (topo, ring)
    # the bound is met by two neighbouring dies (a ring of two loads its link with the whole volume)
    assert collective(kind, (((0, 0), (0, 1)),), 1e6, h).time_s == pytest.approx(least_collective_s(kind, 2, 1e6, h))
