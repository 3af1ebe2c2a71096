"""Hecaton's weak-scaling claim with evaluate() on the hecaton-chiplet preset (4×4, 8×8, 16×16).

Source: Huang et al., "Hecaton: Training and Finetuning Large Language Models with Scalable Chiplet
Systems", arXiv:2407.05784, abstract: "as the workload and hardware resources grow proportionally,
the computation-to-communication ratio remains nearly constant" (no number given). Acceptance of
this reproduction: the 2D ratio stays within ±15% of its 4×4 value at every size, and the ratio of
1D Megatron-style tensor parallelism over the whole grid falls by at least 2×.

The rows come from the benchmark's own functions (benchmarks/weak_scaling.py), so the test and the
committed JSON share one code path. The family is weak-scaled: hidden = 512·n and seq_len = 256·n
with 16,384 tokens per step (16 × 1024, 8 × 2048, 4 × 4096), so every matmul's FLOPs per die are the
same at every size. See docs/reproduction.md for why the 2D bound is still not met at 16×16 (the ring
factor (n-1)/n of the 2D collectives).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "weak_scaling.py"
SIZES = (4, 8, 16)
TOLERANCE_2D = 0.15
MIN_DROP_1D = 2.0


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("weak_scaling_benchmark", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load_benchmark()
ROWS = bench.run(SIZES)


def test_setup_is_weak_scaling():
    assert bench.SIZES == SIZES
    assert [r["n"] for r in ROWS] == list(SIZES)
    assert [r["dies"] for r in ROWS] == [n * n for n in SIZES]
    # hidden grows in proportion to the side n; tokens per step are the same at every size
    assert [r["hidden"] / r["n"] for r in ROWS] == [bench.HIDDEN_PER_SIDE] * len(SIZES)
    # tokens per step fixed; the sequences grow with n and their number shrinks: 16x1024, 8x2048, 4x4096
    assert [r["tokens_per_step"] for r in ROWS] == [bench.TOKENS_PER_STEP] * len(SIZES) == [16384] * len(SIZES)
    assert [(r["global_batch"], r["seq_len"]) for r in ROWS] == [(16, 1024), (8, 2048), (4, 4096)]
    for r in ROWS:
        assert r["global_batch"] * r["seq_len"] == r["tokens_per_step"]
        assert r["micro_batch"] == r["global_batch"]  # one micro-batch holds the whole step (pp = dp = 1)
        assert r["heads"] % r["dies"] == 0 and r["ffn"] % r["dies"] == 0  # heads over n² dies (1D), n per axis (2D)
    # FLOPs per die of one layer, forward: linears ∝ T·h²/n², attention core 4·b·s²·h/n² -- both constant
    linear = {r["tokens_per_step"] * r["hidden"] ** 2 // r["dies"] for r in ROWS}
    attention = {4 * r["global_batch"] * r["seq_len"] ** 2 * r["hidden"] // r["dies"] for r in ROWS}
    assert len(linear) == 1 and len(attention) == 1


def test_2d_compute_per_die_is_constant():
    # the evaluator agrees: 2D compute per die stays within 2% (our bound; measured 1.003x at 16x16: the
    # matmuls are constant, the softmax grows as n and the norms and LM head shrink as 1/n)
    for r in ROWS:
        assert r["compute_2d_s"] == pytest.approx(ROWS[0]["compute_2d_s"], rel=0.02)
    parts = {n: bench.compute_parts_2d(n) for n in SIZES}
    for n in SIZES:
        assert parts[n]["linears"] == pytest.approx(parts[SIZES[0]]["linears"], rel=1e-9)
        assert parts[n]["attention_matmuls"] == pytest.approx(parts[SIZES[0]]["attention_matmuls"], rel=1e-9)
        row = next(r for r in ROWS if r["n"] == n)
        assert parts[n]["total"] == pytest.approx(row["compute_2d_s"], rel=1e-9)


@pytest.mark.parametrize("n", SIZES)
def test_mappings_span_the_grid(n):
    work = bench.workload_for(n)
    hardware = bench.hardware_for(n)
    m2 = bench.mapping_2d(work, n)  # raises if an option is outside the "hecaton" space
    m1 = bench.mapping_1d(work, hardware, n)
    for m in (m2, m1):
        assert tuple(m.tp_shape) == (n, n) and m.pp == 1 and m.dp == 1
    for name in ("q_proj", "kv_proj", "out_proj", "fc1", "fc2", "lm_head"):
        a0, a1 = m2.ops[name].split
        assert a0 is not None and a1 is not None and a0 != a1  # 2D weight-stationary
        b0, b1 = m1.ops[name].split
        assert b0 == b1 and b0 is not None  # 1D over all n² dies, written (x, x)


def test_ratio_1d_falls_at_least_2x():
    # acceptance: 1D Megatron-style TP over the whole grid degrades (measured: 7.61 -> 2.10, 3.6x)
    drop = ROWS[0]["ratio_1d"] / ROWS[-1]["ratio_1d"]
    assert drop >= MIN_DROP_1D, [r["ratio_1d"] for r in ROWS]


@pytest.mark.xfail(strict=True, reason=(
    "Not reproduced by the cost model at 16x16: the 2D ratio keeps 0.86x (8x8, inside) but 0.81x (16x16) "
    "of its 4x4 value. 2D compute per die is constant (x1.003), but every all-gather / reduce-scatter over "
    "n dies moves (n-1)/n of its tensor (x1.25 from n=4 to 16; tp_comm x1.238). "
    "See docs/reproduction.md, 'Weak scaling (Hecaton)'."))
def test_ratio_2d_within_15_percent():
    # acceptance: the 2D ratio stays within ±15% of its first value at every size
    first = ROWS[0]["ratio_2d"]
    for r in ROWS:
        assert r["ratio_2d"] == pytest.approx(first, rel=TOLERANCE_2D), [x["ratio_2d"] for x in ROWS]


def test_2d_drift_is_the_ring_factor():
    # diagnostic, not the acceptance: with (n-1)/n divided out, the 2D ratio and tp_comm per die stay
    # within 2% of their 4x4 values (our bound; measured 1.000, 1.004, 1.013 and 1.000, 0.992, 0.991)
    ring = {n: (n - 1) / n for n in SIZES}
    first = ROWS[0]
    for r in ROWS:
        scale = ring[r["n"]] / ring[first["n"]]
        assert r["ratio_2d"] / first["ratio_2d"] * scale == pytest.approx(1.0, rel=0.02)
        assert r["tp_comm_2d_s"] / first["tp_comm_2d_s"] / scale == pytest.approx(1.0, rel=0.02)
    diag = bench.ring_factor_diagnostics(ROWS)
    assert diag["ratio_2d_within_15_percent_without_ring_factor"]
    assert diag["ring_factor"] == {str(n): ring[n] for n in SIZES}


def test_2d_degrades_much_less_than_1d():
    # the direction of the claim (our own check, not the acceptance bound): the 2D ratio keeps at least
    # twice the fraction of its starting value that the 1D ratio keeps, and its communication per die
    # grows no faster than the ring factor (n-1)/n plus latency
    keep_2d = ROWS[-1]["ratio_2d"] / ROWS[0]["ratio_2d"]
    keep_1d = ROWS[-1]["ratio_1d"] / ROWS[0]["ratio_1d"]
    assert keep_2d >= 2 * keep_1d
    assert ROWS[-1]["tp_comm_2d_s"] / ROWS[0]["tp_comm_2d_s"] <= 1.35
    assert ROWS[-1]["tp_comm_1d_s"] / ROWS[0]["tp_comm_1d_s"] >= 3.0

