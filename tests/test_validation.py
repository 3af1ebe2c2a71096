"""The cost terms the published runs need, and benchmarks/validate.py (held-out validation)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

import hw
import models
import optimizer
from hw.topology import switched_collective
from optimizer.model import cost

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import validate  # noqa: E402


# ---- GEMM efficiency: size, wave quantization, roofline --------------------------------------
def _die(**kw):
    base = hw.load("dgx-a100").die
    return base.model_copy(update=kw)


def test_wave_quantization_is_the_filled_share_of_the_last_wave():
    """Tiles of 100, 50 or 25 elements (the least waste wins), 10 at once."""
    die = _die(matmul_efficiency=0.8, gemm_half_size=0.0, gemm_tile_elements=100, compute_units=10,
               gemm_roofline=False)
    assert cost.gemm_efficiency(die, 1e12, out_elements=1000) == pytest.approx(0.8)  # 10 tiles, one full wave
    # 1100 elements: 11 tiles of 100 in 2 waves (11/20), 22 of 50 in 3 (22/30), 44 of 25 in 5 (44/50)
    assert cost.gemm_efficiency(die, 1e12, out_elements=1100) == pytest.approx(0.8 * 44 / 50)
    assert cost.gemm_efficiency(die, 1e12, out_elements=1001) == pytest.approx(0.8 * 41 / 50)  # partial tiles
    assert cost.gemm_efficiency(die, 1e12, out_elements=250) == pytest.approx(0.8)  # 10 tiles of 25
    assert cost.gemm_efficiency(die, 1e12) == pytest.approx(0.8)  # shape not given: no quantization


def test_size_curve_and_roofline():
    die = _die(matmul_efficiency=0.5, gemm_half_size=1e9, gemm_tile_elements=0, compute_units=0, gemm_roofline=True)
    assert cost.gemm_efficiency(die, 1e9) == pytest.approx(0.25)
    peak = 1e14
    t = cost.matmul_time(1e9, die, peak)
    assert t == pytest.approx(1e9 / (peak * 0.25))
    nbytes = 1e9  # a memory-bound GEMM takes its bytes / bandwidth
    assert cost.matmul_time(1e9, die, peak, nbytes=nbytes) == pytest.approx(max(t, nbytes / die.memory_bandwidth))
    assert cost.matmul_time(1e9, die.model_copy(update={"gemm_roofline": False}), peak, nbytes=nbytes) == t


# ---- collectives on a switched cluster --------------------------------------------------------
def test_switched_collective_ring_latency_and_level_efficiency():
    h = hw.load("dgx-a100", nodes=4)
    lo, hi = h.topology.levels[0], h.topology.levels[-1]
    group = tuple((n, d) for n in range(4) for d in range(8))  # 32 GPUs, 4 nodes
    nbytes = 1e9
    got = switched_collective("all_gather", group, nbytes, h).time_s
    k, n, local = 32, 4, 8
    bandwidth = (local - 1) / local * nbytes / lo.effective_bandwidth + (n - 1) / n * nbytes / local / hi.effective_bandwidth
    latency = (k - 1) * hi.latency_s  # every ring step waits for the member across a node boundary
    assert got == pytest.approx(bandwidth + latency)
    assert hi.effective_bandwidth == hi.bandwidth * hi.efficiency


def test_level_efficiency_is_validated():
    with pytest.raises(Exception, match="efficiency"):
        hw.schema.Level(name="x", size=8, bandwidth=1e9, latency_s=0.0, efficiency=1.5)


# ---- baselines as the published runs ran ------------------------------------------------------
def test_distributed_optimizer_is_zero1_with_fp32_grads():
    """Megatron-LM's --use-distributed-optimizer: 6 + 12/dp bytes per parameter of model state."""
    work = models.Workload(model=models.load("llama2-7b"), global_batch=64, seq_len=4096)
    h = hw.load("dgx-a100", nodes=1)
    plain = optimizer.baselines.megatron(work, h, tp=1, dp=8, micro_batch=1, recompute="full")
    dist = optimizer.baselines.megatron(work, h, tp=1, dp=8, micro_batch=1, recompute="full",
                                        distributed_optimizer=True)
    assert dist.zero_stage == 1 and dist.fp32_grad_accumulation
    rp, rd = optimizer.evaluate(plain, work, h), optimizer.evaluate(dist, work, h)
    psi = models.parameter_count(work.model)
    state = lambda r: r.memory["weights"] + r.memory["grads"] + r.memory["optimizer"]  # noqa: E731
    assert state(rp) == pytest.approx(18 * psi, rel=1e-9)
    assert state(rd) == pytest.approx((6 + 12 / 8) * psi, rel=1e-9)


# ---- the validation script --------------------------------------------------------------------
def test_kendall_tau():
    assert validate.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert validate.kendall_tau([1, 2, 3, 4], [40, 30, 20, 10]) == -1.0
    assert validate.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def test_every_row_is_scored_or_says_why_not():
    tables = validate.load_tables()
    assert {"megatron_sc21_table1", "megatron_sc21_table2", "korthikanti_table4", "korthikanti_table5",
            "mtnlg_smith2022"} <= set(tables)
    assert len(tables["megatron_sc21_table1"]["rows"]) == 10 and len(tables["megatron_sc21_table2"]["rows"]) == 12
    results = validate.score_all(tables)
    for r in results:
        assert ("ours" in r and math.isfinite(r["ours"]) and r["ours"] > 0) or r.get("skipped"), r


def test_fit_split_is_named_and_every_fitted_parameter_says_so():
    tables = validate.load_tables()
    for preset, names in validate.FIT_SPLIT.items():
        assert all(n in tables for n in names), (preset, names)
        text = (ROOT / "hw" / "presets" / f"{preset}.yaml").read_text()
        for key in validate.DIE_FITTED:
            line = next(x for x in text.splitlines() if x.strip().startswith(key + ":"))
            assert "fitted by benchmarks/validate.py --fit on " + ", ".join(names) in line


def test_committed_validation_results_match_the_code():
    """benchmarks/results/validation.json is what `python benchmarks/validate.py` prints today."""
    committed = json.loads((ROOT / "benchmarks" / "results" / "validation.json").read_text())
    fresh = validate.score_all(validate.load_tables())
    old = {(r["table"], r["id"]): r for r in committed["rows"]}
    assert len(old) == len(fresh)
    for r in fresh:
        c = old[(r["table"], r["id"])]
        if "ours" in r:
            assert c["ours"] == pytest.approx(r["ours"], rel=1e-5), r["id"]
        else:
            assert c.get("skipped") == r["skipped"]


# ---- per-op terms the published runs need --------------------------------------------------------
def test_memory_bound_backward_moves_the_bytes_of_its_kernel():
    from models.graph import MEMORY_BOUND_BACKWARD
    from optimizer.model.tables import tables_for

    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=8, seq_len=2048)
    h = hw.load("dgx-a100", nodes=1)
    tb = tables_for(optimizer.baselines.megatron(work, h, tp=1, dp=8), work, h)
    for name, kind in (("ln1", "norm"), ("softmax", "softmax"), ("act", "activation"), ("attn_dropout", "dropout"),
                       ("add1", "add")):
        oc = tb.option_cost(tb.graph.op(name), (None, None))
        assert oc.bwd_s == pytest.approx(MEMORY_BOUND_BACKWARD[kind] * oc.fwd_s)
    gemm = tb.option_cost(tb.graph.op("fc1"), (None, None))
    assert gemm.bwd_s == pytest.approx(2 * gemm.fwd_s)


def test_fp8_runs_the_linears_at_the_fp8_peak_and_attention_at_bf16():
    from optimizer.model.tables import tables_for

    h = hw.load("dgx-h100", nodes=1)
    h = h.model_copy(update={"die": h.die.model_copy(update={"gemm_roofline": False, "compute_units": 0})})
    times = {}
    for dtype in ("bf16", "fp8"):
        work = models.Workload(model=models.load("llama2-7b"), global_batch=8, seq_len=4096, dtype=dtype,
                               flash_attention=True)
        tb = tables_for(optimizer.baselines.megatron(work, h, tp=1, dp=8), work, h)
        times[dtype] = {n: tb.option_cost(tb.graph.op(n), (None, None)).fwd_s for n in ("fc1", "attention", "lm_head")}
        assert work.dtype_bytes == 2  # FP8 training stores and communicates BF16
    assert times["fp8"]["fc1"] == pytest.approx(times["bf16"]["fc1"] * h.peak("bf16") / h.peak("fp8"))
    assert times["fp8"]["attention"] == pytest.approx(times["bf16"]["attention"])
    assert times["fp8"]["lm_head"] == pytest.approx(times["bf16"]["lm_head"])


def test_per_tensor_zero3_gathers_pay_each_tensors_latency_and_hide_nothing():
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=64, seq_len=2048)
    h = hw.load("dgx-a100", nodes=4)
    base = optimizer.baselines.deepspeed(work, h, zero_stage=3, micro_batch=2, checkpointing=True)
    per = base.model_copy(update={"zero3_gather": "per_tensor"})
    from optimizer.model.tables import tables_for

    tb_b, tb_p = tables_for(base, work, h), tables_for(per, work, h)
    op = tb_b.graph.op("fc1")
    g_b = tb_b.option_cost(op, (None, None)).gather.time_s
    g_p = tb_p.option_cost(op, (None, None)).gather.time_s
    one = tb_p.dp_collective("all_gather", op.params * work.dtype_bytes / op.param_tensors).time_s
    assert op.param_tensors == 2 and g_p == pytest.approx(2 * one) and g_p > g_b
    rb, rp = optimizer.evaluate(base, work, h), optimizer.evaluate(per, work, h)
    assert rp.breakdown["zero_comm_exposed"] == pytest.approx(rp.breakdown["zero_comm"])
    assert rp.step_time_s > rb.step_time_s


def test_async_tp_comm_hides_input_gradient_collectives_only_in_backward():
    work = models.Workload(model=models.load("megatron-18.4b"), global_batch=8, seq_len=2048)
    h = hw.load("dgx-a100", nodes=1)
    plain = optimizer.baselines.megatron(work, h, tp=8, dp=1, micro_batch=1, recompute="none")
    fast = optimizer.baselines.megatron(work, h, tp=8, dp=1, micro_batch=1, recompute="none", async_tp_comm=True)
    assert {k for k, v in fast.ops.items() if v.overlap == "chunked"} == {"q_proj", "kv_proj", "fc1", "lm_head"}
    rp, rf = optimizer.evaluate(plain, work, h), optimizer.evaluate(fast, work, h)
    assert rf.breakdown["compute"] == rp.breakdown["compute"]
    assert rf.step_time_s < rp.step_time_s
    full = optimizer.baselines.megatron(work, h, tp=8, dp=1, micro_batch=1, recompute="none", async_tp_comm=True,
                                        tp_comm_overlap=True)
    assert {k for k, v in full.ops.items() if v.overlap == "chunked"} == \
        {"q_proj", "kv_proj", "out_proj", "fc1", "fc2", "lm_head"}
    assert optimizer.evaluate(full, work, h).step_time_s < rf.step_time_s  # forward reductions hide too


def test_blocking_pipeline_transfers_send_the_whole_activation_and_wait():
    from optimizer.model.tables import tables_for

    work = models.Workload(model=models.load("megatron-18.4b"), global_batch=64, seq_len=2048)
    h = hw.load("dgx-a100", nodes=4)
    over = optimizer.baselines.megatron(work, h, tp=8, pp=4, dp=1, micro_batch=1)
    block = over.model_copy(update={"pp_transfer": "blocking"})
    tb = tables_for(block, work, h)
    nbytes = 2 * 2048 * work.model.hidden  # one micro-batch's boundary activation, bf16
    ib = h.topology.levels[-1]
    assert tb.p2p((None, None)).time_s == pytest.approx(nbytes / ib.effective_bandwidth + ib.latency_s)
    ro, rb = optimizer.evaluate(over, work, h), optimizer.evaluate(block, work, h)
    assert rb.breakdown["pp_comm_exposed"] > ro.breakdown["pp_comm_exposed"]
    assert rb.step_time_s > ro.step_time_s


def test_flop_conventions_of_the_publications():
    m = models.load("llama2-7b")
    work = models.Workload(model=m, global_batch=4, seq_len=4096)
    row = {"id": "x", "recompute": "full", "flops": "sc21"}
    assert validate.published_flops(row, m, work) == models.step_flops(m, 4, 4096, recompute=True)
    assert validate.published_flops({**row, "flops": "model"}, m, work) == models.step_flops(m, 4, 4096)
    h, L, s, b = m.hidden, m.layers, 4096, 4
    causal = models.step_flops(m, 4, 4096) - 0.5 * 3 * L * 4 * b * s * s * h  # QKᵀ and attention·V halved
    assert validate.published_flops({**row, "flops": "model_causal"}, m, work) == pytest.approx(causal)
