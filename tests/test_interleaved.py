"""Interleaved 1F1B with uneven model chunks (Megatron-LM's pipeline layout): the pipeline formula,
evaluate(), the solver's inner model and space, the Megatron-LM baseline, and the ZeRO stages of
the Megatron-LM and DeepSpeed spaces."""

from __future__ import annotations

import dataclasses
import math

import pytest

import hw
import models
import optimizer
from optimizer.baselines import megatron
from optimizer.model import cost
from optimizer.model.layout import light_ends_layers
from optimizer.model.mapping import Mapping, OpChoice
from optimizer.search.bruteforce import brute_force
from optimizer.search.space import OuterPoint, Space, chunk_layouts, get_space

REL = 1e-6


def test_uneven_chunks_bubble_by_hand():
    """p = 2 stages, v = 2 chunks each, m = 4 micro-batches, chunk times 1, 2 (chunks 0 and 2, on
    stage 0) and 2, 2 (chunks 1 and 3, on stage 1), no transfers: stage times T = (3, 4). The
    first micro-batch crosses one chunk of every stage forward and backward, each stage's mean
    chunk: 1.5 + 2 = 3.5 s; the slower stage then sets the pace for the other m − 1/v = 3.5
    micro-batches' worth of its work: 3.5 · 4 = 14 s. Step 17.5 s; without interleaving (the same
    stages, one chunk each) Σ T + (m − 1)·max T = 7 + 12 = 19 s."""
    assert cost.pipeline_time([1.0 + 2.0, 2.0 + 2.0], 4, 2) == 17.5
    assert cost.pipeline_time([3.0, 4.0], 4, 1) == 19.0
    # equal chunks: Narayanan et al. SC21 sec. 2.2, bubble (p − 1)·T/v on top of m·T
    assert cost.pipeline_time([2.0] * 4, 8, 2) == pytest.approx(8 * 2.0 + 3 * 2.0 / 2)


LLAMA = models.Workload(model=models.load("llama3.1-405b"), global_batch=2048, seq_len=8192)
H100 = hw.load("dgx-h100", nodes=1024)


def llama_megatron(v: int) -> Mapping:
    return megatron(LLAMA, H100, tp=8, pp=16, dp=64, micro_batch=1, recompute="full", sequence_parallel=True,
                    virtual_stages=v, distributed_optimizer=True)


def test_llama3_405b_interleaves_on_uneven_stages():
    """126 layers on pp 16 hold (7, 8, …, 8, 7) per stage; with v = 2 the chunks are Megatron-LM's
    layout "Et*3|(t*4|)*30t*3L" (first and last chunk 3 layers, the rest 4), with v = 4 the ends 1
    and the rest 2. Both evaluate, and interleaving cuts the bubble v-fold (SC21 sec. 2.2: the
    stages' work per micro-batch stays the same)."""
    base = optimizer.evaluate(llama_megatron(1), LLAMA, H100)
    for v in (2, 4):
        mp = llama_megatron(v)
        per = 126 // (16 * v) + 1
        assert mp.layers_per_chunk == (per - 1,) + (per,) * (16 * v - 2) + (per - 1,)
        assert tuple(sum(mp.layers_per_chunk[s::16]) for s in range(16)) == (7,) + (8,) * 14 + (7,)
        rep = optimizer.evaluate(mp, LLAMA, H100)
        assert rep.fits and rep.step_time_s < base.step_time_s
        assert rep.breakdown["bubble"] == pytest.approx(base.breakdown["bubble"] / v, rel=1e-3)
        assert sum(rep.breakdown[k] for k in ("compute", "recompute", "tp_comm_exposed", "pp_comm_exposed",
                                              "bubble", "dp_comm_exposed", "optimizer")) == \
            pytest.approx(rep.step_time_s, rel=1e-9)


def test_solver_may_choose_the_uneven_interleaved_point():
    """The explicit Llama 3 405B points (tp 8, pp 16, v 2 and 4, light-ends layouts) are not
    skipped: the solver proves one optimal and evaluate() of its mapping equals the objective."""
    pts = tuple(OuterPoint(16, 64, (1, 8), 1, 1, v, "full", layers_per_chunk=light_ends_layers(126, 16 * v))
                for v in (2, 4))
    sp = dataclasses.replace(get_space("megatron"), points=pts)
    assert sp.skipped_points(LLAMA) == []
    sol = optimizer.solve(LLAMA, H100, space=sp, time_limit_s=120)
    assert sol.status == "optimal" and sol.mapping.virtual_stages in (2, 4)
    assert sol.mapping.layers_per_chunk == light_ends_layers(126, 16 * sol.mapping.virtual_stages)
    rep = optimizer.evaluate(sol.mapping, LLAMA, H100)
    assert math.isclose(rep.step_time_s, sol.objective_s, rel_tol=REL)


def small_case():
    """7 layers on 2 stages, 2 chunks each: uneven stages (the balanced split 4, 3 and the light-
    ends layout 1, 3, 2, 1, stages of 3 and 4 layers, are both tried), a few free ops so brute
    force stays small."""
    h = hw.load("tmac-wafer", rows=1, cols=4, sram_bytes=40e9)
    model = models.load("megatron-1.7b").model_copy(update={"layers": 7})
    w = models.Workload(model=model, global_batch=8, seq_len=512)
    sp = Space("full", offload=False, zero_stages=(0,), virtual=(2,), free_ops=frozenset({"fc1", "fc2"}),
               points=tuple(OuterPoint(2, 1, (1, 2), 2, 0, 2, layers_per_chunk=lay)
                            for lay in chunk_layouts(7, 2, 2)))
    return w, h, sp


def test_uneven_chunks_solver_equals_brute_force_and_evaluate():
    w, h, sp = small_case()
    assert len(sp.points) == 2
    bf = brute_force(w, h, sp)
    assert bf.evaluated == bf.space_size > 10
    sol = optimizer.solve(w, h, space=sp, time_limit_s=60)
    assert sol.status == "optimal"
    assert math.isclose(sol.objective_s, bf.best_s, rel_tol=REL)
    assert math.isclose(optimizer.evaluate(sol.mapping, w, h).step_time_s, sol.objective_s, rel_tol=REL)


def test_step_depends_on_the_stages_layers_not_their_split_over_chunks():
    """layers_per_chunk equal to the default split changes nothing, nor does another split with
    the same layers per stage (the stage's work per micro-batch and its memory are the same); a
    layout moving a layer between stages changes the step."""
    w, h, _ = small_case()
    ops = {"fc1": OpChoice(split=("f", "f"))}
    even = Mapping(pp=2, tp_shape=(1, 2), micro_batch=2, schedule="interleaved", virtual_stages=2, ops=ops)
    rep = optimizer.evaluate(even, w, h)
    assert optimizer.evaluate(even.model_copy(update={"layers_per_chunk": (2, 2, 2, 1)}), w, h) == rep
    assert optimizer.evaluate(even.model_copy(update={"layers_per_chunk": (1, 2, 3, 1)}), w, h) == rep
    assert optimizer.evaluate(even.model_copy(update={"layers_per_chunk": (1, 3, 2, 1)}), w, h).step_time_s \
        != rep.step_time_s


def test_megatron_space_has_distributed_optimizer_and_fsdp():
    """Megatron-LM runs ZeRO 1 (--use-distributed-optimizer) and 2, 3 (Megatron-FSDP); DeepSpeed
    ZeRO 0-3, and with its pipeline engine ZeRO 0-1 only (blocking transfers)."""
    meg, ds = get_space("megatron"), get_space("deepspeed")
    assert meg.zero_stages == (0, 1, 2, 3) and 4 in meg.virtual
    assert ds.zero_stages == (0, 1, 2, 3) and ds.pipeline and ds.pipeline_zero_stages == (0, 1)
    pts = list(ds.outer_points(small_case()[0], hw.load("dgx-a100", nodes=1)))
    assert {p.zero_stage for p in pts if p.pp > 1} == {0, 1} and {p.zero_stage for p in pts} == {0, 1, 2, 3}


def test_megatron_space_picks_the_distributed_optimizer_on_llama2_7b():
    """Llama2-7B on one DGX A100 node, batch 64: the Megatron-LM space now reaches ZeRO 1 (the
    distributed optimizer), faster than its ZeRO-0 optimum."""
    w = models.Workload(model=models.load("llama2-7b"), global_batch=64, seq_len=4096)
    h = hw.load("dgx-a100", nodes=1)
    sol = optimizer.solve(w, h, space="megatron", time_limit_s=120)
    plain = optimizer.solve(w, h, space=dataclasses.replace(get_space("megatron"), zero_stages=(0,)),
                            time_limit_s=120)
    assert sol.status == plain.status == "optimal"
    assert sol.mapping.zero_stage >= 1 and sol.objective_s < plain.objective_s * (1 - 1e-3)


def test_deepspeed_pipeline_point_solver_equals_brute_force_and_evaluate():
    """A DeepSpeed pipeline-engine point (pp 2, ZeRO 1, blocking transfers): the inner model's
    steady state charges the transfers whole, as evaluate() does for pp_transfer 'blocking'."""
    h = hw.load("tmac-wafer", rows=1, cols=4, sram_bytes=40e9)
    w = models.Workload(model=models.load("megatron-1.7b"), global_batch=8, seq_len=512)
    sp = dataclasses.replace(get_space("deepspeed"), offload=False, points=(OuterPoint(2, 2, (1, 1), 1, 1, 1, "none"),))
    bf = brute_force(w, h, sp)
    sol = optimizer.solve(w, h, space=sp, time_limit_s=60)
    assert sol.status == "optimal" and sol.mapping.pp_transfer == "blocking"
    assert math.isclose(sol.objective_s, bf.best_s, rel_tol=REL)
    assert math.isclose(optimizer.evaluate(sol.mapping, w, h).step_time_s, sol.objective_s, rel_tol=REL)
    overlapped = sol.mapping.model_copy(update={"pp_transfer": "overlapped"})
    assert optimizer.evaluate(overlapped, w, h).step_time_s < sol.objective_s
