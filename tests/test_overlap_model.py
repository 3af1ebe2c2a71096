"""Overlap of communication with compute inside the step model (evaluate) and the solver.

- The overlap mode of each GEMM (OpChoice.overlap: sequential, chunked software overlap, fused
  T3-style track & trigger) prices the reduction of the partial results it produces with
  optimizer.model.overlap.overlap_time; software overlap is never free and can lose to sequential.
- Fused collectives change the optimum where communication matters (T3: Pati et al., ASPLOS 2024).
- Brute force == every backend == evaluate on small instances where the modes are picked.
- Data-parallel gradient reduction, pipeline transfers and ZeRO-3 gathers are overlapped and their
  exposed parts are reported (hand-checked against the formulas of docs/cost-model.md).
"""

from __future__ import annotations

import math

import pytest

import hw
import models
import optimizer
from hw.schema import Overlap
from optimizer.model import overlap as ov
from optimizer.search.bruteforce import brute_force
from optimizer.model.evaluate import prepare, stage_scores
from optimizer.formulation.backends import BACKENDS
from optimizer.model.mapping import Mapping, OpChoice
from optimizer.search.space import OuterPoint, Space

REL = 1e-6
GPT = models.Workload(model=models.load("megatron-1.7b"), global_batch=4, seq_len=1024)


def tp_mapping(shape=(1, 4), mode="sequential", **kw) -> Mapping:
    """Megatron-style tensor parallelism of the attention output projection and the MLP (row-parallel
    out_proj and fc2 leave partial sums that are reduced after their GEMM)."""
    ops = {"q_proj": OpChoice(split=("a", "a")), "kv_proj": OpChoice(split=("g", "g")),
           "qk": OpChoice(split=("a", "a")), "softmax": OpChoice(split=("a", "a")),
           "attn_dropout": OpChoice(split=("a", "a")), "av": OpChoice(split=("a", "a")),
           "out_proj": OpChoice(split=("a", "a"), overlap=mode), "fc1": OpChoice(split=("f", "f"), overlap=mode),
           "act": OpChoice(split=("f", "f")), "fc2": OpChoice(split=("f", "f"), overlap=mode)}
    return Mapping(tp_shape=shape, ops=ops, **kw)


def _fc2_edge(tables):
    return next(e for e in tables.edges if e.producer == "fc2")


# ---- (a) software overlap is never free -------------------------------------------------------

def test_chunked_slower_than_ideal_and_mirrored_by_evaluate():
    machine = hw.load("t3-gpu", cols=4)
    _, _, tb = prepare(tp_mapping(), GPT, machine)
    e = _fc2_edge(tb)
    c = tb.option_cost(tb.graph.op("fc2"), ("f", "f")).fwd_s  # the row-parallel GEMM
    o_c = tp_mapping().choice(e.consumer).split
    conv = tb.edge_cost(e, ("f", "f"), tuple(o_c)).fwd_conv
    assert c > 0 and conv.reduce_s > 0 and conv.ring == 4
    for mode in ("chunked", "fused"):
        overlapped = c + conv.reduce_s + tb.overlap_delta(e, ("f", "f"), tuple(o_c), "fwd", mode)
        assert overlapped > max(c, conv.reduce_s)  # never the ideal max(t_c, t_m)
        assert math.isclose(overlapped, ov.overlap_time(mode, c, conv.reduce_s, 4, tb.overlap_params))
    # evaluate charges exactly that difference, once per layer and micro-batch (fc2's only use)
    only_fc2 = tp_mapping().model_copy(update={"ops": {**tp_mapping().ops, "fc2": OpChoice(split=("f", "f"),
                                                                                            overlap="chunked")}})
    seq = optimizer.evaluate(tp_mapping(), GPT, machine)
    chk = optimizer.evaluate(only_fc2, GPT, machine)
    m, L = GPT.global_batch, GPT.model.layers
    hand = m * L * tb.overlap_delta(e, ("f", "f"), tuple(o_c), "fwd", "chunked")
    assert math.isclose(chk.step_time_s - seq.step_time_s, hand, rel_tol=1e-9)


def contention_heavy() -> hw.Hardware:
    """t3-gpu with heavy software-overlap contention: cores and memory shared 2x each way and
    20 µs per chunk (a hand-made preset for the test, not a real machine)."""
    base = hw.load("t3-gpu", cols=4, fused_collectives=False)
    return base.model_copy(update={"overlap": base.overlap.model_copy(
        update={"compute_slowdown": 1.5, "comm_slowdown": 1.5, "chunk_overhead_s": 2e-5})})


def test_solver_keeps_small_gemms_sequential_under_contention():
    machine = contention_heavy()
    small = models.Workload(model=models.ModelConfig(name="small", layers=2, hidden=512, heads=8, vocab=1024,
                                                      seq_len=256), global_batch=4, seq_len=256)
    seq = optimizer.evaluate(tp_mapping(), small, machine)
    chunked = optimizer.evaluate(tp_mapping(mode="chunked"), small, machine)
    assert chunked.step_time_s > seq.step_time_s  # chunking and contention cost more than they hide
    sp = Space("full", offload=False, points=(OuterPoint(1, 1, (1, 4), 1, 0),))
    sol = optimizer.solve(small, machine, space=sp)
    assert sol.status == "optimal"
    uses_tp = {k for k, c in sol.mapping.ops.items() if c.split != (None, None)}
    assert uses_tp  # tensor parallelism is used, so the modes were available
    assert all(c.overlap == "sequential" for c in sol.mapping.ops.values())
    # CP-SAT counts time in whole nanoseconds: a few ns on this sub-millisecond step
    assert math.isclose(optimizer.evaluate(sol.mapping, small, machine).step_time_s, sol.objective_s, rel_tol=REL,
                        abs_tol=1e-8)


def test_fused_rejected_on_hardware_without_it():
    machine = hw.load("t3-gpu", cols=4, fused_collectives=False)
    with pytest.raises(hw.ConfigError, match=r"ops\.(out_proj|fc1|fc2)\.overlap.*features\.fused_collectives"):
        optimizer.evaluate(tp_mapping(mode="fused"), GPT, machine)
    with pytest.raises(hw.ConfigError, match="allowed: sequential, chunked"):
        optimizer.evaluate(tp_mapping(mode="fused"), GPT, machine)
    assert optimizer.evaluate(tp_mapping(mode="chunked"), GPT, machine).step_time_s > 0


def test_overlap_field_round_trips_and_defaults(tmp_path):
    assert OpChoice().overlap == "sequential"
    m = tp_mapping(mode="fused")
    path = tmp_path / "plan.json"
    m.save(path)
    assert Mapping.load(path) == m
    with pytest.raises(Exception, match="overlap"):
        OpChoice(overlap="ideal")


# ---- (b) fused collectives change the optimum where communication matters ---------------------

def test_fused_collectives_speed_up_the_comm_bound_optimum():
    """A model that needs tensor parallelism on a ring of 8 T3 GPUs at a short sequence (small GEMMs,
    communication-heavy sublayers): the fused optimum is faster than the best without fused
    collectives, and it uses the fused mode."""
    work = models.Workload(model=models.load("t-nlg-17b"), global_batch=8, seq_len=1024)
    sp = Space("full", zero_stages=(0,), virtual=(1,), offload=False)
    with_fused = optimizer.solve(work, hw.load("t3-gpu"), space=sp, time_limit_s=60)
    without = optimizer.solve(work, hw.load("t3-gpu", fused_collectives=False), space=sp, time_limit_s=60)
    assert with_fused.status == without.status == "optimal"
    assert any(c.overlap == "fused" for c in with_fused.mapping.ops.values())
    assert not any(c.overlap == "fused" for c in without.mapping.ops.values())
    assert with_fused.report.step_time_s < without.report.step_time_s * (1 - 1e-3)
    assert with_fused.mapping.tp >= without.mapping.tp


# ---- (c) brute force == every backend == evaluate, with the modes in play ---------------------

POINTS = [OuterPoint(1, 1, (1, 4), 1, 0), OuterPoint(2, 1, (1, 2), 1, 0), OuterPoint(1, 2, (1, 2), 2, 3)]


@pytest.fixture(scope="module", params=POINTS,
                ids=lambda p: f"pp{p.pp}-dp{p.dp}-{p.shape[0]}x{p.shape[1]}-z{p.zero_stage}")
def point_case(request):
    machine = hw.load("t3-gpu", cols=4)
    sp = Space("full", offload=False, free_ops=frozenset({"out_proj", "fc1", "fc2"}), points=(request.param,))
    return machine, sp, brute_force(GPT, machine, sp)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_equal_brute_force_with_modes(point_case, backend):
    machine, sp, bf = point_case
    assert bf.evaluated == bf.space_size > 1000
    assert any(c.overlap != "sequential" for c in bf.best_choices.values())  # the modes matter here
    sol = optimizer.solve(GPT, machine, space=sp, backend=backend, time_limit_s=60)
    assert sol.status == "optimal"
    assert math.isclose(sol.objective_s, bf.best_s, rel_tol=REL)
    assert math.isclose(optimizer.evaluate(sol.mapping, GPT, machine).step_time_s, sol.objective_s, rel_tol=REL)


# ---- (d) exposed parts of the data-parallel, pipeline and ZeRO-3 communication ------------------

def no_contention(machine: hw.Hardware) -> hw.Hardware:
    return machine.model_copy(update={"overlap": Overlap()})


def _layer_backward(tables, mapping) -> float:
    g = tables.graph
    return sum(tables.option_cost(o, mapping.choice(o.name).split).bwd_s +
               mapping.choice(o.name).recompute * tables.option_cost(o, mapping.choice(o.name).split).fwd_s
               for o in g.block)


@pytest.mark.parametrize("link_bandwidth", [2.5e12, 2.5e8])  # compute-bound, then communication-bound
def test_dp_exposed_is_max_of_zero_and_comm_minus_backward(link_bandwidth):
    machine = no_contention(hw.load("dgx-a100", nodes=2))
    machine = machine.model_copy(update={"topology": machine.topology.model_copy(update={"levels": tuple(
        lv.model_copy(update={"bandwidth": link_bandwidth}) if i == len(machine.topology.levels) - 1 else lv
        for i, lv in enumerate(machine.topology.levels))})})
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=8, seq_len=1024)
    mp = optimizer.baselines.megatron(work, machine, tp=8, pp=1, dp=2, micro_batch=1)
    mp, machine, tb = prepare(mp, work, machine)
    st = stage_scores(mp, tb)[0]
    L = work.model.layers
    dp = st.raw["dp_comm"]  # the gradient all-reduce alone (no partial weight gradients here)
    params = L * sum(tb.option_cost(o, mp.choice(o.name).split).params for o in tb.graph.block) + \
        sum(tb.option_cost(o, mp.choice(o.name).split).params for o in tb.graph.pre + tb.graph.post)
    assert math.isclose(dp, tb.dp_sync(params).time_s, rel_tol=1e-12)
    tail = dp * ov.DP_BUCKET_LAYERS / L  # the last bucket: one layer's gradients
    overlappable = (L - ov.DP_BUCKET_LAYERS) * _layer_backward(tb, mp)  # backward after the first bucket
    rep = optimizer.evaluate(mp, work, machine)
    assert math.isclose(rep.breakdown["dp_comm"], dp, rel_tol=1e-12)
    assert math.isclose(rep.breakdown["dp_comm_exposed"], tail + max(0.0, dp - tail - overlappable), rel_tol=1e-12)
    if link_bandwidth < 1e9:
        assert rep.breakdown["dp_comm_exposed"] > tail  # communication-bound: more than the last bucket
    else:
        assert rep.breakdown["dp_comm_exposed"] == pytest.approx(tail, rel=1e-12)


def test_pp_and_zero3_exposed_parts_hand_checked():
    machine = no_contention(hw.load("dgx-a100", nodes=1))
    work = models.Workload(model=models.load("megatron-1.7b"), global_batch=16, seq_len=1024)
    mp = optimizer.baselines.megatron(work, machine, tp=2, pp=2, dp=2, micro_batch=1)
    mp = mp.model_copy(update={"zero_stage": 3})
    mp, machine, tb = prepare(mp, work, machine)
    stages = stage_scores(mp, tb)
    m, v = tb.m, tb.virtual
    # pipeline: each stage's transfers hide under its other work in the steady state; the fill and
    # drain carry them whole
    for st in stages:
        busy = st.time_s - st.parts["pp_comm"]
        assert math.isclose(st.parts["pp_comm"], max(0.0, st.raw["pp_comm"] - busy), abs_tol=1e-15)
    rep = optimizer.evaluate(mp, work, machine)
    slow = max(stages, key=lambda s: s.time_s)
    fill = sum(st.raw["pp_comm"] - st.parts["pp_comm"] for st in stages) / v
    assert math.isclose(rep.breakdown["pp_comm_exposed"], m * slow.parts["pp_comm"] + fill, rel_tol=1e-12)
    assert rep.breakdown["pp_comm_exposed"] < rep.breakdown["pp_comm"]
    # ZeRO-3: a layer's gathers beside the previous layer's forward (backward) compute
    g = tb.graph
    for s, st in enumerate(stages):
        L = tb.layers_per_stage[s]
        oc = {o.name: tb.option_cost(o, mp.choice(o.name).split) for o in g.block}
        rec = {o.name: mp.choice(o.name).recompute for o in g.block}
        zf = sum(c.gather.time_s for c in oc.values())
        zb = sum(c.gather.time_s * (1 + rec[n]) for n, c in oc.items())
        cf = sum(c.fwd_s for c in oc.values())
        cb = sum(c.bwd_s + rec[n] * c.fwd_s for n, c in oc.items())
        extra = (g.pre if s == 0 else ()) + (g.post if s == tb.pp - 1 else ())
        serial = sum(2 * tb.option_cost(o, mp.choice(o.name).split).gather.time_s for o in extra)
        hand = L * (max(0.0, zf - cf) + max(0.0, zb - cb)) + serial
        assert zf > 0 and math.isclose(st.raw["zero_comm_exposed"], hand, rel_tol=1e-12)
        assert math.isclose(st.raw["zero_comm"], L * (zf + zb) + serial, rel_tol=1e-12)
    # the breakdown adds up to the step; exposed_comm is the sum of the exposed parts
    additive = {k: x for k, x in rep.breakdown.items() if k not in ("tp_comm", "pp_comm", "dp_comm", "zero_comm",
                                                                     "exposed_comm")}
    assert math.isclose(sum(additive.values()), rep.step_time_s, rel_tol=1e-9)
    assert math.isclose(rep.breakdown["exposed_comm"], sum(x for k, x in additive.items() if k.endswith("_exposed")),
                        rel_tol=1e-12)


# ---- data moved --------------------------------------------------------------------------------

def test_fused_near_memory_reduction_moves_less_data_and_energy_counts_it():
    machine = hw.load("t3-gpu", cols=4)
    seq = optimizer.evaluate(tp_mapping(), GPT, machine)
    chunked = optimizer.evaluate(tp_mapping(mode="chunked"), GPT, machine)
    fused = optimizer.evaluate(tp_mapping(mode="fused"), GPT, machine)
    assert seq.memory_traffic_bytes == chunked.memory_traffic_bytes > 0  # chunking changes timing only
    assert fused.memory_traffic_bytes < seq.memory_traffic_bytes
    # the saving is the reduction part of each fused conversion (reduce_scatter_bytes on the cores − near memory)
    _, _, tb = prepare(tp_mapping(mode="fused"), GPT, machine)
    mp = tp_mapping(mode="fused")
    ch = {k: mp.choice(k) for k in (o.name for o in tb.graph.block + tb.graph.pre + tb.graph.post)}
    saving = 0.0
    for e in tb.edges:
        if e.where == "block":  # no recomputation here: each conversion runs once per layer
            p, c = ch[e.producer], ch[e.consumer]
            saving += tb.overlap_saving_bytes(e, p.split, c.split, "fwd", p.overlap) + \
                tb.overlap_saving_bytes(e, p.split, c.split, "bwd", c.overlap)
    dies = machine.num_dies
    hand = saving * GPT.model.layers * tb.m * dies
    assert hand > 0 and math.isclose(seq.memory_traffic_bytes - fused.memory_traffic_bytes, hand, rel_tol=1e-9)
    # on an HBM die the memory traffic is priced as DRAM energy (no DRAM ports on t3-gpu)
    for rep in (seq, fused):
        assert math.isclose(rep.energy["dram"], rep.memory_traffic_bytes * machine.energy.dram_byte_j, rel_tol=1e-12)
