"""solve(): outer enumeration of degrees with valid lower bounds, inner MILP/CP-SAT per point.

Every outer point gets a cheap lower bound (each op at its fastest option, no communication, no
recompute, the pipeline formula applied to that) and a memory lower bound (each term at its
least). Points are taken best bound first. A point reaching the front of the queue first has its
bound tightened by a Lagrangian relaxation of its memory row (_lagrangian_bound, with split
reductions and the ZeRO-3 gathers at their least) and goes back in the queue; the next time it
reaches the front its placement is solved and the relaxation redone with the gathers on it; if
that leaves it below the incumbent (or none exists), the relaxation also prices resharding
(_resharding_bound) and its best joint choice seeds a primal heuristic (_relaxed_mapping), and
the point goes back again; when it comes out after that its inner model is solved with the
incumbent as a cutoff, so "infeasible" proves it cannot do better. Once the next bound is no
better than the incumbent the search stops, and the incumbent is proven optimal. The reported bound is the least of the bounds
of points left unsolved and of the inner solvers' own bounds, so it is honest under a time limit.
"""

from __future__ import annotations

import heapq
import os
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict

from hw import loader as hw_loader
from hw.loader import ConfigError
from hw.topology import least_collective_s
from hw.schema import Hardware
from models.graph import build_graph, step_flops
from models.schema import Workload

from ..model import cost, overlap
from . import infeasible, minsum
from ..model.evaluate import evaluate
from ..formulation.backends import BACKENDS, solve_model
from ..formulation.energy import minimize_energy, modeled
from ..formulation.inner import Inner, build_inner
from ..formulation.placement import place_groups
from ..model.mapping import Mapping, OpChoice, Report
from .space import OuterPoint, Space, get_space
from ..model.tables import Tables, balanced_layers, default_groups

OBJECTIVES = ("time", "energy", "edp")
EDP_MAX_SOLVES = 24  # inner solves per outer point in the EDP walk, at most (then its bound stays open)
EDP_STEP = 1e-6  # each EDP step asks for a step time this much (relative) below the previous one
REL_TOL = 1e-9
# (assumption, from measurement: it lifted GPT-3 175B's points on tmac-wafer by 0.2-1%)
ENUMERATION_SHARE = 0.5  # of the time limit, at most, spent enumerating and bounding outer points


class Solution(BaseModel):
    """The answer of solve().

    objective "time": objective_s is the solver's step time, bound_s a proven lower bound on it,
    gap = (report.step_time_s − bound_s)/bound_s; objective_value = objective_s, bound_value =
    bound_s. objective "energy" (J of one step) or "edp" (J·s, energy × step time):
    objective_value is the solver's value of that objective, bound_value a proven lower bound on
    it, gap = (the report's energy_j, or energy_j × step_time_s, − bound_value)/bound_value;
    objective_s is then the chosen mapping's step time as the solver modeled it (exact when the
    hardware has static power, which makes the energy push the time variables down; with
    static_w = 0 it may lie above evaluate's) and bound_s is None."""

    model_config = ConfigDict(frozen=True)

    status: str  # optimal | feasible | infeasible | timeout
    mapping: Mapping | None = None
    report: Report | None = None
    objective_s: float | None = None
    bound_s: float | None = None
    gap: float | None = None
    solve_time_s: float = 0.0
    explanation: str = ""
    reasons: tuple[str, ...] = ()  # infeasible: the reasons (infeasible.py), the binding one first
    points_total: int = 0
    points_solved: int = 0
    points_pruned: int = 0
    backend: str = "cpsat"
    space: str = "full"
    objective: str = "time"
    objective_value: float | None = None  # s ("time"), J ("energy") or J·s ("edp")
    bound_value: float | None = None  # proven lower bound on objective_value


def plain_explanation(explanation: str, status: str) -> str:
    """A solver explanation on one line, without its leading '<status>: ' (callers add their own)."""
    text = " ".join(explanation.split())
    prefix = f"{status}:"
    return text[len(prefix):].strip() if text.lower().startswith(prefix) else text


@dataclass
class Progress:
    """What a long solve reports as it goes (for a progress bar)."""

    solved: int = 0
    total: int = 0
    incumbent_s: float | None = None
    bound_s: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class _OpTable:
    """Per block op of a probe, one column per (option, recompute) choice, for the Lagrangian
    bound: per-layer compute time (no overlap mode hides compute), parameters on one die,
    activation bytes kept for backward; `recompute` flags the choices that recompute (masked out
    when a policy forbids them). Option a of Tables.options(op) is column 2a kept, 2a + 1
    recomputed; columns past an op's options are padding (time inf)."""

    time: np.ndarray  # (ops, choices) seconds, inf where an op has fewer choices
    fwd: np.ndarray  # (ops, choices) seconds of one forward pass (0 in padding)
    stats: np.ndarray  # (ops, choices) seconds of one pass's split-reduction all-reduces (0 in padding)
    params: np.ndarray  # (ops, choices)
    act: np.ndarray  # (ops, choices) bytes
    buffer: np.ndarray  # (ops, choices) bytes: the working set of a recomputation
    recompute: np.ndarray  # (ops, choices) bool
    names: tuple[str, ...]


@dataclass
class _Probe:
    """Per (group shape, micro-batch): fastest compute of each op, least memory of each term."""

    tables: Tables
    layer_s: float
    pre_s: float
    post_s: float
    params_layer: float
    params_pre: float
    params_post: float
    params_op: float  # the largest op's least parameters on one die
    act_layer: float
    ops: _OpTable | None = None
    flops_layer: float = 0.0  # least forward FLOPs of one die: one layer, the pre ops, the post ops
    flops_pre: float = 0.0
    flops_post: float = 0.0
    bytes_layer: float = 0.0  # least forward main-memory bytes of one die's compute, likewise
    bytes_pre: float = 0.0
    bytes_post: float = 0.0
    # edge costs depend only on the graph, the group shape and the first group's rings: outer points
    # of this probe whose first group sits at the same origin share one cache (Tables._ec)
    edge_caches: dict = field(default_factory=dict)
    pair_tables: tuple[dict, dict, dict] | None = None  # _pair_tables of the block ops, once needed
    act_post: float = 0.0  # least bytes the post ops (final norm, head, loss) keep for backward, per micro-batch
    even: "_Probe | None" = None  # the same had every op split evenly over the group (_even_probe)


def _probe(work: Workload, hw: Hardware, space: Space, shape: tuple[int, int], mb: int) -> _Probe | None:
    graph = build_graph(work.model, mb, work.seq_len, work.dtype_bytes, work.flash_attention)
    groups = default_groups(hw, 1, 1, shape)
    if groups is None:
        return None
    allowed = space.allowed_options(graph, shape)
    caches: dict = {}  # the probe's edge costs serve the points whose first group sits where its does
    tb = Tables(graph, work, hw, 1, 1, shape, mb, 0, 1, (work.model.layers,), groups, allowed, space.fp32_grads,
                _ec=caches.setdefault(groups[0].origin, {}))

    def least(ops, fn) -> float:
        return sum(min(fn(tb.option_cost(o, opt)) for opt in tb.options(o)) for o in ops)

    add2 = graph.op("add2")
    x_bytes = min(tb.option_cost(add2, opt).out_bytes[graph.block_output] for opt in tb.options(add2))
    params_op = max(least((o,), lambda c: c.params) for o in graph.block + graph.pre + graph.post)
    post_saved = sum(min(tb.option_cost(src, opt).out_bytes[t] for opt in tb.options(src))
                     for o in graph.post for t in o.saved for src in (graph.producer(t),))
    return _Probe(tb, least(graph.block, lambda c: c.fwd_s + c.bwd_s), least(graph.pre, lambda c: c.fwd_s + c.bwd_s),
                  least(graph.post, lambda c: c.fwd_s + c.bwd_s), least(graph.block, lambda c: c.params),
                  least(graph.pre, lambda c: c.params), least(graph.post, lambda c: c.params), params_op, x_bytes,
                  _op_table(tb), least(graph.block, lambda c: c.flops), least(graph.pre, lambda c: c.flops),
                  least(graph.post, lambda c: c.flops), least(graph.block, lambda c: c.mem_bytes),
                  least(graph.pre, lambda c: c.mem_bytes), least(graph.post, lambda c: c.mem_bytes),
                  edge_caches=caches, act_post=post_saved)


REPLICATED = (None, None)


def _even_probe(tb: Tables, pr: _Probe) -> _Probe:
    """The memory terms of a probe had every op split its weights, activations and buffers evenly
    over the r·c dies of the group (each op's replicated figures / r·c): what the grid would allow
    if the model's dimensions divided every degree (infeasible.Evidence.even)."""
    g, t = tb.graph, tb.shape[0] * tb.shape[1]
    rep = {o.name: tb.option_cost(o, REPLICATED) for o in g.block + g.pre + g.post}
    ops = _op_table(tb, {o.name: [REPLICATED] for o in g.block})
    ops.act, ops.buffer, ops.params = ops.act / t, ops.buffer / t, ops.params / t
    return replace(pr, params_layer=sum(rep[o.name].params for o in g.block) / t,
                   params_pre=sum(rep[o.name].params for o in g.pre) / t,
                   params_post=sum(rep[o.name].params for o in g.post) / t,
                   params_op=max(c.params for c in rep.values()) / t,
                   act_layer=rep["add2"].out_bytes[g.block_output] / t, ops=ops, even=None)


def _least_kept(pr: _Probe, layers: np.ndarray) -> np.ndarray:
    """Per entry of `layers` (layers' worth of micro-batches held, n), the least bytes one die
    keeps for the backward: Σ over block ops of min over their (option, recompute) choices of
    n·(activations kept per layer) + (the working buffer of a recomputation), every op choosing
    alone — below what any joint choice keeps (the block input is in every choice; the inputs
    Checkmate keeps for a recomputed consumer are left out). Without a table: n·block input."""
    tab = pr.ops
    if tab is None:
        return layers * pr.act_layer
    act = np.where(np.isfinite(tab.time), tab.act, np.inf)
    return (layers[:, None, None] * act[None] + tab.buffer[None]).min(axis=2).sum(axis=1)


def _op_table(tb: Tables, options: dict | None = None) -> _OpTable:
    """The (option, recompute) choices of every block op as padded arrays (see _OpTable); options:
    per op name the options to tabulate (default the tables' own)."""
    g = tb.graph
    need = {t for o in g.block for t in o.saved}
    rows = []
    for o in g.block:
        row = []
        for opt in (options[o.name] if options else tb.options(o)):
            c = tb.option_cost(o, opt)
            fwd, bwd = c.fwd_s, c.bwd_s  # collectives may hide under other ops' compute; compute never does
            kept = sum(v for t, v in c.out_bytes.items() if t in need and t != g.block_output)
            always = c.out_bytes.get(g.block_output, 0.0)  # the block input is always kept
            stats = c.stats.time_s
            row.append((fwd + bwd, fwd, stats, c.params, kept + always, 0.0, False))
            row.append((2 * fwd + bwd, fwd, stats, c.params, always, tb.recompute_buffer(o, opt), True))
        rows.append(row)
    width = max(len(r) for r in rows)
    shape = (len(rows), width)
    cols = [np.full(shape, np.inf)] + [np.zeros(shape) for _ in range(5)] + [np.zeros(shape, dtype=bool)]
    for i, row in enumerate(rows):
        for j, values in enumerate(row):
            for col, v in zip(cols, values):
                col[i, j] = v
    return _OpTable(*cols, tuple(o.name for o in g.block))


def probed_points(work: Workload, hw: Hardware, sp: Space):
    """Outer points of the space that fit the machine, each with its (shape, micro-batch) probe."""
    probes: dict = {}
    for pt in sp.outer_points(work, hw):
        if pt.dies > hw.num_dies:
            continue
        key = (pt.shape, pt.micro_batch)
        if key not in probes:
            probes[key] = _probe(work, hw, sp, *key)
        if probes[key] is not None:
            yield pt, probes[key]


@dataclass
class _Tiers:
    """What every outer point's bounds share: the subsets of tensor classes the space may move to
    DRAM (rows of `off`, one column per cost.OFFLOAD_CLASSES entry), the ports' bandwidth (B/s)
    and the capacities (bytes) of a die and of the DRAM."""

    subsets: list[tuple[str, ...]]
    off: np.ndarray
    port_bandwidth: float
    die_bytes: float
    dram_bytes: float

    @classmethod
    def of(cls, space: Space, hw: Hardware) -> "_Tiers":
        subsets = space.offload_subsets(hw)
        off = np.array([[c in sub for c in cost.OFFLOAD_CLASSES] for sub in subsets], dtype=float)
        return cls(subsets, off, sum(p.bandwidth for p in hw.dram_ports), hw.die.memory_bytes, hw.dram_capacity)


@dataclass
class _StageTerms:
    """What an outer point's bounds share, per stage: layers, least parameters on one die,
    micro-batches per step and held at the peak, model-state bytes per parameter by class."""

    lps: np.ndarray
    params: np.ndarray
    m: int
    flight: np.ndarray | float
    per_param: dict[str, float]

    @classmethod
    def of(cls, pt: OuterPoint, pr: _Probe, work: Workload, space: Space) -> "_StageTerms":
        lps = np.array(balanced_layers(work.model.layers, pt.pp), dtype=float)
        params = lps * pr.params_layer
        params[0] += pr.params_pre
        params[-1] += pr.params_post
        m = work.global_batch // (pt.dp * pt.micro_batch)
        return cls(lps, params, m, cost.micro_batches_in_flight(np.arange(pt.pp), pt.pp, m, pt.virtual, pt.layer_group),
                   cost.zero_state_bytes(1.0, pt.dp, pt.zero_stage, space.fp32_grads, work.dtype_bytes))


def _on_die(pt: OuterPoint, pr: _Probe, work: Workload, space: Space, tiers: _Tiers, st: _StageTerms) -> np.ndarray:
    """Least bytes on one die, stages × DRAM subsets × (weights, grads, optimizer, kept activations
    with recomputation buffers). A class in DRAM leaves the die but for its working piece (the
    largest op's weights or gradients, one layer of one micro-batch's activations, no Adam state)."""
    working = cost.offload_working_bytes(pr.params_op, pt.dp, pt.zero_stage, space.fp32_grads, work.dtype_bytes)
    off = tiers.off[None]  # 1 × subsets × classes
    state = np.stack([st.params * st.per_param[c] for c in cost.OFFLOAD_CLASSES[:3]], axis=1)[:, None, :]
    piece = np.array([working[c] for c in cost.OFFLOAD_CLASSES[:3]])[None, None, :]
    state = np.where(off[..., :3] > 0, piece, state)
    # kept activations and recomputation buffers, each op at its least
    flight = np.broadcast_to(st.flight, st.lps.shape)
    kept = _least_kept(pr, np.append(st.lps * flight, 1.0))
    kept[-2] += flight[-1] * pr.act_post  # the last stage holds the post ops' saved tensors too
    act = np.where(off[..., 3] > 0, kept[-1], kept[:-1, None])
    return np.concatenate([state, act[..., None]], axis=2)


def _bounds(pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware, space: Space,
            tiers: _Tiers | None = None) -> tuple[float, float, float, list[tuple[float, tuple[str, ...]]]]:
    """(step-time lower bound, least memory per die, least bytes any fitting choice keeps in DRAM,
    the subsets of tensor classes in DRAM that can fit, each with its bound, ascending) of an outer
    point. Every subset of the tensor classes the space may move to DRAM is tried (_on_die); a
    class in DRAM costs its least port traffic. The time bound is the least over the subsets that
    fit (inf if none does). Arrays: stages × classes, × subsets. `tiers`: _Tiers.of(space, hw),
    passed in by callers that bound many points."""
    tiers = tiers or _Tiers.of(space, hw)
    st = _StageTerms.of(pt, pr, work, space)
    lps, params, m, flight, per_param = st.lps, st.params, st.m, st.flight, st.per_param
    dies_per_stage = pt.dp * pt.shape[0] * pt.shape[1]
    bw = tiers.port_bandwidth / (pt.pp * dies_per_stage)
    classes = cost.OFFLOAD_CLASSES  # weights, grads, optimizer, activations: the columns below
    act_mb = lps * pr.act_layer  # saved activations of one micro-batch
    act_mb[-1] += pr.act_post
    model_state = [params * per_param[c] for c in classes[:3]]
    held = np.column_stack(model_state + [act_mb * flight])
    moved = np.column_stack(model_state + [act_mb])  # bytes a traffic rate applies to
    subsets, off = tiers.subsets, tiers.off  # subsets × classes
    mem = _on_die(pt, pr, work, space, tiers, st).sum(axis=2).max(axis=0)
    dram = (held @ off.T).sum(axis=0) * dies_per_stage
    t = lps * pr.layer_s
    t[0] += pr.pre_s
    t[-1] += pr.post_s
    upd = params * cost.optimizer_update_time(1.0, pt.dp, pt.zero_stage, hw.die)
    times, syncs = np.repeat(t[:, None], len(subsets), 1), np.repeat(upd[:, None], len(subsets), 1)
    if bw:
        per_mb, per_step = cost.dram_rates(pt.layer_group)
        times = times + (moved * np.array([per_mb[c] for c in classes])) @ off.T / bw
        syncs = syncs + (moved * np.array([per_step[c] for c in classes])) @ off.T / bw
    step = times.sum(axis=0) / pt.virtual + (m - 1 / pt.virtual) * times.max(axis=0) + syncs.max(axis=0)
    fits = mem <= tiers.die_bytes
    least_dram = float(dram[fits].min()) if fits.any() else float("inf")
    fits &= dram <= tiers.dram_bytes
    best_t = float(step[fits].min()) if fits.any() else float("inf")
    fitting = sorted((float(step[i]), subsets[i]) for i in np.flatnonzero(fits))
    return best_t, float(mem.min()), least_dram, fitting


def _memory_need(pt: OuterPoint, pr: _Probe, work: Workload, space: Space, tiers: _Tiers,
                 even: bool = False) -> tuple[float, dict[str, float]]:
    """(least bytes on the fullest die of an outer point over the DRAM subsets, that die's bytes per
    class). even: as if every op split evenly over the tensor group (_Probe.even)."""
    if even:
        if pr.even is None:
            pr.even = _even_probe(pr.tables, pr)
        pr = pr.even
    parts = _on_die(pt, pr, work, space, tiers, _StageTerms.of(pt, pr, work, space))
    need = parts.sum(axis=2)
    k = int(need.max(axis=0).argmin())
    s = int(need[:, k].argmax())
    return float(need[s, k]), dict(zip(cost.OFFLOAD_CLASSES, map(float, parts[s, k])))


LAMBDA_STEPS = 33  # on-die memory multipliers tried per tier subset: a geometric sweep over 2^±16 of a scale
DRAM_MU_STEPS = 9  # DRAM capacity multipliers tried with each of them
COARSE_EVERY = 4  # the resharding bound tries every 4th multiplier, then the neighbours of the best
# weights θ on the first of the two linear pieces of a pass's exposed ZeRO-3 gathers (the second gets
# 1 − θ): max(piece 1, piece 2) ≥ θ·piece 1 + (1 − θ)·piece 2 for each, forward and backward
THETAS = (0.0, 0.5, 1.0)
# (assumption, from measurement: near the incumbent the heuristic rarely improves it, and the inner
# solve of the point, which must run anyway, finds what it would)
PRIMAL_MIN_GAIN = 0.005  # the primal heuristic runs where the bound lies this far (relative) below the incumbent
PRIMAL_SHARE = 0.05  # of the time left, at most, for one primal heuristic solve (_relaxed_mapping)


@dataclass
class _Relaxed:
    """One DRAM subset of an outer point with its memory row kept and all else separable per block
    op: choosing (option, recompute) j of op i costs base[k, i, j] seconds of objective (k: one
    weighting of the exposed ZeRO-3 gathers, _layer_comm; theta: the one the Lagrangian bound
    found best, once it ran), takes
    mem[i, j] bytes of stage 0's die (budget: what the die has left for them) and dram[i, j] bytes
    of DRAM (capacity dram_cap). The die also holds piece·params of whichever op is streamed
    from DRAM: the op `holder` (the one with most parameters at its least) gives a valid row.
    const: objective seconds outside the block ops; cheap: the subset's bound from _bounds;
    c_layer, c_wrap: objective seconds per second of one layer's ops / of its edge to the next."""

    cheap: float
    base: np.ndarray
    mem: np.ndarray
    dram: np.ndarray
    params: np.ndarray
    budget: float
    dram_cap: float
    piece: float
    holder: int | None
    const: float
    c_layer: float
    c_wrap: float
    act_cost: float  # objective seconds per byte of one layer's kept activations (DRAM traffic)
    act_mem: float  # stage 0's bytes per byte of one layer's kept activations
    theta: int | None = None
    offload: tuple[str, ...] = ()  # the subset: tensor classes kept in DRAM
    lam: float | None = None  # the memory multiplier _resharding_bound found best


def _relaxations(pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware, space: Space,
                 fitting: list[tuple[float, tuple[str, ...]]], comm: np.ndarray) -> list[_Relaxed]:
    """The separable relaxation of an outer point for each DRAM subset that can fit (see
    _lagrangian_bound for what it prices and what it leaves out), in the order of `fitting`.
    comm: _layer_comm of the point."""
    tab = pr.ops
    if tab is None:
        return []
    lps = balanced_layers(work.model.layers, pt.pp)
    m, v, pp = work.global_batch // (pt.dp * pt.micro_batch), pt.virtual, pt.pp
    slow = max(range(pp), key=lambda s: lps[s])
    c_layer = sum(lps) / v + (m - 1 / v) * lps[slow]  # seconds of objective per second of one layer
    # a wrap edge joins a layer to the next one: each stage runs it once less than its layers
    c_wrap = (sum(lps) - 1) / v + (m - 1 / v) * (lps[slow] - (1 if slow == 0 else 0))
    const = (pr.pre_s + pr.post_s) / v + (m - 1 / v) * ((pr.pre_s if slow == 0 else 0.0) +
                                                      (pr.post_s if slow == pp - 1 else 0.0))
    w_post = 1 / v + (m - 1 / v) * (slow == pp - 1)  # objective seconds per second of the last stage's post ops
    allowed = space.recompute_allowed(pr.tables.graph, pt.recompute_policy)
    valid = np.array([[(r and True in allowed[n]) or (not r and False in allowed[n]) for r in rec_row]
                      for n, rec_row in zip(tab.names, tab.recompute)])
    time_ = np.where(valid, tab.time, np.inf)
    state = cost.zero_state_bytes(1.0, pt.dp, pt.zero_stage, space.fp32_grads, work.dtype_bytes)
    working = cost.offload_working_bytes(1.0, pt.dp, pt.zero_stage, space.fp32_grads, work.dtype_bytes)
    upd = cost.optimizer_update_time(1.0, pt.dp, pt.zero_stage, hw.die)
    bw = sum(p.bandwidth for p in hw.dram_ports) / max(pt.dies, 1)
    flight = cost.micro_batches_in_flight(0, pp, m, v, pt.layer_group)
    dies_per_stage = pt.dp * pt.shape[0] * pt.shape[1]
    held_layers = float((np.asarray(lps) * cost.micro_batches_in_flight(np.arange(pp), pp, m, v, pt.layer_group)).sum())
    params = np.where(np.isfinite(time_), tab.params, 0.0)
    least_params = np.where(np.isfinite(time_), tab.params, np.inf).min(axis=1)
    holder = int(np.argmax(least_params)) if least_params.max() > 0 else None
    out = []
    for cheap, off in fitting:
        mb_bytes = cost.dram_traffic_per_micro_batch(state["weights"] if "weights" in off else 0.0,
                                                     state["grads"] if "grads" in off else 0.0, 0.0, pt.layer_group)
        step_bytes = cost.dram_traffic_per_step(*(state[c] if c in off else 0.0 for c in ("weights", "grads", "optimizer")))
        c_params = c_layer * mb_bytes / bw + lps[slow] * (upd + step_bytes / bw) if bw else lps[slow] * upd
        act_rate = cost.dram_traffic_per_micro_batch(0, 0, 1, pt.layer_group)  # bytes moved per byte kept in DRAM
        c_act = c_layer * act_rate / bw if "activations" in off else 0.0
        m_params = lps[0] * sum(v_ for c, v_ in state.items() if c not in off)
        m_act = 1.0 if "activations" in off else lps[0] * flight  # offloaded: one layer's working piece
        fixed = pr.params_pre * sum(v_ for c, v_ in state.items() if c not in off)
        # the DRAM row: bytes all dies keep in DRAM (pre/post ops' share left out: the bound stays below)
        d_params = dies_per_stage * sum(lps) * sum(v_ for c, v_ in state.items() if c in off)
        d_act = dies_per_stage * held_layers if "activations" in off else 0.0
        out.append(_Relaxed(cheap, c_layer * (time_ + comm) + c_params * tab.params + c_act * tab.act,
                            m_params * tab.params + m_act * tab.act + tab.buffer,
                            d_params * tab.params + d_act * tab.act, params, hw.die.memory_bytes - fixed,
                            hw.dram_capacity, sum(working.get(c, 0.0) for c in off), holder,
                            const + (w_post * act_rate * pr.act_post / bw if "activations" in off else 0.0),
                            c_layer, c_wrap, c_act, m_act, offload=off))
    return out


def _with_piece(r: _Relaxed) -> np.ndarray:
    """r.mem with the streamed piece of the holder op added (r.mem itself if none is streamed)."""
    if r.piece <= 0 or r.holder is None:
        return r.mem
    mem = r.mem.copy()
    mem[r.holder] += r.piece * r.params[r.holder]
    return mem


def _lagrangian_bound(relaxed: list[_Relaxed]) -> float:
    """A lower bound on the step time of an outer point that couples time and memory: relax the
    memory row of the stage holding the most micro-batches (stage 0) with a multiplier λ ≥ 0, so
    each block op picks, independently, the (option, recompute) minimizing
        C_t·(time + comm) + C_p·params + C_a·act + λ·(M_p·params + M_a·act),
    where C_t weighs a layer's seconds in the pipeline objective (every stage over v, the slowest
    m − 1/v more times), comm is _layer_comm (split reductions, a weighting of the exposed ZeRO-3
    gathers), C_p and C_a price DRAM traffic of offloaded classes and the Adam update, and M_p,
    M_a are the stage's bytes per parameter and per kept activation byte (one layer's when
    activations live in DRAM), plus a recomputation's working buffer and the streamed piece of the
    largest op of a class in DRAM. By weak duality Σ min − λ·(capacity − fixed bytes) bounds the
    inner optimum for every λ (and every weighting of the gathers' pieces); the best of a sweep is
    kept (its weighting in r.theta), for every subset of tiers the least. Ignored (so the bound
    stays below): resharding and Checkmate's extra kept inputs (_resharding_bound prices both)
    and pre/post ops beyond their least cost. `relaxed`: _relaxations, ascending by cheap bound; each
    subset's bound is the larger of the two, and a subset whose cheap bound already reaches the
    least so far is skipped."""
    best = float("inf")
    for r in relaxed:
        if r.cheap >= best:
            break
        base, mem, dram = r.base, _with_piece(r), r.dram
        top, lams = _memory_multipliers(base, mem)
        most = float(np.where(np.isfinite(base[0]), dram, 0.0).max(axis=1).sum())  # the row cannot bind below
        mus = _multipliers(top / float(dram.max()), DRAM_MU_STEPS) if most > r.dram_cap else np.zeros(1)
        priced = (base[None, None] + lams[:, None, None, None, None] * mem[None, None, None] +
                  mus[None, :, None, None, None] * dram[None, None, None])
        vals = (priced.min(axis=4).sum(axis=3) - lams[:, None, None] * r.budget -
                mus[None, :, None] * r.dram_cap)  # λ × μ × weighting
        r.theta = int(np.unravel_index(int(np.argmax(vals)), vals.shape)[2])
        best = min(best, max(r.cheap, float(vals.max()) + r.const))
    return best


@dataclass
class _BlockComm:
    """The block's resharding at one outer point (_pair_tables): `inside` and `wrap` map (producer
    row, consumer row) to per-choice-pair seconds of one use of a resharding edge within a layer
    and from a layer to the next, `keep` to activation bytes kept for a recomputed consumer, in
    _op_table's layout."""

    inside: dict
    wrap: dict
    keep: dict


def _block_comm(pr: _Probe) -> _BlockComm | None:
    """_BlockComm of the outer points of a probe, from its tables: the tensor group's collectives
    cost the same on every tile of a mesh or torus (uniform links; XY routes stay inside the
    tile), so the probe's group stands for a point's wherever placement puts it."""
    if pr.ops is None:
        return None
    if pr.pair_tables is None:
        pr.pair_tables = _pair_tables(pr.tables, pr.ops)
    return _BlockComm(*pr.pair_tables)


def _resharding_bound(relaxed: list[_Relaxed], comm: _BlockComm, target: float) -> float:
    """_lagrangian_bound with resharding priced: for each multiplier λ on stage 0's memory row, the
    least Σ_ops (base + λ·mem) + Σ_edges pair cost over joint choices of the block ops —
    resharding (less what overlap can hide) on the edges, and the activations kept only for a
    recomputed consumer, priced like any kept activation — solved exactly by min-sum variable
    elimination (optimizer.search.minsum), less λ·budget. The DRAM capacity row is dropped; the gathers'
    weighting is the one the Lagrangian bound found best (r.theta; the last if it did not run).
    Multipliers: every COARSE_EVERY-th of the sweep, then the neighbours of the best (any λ
    gives a valid bound). Once the next subset's cheap bound reaches `target` (or the least so
    far), that cheap bound stands for it and the rest."""
    best = float("inf")
    widths = _widths(relaxed[0].base[0]) if relaxed else []
    for r in relaxed:
        if r.cheap >= min(best, target):
            best = min(best, r.cheap)
            break
        base = r.base[r.theta if r.theta is not None else -1]
        mem = _with_piece(r)
        _top, lams = _memory_multipliers(base, mem)

        def dual(idx: np.ndarray) -> np.ndarray:
            unary = [base[i, None, :w] + lams[idx, None] * mem[i, None, :w] for i, w in enumerate(widths)]
            return minsum.min_sum(unary, _pair_costs(r, comm, widths, lams[idx])) - lams[idx] * r.budget

        coarse = np.arange(0, len(lams), COARSE_EVERY)
        vals = dual(coarse)
        k = int(coarse[int(np.argmax(vals))])
        near = np.array([i for i in range(k - COARSE_EVERY + 1, k + COARSE_EVERY) if 0 <= i < len(lams) and i != k])
        tried = np.concatenate((coarse, near)).astype(int)
        vals = np.concatenate((vals, dual(near) if len(near) else []))
        r.lam = float(lams[tried[int(np.argmax(vals))]])
        best = min(best, max(r.cheap, float(vals.max()) + r.const))
    return best


def _widths(base: np.ndarray) -> list[int]:
    """Per op (row of an (ops, choices) table), its choices: the columns up to its last finite one."""
    return [int(np.flatnonzero(np.isfinite(row))[-1]) + 1 for row in base]


def _pair_costs(r: _Relaxed, comm: _BlockComm, widths: list[int], lams: np.ndarray) -> dict:
    """min-sum pair tables of subset r, one per multiplier in `lams`: each edge's resharding
    seconds and the inputs kept for a recomputed consumer, priced like kept activations
    (C_a + λ·M_a per byte), cut to the ops' widths."""
    out = {}
    for k in comm.inside.keys() | comm.wrap.keys() | comm.keep.keys():
        cut = (slice(None, widths[k[0]]), slice(None, widths[k[1]]))
        seconds = (r.c_layer * comm.inside.get(k, 0.0) + r.c_wrap * comm.wrap.get(k, 0.0) +
                   r.act_cost * comm.keep.get(k, 0.0))[cut][None]
        out[k] = seconds + lams[:, None, None] * (r.act_mem * comm.keep[k][cut])[None] if k in comm.keep else seconds
    return out


def _relaxed_mapping(pt: OuterPoint, tb: Tables, relaxed: list[_Relaxed], comm: _BlockComm, hw: Hardware,
                     space: Space, objective: str, incumbent: float | None, backend: str, time_limit_s: float,
                     threads: int) -> list:
    """A primal heuristic: the partition options of the block's ops that _resharding_bound's best
    multiplier makes optimal (optimizer.search.minsum.argmin_sum, for the DRAM subset with the least
    bound), fixed in the point's inner model, which then picks recomputation, overlap modes, the
    DRAM tiers and the pre/post ops (a far smaller model than the point's). Its candidates are
    feasible mappings of the point (_PointResult.candidates); its bound is not one of the point's,
    so none is kept. tb: the point's tables; objective: "time" or "energy" (an EDP search walks
    its own front, _solve_edp)."""
    r = next((x for x in relaxed if x.lam is not None), None)
    if r is None:
        return []
    base = r.base[r.theta if r.theta is not None else -1] + r.lam * _with_piece(r)
    widths = _widths(base)
    value, cols = minsum.argmin_sum([base[i, None, :w] for i, w in enumerate(widths)],
                                    _pair_costs(r, comm, widths, np.array([r.lam])))
    if not np.isfinite(value):
        return []
    chosen = {o.name: tb.options(o)[c // 2] for o, c in zip(tb.graph.block, cols)}
    inner = build_inner(tb, space.recompute_allowed(tb.graph, pt.recompute_policy), hw.die.memory_bytes,
                        space.offload_classes(hw), energy=objective != "time")
    for name, opt in chosen.items():
        inner.model.add({i: 1.0 for (n, o, _r), i in inner.Y.items() if n == name and o == opt}, "==", 1.0,
                        scale=1.0, name=f"fixed[{name}]")
    return _solve_time_or_energy(inner, tb, pt, space, objective, 0.0, incumbent, backend, time_limit_s,
                                 threads).candidates


def _gathers(pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware, placed: Tables | None) -> np.ndarray:
    """Per (op, choice) of _op_table, seconds of one pass's ZeRO-3 weight all-gather over the
    point's pt.dp replicas (zeros without ZeRO-3 or data parallelism): on the rings of `placed`,
    the point's own tables (what its inner model charges), else (None) at the least any placement
    gives (hw.topology.least_collective_s; no placement solved)."""
    tab = pr.ops
    out = np.zeros_like(tab.params)
    if pt.zero_stage != 3 or pt.dp < 2:
        return out
    seconds: dict[float, float] = {}
    for (i, j), p in np.ndenumerate(tab.params):
        if p > 0 and np.isfinite(tab.time[i, j]) and p not in seconds:
            nbytes = p * work.dtype_bytes
            seconds[p] = (placed.dp_collective("all_gather", nbytes).time_s if placed is not None
                          else least_collective_s("all_gather", pt.dp, nbytes, hw))
        out[i, j] = seconds.get(p, 0.0)
    return out


def _layer_comm(pr: _Probe, gathers: np.ndarray) -> np.ndarray:
    """(weightings, ops, choices): seconds of collectives per layer below what the inner model
    charges each (op, choice): its split-reduction all-reduces (forward, backward, and again when
    recomputed; no overlap mode hides them) and its share of the exposed ZeRO-3 gathers. A
    layer's gathers (gathers: one pass each; twice in backward when recomputed) are prefetched
    beside its compute; their exposed seconds per pass are max(a1·z + b1·c, a2·z + b2·c) of the
    pass's gather seconds z and compute c (overlap.exposed_pieces), which is at least
    θ·(a1·z + b1·c) + (1 − θ)·(a2·z + b2·c), a sum over ops, for each θ in THETAS: one row per
    (θ forward, θ backward)."""
    tab = pr.ops
    po = pr.tables.overlap_params
    (a1, b1), (a2, b2) = overlap.exposed_pieces(po.compute_slowdown, po.comm_slowdown)
    finite = np.isfinite(tab.time)
    rec = tab.recompute.astype(float)
    stats = tab.stats * (2.0 + rec)
    if not gathers.any():
        return stats[None]
    cf = tab.fwd
    cb = np.where(finite, tab.time, 0.0) - cf
    zf, zb = gathers, gathers * (1.0 + rec)
    rows = []
    for tf in THETAS:
        fwd = tf * (a1 * zf + b1 * cf) + (1 - tf) * (a2 * zf + b2 * cf)
        for tb_ in THETAS:
            rows.append(stats + fwd + tb_ * (a1 * zb + b1 * cb) + (1 - tb_) * (a2 * zb + b2 * cb))
    return np.stack(rows)


def _pair_tables(tb: Tables, tab: _OpTable) -> tuple[dict, dict, dict]:
    """Seconds of one use of the block's resharding edges per pair of _op_table choices, keyed by
    (producer row, consumer row): ({inside a layer}, {from a layer to the next}, {bytes kept}).
    Bytes kept: a tensor no backward pass saves is kept all the same when its producer is kept and
    a consumer is recomputed (the inner model's KEEP); charged on one such consumer's pair. A pair costs
    what the inner model charges it: the forward conversion (again in backward when the consumer
    saves its input, or when a recomputed consumer needs it anew), the gradient conversion, less
    the most any overlap mode of the producer's (forward) or the consumer's (backward) GEMM saves
    on it, each edge free to take its best mode, so the sum stays below the inner model's."""
    g = tb.graph
    row = {o.name: i for i, o in enumerate(g.block)}
    inside: dict = {}
    wrap: dict = {}
    keep: dict = {}
    need = {t for o in g.block for t in o.saved} | {g.block_output}
    charged: set = set()
    width = tab.time.shape[1]
    for e in tb.edges:
        if e.where not in ("block", "wrap"):
            continue
        saved = tb.saved_by(e)
        table = np.full((width, width), np.inf)
        for a, o_p in enumerate(tb.options(g.op(e.producer))):
            for b, o_c in enumerate(tb.options(g.op(e.consumer))):
                ec = tb.edge_cost(e, o_p, o_c)
                fwd, grad = ec.fwd.time_s, ec.grad.time_s
                d_fwd = d_bwd = 0.0
                if e.where == "block":  # the inner model lets overlap modes act inside a layer only
                    d_fwd = min([0.0] + [tb.overlap_delta(e, o_p, o_c, "fwd", md) for md in tb.modes[1:]])
                    d_bwd = min([0.0] + [tb.overlap_delta(e, o_p, o_c, "bwd", md) for md in tb.modes[1:]])
                for r_p in (0, 1):
                    for r_c in (0, 1):
                        again = fwd if (saved or r_c) else 0.0
                        twice = 2.0 if (saved and r_p) else 1.0  # a recomputed producer's output converted anew
                        table[2 * a + r_p, 2 * b + r_c] = fwd + grad + again + twice * d_fwd + d_bwd
        into = inside if e.where == "block" else wrap
        key = (row[e.producer], row[e.consumer])
        into[key] = into.get(key, 0.0) + table
        if e.where == "block" and e.tensor not in need and e.tensor not in charged:
            charged.add(e.tensor)
            kept = np.zeros((width, width))
            for a, o_p in enumerate(tb.options(g.op(e.producer))):
                kept[2 * a, 1::2] = tb.option_cost(g.op(e.producer), o_p).out_bytes[e.tensor]
            keep[key] = keep.get(key, 0.0) + kept
    return inside, wrap, keep


def _memory_multipliers(base: np.ndarray, mem: np.ndarray) -> tuple[float, np.ndarray]:
    """(the largest finite cost of a choice, the sweep of memory multipliers λ scaled to it)."""
    top = float(np.nanmax(np.where(np.isfinite(base), base, np.nan)))
    return top, _multipliers(top / max(float(mem.max()), 1.0), LAMBDA_STEPS)


def _multipliers(scale: float, steps: int) -> np.ndarray:
    """0 and a geometric sweep of `steps` multipliers over 2^±16 of `scale`."""
    return np.concatenate(([0.0], scale * np.exp2(np.linspace(-16, 16, steps))))


def _machine_bound(work: Workload, hw: Hardware) -> float:
    """A bound below every mapping: the model's matmul FLOPs of one step spread evenly over every
    usable die at peak · matmul_efficiency (seconds)."""
    flops = step_flops(work.model, work.global_batch, work.seq_len)
    return flops / (hw.num_dies * hw.peak(work.dtype) * hw.die.matmul_efficiency)


def _tables(pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware, space: Space) -> Tables | None:
    groups = place_groups(hw, pt.pp, pt.dp, pt.shape)
    if groups is None:
        return None
    base = pr.tables
    return Tables(base.graph, work, hw, pt.pp, pt.dp, pt.shape, pt.micro_batch, pt.zero_stage, pt.virtual,
                  balanced_layers(work.model.layers, pt.pp), groups, base.allowed, space.fp32_grads, pt.layer_group,
                  _ec=pr.edge_caches.setdefault(groups[0].origin, {}))


def _mapping(pt: OuterPoint, tb: Tables, choices: dict, space: Space, offload: tuple[str, ...] = ()) -> Mapping:
    return Mapping(
        pp=pt.pp, dp=pt.dp, tp_shape=pt.shape, micro_batch=pt.micro_batch, zero_stage=pt.zero_stage,
        schedule="layerwise" if pt.layer_group > 1 else "interleaved" if pt.virtual > 1 else "1f1b",
        virtual_stages=pt.virtual, layer_group=pt.layer_group,
        layers_per_stage=tb.layers_per_stage,
        ops={k: OpChoice(split=v[0], recompute=v[1], overlap=v[2]) for k, v in choices.items()},
        groups=tb.groups, fp32_grad_accumulation=space.fp32_grads, offload=offload, name=f"{space.name} optimum",
    )


def _energy_floor(pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware) -> float:
    """Joules of one step below every mapping of an outer point, but for static power: each op's
    least FLOPs and least compute bytes on a die (no recompute; a backward has at least 2× the
    forward's FLOPs and at least 1× its bytes, models.graph.MEMORY_BOUND_BACKWARD), on every die,
    every micro-batch. Collectives, transfers and DRAM traffic only add (fused
    near-memory reduction saves part of a collective's own bytes, never more)."""
    e = hw.energy
    mem_j = e.dram_byte_j if hw.die.hbm_bytes is not None else e.sram_byte_j
    m = work.global_batch // (pt.dp * pt.micro_batch)
    dies = pt.dp * pt.shape[0] * pt.shape[1]
    layers = work.model.layers
    flops = layers * pr.flops_layer + pr.flops_pre + pr.flops_post
    nbytes = layers * pr.bytes_layer + pr.bytes_pre + pr.bytes_post
    return m * dies * (3 * flops * e.flop_j + 2 * nbytes * mem_j)


def _point_bound(objective: str, time_lb: float, floor: float, static_w: float) -> float:
    """A lower bound on the objective at a point from its step-time bound and its energy floor."""
    if objective == "time":
        return time_lb
    energy = floor + static_w * time_lb
    return energy if objective == "energy" else energy * time_lb


def _machine_objective_bound(objective: str, work: Workload, hw: Hardware) -> float:
    """_machine_bound for any objective: the static energy of the least die-seconds the model's
    FLOPs need (energy); energy times the machine's least step time (edp)."""
    t = _machine_bound(work, hw)
    if objective == "time":
        return t
    flops = step_flops(work.model, work.global_batch, work.seq_len)
    energy = hw.energy.static_w * flops / (hw.peak(work.dtype) * hw.die.matmul_efficiency)
    return energy if objective == "energy" else energy * t


def _check_args(space: str, backend: str, objective: str, time_limit_s: float) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective {objective!r} is not supported; allowed: {', '.join(OBJECTIVES)}")
    if not (time_limit_s > 0):
        raise ConfigError(f"time_limit_s must be > 0, got {time_limit_s}")
    get_space(space)


@dataclass
class _PointResult:
    """What the inner solves of one outer point found: candidates (objective, mapping, modeled step
    time), bounds left open (a solve that did not finish, an EDP walk cut short), solves run."""

    candidates: list = field(default_factory=list)
    open_bounds: list = field(default_factory=list)
    timed_out: bool = False
    solves: int = 0


def _solve_time_or_energy(inner: Inner, tb: Tables, pt: OuterPoint, sp: Space, objective: str, lb: float,
                          incumbent: float | None, backend: str, remaining: float, threads: int) -> _PointResult:
    out = _PointResult()
    lm = inner.model
    if objective == "energy":
        minimize_energy(inner, tb)
    if incumbent is not None:  # only a strictly better mapping matters: "infeasible" then proves none exists here
        lm.add(dict(lm.objective), "<=", incumbent - lm.objective_const, scale=lm.objective_scale, name="cutoff")
    res = solve_model(lm, backend, remaining, threads)
    out.solves = 1
    if res.status in ("optimal", "feasible") and res.values is not None:
        mp = _mapping(pt, tb, inner.choices(res.values), sp, inner.offload(res.values))
        out.candidates.append((res.objective, mp, modeled(inner.time_objective, res.values)))
        if res.status == "feasible":
            out.open_bounds.append(max(lb, res.bound if res.bound is not None else lb))
    elif res.status == "timeout":
        out.open_bounds.append(max(lb, res.bound) if res.bound is not None else lb)
        out.timed_out = True
    return out


def _solve_edp(inner: Inner, tb: Tables, pt: OuterPoint, sp: Space, work: Workload, hw: Hardware, lb: float,
               incumbent: float | None, backend: str, deadline: float, threads: int) -> _PointResult:
    """Energy × step time at one outer point, exactly, by an epsilon-constraint walk over the
    point's (energy, time) Pareto front: min time → T_min; min energy → E_min (so E_min·T_min
    bounds the point); then again and again min energy subject to time ≤ T·(1 − EDP_STEP) of the
    previous answer, until that limit falls below T_min. Every answer is a candidate, scored E·T by evaluate() (the referee). An answer
    with energy E_k ends the walk once E_k·T_min ≥ the incumbent: every Pareto point still ahead
    has E ≥ E_k and T ≥ T_min. Each min-energy solve carries the cutoff E < incumbent / T_min, so
    "infeasible" ends it too. At most EDP_MAX_SOLVES solves per point; a walk cut short (or a
    solve that did not finish) leaves its bound E·T_min open."""
    out = _PointResult()
    lm = inner.model
    time_expr, time_scale = dict(inner.time_objective), inner.time_scale * tb.virtual
    energy_expr, energy_const = minimize_energy(inner, tb)
    energy_scale = lm.objective_scale
    best = incumbent

    def run(expr: dict, const: float, scale: float, extra: list) -> object:
        lm.minimize(expr, const)
        lm.objective_scale = scale
        n = len(lm.rows)
        for coeffs, rhs, sc, name in extra:
            lm.add(coeffs, "<=", rhs, scale=sc, name=name)
        res = solve_model(lm, backend, deadline - time.perf_counter(), threads)
        del lm.rows[n:]
        out.solves += 1
        return res

    def candidate(values) -> tuple[float, float]:
        nonlocal best
        mp = _mapping(pt, tb, inner.choices(values), sp, inner.offload(values))
        rep = evaluate(mp, work, hw)
        val = rep.energy_j * rep.step_time_s
        out.candidates.append((val, mp, rep.step_time_s))
        best = val if best is None else min(best, val)
        return rep.energy_j, rep.step_time_s

    def stop(bound: float, res) -> _PointResult:
        out.open_bounds.append(max(lb, bound))
        out.timed_out = out.timed_out or res is None or res.status == "timeout"
        return out

    if time.perf_counter() >= deadline:
        return stop(lb, None)
    # 1. the least step time of the point
    res = run(time_expr, 0.0, time_scale, [])
    if res.status == "infeasible":
        return out
    if res.values is None or res.status != "optimal":
        return stop(lb, res)
    t_min = min(res.objective, res.bound if res.bound is not None else res.objective)
    candidate(res.values)
    e_floor = lb / t_min  # lb = E_lb·T_lb ≤ E_lb·t_min
    # 2. the least energy; 3. the walk towards shorter steps
    limit = None  # step time the next answer must beat
    while True:
        if out.solves >= EDP_MAX_SOLVES:  # the walk cut short: the rest of the front stays open
            out.open_bounds.append(max(lb, e_floor * t_min))
            return out
        if time.perf_counter() >= deadline:
            return stop(e_floor * t_min, None)
        extra = [(dict(energy_expr), best / t_min - energy_const, energy_scale, "cutoff")]
        if limit is not None:
            # written relative to the limit (time / limit ≤ 1), so a MIP solver's absolute
            # feasibility tolerance is a relative one here
            extra.append(({i: c / limit for i, c in time_expr.items()}, 1.0, time_scale * limit, "edp step"))
        res = run(energy_expr, energy_const, energy_scale, extra)
        if res.status == "infeasible":
            return out
        if res.values is None:
            return stop(e_floor * t_min, res)
        if res.status != "optimal":  # a shorter step of this point may still do better
            out.open_bounds.append(max(lb, (res.bound if res.bound is not None else e_floor) * t_min))
            return out
        e_k = res.objective
        e_floor = max(e_floor, min(e_k, res.bound if res.bound is not None else e_k))
        _e, t_k = candidate(res.values)
        if e_floor * t_min >= best * (1 - REL_TOL):
            return out
        limit = min(t_k, modeled(time_expr, res.values)) * (1 - EDP_STEP)
        if limit < t_min:  # no mapping of the point is faster than t_min: the front is walked
            return out


@dataclass
class _Found:
    """The search's results so far: the incumbent (objective, mapping, modeled step time), inner
    solves run, bounds left open by solves that did not finish, whether any ran out of time."""

    objective: str
    total: int
    progress: Callable[[Progress], None] | None
    best: tuple[float, Mapping, float] | None = None
    solved: int = 0
    open_bounds: list[float] = field(default_factory=list)
    timed_out: bool = False

    def offer(self, cand: tuple[float, Mapping, float]) -> None:
        if self.best is None or cand[0] < self.best[0]:
            self.best = cand

    def absorb(self, results: list[tuple[float, "_PointResult"]]) -> None:
        """Take finished inner solves in, each with its point's bound lb, and report progress."""
        for lb, res in results:
            self.solved += 1
            for cand in res.candidates:
                self.offer(cand)
            self.open_bounds.extend(res.open_bounds)
            self.timed_out = self.timed_out or res.timed_out
            if not self.progress:
                continue
            best = self.best
            if self.objective == "time":
                self.progress(Progress(self.solved, self.total, best[0] if best else None, lb))
            else:
                self.progress(Progress(self.solved, self.total, best[2] if best else None, None,
                                       {"objective": self.objective, "incumbent": best[0] if best else None,
                                        "bound": lb}))


class _InnerPool:
    """Inner solves of outer points run side by side, one solver thread each, on up to `workers`
    cores (CP-SAT, HiGHS and CBC release the interpreter while they search), while the search goes
    on bounding the next points. One worker: each solve runs at once, in the caller's thread."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._ex = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self._pending: list[tuple[float, Future]] = []
        self._ready: list[tuple[float, _PointResult]] = []

    def full(self) -> bool:
        return len(self._pending) >= self.workers

    def submit(self, lb: float, fn, *args) -> None:
        """fn(*args, threads=1) -> _PointResult, for a point of bound lb."""
        if self._ex is None:
            self._ready.append((lb, fn(*args, 1)))
        else:
            self._pending.append((lb, self._ex.submit(fn, *args, 1)))

    def done(self, wait: bool = False, wait_all: bool = False) -> list[tuple[float, _PointResult]]:
        """The solves finished so far (wait: at least one, if any runs; wait_all: every one)."""
        if self._pending and (wait or wait_all):
            futures_wait([f for _, f in self._pending], return_when=ALL_COMPLETED if wait_all else FIRST_COMPLETED)
        out, self._ready = self._ready, []
        finished = [(lb, f) for lb, f in self._pending if f.done()]
        self._pending = [(lb, f) for lb, f in self._pending if (lb, f) not in finished]
        return out + [(lb, f.result()) for lb, f in finished]

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)


def _refine(key: int, pt: OuterPoint, pr: _Probe, stage: dict, fitting_of: dict, work: Workload, hw: Hardware,
            sp: Space, objective: str, backend: str, found: _Found, deadline: float, threads: int) -> float | None:
    """The next bound of a point that reached the front (None: it cannot be solved). Tightened
    lazily: first the separable Lagrangian bound; the next time, the same on the point's
    placement and, unless that reaches the incumbent, the one that prices resharding, whose best
    joint choice seeds a primal heuristic (found.offer takes its mappings)."""
    done = stage.get(key, 0)
    stage[key] = done + 1
    if done == 0:  # gathers at their least: no placement solved yet
        comm = _layer_comm(pr, _gathers(pt, pr, work, hw, None))
        return _lagrangian_bound(_relaxations(pt, pr, work, hw, sp, fitting_of[key], comm))
    tb = _tables(pt, pr, work, hw, sp)
    if tb is None:  # no placement: the point cannot be solved
        fitting_of.pop(key)
        return None
    comm = _layer_comm(pr, _gathers(pt, pr, work, hw, tb))
    relaxed = _relaxations(pt, pr, work, hw, sp, fitting_of.pop(key), comm)
    refined = _lagrangian_bound(relaxed)
    block = _block_comm(pr)
    best = found.best
    target = best[0] if best is not None and objective == "time" else float("inf")  # seconds
    if block is not None and refined < target:
        refined = max(refined, _resharding_bound(relaxed, block, target))
        # its options may give a better incumbent, worth a solve where the bound leaves room
        if refined < target * (1 - PRIMAL_MIN_GAIN) and objective != "edp":
            for cand in _relaxed_mapping(pt, tb, relaxed, block, hw, sp, objective, best[0] if best else None,
                                         backend, PRIMAL_SHARE * (deadline - time.perf_counter()), threads):
                found.offer(cand)
    return refined


def solve(work: Workload, hardware: Hardware | str, space: str | Space = "full", backend: str = "cpsat",
          objective: str = "time", time_limit_s: float = 60.0, threads: int | None = None,
          progress: Callable[[Progress], None] | None = None) -> Solution:
    """The best mapping of `work` on `hardware` inside `space`, with a proven lower bound.

    objective: "time" (step time, s), "energy" (J of one step, evaluate()'s energy_j) or "edp"
    (energy_j × step_time_s). See Solution for what objective_s, bound_s, gap mean for each;
    "edp" walks each outer point's energy/time Pareto front (_solve_edp, at most EDP_MAX_SOLVES
    inner solves per point)."""
    _check_args(space, backend, objective, time_limit_s)
    hw = hw_loader.load(hardware) if isinstance(hardware, str) else hardware
    sp = get_space(space)
    space = sp.name
    threads = threads or min(8, os.cpu_count() or 1)
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    static_w = hw.energy.static_w

    probes: dict = {}
    heap: list = []
    time_lbs: dict[int, float] = {}  # point key -> its step-time lower bound
    floors: dict[int, float] = {}  # point key -> its energy floor (objectives other than time)
    fitting_of: dict[int, list] = {}  # point key -> the DRAM subsets that can fit, with their cheap bounds
    tiers = _Tiers.of(sp, hw)
    ev = infeasible.Evidence()
    seen: list[tuple[OuterPoint, _Probe]] = []  # the points bounded, for an infeasible answer's reasons
    total = pruned_mem = 0
    enumeration_cut = False  # outer points left unenumerated (bounded by the machine-wide bound)
    dead_family = None  # degrees whose layer-wise group no longer fits (space.layer_groups ascend)
    for pt, pr in probed_points(work, hw, sp):
        if total % 256 == 0 and time.perf_counter() - t0 > ENUMERATION_SHARE * time_limit_s:
            enumeration_cut = True
            break
        probes[(pt.shape, pt.micro_batch)] = pr
        total += 1
        family = (pt.pp, pt.dp, pt.shape, pt.micro_batch, pt.zero_stage, pt.virtual, pt.recompute_policy)
        if pt.layer_group > 1 and family == dead_family:  # a smaller group of these degrees did not fit
            pruned_mem += 1
            continue
        lb, mem, spill, fitting = _bounds(pt, pr, work, hw, sp, tiers)
        seen.append((pt, pr))
        if mem < ev.least:
            ev.least, ev.least_point = mem, pt
        ev.least_spill = min(ev.least_spill, spill)
        if lb == float("inf"):  # no choice of tiers fits this point
            pruned_mem += 1
            dead_family = family if pt.layer_group > 1 else None  # larger groups only hold more
            continue
        time_lbs[total] = lb
        fitting_of[total] = fitting
        floors[total] = _energy_floor(pt, pr, work, hw) if objective != "time" else 0.0
        heapq.heappush(heap, (_point_bound(objective, lb, floors[total], static_w * pt.dies), total, pt))

    found = _Found(objective, total, progress)
    stage: dict[int, int] = {}  # point key -> bounds applied so far (1: Lagrangian, 2: placed, with resharding)
    pool = _InnerPool(threads if objective != "edp" else 1)
    try:
        while heap:
            found.absorb(pool.done())
            best = found.best
            lb, key, pt = heap[0]
            if best is not None and lb >= best[0] * (1 - REL_TOL):
                break
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                found.timed_out = True
                break
            if stage.get(key, 0) >= 2 and pool.full():  # the point needs a worker: wait for one
                found.absorb(pool.done(wait=True))
                continue
            heapq.heappop(heap)
            pr = probes[(pt.shape, pt.micro_batch)]
            if stage.get(key, 0) < 2:
                refined = _refine(key, pt, pr, stage, fitting_of, work, hw, sp, objective, backend, found, deadline,
                                  threads)
                if refined is not None:
                    time_lbs[key] = max(time_lbs[key], refined)
                    heapq.heappush(heap, (_point_bound(objective, time_lbs[key], floors[key], static_w * pt.dies),
                                          key, pt))
                continue
            fitting_of.pop(key, None)  # solved without the last bound
            tb = _tables(pt, pr, work, hw, sp)
            if tb is None:
                continue
            inner = build_inner(tb, sp.recompute_allowed(tb.graph, pt.recompute_policy), hw.die.memory_bytes,
                                sp.offload_classes(hw), energy=objective != "time")
            incumbent = best[0] if best is not None else None
            if objective == "edp":
                found.absorb([(lb, _solve_edp(inner, tb, pt, sp, work, hw, lb, incumbent, backend, deadline, threads))])
            else:
                pool.submit(lb, _solve_time_or_energy, inner, tb, pt, sp, objective, lb, incumbent, backend, remaining)
        found.absorb(pool.done(wait_all=True))
    finally:
        pool.close()
    best, solved, open_bounds, timed_out = found.best, found.solved, found.open_bounds, found.timed_out

    elapsed = time.perf_counter() - t0
    unexplored = [h[0] for h in heap]
    if enumeration_cut:
        timed_out = True
        unexplored.append(_machine_objective_bound(objective, work, hw))
    is_time = objective == "time"
    common = dict(solve_time_s=elapsed, points_total=total, points_solved=solved, backend=backend, space=space,
                  objective=objective)
    if best is None:
        if timed_out or (unexplored and not heap == []):
            bound = min(unexplored + open_bounds) if (unexplored or open_bounds) else None
            return Solution(status="timeout", bound_s=bound if is_time else None, bound_value=bound,
                            explanation="no feasible mapping found within the time limit", **common)
        ev.solved = solved
        reasons, text = infeasible.explain(_evidence(ev, seen, work, hw, sp), hw, work, space)
        return Solution(status="infeasible", points_pruned=pruned_mem, reasons=reasons, explanation=text, **common)
    obj, mp, model_s = best
    cand = [obj] + open_bounds + (unexplored if timed_out else [])
    bound = min(cand)
    report = evaluate(mp, work, hw)
    optimal = not timed_out and not open_bounds
    status = "optimal" if optimal else ("feasible" if not timed_out else "timeout")
    value = {"time": report.step_time_s, "energy": report.energy_j,
             "edp": report.energy_j * report.step_time_s}[objective]
    bound = bound if not optimal else obj
    gap = (value - bound) / bound if bound > 0 else 0.0
    return Solution(status=status, mapping=mp, report=report, objective_s=obj if is_time else model_s,
                    bound_s=bound if is_time else None, gap=max(gap, 0.0), points_pruned=total - solved,
                    objective_value=obj, bound_value=bound, **common)


def _evidence(ev: infeasible.Evidence, seen: list, work: Workload, hw: Hardware, sp: Space) -> infeasible.Evidence:
    """ev completed for an infeasible answer: the class split of the least-memory point, the least
    need had every op split evenly (and which dimensions do not divide that point's group), and
    the least need on the defect-free grid when the grid has defects. Arithmetic only. In a
    restricted space (a peer's) the even split is not asked: its least need stands for it."""
    tiers = _Tiers.of(sp, hw)
    for pt, pr in seen:
        if pt == ev.least_point:
            _need, ev.least_parts = _memory_need(pt, pr, work, sp, tiers)
        if sp.name != "full":  # a peer's space restricts the options beyond divisibility: no even split
            continue
        even, parts = _memory_need(pt, pr, work, sp, tiers, even=True)
        if even < ev.even:
            ev.even, ev.even_parts, ev.even_point = even, parts, pt
            ev.undivided = infeasible.undivided_dimensions(pr.tables.graph.sizes, pt.shape)
    if sp.name != "full":
        ev.even, ev.even_parts, ev.even_point = ev.least, ev.least_parts, ev.least_point
    if hw.defects:
        clean = hw.model_copy(update={"defects": []})
        ev.clean_least = min((_bounds(pt, pr, work, clean, sp, tiers)[1] for pt, pr in probed_points(work, clean, sp)),
                             default=float("inf"))
    return ev
