"""The energy and EDP objectives: the Report's energy by hand, solve() against brute force over the
same space scored by evaluate(), and the invariants between the time and energy optima."""

import math

import pytest

import hw
import models
import optimizer
from hw.loader import ConfigError
from models.graph import build_graph
from optimizer.search.bruteforce import brute_force
from optimizer.search.space import OuterPoint, Space

REL = 1e-6
# CP-SAT counts DRAM bytes kept off the die in KB (rounded up) and step times in ns or ps, so its
# energy is exact to about 1e-6 relative on these cases; the MIP backends take the model in floats
CPSAT_REL = 1e-5

SMALL = models.ModelConfig(name="small", layers=4, hidden=1024, heads=16, vocab=8192, seq_len=1024)


def gpu_case():
    """Llama2-7B on 4 A100s (HBM dies: memory traffic is priced as DRAM energy)."""
    h = hw.load("dgx-a100", nodes=1, cols=4)
    w = models.Workload(model=models.load("llama2-7b"), global_batch=4, seq_len=1024)
    sp = Space("full", zero_stages=(0,), virtual=(1,), free_ops=frozenset({"q_proj", "qk", "softmax"}))
    return w, h, sp


def chiplet_case():
    """A small GPT on four chiplets with little SRAM: pipeline or data parallel, state and
    activations in DRAM behind the ports (port traffic and its mesh hops), recomputation."""
    h = hw.load("hecaton-chiplet", rows=1, cols=4, sram_bytes=2.5e8)
    w = models.Workload(model=SMALL, global_batch=8, seq_len=1024)
    sp = Space("full", free_ops=frozenset({"qkv", "fc1", "act"}),
               points=(OuterPoint(2, 1, (1, 2), 1, 0, 1), OuterPoint(1, 2, (1, 2), 2, 1, 1)))
    return w, h, sp


CASES = {"llama2-7b/4 gpus": gpu_case, "gpt/4 chiplets with DRAM": chiplet_case}
_BF: dict = {}


def _brute(name: str, objective: str):
    if (name, objective) not in _BF:
        w, h, sp = CASES[name]()
        _BF[(name, objective)] = brute_force(w, h, sp, objective=objective)
    return _BF[(name, objective)]


def test_energy_by_hand():
    """Megatron TP=2 on two chiplets, no recompute, one micro-batch of one sequence per step: every
    part of Report.energy from the graph's FLOPs and tensor bytes, the mapping's splits and the
    preset's energy numbers (not from the Report's own traffic figures)."""
    h = hw.load("hecaton-chiplet", rows=1, cols=2, sram_bytes=4e9)
    m = models.ModelConfig(name="tiny", layers=2, hidden=1024, heads=16, vocab=8192, seq_len=512)
    w = models.Workload(model=m, global_batch=1, seq_len=512)
    mp = optimizer.baselines.megatron(w, h, tp=2, pp=1, dp=1, micro_batch=1, recompute="none")
    rep = optimizer.evaluate(mp, w, h)
    e = h.energy
    # executed FLOPs: Megatron's step without recompute, 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h))
    # (Narayanan et al. SC21), over both dies; TP splits the GEMMs, so nothing is replicated but the
    # elementwise ops, which count no FLOPs
    B, s, l, hd, V = 1, 512, 2, 1024, 8192
    flops = 72 * B * s * l * hd ** 2 * (1 + s / (6 * hd) + V / (12 * l * hd))
    assert math.isclose(rep.energy["compute"], flops * e.flop_j, rel_tol=1e-9)
    # SRAM traffic (docs/cost-model.md section 11), per die: every op reads and writes its inputs and
    # outputs (the graph's tensors) divided by the dies its split spans (2 for the split ops of the
    # mapping, 1 for the replicated norms, adds and residual dropouts), forward and backward
    # (1 + backward_factor); layers times for the block. Then the collectives below, each moving
    # (3k - 1)/k + 2(k - 1)/k = 3.5 times its tensor through memory on k = 2 dies.
    g = build_graph(m, micro_batch=1, seq_len=s)
    compute_bytes = 0.0
    for ops, uses in ((g.pre, 1), (g.block, l), (g.post, 1)):
        for op in ops:
            io = sum(g.tensors[x.tensor].nbytes(g.sizes) for x in op.inputs + op.outputs)
            dies = 1 if mp.ops[op.name].split == (None, None) else 2
            compute_bytes += uses * io / dies * (1 + op.backward_factor)
    # Megatron TP on a 1×2 line converts a b·s·h bf16 activation (n = 1 MiB) by an all-reduce on each
    # edge that needs it (its time's uses): per layer forward after out_proj and fc2, backward at the
    # inputs of q_proj, kv_proj and fc1; the embedding's output forward to add1 and twice to ln1
    # (again for ln1's backward, which saves it); the LM head input's gradient backward. The
    # vocab-split loss all-reduces its 2 fp32 statistics per row (b·s rows) forward and backward.
    n = B * s * hd * 2
    allreduces = 5 * l + 3 + 1
    loss = next(op for op in g.post if op.name == "loss")
    stats = B * s * loss.stats * 4
    sram_bytes = 2 * (compute_bytes + 3.5 * (allreduces * n + 2 * stats))
    assert math.isclose(rep.memory_traffic_bytes, sram_bytes, rel_tol=1e-12)
    assert math.isclose(rep.energy["memory"], sram_bytes * e.sram_byte_j, rel_tol=1e-12)
    # link byte-hops: a ring all-reduce of x bytes on two dies sends x/2 each way per phase, 2 phases:
    # 2·(x/2)·2 directions = 2x byte-hops (one hop)
    hops = 2 * (allreduces * n + 2 * stats)
    assert math.isclose(rep.energy["links"], hops * e.link_byte_hop_j, rel_tol=1e-12)
    assert math.isclose(rep.energy["static"], rep.step_time_s * 2 * e.static_w, rel_tol=1e-12)
    assert rep.energy["dram"] == 0.0 and rep.dram_bytes == 0.0
    assert math.isclose(rep.energy_j, sum(rep.energy.values()), rel_tol=1e-12)
    assert set(rep.energy) == {"compute", "memory", "links", "dram", "static"}


@pytest.mark.parametrize("name,backend", [("llama2-7b/4 gpus", "cpsat"), ("llama2-7b/4 gpus", "highs"),
                                          ("gpt/4 chiplets with DRAM", "cpsat"), ("gpt/4 chiplets with DRAM", "cbc")])
def test_energy_equals_brute_force(name, backend):
    w, h, sp = CASES[name]()
    bf = _brute(name, "energy")
    sol = optimizer.solve(w, h, space=sp, backend=backend, objective="energy", time_limit_s=60)
    rel = CPSAT_REL if backend == "cpsat" else REL
    assert sol.status == "optimal" and sol.objective == "energy"
    assert math.isclose(sol.objective_value, bf.best_value, rel_tol=rel)
    rep = optimizer.evaluate(sol.mapping, w, h)
    assert math.isclose(rep.energy_j, sol.objective_value, rel_tol=rel)
    assert math.isclose(rep.step_time_s, sol.objective_s, rel_tol=rel)  # static power makes time tight
    assert sol.bound_value is not None and sol.bound_value <= rep.energy_j * (1 + rel)
    assert sol.gap is not None and sol.gap <= rel


@pytest.mark.parametrize("backend", ["cpsat", "cbc"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_edp_equals_brute_force(name, backend):
    w, h, sp = CASES[name]()
    bf = _brute(name, "edp")
    sol = optimizer.solve(w, h, space=sp, backend=backend, objective="edp", time_limit_s=60)
    assert sol.status == "optimal" and sol.objective == "edp"
    assert math.isclose(sol.objective_value, bf.best_value, rel_tol=CPSAT_REL)
    rep = optimizer.evaluate(sol.mapping, w, h)
    assert math.isclose(rep.energy_j * rep.step_time_s, sol.objective_value, rel_tol=REL)
    assert sol.bound_value <= sol.objective_value * (1 + REL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_energy_optimum_against_time_optimum(name):
    """The energy optimum spends no more energy than the time optimum and is no faster; the EDP
    optimum's product is no larger than either's."""
    w, h, sp = CASES[name]()
    fast = optimizer.solve(w, h, space=sp, objective="time")
    lean = optimizer.solve(w, h, space=sp, objective="energy")
    edp = optimizer.solve(w, h, space=sp, objective="edp")
    assert fast.objective == "time" and fast.objective_value == fast.objective_s
    assert lean.report.energy_j <= fast.report.energy_j * (1 + CPSAT_REL)
    assert lean.report.step_time_s >= fast.report.step_time_s * (1 - CPSAT_REL)
    product = edp.report.energy_j * edp.report.step_time_s
    for other in (fast, lean):
        assert product <= other.report.energy_j * other.report.step_time_s * (1 + CPSAT_REL)


def test_bound_is_honest_under_a_short_time_limit():
    name = "gpt/4 chiplets with DRAM"
    w, h, sp = CASES[name]()
    bf = _brute(name, "energy")
    sol = optimizer.solve(w, h, space=sp, objective="energy", time_limit_s=1e-3)
    assert sol.status in ("feasible", "timeout")
    assert sol.bound_value is not None and sol.bound_value <= bf.best_value * (1 + REL)


def test_bad_objective_lists_allowed():
    w, h, sp = gpu_case()
    with pytest.raises(ConfigError) as err:
        optimizer.solve(w, h, space=sp, objective="power")
    assert all(x in str(err.value) for x in ("time", "energy", "edp"))
