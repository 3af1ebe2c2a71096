"""Overlap of a reduce-scatter with its producer GEMM (optimizer/model/overlap.py) and the T3 reproduction.

Hand-checked formulas, the ordering ideal ≤ fused ≤ chunked, software overlap losing to sequential
on small GEMMs, the feature gate of the fused mode, the data-movement count, and the acceptance
ranges of benchmarks/reproduce_t3.py (T3: Pati et al., ASPLOS 2024 — T-NLG fused 30% geomean,
~500B models 29%, 22% less data movement; our acceptance ranges are wider, see docs/reproduction.md).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hw
import models
from hw.topology import collective, ring_order
from optimizer.model import overlap as ov

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "reproduce_t3.py"

# A hand case: GEMM 8 s, reduce-scatter 4 s, all-gather 2 s on a ring of 4 (chunks = 4).
HAND = ov.OverlapParams(fused_collectives=True, near_memory_reduction=True, memory_controller_arbitration=True,
                        compute_slowdown=1.5, comm_slowdown=1.25, chunks=0, chunk_overhead_s=0.5,
                        fused_compute_slowdown=1.1, fused_compute_slowdown_unarbitrated=1.3,
                        fused_comm_slowdown=1.0, name="hand")


def test_hand_case_times():
    assert ov.sublayer_time("sequential", 8, 4, 2, 4, HAND) == 14
    assert ov.sublayer_time("ideal", 8, 4, 2, 4, HAND) == 10
    # chunked: c = 8/4 + 0.5 = 2.5, m = 4/4 + 0.5 = 1.5; a stage: comm ends first (1.25·1.5 ≤ 1.5·2.5),
    # so 2.5 + 1.25·1.5·(1 − 1/1.5) = 3.125; total 2.5 + 3·3.125 + 1.5 + 2 (all-gather)
    assert math.isclose(ov.sublayer_time("chunked", 8, 4, 2, 4, HAND), 2.5 + 3 * 3.125 + 1.5 + 2)
    # fused: c = 2, m = 1, stage = 2 + 1·(1 − 1/1.1) = 2 + 1/11; total 2 + 3·(2 + 1/11) + 1 + 2
    assert math.isclose(ov.sublayer_time("fused", 8, 4, 2, 4, HAND), 11 + 3 / 11)
    # without arbitration: stage = 2 + 1·(1 − 1/1.3)
    unarb = dataclasses.replace(HAND, memory_controller_arbitration=False)
    assert math.isclose(ov.sublayer_time("fused", 8, 4, 2, 4, unarb), 2 + 3 * (2 + (1 - 1 / 1.3)) + 1 + 2)


def test_hand_case_bytes():
    # GEMM 100 B; buffer 40 B on a ring of 4: pieces of 10 B (T3's accounting).
    # On the cores: reads 1 (first piece) + 2·3 (arriving piece + local partial copy), writes 3 arriving + 1 result
    assert ov.reduce_scatter_pieces(4, near_memory=False) == (7, 4)
    assert ov.reduce_scatter_bytes(4, 40, near_memory=False) == 110
    # fused, near memory: the 2 middle pieces read by the DMA, 3 arriving updates
    assert ov.reduce_scatter_pieces(4, near_memory=True) == (2, 3)
    assert ov.reduce_scatter_bytes(4, 40, near_memory=True) == 50
    assert ov.all_gather_bytes(4, 40) == 2 * 30
    assert ov.sublayer_bytes("sequential", 100, 40, 4, HAND) == 100 + 110 + 60
    assert ov.sublayer_bytes("chunked", 100, 40, 4, HAND) == 270
    assert ov.sublayer_bytes("ideal", 100, 40, 4, HAND) == 270
    # fused: the GEMM stores its first piece into the next device (10 B less written here)
    assert ov.sublayer_bytes("fused", 100, 40, 4, HAND) == 100 - 10 + 50 + 60
    assert ov.sublayer_bytes("fused", 100, 40, 4, HAND, fused_gemm_bytes=80) == 80 - 10 + 50 + 60
    assert ov.near_memory_saving_bytes(4, 40) == 110 - 50 + 10
    # fused without near-memory reduction: the sums run on the cores, same traffic as sequential
    assert ov.sublayer_bytes("fused", 100, 40, 4, dataclasses.replace(HAND, near_memory_reduction=False)) == 270
    # a ring of 2: on the cores reads 3, writes 2; fused: one update, nothing read
    assert ov.reduce_scatter_pieces(2, False) == (3, 2) and ov.reduce_scatter_pieces(2, True) == (0, 1)
    assert ov.reduce_scatter_pieces(1, False) == (0, 0) and ov.near_memory_saving_bytes(1, 40) == 0.0
    assert ov.sublayer_bytes("fused", 100, 40, 1, HAND) == ov.sublayer_bytes("sequential", 100, 40, 1, HAND) == 100


@pytest.mark.parametrize("t, ratio", [(8, 2.5), (16, 2.2)])
def test_reduce_scatter_counts_reproduce_t3_breakdown(t, ratio):
    """T3 (Sec. 6.2 / Fig. 18): fused with near-memory sums, reduce-scatter reads fall 2.5x at t = 8
    and 2.2x at t = 16; GEMM + reduce-scatter writes fall ~10% (geomean of t = 8 and 16)."""
    (r_seq, w_seq), (r_fus, w_fus) = ov.reduce_scatter_pieces(t, False), ov.reduce_scatter_pieces(t, True)
    assert math.isclose(r_seq / r_fus, ratio, abs_tol=0.02)
    # GEMM writes its t pieces sequential, t − 1 fused
    writes_saved = 1 - ((t - ov.FUSED_PRODUCER_PIECES_SAVED) + w_fus) / (t + w_seq)
    assert math.isclose(writes_saved, 1 / t)


def test_ring_time_and_gemm_bytes():
    # (t−1)/t · n / bandwidth + (t−1) · latency
    assert math.isclose(ov.ring_time("reduce_scatter", 4, 8e6, 1e9, 1e-6), 0.75 * 8e6 / 1e9 + 3e-6)
    assert math.isclose(ov.ring_time("all_gather", 4, 8e6, 1e9, 1e-6, directions=2), 0.75 * 8e6 / 2e9 + 3e-6)
    assert ov.ring_time("reduce_scatter", 1, 8e6, 1e9, 1e-6) == 0.0
    # blocked GEMM: b = sqrt(6e6 / (3·2)) = 1000; A read n/b = 3 times, B read m/b = 2 times, C written once
    assert math.isclose(ov.gemm_tile(6e6, 2), 1000)
    assert math.isclose(ov.gemm_dram_bytes(2000, 500, 3000, 2, 6e6), 2 * (2000 * 500 * 3 + 500 * 3000 * 2 + 2000 * 3000))
    # operands smaller than a block are read once
    assert math.isclose(ov.gemm_dram_bytes(10, 20, 30, 2, 6e6), 2 * (10 * 20 + 20 * 30 + 10 * 30))
    # output stores uncached (T3's fused GEMM): two blocks share the cache, b = sqrt(6e6 / (2·2)) = 1224.7
    b = math.sqrt(1.5e6)
    assert math.isclose(ov.gemm_tile(6e6, 2, output_cached=False), b)
    assert math.isclose(ov.gemm_dram_bytes(2000, 500, 3000, 2, 6e6, output_cached=False),
                        2 * (2000 * 500 * 3000 / b + 500 * 3000 * 2000 / b + 2000 * 3000))


@pytest.mark.parametrize("t", [4, 8, 32])
def test_ring_time_matches_topology_bidirectional_ring(t):
    """directions = 2 is hw.topology's convention on a torus ring (two counter-rotating half rings)."""
    hardware = hw.load("t3-gpu", cols=t)
    ring = ring_order((0, 0), (1, t), wraps=True)
    link = hardware.topology.link
    for kind in ("reduce_scatter", "all_gather"):
        ours = ov.ring_time(kind, t, 3e7, link.bandwidth, link.latency_s, directions=2)
        assert math.isclose(ours, collective(kind, (ring,), 3e7, hardware).time_s, rel_tol=1e-12)


times = st.floats(min_value=1e-7, max_value=1e-1)
factors = st.floats(min_value=1.0, max_value=2.0)


@settings(max_examples=200, deadline=None)
@given(gemm=times, rs=times, ag=times, ring=st.integers(2, 64), sc=factors, sm=factors,
       overhead=st.floats(0, 1e-5), chunks=st.integers(0, 16))
def test_chunked_never_free(gemm, rs, ag, ring, sc, sm, overhead, chunks):
    p = ov.OverlapParams(compute_slowdown=sc, comm_slowdown=sm, chunk_overhead_s=overhead, chunks=chunks)
    chunked = ov.sublayer_time("chunked", gemm, rs, ag, ring, p)
    assert chunked > ov.sublayer_time("ideal", gemm, rs, ag, ring, p)


@settings(max_examples=200, deadline=None)
@given(c=times, m=times, sc=factors, sm=factors)
def test_overlapped_stage_bounds(c, m, sc, sm):
    t = ov.overlapped_time(c, m, sc, sm)
    assert max(c, m) * (1 - 1e-12) <= t <= max(sc * c, sm * m) * (1 + 1e-12)


@pytest.mark.parametrize("tokens", [128, 256, 512])
def test_chunked_loses_to_sequential_on_small_gemm(tokens):
    """t3-gpu is contention-heavy for software overlap (1.3× both ways, 5 µs per chunk): a small
    GEMM gains less from hiding the reduce-scatter than chunking and contention cost."""
    hardware = hw.load("t3-gpu")  # ring of 8
    p = ov.OverlapParams.from_hardware(hardware)
    tnlg = models.load("t-nlg-17b")
    k, n = tnlg.hidden / 8, tnlg.hidden
    gb = ov.gemm_dram_bytes(tokens, k, n, 2, hardware.die.sram_bytes)
    gemm = ov.gemm_time(2 * tokens * k * n, gb, hardware.die, hardware.peak("fp16"))
    link = hardware.topology.link
    rs = ov.ring_time("reduce_scatter", 8, tokens * n * 2, link.bandwidth, link.latency_s)
    ag = ov.ring_time("all_gather", 8, tokens * n * 2, link.bandwidth, link.latency_s)
    assert ov.sublayer_time("chunked", gemm, rs, ag, 8, p) > ov.sublayer_time("sequential", gemm, rs, ag, 8, p)


@pytest.mark.parametrize("arbitration", [True, False])
@pytest.mark.parametrize("ring", [8, 16, 32])
def test_fused_between_ideal_and_chunked(arbitration, ring):
    hardware = hw.load("t3-gpu", cols=ring)
    p = dataclasses.replace(ov.OverlapParams.from_hardware(hardware), memory_controller_arbitration=arbitration)
    for gemm in (1e-6, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2):
        for rs in (1e-6, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2):
            ideal = ov.sublayer_time("ideal", gemm, rs, rs, ring, p)
            fused = ov.sublayer_time("fused", gemm, rs, rs, ring, p)
            chunked = ov.sublayer_time("chunked", gemm, rs, rs, ring, p)
            assert ideal <= fused <= chunked, (gemm, rs)


def test_fused_rejected_without_feature():
    hardware = hw.load("t3-gpu", fused_collectives=False)
    p = ov.OverlapParams.from_hardware(hardware)
    with pytest.raises(hw.ConfigError, match=r"features\.fused_collectives"):
        ov.sublayer_time("fused", 1e-4, 1e-4, 1e-4, 8, p)
    with pytest.raises(ValueError, match=r"features\.fused_collectives"):
        ov.sublayer_bytes("fused", 1e6, 1e6, 8, p)
    assert ov.sublayer_time("chunked", 1e-4, 1e-4, 1e-4, 8, p) > 0  # other modes still work
    with pytest.raises(hw.ConfigError, match="overlap mode 'overlapped' unknown"):
        ov.sublayer_time("overlapped", 1e-4, 1e-4, 1e-4, 8, p)


@pytest.mark.parametrize("ring", [2, 8, 32])
def test_fused_moves_less_data_with_near_memory_reduction(ring):
    p = ov.OverlapParams.from_hardware(hw.load("t3-gpu", cols=ring))
    assert p.near_memory_reduction
    assert ov.sublayer_bytes("fused", 5e7, 3e7, ring, p) < ov.sublayer_bytes("sequential", 5e7, 3e7, ring, p)


def test_presets_without_overlap_fields_get_defaults():
    a100 = hw.load("dgx-a100")
    assert a100.overlap.chunks == 0 and a100.overlap.chunk_overhead_s == 0.0
    assert a100.overlap.fused_compute_slowdown == 1.0
    assert not a100.features.memory_controller_arbitration
    t3 = hw.load("t3-gpu")
    assert t3.features.memory_controller_arbitration
    assert t3.overlap.fused_compute_slowdown <= t3.overlap.fused_compute_slowdown_unarbitrated <= t3.overlap.compute_slowdown


# ---- the benchmark's own numbers ------------------------------------------------------------------

def _load_benchmark():
    spec = importlib.util.spec_from_file_location("reproduce_t3_benchmark", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load_benchmark()
ROWS = bench.run()
SUMMARY = bench.summarize(ROWS)


def test_benchmark_setup():
    cases = {(r["model"], r["tp"]) for r in ROWS}
    assert cases == {("mega-gpt-2", 8), ("mega-gpt-2", 16), ("t-nlg-17b", 8), ("t-nlg-17b", 16),
                     ("gpt3-175b", 32), ("palm-540b", 32), ("mt-nlg-530b", 32)}
    assert len(ROWS) == 2 * len(cases)
    for r in ROWS:
        assert r["time_ideal_s"] <= r["time_fused_s"] <= r["time_fused_unarbitrated_s"] < r["time_sequential_s"]
        assert r["bytes_fused"] < r["bytes_sequential"]
    assert {c["name"] for c in bench.claims(SUMMARY)} == set(bench.PAPER)


@pytest.mark.parametrize("name", ["tnlg_fused_speedup_geomean", "large_fused_speedup_geomean"])
def test_speedup_acceptance(name):
    lo, hi = bench.ACCEPT[name]
    assert lo <= SUMMARY[name] <= hi, SUMMARY[name]


def test_data_movement_acceptance():
    lo, hi = bench.ACCEPT["data_movement_reduction_geomean"]
    assert lo <= SUMMARY["data_movement_reduction_geomean"] <= hi, SUMMARY["data_movement_reduction_geomean"]


def test_data_movement_breakdown_reported():
    """T3's Fig. 18 breakdown on T-NLG: reduce-scatter reads 2.5x / 2.2x fewer (t = 8 / 16), GEMM +
    reduce-scatter writes ~10% fewer; GEMM reads fewer but by less than T3's 1.56x (our blocked-GEMM
    model of the uncached output gives at most 1.22x), so our maximum stays below T3's 36%."""
    assert math.isclose(SUMMARY["rs_reads_ratio_t8"], 2.5, abs_tol=0.05)
    assert math.isclose(SUMMARY["rs_reads_ratio_t16"], 2.2, abs_tol=0.05)
    assert 0.08 <= SUMMARY["gemm_rs_writes_reduction_geomean"] <= 0.12
    assert 1.0 < SUMMARY["gemm_reads_ratio_geomean"] <= 1.56
    assert SUMMARY["data_movement_reduction_geomean"] <= SUMMARY["data_movement_reduction_max"] <= 0.36
