"""One outer point of the search: its probe (per group shape and micro-batch, each op's fastest
compute and least memory, and the block ops' choices as arrays), its tables and mapping, and its
inner solve — for step time or energy with the incumbent as a cutoff, or for EDP by a walk over
the point's energy/time Pareto front — and the pool that runs points' inner solves side by side."""

from __future__ import annotations

import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field, replace

import numpy as np

from hw.schema import Hardware
from models.graph import build_graph
from models.schema import Workload

from ..model.evaluate import evaluate
from ..formulation.backends import solve_model
from ..formulation.energy import minimize_energy, modeled
from ..formulation.inner import Inner
from ..formulation.placement import place_groups
from ..model.mapping import Mapping, OpChoice
from .space import OuterPoint, Space
from ..model.layout import point_layers
from ..model.tables import Tables, default_groups

EDP_MAX_SOLVES = 24  # inner solves per outer point in the EDP walk, at most (then its bound stays open)
EDP_STEP = 1e-6  # each EDP step asks for a step time this much (relative) below the previous one
REL_TOL = 1e-9


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


def _tables(pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware, space: Space) -> Tables | None:
    groups = place_groups(hw, pt.pp, pt.dp, pt.shape)
    if groups is None:
        return None
    base = pr.tables
    return Tables(base.graph, work, hw, pt.pp, pt.dp, pt.shape, pt.micro_batch, pt.zero_stage, pt.virtual,
                  point_layers(work.model.layers, pt.pp, pt.virtual, pt.layers_per_chunk), groups, base.allowed,
                  space.fp32_grads, pt.layer_group, pp_transfer=space.pp_transfer, chunk_layers=pt.layers_per_chunk,
                  _ec=pr.edge_caches.setdefault(groups[0].origin, {}))


def _mapping(pt: OuterPoint, tb: Tables, choices: dict, space: Space, offload: tuple[str, ...] = ()) -> Mapping:
    return Mapping(
        pp=pt.pp, dp=pt.dp, tp_shape=pt.shape, micro_batch=pt.micro_batch, zero_stage=pt.zero_stage,
        schedule="layerwise" if pt.layer_group > 1 else "interleaved" if pt.virtual > 1 else "1f1b",
        virtual_stages=pt.virtual, layer_group=pt.layer_group,
        layers_per_stage=tb.layers_per_stage, layers_per_chunk=tb.layers_per_chunk if pt.virtual > 1 else None,
        pp_transfer=space.pp_transfer,
        ops={k: OpChoice(split=v[0], recompute=v[1], overlap=v[2]) for k, v in choices.items()},
        groups=tb.groups, fp32_grad_accumulation=space.fp32_grads, offload=offload, name=f"{space.name} optimum",
    )


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


@dataclass
class _EdpWalk:
    """The steps of one outer point's EDP walk (_solve_edp): a solve of its inner model under extra
    rows, an answer scored by evaluate() as a candidate, the walk stopped with a bound left open.
    best: the least E·T known, the incumbent's or one of the walk's candidates'."""

    inner: Inner
    tb: Tables
    pt: OuterPoint
    sp: Space
    work: Workload
    hw: Hardware
    lb: float
    best: float | None
    backend: str
    deadline: float
    threads: int
    out: _PointResult = field(default_factory=_PointResult)

    def run(self, expr: dict, const: float, scale: float, extra: list) -> object:
        lm = self.inner.model
        lm.minimize(expr, const)
        lm.objective_scale = scale
        n = len(lm.rows)
        for coeffs, rhs, sc, name in extra:
            lm.add(coeffs, "<=", rhs, scale=sc, name=name)
        res = solve_model(lm, self.backend, self.deadline - time.perf_counter(), self.threads)
        del lm.rows[n:]
        self.out.solves += 1
        return res

    def candidate(self, values) -> tuple[float, float]:
        mp = _mapping(self.pt, self.tb, self.inner.choices(values), self.sp, self.inner.offload(values))
        rep = evaluate(mp, self.work, self.hw)
        val = rep.energy_j * rep.step_time_s
        self.out.candidates.append((val, mp, rep.step_time_s))
        self.best = val if self.best is None else min(self.best, val)
        return rep.energy_j, rep.step_time_s

    def stop(self, bound: float, res) -> _PointResult:
        out = self.out
        out.open_bounds.append(max(self.lb, bound))
        out.timed_out = out.timed_out or res is None or res.status == "timeout"
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
    walk = _EdpWalk(inner, tb, pt, sp, work, hw, lb, incumbent, backend, deadline, threads)
    out = walk.out
    time_expr, time_scale = dict(inner.time_objective), inner.time_scale * tb.virtual
    energy_expr, energy_const = minimize_energy(inner, tb)
    energy_scale = inner.model.objective_scale

    if time.perf_counter() >= deadline:
        return walk.stop(lb, None)
    # 1. the least step time of the point
    res = walk.run(time_expr, 0.0, time_scale, [])
    if res.status == "infeasible":
        return out
    if res.values is None or res.status != "optimal":
        return walk.stop(lb, res)
    t_min = min(res.objective, res.bound if res.bound is not None else res.objective)
    walk.candidate(res.values)
    e_floor = lb / t_min  # lb = E_lb·T_lb ≤ E_lb·t_min
    # 2. the least energy; 3. the walk towards shorter steps
    limit = None  # step time the next answer must beat
    while True:
        if out.solves >= EDP_MAX_SOLVES:  # the walk cut short: the rest of the front stays open
            out.open_bounds.append(max(lb, e_floor * t_min))
            return out
        if time.perf_counter() >= deadline:
            return walk.stop(e_floor * t_min, None)
        extra = [(dict(energy_expr), walk.best / t_min - energy_const, energy_scale, "cutoff")]
        if limit is not None:
            # written relative to the limit (time / limit ≤ 1), so a MIP solver's absolute
            # feasibility tolerance is a relative one here
            extra.append(({i: c / limit for i, c in time_expr.items()}, 1.0, time_scale * limit, "edp step"))
        res = walk.run(energy_expr, energy_const, energy_scale, extra)
        if res.status == "infeasible":
            return out
        if res.values is None:
            return walk.stop(e_floor * t_min, res)
        if res.status != "optimal":  # a shorter step of this point may still do better
            out.open_bounds.append(max(lb, (res.bound if res.bound is not None else e_floor) * t_min))
            return out
        e_k = res.objective
        e_floor = max(e_floor, min(e_k, res.bound if res.bound is not None else e_k))
        _e, t_k = walk.candidate(res.values)
        if e_floor * t_min >= walk.best * (1 - REL_TOL):
            return out
        limit = min(t_k, modeled(time_expr, res.values)) * (1 - EDP_STEP)
        if limit < t_min:  # no mapping of the point is faster than t_min: the front is walked
            return out


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
