"""The peers' own heuristics as fixed mappings (optimizer.baselines): each is scored by evaluate(),
stays inside the strategy space of the same name, is deterministic, and is never better than the
proven bound of that space."""

from __future__ import annotations

import pytest

import hw
import models
import optimizer
from hw.loader import ConfigError
from models.graph import RECOMPUTE_POLICIES, build_graph, recompute_set
from optimizer import OpChoice, baselines, evaluate
from optimizer.search.space import LINEARS, get_space

REL = 1e-6  # CP-SAT optimizes on an integer time scale: its optimum matches evaluate() to this (test_solver)
GPT = models.load("megatron-1.7b")  # 24 layers, hidden 2304, 24 heads (SC21 Table 1)


def wafer(**kw):
    return hw.load("tmac-wafer", rows=4, cols=4, **{"sram_bytes": 40e9, **kw})


def gpt(batch=16):
    return models.Workload(model=GPT, global_batch=batch, seq_len=512)


CASES = {
    "wafer": lambda: (gpt(), wafer()),
    "chiplets": lambda: (gpt(), hw.load("hecaton-chiplet", rows=4, cols=4)),  # 48 MB per die: DRAM needed
    "dgx": lambda: (models.Workload(model=models.load("llama2-7b"), global_batch=8, seq_len=1024),
                    hw.load("dgx-a100", nodes=1)),
}
RUNS = [(n, c) for c in CASES for n in baselines.HEURISTICS if not (n == "hecaton" and c == "dgx")]
_CACHE: dict = {}


def run(name, case):
    if (name, case) not in _CACHE:
        w, h = CASES[case]()
        _CACHE[(name, case)] = (w, h, baselines.heuristic(name, w, h))
    return _CACHE[(name, case)]


def test_dispatcher_lists_the_four_peers():
    assert baselines.HEURISTICS == ("megatron", "deepspeed", "accpar", "hecaton")


@pytest.mark.parametrize("name,case", RUNS)
def test_scored_inside_its_space_and_deterministic(name, case):
    w, h, m = run(name, case)
    rep = evaluate(m, w, h)
    assert rep.step_time_s > 0 and rep.peak_memory_bytes > 0 and rep.devices == m.devices
    assert m.used_dies() <= {(r, c) for r in range(h.rows) for c in range(h.cols) if h.usable((r, c))}
    sp = get_space(name)
    allowed = sp.allowed_options(build_graph(w.model, m.micro_batch, w.seq_len), m.tp_shape)
    for op, opts in allowed.items():
        assert tuple(m.choice(op).split) in opts, (op, m.choice(op).split, opts)
    assert m.zero_stage in sp.zero_stages
    assert m.pp == 1 or sp.pipeline
    assert m.tp == 1 or sp.tensor
    assert m.micro_batch in optimizer.search.space.MICRO_BATCHES
    assert not m.offload or sp.offload
    assert baselines.heuristic(name, *CASES[case]()) == m  # deterministic


def test_megatron_heuristic():
    # Narayanan et al. SC21: TP over the 8 GPUs of a node, no pipeline when the model fits, full recompute
    w, h, m = run("megatron", "dgx")
    assert (m.tp_shape, m.pp, m.dp, m.micro_batch) == ((1, 8), 1, 1, 1)
    assert all(m.choice(o).recompute for o in baselines._block_ops(w))
    assert m.fp32_grad_accumulation
    # less memory: the fewest pipeline stages that fit (4 dies per row, so tp = 4)
    w, h = gpt(), wafer(sram_bytes=6e9)
    m = baselines.megatron_heuristic(w, h)
    assert (m.tp, m.pp, m.dp) == (4, 2, 2) and evaluate(m, w, h).fits
    assert not evaluate(baselines.megatron(w, h, tp=4, pp=1, dp=4), w, h).fits
    assert baselines.heuristic("megatron", w, h, tp=2, pp=2, dp=4) == baselines.megatron(w, h, tp=2, pp=2, dp=4)


@pytest.mark.parametrize("sram,stage,checkpointing,fits", [
    (40e9, 1, False, True), (8e9, 2, False, True), (6e9, 3, False, True), (3e9, 3, True, True),
    (1e9, 3, True, False),  # nothing fits: the most frugal choice, reported as not fitting
])
def test_deepspeed_raises_the_zero_stage_as_memory_shrinks(sram, stage, checkpointing, fits):
    w, h = gpt(), wafer(sram_bytes=sram)
    m = baselines.deepspeed(w, h)
    assert (m.tp_shape, m.pp, m.dp, m.micro_batch) == ((1, 1), 1, 16, 1)  # all 16 dies, no tensor split
    assert all(c.split == (None, None) for c in m.ops.values())
    assert m.zero_stage == stage
    assert all(m.choice(o).recompute == checkpointing for o in baselines._block_ops(w))
    assert evaluate(m, w, h).fits is fits
    if stage > 1 and fits:  # the next lower stage does not fit
        lower = baselines.deepspeed(w, h, zero_stage=stage - 1, checkpointing=checkpointing)
        assert not evaluate(lower, w, h).fits


def test_deepspeed_micro_batch_and_fixed_choices():
    w, h = gpt(batch=64), wafer()  # 4 sequences per replica
    m = baselines.deepspeed(w, h)
    assert (m.dp, m.zero_stage, m.micro_batch) == (16, 1, 4) and evaluate(m, w, h).fits
    tight = wafer(sram_bytes=evaluate(baselines.deepspeed(w, h, micro_batch=2), w, h).peak_memory_bytes)
    m = baselines.deepspeed(w, tight)
    assert (m.zero_stage, m.micro_batch) == (1, 2)  # the largest micro-batch that fits
    m = baselines.deepspeed(w, h, zero_stage=3, micro_batch=1, checkpointing=True)
    assert (m.zero_stage, m.micro_batch) == (3, 1) and all(c.recompute for c in m.ops.values())
    # dp: the largest degree <= usable dies that divides the batch
    assert baselines.deepspeed(gpt(batch=12), h).dp == 12


@pytest.mark.parametrize("case", ["wafer", "dgx"])
def test_accpar(case):
    w, h, m = run("accpar", case)
    assert m.pp == 1 and m.zero_stage == 0 and not m.offload
    assert not any(c.recompute for c in m.ops.values())
    assert m.devices == h.num_dies  # every die: replicas (type I at the top levels) x one group
    for op in LINEARS:  # type I (b), II (k, reduced) or III (n / a / f / g / v, output) on the whole group
        a, b = m.choice(op).split
        assert a == b and a in (None, "b", "k", "n", "a", "f", "g", "v")
    # the layer-wise dynamic program is exact: no single op does better with another option
    base = evaluate(m, w, h).step_time_s
    allowed = get_space("accpar").allowed_options(build_graph(w.model, m.micro_batch, w.seq_len), m.tp_shape)
    for op, opts in allowed.items():
        for opt in opts:
            other = m.model_copy(update={"ops": {**m.ops, op: OpChoice(split=opt)}})
            assert evaluate(other, w, h).step_time_s >= base * (1 - 1e-12), (op, opt)


def test_hecaton():
    w, h, m = run("hecaton", "wafer")
    assert m.tp_shape == (4, 4) and m.pp == m.dp == 1
    assert m.used_dies() == {(r, c) for r in range(4) for c in range(4)}
    g = build_graph(w.model, m.micro_batch, w.seq_len)
    for op in LINEARS:  # 2D on both axes, weight-stationary
        a, b = m.choice(op).split
        assert a is not None and b is not None and a != b and {a, b} <= set(g.op(op).weight)
    assert not any(c.recompute for c in m.ops.values())
    # 40 GB per die: nothing in DRAM, the largest micro-batch
    assert m.offload == () and m.micro_batch == 16 and evaluate(m, w, h).fits
    # 48 MB per chiplet: the classes that do not fit live in DRAM; fewer would not fit
    w, h, m = run("hecaton", "chiplets")
    rep = evaluate(m, w, h)
    assert rep.fits and m.offload and rep.dram_stored_bytes > 0
    for cls in m.offload:
        fewer = tuple(c for c in m.offload if c != cls)
        assert not evaluate(m.model_copy(update={"offload": fewer}), w, h).fits



def test_hecaton_picks_its_recompute_policy():
    """Each policy tried; kept: fits, then fewest classes in DRAM, then least step time. Here the
    layer-wise group is capped by the activations it holds, so recomputing the attention core wins."""
    w = models.Workload(model=models.load("llama2-7b"), global_batch=64, seq_len=4096)
    h = hw.load("hecaton-chiplet", rows=4, cols=4, sram_bytes=2e8)

    def key(m):
        rep = evaluate(m, w, h)
        return (not rep.fits, len(m.offload), rep.step_time_s)

    single = {p: baselines.hecaton(w, h, recompute=p) for p in RECOMPUTE_POLICIES}
    chosen = baselines.hecaton(w, h)
    assert key(chosen) == min(key(m) for m in single.values())
    g = build_graph(w.model, 1, w.seq_len)
    for p, m in single.items():
        assert {n for n, c in m.ops.items() if c.recompute} == recompute_set(g, p)
    assert evaluate(chosen, w, h).fits and chosen.name == single["selective"].name
    assert key(single["selective"]) < key(single["none"])
    with pytest.raises(ConfigError, match="recompute.*none, selective, full"):
        baselines.hecaton(w, h, recompute="some")

SMALL = dict(rows=2, cols=2, sram_bytes=40e9)


@pytest.mark.parametrize("name,limit", [("megatron", 10), ("deepspeed", 10), ("accpar", 10), ("hecaton", 2)])
def test_no_heuristic_beats_the_bound_of_its_space(name, limit):
    w, h = gpt(batch=4), hw.load("tmac-wafer", **SMALL)
    m = baselines.heuristic(name, w, h)
    chk = optimizer.check(m, w, h, space=name, time_limit_s=limit)
    assert chk.fits and chk.bound_s is not None
    assert chk.step_time_s == evaluate(m, w, h).step_time_s
    assert chk.gap >= -REL


def test_bad_arguments_name_the_field():
    w, h = gpt(), wafer()

    def rejects(fn, *words):
        with pytest.raises(ConfigError) as info:
            fn()
        for word in words:
            assert word in str(info.value)

    rejects(lambda: baselines.deepspeed(w, h, zero_stage=0), "zero_stage", "1, 2, 3")
    rejects(lambda: baselines.deepspeed(w, h, micro_batch=3), "micro_batch", "1")
    rejects(lambda: baselines.deepspeed(w, h, micro_batch=0), "micro_batch")
    rejects(lambda: baselines.deepspeed(w, h, checkpointing="yes"), "checkpointing")
    rejects(lambda: baselines.heuristic("alpa", w, h), "alpa", "megatron, deepspeed, accpar, hecaton")
    rejects(lambda: baselines.heuristic("accpar", w, h, tp=2), "tp", "none")
    rejects(lambda: baselines.heuristic("deepspeed", w, h, tp=2), "tp", "zero_stage, micro_batch, checkpointing")
    rejects(lambda: baselines.accpar("gpt", h), "work")
    rejects(lambda: baselines.hecaton(w, "tmac-wafer"), "hw")
    rejects(lambda: baselines.hecaton(w, hw.load("dgx-a100", nodes=1)), "rows x cols", "2 x 2")
    rejects(lambda: baselines.hecaton(w, wafer(defects=[(1, 1)])), "defects")
