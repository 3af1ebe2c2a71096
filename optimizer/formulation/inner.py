"""The inner model of one outer point, built from its cost tables (Alpa-style strategy tables,
Checkmate-style recompute), mirroring optimizer.evaluate term by term.

Variables (plain dicts keyed by meaningful tuples):
  Y[op, option, r]   block op picks `option`, r = 1 recomputes it in backward
  X[op, option]      pre/post op (embedding, final norm, head, loss) picks `option`
  Z[edge, o_p, o_c]  producer/consumer option pair of an edge (exact resharding cost)
  RC[edge]           conversion redone when the consumer is recomputed (= pair cost · R)
  KEEP[tensor, op]   bytes of a tensor kept only because recomputing `op` needs it
  W[op, option, r, mode]  a GEMM runs its reductions in overlap `mode` (chunked, fused; none = sequential)
  V[edge, role, o_p, o_c, r, mode]  W of the edge's producer (role fwd) or consumer (bwd) times Z
  EZ[fwd|bwd], EPP[kind], EDP[kind]  exposed ZeRO-3 gathers (per layer), pipeline transfers (steady
                     state), gradient reduction: epigraphs of overlap.exposed_pieces
  T[kind]            one micro-batch's time of a stage kind with its transfers serialized (fill/drain);
                     TMAX ≥ every stage kind's steady-state time; D ≥ every stage's sync
Objective: Σ_s T_s / v + (m − 1/v)·TMAX + D  (the 1F1B/interleaved pipeline, then the sync).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model.tables import Tables
from ..model import cost, overlap
from .model import LinearModel, add_expr

GB = 1e9  # memory rows are written in GB for numerical balance
KB_PER_GB = 1e6  # CP-SAT counts bytes kept on or off the die in KB
FINE = 1e12  # CP-SAT: rows mixing DRAM bytes and seconds are counted in picoseconds


@dataclass
class Inner:
    model: LinearModel
    Y: dict
    X: dict
    Z: dict
    rec_allowed: dict
    H: dict
    W: dict = field(default_factory=dict)  # (op, option, r, mode) -> binary: the op's overlap mode
    # handles for other objectives (optimizer/formulation/energy.py)
    V: dict = field(default_factory=dict)  # (edge, role, o_p, o_c, r, mode) -> V variable (W x Z)
    sel: dict = field(default_factory=dict)  # op -> {option: expr of "op picks option"}
    time_objective: dict = field(default_factory=dict)  # step time (s) as a linear expression
    time_scale: float = 1e9  # CP-SAT integer units per second of the time variables (ns or ps)
    dram: list = field(default_factory=list)  # per stage kind: (kind, count, in_flight, {class: DRAM var (GB)})
    group_of: dict = field(default_factory=dict)  # selector variable -> its op (one option per op)

    def upper(self, expr: dict[int, float]) -> float:
        """An upper bound of a linear expression (each op's largest coefficient, other variables at
        their bounds; negative coefficients of non-selector variables count 0)."""
        top: dict = {}
        total = 0.0
        for i, c in expr.items():
            if i in self.group_of:
                top[self.group_of[i]] = max(top.get(self.group_of[i], 0.0), c)
            elif c > 0:
                total += c * self.model.vars[i].ub
        return total + sum(top.values())

    def offload(self, values: list[float]) -> tuple[str, ...]:
        return tuple(c for c, i in self.H.items() if values[i] > 0.5)

    def choices(self, values: list[float]) -> dict[str, tuple[tuple, bool, str]]:
        """op -> (option, recompute, overlap mode)."""
        out: dict[str, tuple[tuple, bool, str]] = {}
        for (name, opt, r), i in self.Y.items():
            if values[i] > 0.5:
                out[name] = (opt, bool(r), "sequential")
        for (name, opt), i in self.X.items():
            if values[i] > 0.5:
                out[name] = (opt, False, "sequential")
        for (name, opt, r, mode), i in self.W.items():
            if values[i] > 0.5:
                out[name] = (opt, bool(r), mode)
        return out


def build_inner(tb: Tables, rec_allowed: dict[str, tuple[bool, ...]], capacity: float,
                offload: tuple[str, ...] = (), energy: bool = False) -> Inner:
    """The model of one outer point; `offload` lists the tensor classes the solver may put in DRAM.
    With `energy`, overlap modes that save main-memory bytes (but no time) are modeled too, so the
    energy expression (formulation/energy.py) can be built on it; the objective stays step time."""
    g = tb.graph
    lm = LinearModel()
    H = {c: lm.binary(f"H[{c}]") for c in offload}  # class c lives in DRAM
    # CP-SAT counts step times in ns, or in ps once DRAM bytes (counted in KB) enter the time rows
    tscale = FINE if H else 1e9
    Y: dict = {}
    X: dict = {}
    Z: dict = {}
    sel: dict[str, dict] = {}  # op -> {option: linear expr of "op picks option"}
    for o in g.block:
        sel[o.name] = {}
        one: dict[int, float] = {}
        for opt in tb.options(o):
            e: dict[int, float] = {}
            for r in rec_allowed[o.name]:
                i = lm.binary(f"Y[{o.name},{opt},{int(r)}]")
                Y[(o.name, opt, int(r))] = i
                e[i] = 1.0
                one[i] = 1.0
            sel[o.name][opt] = e
        lm.add(one, "==", 1.0, scale=1.0, name=f"one[{o.name}]")
    for o in g.pre + g.post:
        sel[o.name] = {}
        one = {}
        for opt in tb.options(o):
            i = lm.binary(f"X[{o.name},{opt}]")
            X[(o.name, opt)] = i
            sel[o.name][opt] = {i: 1.0}
            one[i] = 1.0
        lm.add(one, "==", 1.0, scale=1.0, name=f"one[{o.name}]")

    group_of = {i: k[0] for k, i in list(Y.items()) + list(X.items())}

    def upper(expr: dict[int, float]) -> float:
        """An upper bound of a linear expression: each op's largest coefficient (one option is
        picked), each continuous variable (and any other binary) at its bound."""
        top: dict = {}
        total = 0.0
        for i, c in expr.items():
            if i in group_of:
                top[group_of[i]] = max(top.get(group_of[i], 0.0), c)
            elif c > 0:
                total += c * lm.vars[i].ub
        return total + sum(top.values())

    def rec_expr(name: str) -> dict[int, float]:
        return {i: 1.0 for (n, _o, r), i in Y.items() if n == name and r == 1}

    def op_expr(o, field_fn, recompute_fn=None) -> dict[int, float]:
        """Σ over the op's (option[, r]) choices of a per-choice coefficient."""
        e: dict[int, float] = {}
        for opt in tb.options(o):
            oc = tb.option_cost(o, opt)
            if (o.name, opt) in X:
                e[X[(o.name, opt)]] = field_fn(oc)
            for r in (0, 1):
                if (o.name, opt, r) in Y:
                    e[Y[(o.name, opt, r)]] = field_fn(oc) + (recompute_fn(oc) if (r and recompute_fn) else 0.0)
        return e

    # ---- edges: pair variables with margins ------------------------------------------------
    edge_time: dict = {}  # edge -> expr of its per-use time (without the recompute part)
    edge_rc: dict = {}
    for e in tb.edges:
        prod, cons = g.op(e.producer), g.op(e.consumer)
        expr: dict[int, float] = {}
        fwd_expr: dict[int, float] = {}
        saved = tb.saved_by(e)
        zmap = {}
        for op_ in tb.options(prod):
            for oc_ in tb.options(cons):
                ec = tb.edge_cost(e, op_, oc_)
                i = lm.binary(f"Z[{e.tensor}:{e.producer}->{e.consumer}:{e.where},{op_},{oc_}]")
                zmap[(op_, oc_)] = i
                expr[i] = ec.fwd.time_s + ec.grad.time_s + (ec.fwd.time_s if saved else 0.0)
                fwd_expr[i] = ec.fwd.time_s
        Z[e] = zmap
        for op_ in tb.options(prod):
            row = {zmap[(op_, oc_)]: 1.0 for oc_ in tb.options(cons)}
            add_expr(row, sel[prod.name][op_], -1.0)
            lm.add(row, "==", 0.0, scale=1.0)
        for oc_ in tb.options(cons):
            row = {zmap[(op_, oc_)]: 1.0 for op_ in tb.options(prod)}
            add_expr(row, sel[cons.name][oc_], -1.0)
            lm.add(row, "==", 0.0, scale=1.0)
        edge_time[e] = expr
        if not saved and any(k[0] == cons.name and k[2] == 1 for k in Y):
            big = max(fwd_expr.values(), default=0.0)
            if big > 0:
                rc = lm.continuous(f"RC[{e.tensor}->{e.consumer}:{e.where}]", big)
                row = {rc: 1.0}
                add_expr(row, fwd_expr, -1.0)
                add_expr(row, rec_expr(cons.name), -big)
                lm.add(row, ">=", -big)
                edge_rc[e] = rc

    # ---- per-layer block time and per-op pieces --------------------------------------------
    layer: dict[int, float] = {}
    for o in g.block:
        add_expr(layer, op_expr(o, lambda c: c.fwd_s + c.bwd_s + 2 * c.stats.time_s,
                                lambda c: c.fwd_s + c.stats.time_s))
    po = tb.overlap_params
    (a1, b1), (a2, b2) = overlap.exposed_pieces(po.compute_slowdown, po.comm_slowdown)
    top = max(a1, a2)

    def exposed(label: str, comm: dict[int, float], busy: dict[int, float], const: float = 0.0) -> int:
        """A variable E ≥ overlap.exposed_time(busy, comm + const): the epigraph of its two pieces,
        pushed down by the objective wherever it counts."""
        e = lm.continuous(label, top * (upper(comm) + max(const, 0.0)) + 1.0, scale=tscale)
        for a, b in ((a1, b1), (a2, b2)):
            row = {e: 1.0}
            add_expr(row, comm, -a)
            add_expr(row, busy, -b)
            lm.add(row, ">=", a * const, scale=FINE, name=label)
        return e
    def edges_expr(where: str) -> dict[int, float]:
        """Time of one use of every edge of a group: pair costs plus recompute conversions."""
        e_sum: dict[int, float] = {}
        for e in (x for x in tb.edges if x.where == where):
            add_expr(e_sum, edge_time[e])
            if e in edge_rc:
                e_sum[edge_rc[e]] = e_sum.get(edge_rc[e], 0.0) + 1.0
        return e_sum

    def ops_expr(ops) -> dict[int, float]:
        """Pre/post ops: compute, split-reduction all-reduces and ZeRO-3 gathers (not prefetched)."""
        e_sum: dict[int, float] = {}
        for o in ops:
            add_expr(e_sum, op_expr(o, lambda c: c.fwd_s + c.bwd_s + 2 * c.stats.time_s + 2 * c.gather.time_s))
        return e_sum

    add_expr(layer, edges_expr("block"))
    wrap = edges_expr("wrap")
    pre = ops_expr(g.pre)
    add_expr(pre, edges_expr("pre"))
    post = ops_expr(g.post)
    add_expr(post, edges_expr("post"))
    W, V = _overlap_modes(lm, tb, Y, X, Z, {"block": layer, "post": post}, energy)

    # ---- ZeRO-3: a layer's gathers are prefetched beside the previous layer's compute -----------
    cb: dict[int, float] = {}  # one layer's backward compute, recomputation included
    for o in g.block:
        add_expr(cb, op_expr(o, lambda c: c.bwd_s, lambda c: c.fwd_s))
    if tb.zero_stage == 3 and tb.dp > 1:
        zf: dict[int, float] = {}
        zb: dict[int, float] = {}
        cf: dict[int, float] = {}
        for o in g.block:
            add_expr(zf, op_expr(o, lambda c: c.gather.time_s))
            add_expr(zb, op_expr(o, lambda c: c.gather.time_s, lambda c: c.gather.time_s))
            add_expr(cf, op_expr(o, lambda c: c.fwd_s))
        layer[exposed("EZ[fwd]", zf, cf)] = 1.0
        layer[exposed("EZ[bwd]", zb, cb)] = 1.0
    add2 = g.op("add2")
    p2p = {}
    for opt, ex in sel["add2"].items():
        add_expr(p2p, ex, tb.p2p(opt).time_s * tb.virtual)

    # ---- params, sync and memory -----------------------------------------------------------
    params_layer: dict[int, float] = {}
    wsync_layer: dict[int, float] = {}
    for o in g.block:
        add_expr(params_layer, op_expr(o, lambda c: c.params))
        add_expr(wsync_layer, op_expr(o, lambda c: c.wsync.time_s))
    params_pre, params_post, wsync_pre, wsync_post = {}, {}, {}, {}
    for o in g.pre:
        add_expr(params_pre, op_expr(o, lambda c: c.params))
        add_expr(wsync_pre, op_expr(o, lambda c: c.wsync.time_s))
    for o in g.post:
        add_expr(params_post, op_expr(o, lambda c: c.params))
        add_expr(wsync_post, op_expr(o, lambda c: c.wsync.time_s))
    op_params = {o.name: op_expr(o, lambda c: c.params) for o in g.block + g.pre + g.post}
    for opt, ex in sel["lm_head"].items():
        add_expr(params_post, ex, tb.tied_head_params(opt))
        add_expr(op_params["lm_head"], ex, tb.tied_head_params(opt))

    dp_slope, dp_icpt = tb.dp_sync_rate()
    state = cost.zero_state_bytes(1.0, tb.dp, tb.zero_stage, tb.fp32_grads, tb.work.dtype_bytes)
    working_per_param = cost.offload_working_bytes(1.0, tb.dp, tb.zero_stage, tb.fp32_grads, tb.work.dtype_bytes)
    upd_per_param = cost.optimizer_update_time(1.0, tb.dp, tb.zero_stage, tb.hw.die)

    # activations kept per layer (Checkmate): tensor memory expressions
    need = {t for o in g.block for t in o.saved}
    producers = {x.tensor: o for o in g.block for x in o.outputs}
    act_layer: dict[int, float] = {}
    for opt, ex in sel["add2"].items():  # the block input, always kept (in the block output's layout)
        add_expr(act_layer, ex, tb.option_cost(add2, opt).out_bytes[g.block_output] / GB)
    consumers_of: dict[str, list] = {}
    for o in g.block:
        for x in o.inputs:
            consumers_of.setdefault(x.tensor, []).append(o)
    for t, p in producers.items():
        if t == g.block_output:
            continue
        kept: dict[int, float] = {}
        for opt in tb.options(p):
            if (p.name, opt, 0) in Y:
                kept[Y[(p.name, opt, 0)]] = tb.option_cost(p, opt).out_bytes[t] / GB
        if t in need:
            add_expr(act_layer, kept)
            continue
        recs = [c for c in consumers_of.get(t, []) if any(k[0] == c.name and k[2] == 1 for k in Y)]
        if not recs:
            continue
        big = max(kept.values(), default=0.0)
        if big <= 0:
            continue
        k_var = lm.continuous(f"KEEP[{t}]", big, scale=GB)
        for c in recs:
            row = {k_var: 1.0}
            add_expr(row, kept, -1.0)
            add_expr(row, rec_expr(c.name), -big)
            lm.add(row, ">=", -big, scale=GB)
        act_layer[k_var] = act_layer.get(k_var, 0.0) + 1.0
    post_saved: dict[int, float] = {}
    for o in g.post:
        for t in o.saved:
            src = producers.get(t) if t != g.block_output else add2
            if src is None:
                src = next(q for q in g.post if any(x.tensor == t for x in q.outputs))
            for opt, ex in sel[src.name].items():
                add_expr(post_saved, ex, tb.option_cost(src, opt).out_bytes[t] / GB)
    buffers: dict[int, float] = {}
    for (name, opt, r), i in Y.items():
        if r:
            buffers[i] = tb.recompute_buffer(g.op(name), opt) / GB

    # ---- stage kinds -----------------------------------------------------------------------

    counts: dict = {}
    for s, L in enumerate(tb.layers_per_stage):
        key = (L, s == 0, s == tb.pp - 1)
        counts[key] = counts.get(key, 0) + 1
    bw = tb.dram_bandwidth
    per_mb_rate, per_step_rate = cost.dram_rates(tb.layer_group)
    kinds = []
    for kind in tb.stage_kinds:
        L, first, last = kind.layers, kind.first, kind.last
        time: dict[int, float] = {}
        add_expr(time, layer, L)
        add_expr(time, wrap, L - 1 if first else L)
        if first:
            add_expr(time, pre)
        if last:
            add_expr(time, post)
        pp_k: dict[int, float] = {}  # this kind's pipeline transfers per micro-batch, each alone
        add_expr(pp_k, p2p, (0 if first else 1) + (0 if last else 1))
        par: dict[int, float] = {}  # parameters on one die of this stage
        add_expr(par, params_layer, L)
        # a class kept in DRAM still needs its working piece of the largest op on the die
        working = [op_params[o.name] for o in g.block + (g.pre if first else ()) + (g.post if last else ())]
        if first:
            add_expr(par, params_pre)
        if last:
            add_expr(par, params_post)
        sync: dict[int, float] = {}  # weight-grad all-reduces + Adam update (+ the exposed dp sync below)
        add_expr(sync, par, upd_per_param)
        add_expr(sync, wsync_layer, L)
        if first:
            add_expr(sync, wsync_pre)
        if last:
            add_expr(sync, wsync_post)
        act: dict[int, float] = {}  # saved activations of one micro-batch (GB)
        add_expr(act, act_layer, L)
        if last:
            add_expr(act, post_saved)
        kinds.append((kind, (L, first, last), time, par, working, sync, act, pp_k))

    def dram_s(kind, per_mb: bool) -> float:
        """Most seconds of DRAM traffic a stage kind can spend per micro-batch (or in the update)."""
        if not H:
            return 0.0
        _k, _key, _t, par, _w, _s, act, _p = kind
        pmax = upper(par)
        if per_mb:
            return (sum(per_mb_rate[c] * state[c] for c in ("weights", "grads")) * pmax +
                    per_mb_rate["activations"] * upper(act) * GB) / bw
        return sum(per_step_rate[c] * state[c] for c in state) * pmax / bw

    big_t = max(upper(k[2]) + upper(k[7]) + dram_s(k, True) for k in kinds) * 1.01 + 1.0
    big_d = max(upper(k[5]) + upper({i: c * dp_slope.time_s for i, c in k[3].items()}) + dram_s(k, False)
                for k in kinds) * 1.01 + (dp_icpt.time_s if tb.dp > 1 else 0.0) + 1.0
    tmax = lm.continuous("TMAX", big_t, scale=tscale)
    dmax = lm.continuous("D", big_d, scale=tscale)
    objective: dict[int, float] = {}
    dram_total: dict[int, float] = {}
    dram_kinds: list = []
    for kind, key, time, par, working, sync, act, pp_k in kinds:
        in_flight = tb.in_flight(kind.index)
        mem: dict[int, float] = {}
        dram: dict[str, int] = {}
        for c, coef in state.items():
            if c not in H:
                add_expr(mem, par, coef / GB)
                continue
            pieces = [{i: working_per_param[c] * v / GB for i, v in w.items()} for w in working
                      if working_per_param[c]]
            on_die, off_die = _split_by_tier(lm, H[c], {i: coef * v / GB for i, v in par.items()}, pieces,
                                             upper, f"{c},{key}")
            mem[on_die] = 1.0
            dram[c] = off_die
        act_all = {i: v * in_flight for i, v in act.items()}
        if "activations" in H:
            on_die, off_die = _split_by_tier(lm, H["activations"], act_all, [act_layer], upper, f"activations,{key}")
            mem[on_die] = 1.0
            dram["activations"] = off_die
        else:
            add_expr(mem, act_all)
        add_expr(mem, buffers)
        lm.add(mem, "<=", capacity / GB, scale=GB, name=f"memory{key}")
        dram_kinds.append((kind, counts[key], in_flight, dict(dram)))
        for off_die in dram.values():
            dram_total[off_die] = dram_total.get(off_die, 0.0) + counts[key] * tb.dp * tb.shape[0] * tb.shape[1]

        # one micro-batch's time of this stage kind, DRAM traffic included (cost.dram_traffic_*):
        # busy (all but the pipeline transfers); T = busy + transfers (fill and drain, weight 1/v
        # each); TMAX ≥ busy + the transfers' exposed part (steady state, overlap.exposed_time)
        busy = dict(time)
        for c, v in dram.items():  # activations in DRAM are held for every micro-batch in flight
            if per_mb_rate[c]:
                busy[v] = per_mb_rate[c] / (in_flight if c == "activations" else 1.0) * GB / bw
        label = ','.join(str(int(x)) for x in key)
        t = lm.continuous(f"T[{label}]", big_t, scale=tscale)
        row = {t: 1.0}
        add_expr(row, busy, -1.0)
        add_expr(row, pp_k, -1.0)
        lm.add(row, ">=", 0.0, scale=tscale, name=f"time{key}")
        objective[t] = objective.get(t, 0.0) + counts[key] / tb.virtual
        if any(pp_k.values()):
            row = {tmax: 1.0, exposed(f"EPP[{label}]", pp_k, busy): -1.0}
            add_expr(row, busy, -1.0)
            lm.add(row, ">=", 0.0, scale=FINE, name=f"steady{key}")
        else:
            lm.add({tmax: 1.0, t: -1.0}, ">=", 0.0, scale=tscale)
        # after the pipeline: the gradient reduction (a = par·slope + intercept) in buckets of β
        # layers beside the last backward: the last bucket's share β/L exposed, the rest beside the
        # backward of L − β layers (overlap.bucketed_exposed); wsync, the Adam update, DRAM traffic
        row = {dmax: 1.0}
        add_expr(row, sync, -1.0)
        for c, v in dram.items():
            if per_step_rate[c]:
                row[v] = -per_step_rate[c] * GB / bw
        rhs = 0.0
        if tb.dp > 1:
            beta = min(overlap.DP_BUCKET_LAYERS, kind.layers) / kind.layers
            add_expr(row, par, -beta * dp_slope.time_s)
            rhs = beta * dp_icpt.time_s
            if beta < 1:
                comm = {i: c * dp_slope.time_s * (1 - beta) for i, c in par.items()}
                back = {i: c * (kind.layers - min(overlap.DP_BUCKET_LAYERS, kind.layers)) for i, c in cb.items()}
                row[exposed(f"EDP[{label}]", comm, back, dp_icpt.time_s * (1 - beta))] = -1.0
        lm.add(row, ">=", rhs, scale=FINE if tb.dp > 1 else tscale, name=f"sync{key}")
    if dram_total:
        lm.add(dram_total, "<=", tb.hw.dram_capacity / GB, scale=GB, name="dram capacity")
    objective[tmax] = tb.m - 1.0 / tb.virtual
    objective[dmax] = 1.0
    lm.minimize(objective)
    lm.objective_scale = tscale * tb.virtual
    return Inner(lm, Y, X, Z, rec_allowed, H, W, V, sel, dict(objective), tscale, dram_kinds, group_of)


def _overlap_modes(lm: LinearModel, tb: Tables, Y: dict, X: dict, Z: dict, targets: dict[str, dict],
                   energy: bool = False) -> tuple[dict, dict]:
    """The overlap modes of the GEMMs (optimizer.model.overlap; evaluate.score_stage prices them the same).

    W[op, option, r, mode] (binary; Σ_mode W ≤ the choice (option, r), none = sequential) exists only
    where `mode` makes some use of the option faster than sequential: a mode that never saves time
    is never better than sequential, so leaving it out keeps the optimum. For each edge whose
    producer (role fwd) or consumer (role bwd) is a GEMM, V[edge, role, option, other, r, mode] is
    W times the pair variable Z (exact for binaries: Σ_other V = W, Σ_(r, mode) V ≤ Z of the pair);
    its coefficient Tables.overlap_delta (twice for fwd when the recomputed producer's output is
    converted again for the consumer's backward) goes into targets[edge.where] (the layer's time, or
    the post ops'). With `energy`, a mode that saves main-memory bytes somewhere (fused, near-memory
    reduction) is modeled as well, though it may save no time. Returns (W, V); V is keyed
    (edge, role, o_p, o_c, r, mode)."""
    g = tb.graph
    modes = tb.modes[1:]
    choice: dict[str, dict] = {}  # op -> {(option, r): selector variable}
    for (name, opt, r), i in Y.items():
        choice.setdefault(name, {})[(opt, r)] = i
    for (name, opt), i in X.items():
        choice.setdefault(name, {})[(opt, 0)] = i
    roles = [(e, role, name) for e in tb.edges if e.where in targets
             for role, name in (("fwd", e.producer), ("bwd", e.consumer)) if tb.overlaps(g.op(name))]
    delta: dict = {}  # (edge, role, own option, other option, mode) -> seconds per use
    useful: set = set()  # (op, own option, mode) that save time somewhere
    saves: set = set()  # (edge, role, own option, other option, mode) that save main-memory bytes
    for e, role, name in roles:
        for o_p in tb.options(g.op(e.producer)):
            for o_c in tb.options(g.op(e.consumer)):
                own, other = (o_p, o_c) if role == "fwd" else (o_c, o_p)
                for mode in modes:
                    d = tb.overlap_delta(e, o_p, o_c, role, mode)
                    if d:
                        delta[(e, role, own, other, mode)] = d
                        if d < 0:
                            useful.add((name, own, mode))
                    if energy and tb.overlap_saving_bytes(e, o_p, o_c, role, mode) > 0:
                        saves.add((e, role, own, other, mode))
                        useful.add((name, own, mode))
    W: dict = {}
    V: dict = {}
    for name, own, mode in sorted(useful, key=str):
        for (opt, r), _sel in choice[name].items():
            if opt == own:
                W[(name, opt, r, mode)] = lm.binary(f"W[{name},{opt},{r},{mode}]")
    per_choice: dict = {}
    for (name, opt, r, _mode), i in W.items():
        per_choice.setdefault((name, opt, r), {})[i] = 1.0
    for (name, opt, r), row in per_choice.items():
        row[choice[name][(opt, r)]] = -1.0
        lm.add(row, "<=", 0.0, scale=1.0, name=f"mode[{name},{opt},{r}]")
    for e, role, name in roles:
        others = tb.options(g.op(e.consumer if role == "fwd" else e.producer))
        again = role == "fwd" and tb.saved_by(e)
        target = targets[e.where]
        cover: dict = {}  # (o_p, o_c) -> V variables
        for (n, own, r, mode), w in W.items():
            if n != name or not any(delta.get((e, role, own, x, mode)) or (e, role, own, x, mode) in saves
                                    for x in others):
                continue
            mult = 2.0 if (again and r == 1) else 1.0
            row = {w: -1.0}
            for x in others:
                name_v = f"V[{e.tensor}:{e.producer}->{e.consumer},{role},{own},{x},{r},{mode}]"
                v = lm.continuous(name_v, 1.0, scale=1.0)
                row[v] = 1.0
                V[(e, role) + ((own, x) if role == "fwd" else (x, own)) + (r, mode)] = v
                cover.setdefault((own, x) if role == "fwd" else (x, own), []).append(v)
                d = delta.get((e, role, own, x, mode), 0.0)
                if d:
                    target[v] = target.get(v, 0.0) + mult * d
            lm.add(row, "==", 0.0, scale=1.0)
        for pair, vs in cover.items():
            row = {v: 1.0 for v in vs}
            row[Z[e][pair]] = -1.0
            lm.add(row, "<=", 0.0, scale=1.0)
    return W, V


def _split_by_tier(lm: LinearModel, h: int, total: dict[int, float], working: list[dict[int, float]],
                   upper, label: str) -> tuple[int, int]:
    """Bytes (GB) of one tensor class on the die and in DRAM, given its binary tier variable h:
    on die = total if h = 0, else its largest working piece; in DRAM = total if h = 1, else 0
    (big-M rows with M = an upper bound of the total)."""
    big = upper(total)
    on_die = lm.continuous(f"SRAM[{label}]", big, scale=KB_PER_GB)
    off_die = lm.continuous(f"DRAM[{label}]", big, scale=KB_PER_GB)
    row = {on_die: 1.0, h: big}
    add_expr(row, total, -1.0)
    lm.add(row, ">=", 0.0, scale=GB)
    for w in working:
        row = {on_die: 1.0}
        add_expr(row, w, -1.0)
        lm.add(row, ">=", 0.0, scale=GB)
    row = {off_die: 1.0, h: -big}
    add_expr(row, total, -1.0)
    lm.add(row, ">=", -big, scale=GB)
    return on_die, off_die
