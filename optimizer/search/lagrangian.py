"""The bounds that tighten an outer point at the front of the queue: a Lagrangian relaxation of
its memory row, separable per block op (_lagrangian_bound); the same with the block's resharding
priced, by min-sum elimination (_resharding_bound); and the primal heuristic its best joint
choice seeds (_relaxed_mapping)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.schema import Hardware
from hw.topology import least_collective_s
from models.schema import Workload

from ..model import cost, overlap
from . import minsum
from ..formulation.inner import build_inner
from .points import _OpTable, _Probe, _solve_time_or_energy
from .space import OuterPoint, Space
from ..model.layout import point_layers
from ..model.tables import Tables

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
    lam_index: int | None = None  # index in the sweep of the multiplier _lagrangian_bound found best


def _relaxations(pt: OuterPoint, pr: _Probe, work: Workload, hw: Hardware, space: Space,
                 fitting: list[tuple[float, tuple[str, ...]]], comm: np.ndarray) -> list[_Relaxed]:
    """The separable relaxation of an outer point for each DRAM subset that can fit (see
    _lagrangian_bound for what it prices and what it leaves out), in the order of `fitting`.
    comm: _layer_comm of the point."""
    tab = pr.ops
    if tab is None:
        return []
    lps = point_layers(work.model.layers, pt.pp, pt.virtual, pt.layers_per_chunk)
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
        r.lam_index, _mu, r.theta = (int(x) for x in np.unravel_index(int(np.argmax(vals)), vals.shape))
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
    Multipliers: the one the separable bound found best, and where that does not reach `target`
    every COARSE_EVERY-th of the sweep, then the neighbours of the best (any λ gives a valid
    bound). Once the next subset's cheap bound reaches `target` (or the least so far), that cheap
    bound stands for it and the rest."""
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

        if r.lam_index is not None:  # the separable bound's multiplier first: it often settles the subset
            first = dual(np.array([r.lam_index]))
            if float(first[0]) + r.const >= target:
                r.lam = float(lams[r.lam_index])
                best = min(best, max(r.cheap, float(first[0]) + r.const))
                continue
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
