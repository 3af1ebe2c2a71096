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

build_inner adds one family at a time: the choices Y, X (build.py), the pairs Z and RC
(resharding.py), the overlap modes W, V and the gathers EZ (overlap.py), the kept activations and
the tiers KEEP, SRAM, DRAM (memory.py), summed per stage kind (stages.py); the time rows here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import cost, overlap
from ..model.tables import Tables
from .build import FINE, GB, Build, add_partition_choices, start_build, upper_bound
from .memory import (add_dram_capacity, add_stage_memory, kept_activations, post_saved_activations,
                     recompute_buffers, zero_state_per_param)
from .model import LinearModel, add_expr
from .overlap import _overlap_modes, add_exposed, add_prefetched_gathers
from .resharding import add_resharding
from .stages import (Groups, Stage, group_parameters, group_sums, group_times, layer_backward,
                     pipeline_transfer, stage_kinds)


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
        return upper_bound(expr, self.group_of, self.model.vars)

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
    build = start_build(tb, offload)
    add_partition_choices(build, rec_allowed)
    rs = add_resharding(build)
    times = group_times(build, rs)
    W, V = _overlap_modes(build.lm, tb, build.Y, build.X, rs.Z, {"block": times["block"], "post": times["post"]},
                          energy)
    backward = layer_backward(build)
    add_prefetched_gathers(build, times["block"], backward)
    params, op_params = group_parameters(build)
    activations = {"block": kept_activations(build), "post": post_saved_activations(build)}
    groups = Groups(time=times, params=params, wsync=group_sums(build, lambda c: c.wsync.time_s),
                    activations=activations, op_params=op_params, p2p=pipeline_transfer(build))
    stages = stage_kinds(build, groups)
    buffers = recompute_buffers(build)
    dp_rate = tb.dp_sync_rate()
    tmax, dmax = _add_step_bounds(build, stages, dp_rate)
    objective: dict[int, float] = {}
    for stage in stages:
        add_stage_memory(build, stage, activations["block"], buffers, capacity)
        objective[_add_stage_time(build, stage, tmax)] = stage.count / tb.virtual
        _add_stage_sync(build, stage, dmax, backward, dp_rate)
    add_dram_capacity(build, stages)
    objective[tmax] = tb.m - 1.0 / tb.virtual
    objective[dmax] = 1.0
    build.lm.minimize(objective)
    build.lm.objective_scale = build.time_scale * tb.virtual
    dram = [(s.kind, s.count, s.in_flight, dict(s.dram)) for s in stages]
    return Inner(build.lm, build.Y, build.X, rs.Z, rec_allowed, build.H, W, V, build.sel, dict(objective),
                 build.time_scale, dram, build.group_of)


def _dram_seconds(build: Build, stage: Stage, per_mb: bool) -> float:
    """Most seconds of DRAM traffic a stage kind can spend per micro-batch (or in the update)."""
    if not build.H:
        return 0.0
    tb = build.tb
    per_mb_rate, per_step_rate = cost.dram_rates(tb.layer_group)
    state = zero_state_per_param(tb)
    pmax = build.upper(stage.params)
    if per_mb:
        return (sum(per_mb_rate[c] * state[c] for c in ("weights", "grads")) * pmax +
                per_mb_rate["activations"] * build.upper(stage.act) * GB) / tb.dram_bandwidth
    return sum(per_step_rate[c] * state[c] for c in state) * pmax / tb.dram_bandwidth


def _add_step_bounds(build: Build, stages: list[Stage], dp_rate: tuple) -> tuple[int, int]:
    """TMAX ≥ every stage kind's steady-state time and D ≥ every stage's sync (s), bounded above by
    the most any stage kind's terms can reach; dp_rate: Tables.dp_sync_rate (slope, intercept)."""
    tb = build.tb
    dp_slope, dp_icpt = dp_rate
    big_t = max(build.upper(s.time) + build.upper(s.transfers) + _dram_seconds(build, s, True)
                for s in stages) * 1.01 + 1.0
    big_d = max(build.upper(s.sync) + build.upper({i: c * dp_slope.time_s for i, c in s.params.items()}) +
                _dram_seconds(build, s, False) for s in stages) * 1.01 + (dp_icpt.time_s if tb.dp > 1 else 0.0) + 1.0
    return (build.lm.continuous("TMAX", big_t, scale=build.time_scale),
            build.lm.continuous("D", big_d, scale=build.time_scale))


def _add_stage_time(build: Build, stage: Stage, tmax: int) -> int:
    """T of a stage kind: one micro-batch's time of this stage kind, DRAM traffic included
    (cost.dram_traffic_*): busy (all but the pipeline transfers); T = busy + transfers (fill and
    drain, weight 1/v each); TMAX ≥ busy + the transfers' exposed part (steady state,
    overlap.exposed_time; all of them, TMAX ≥ T, when they block). Returns T."""
    lm, tb = build.lm, build.tb
    per_mb_rate, _per_step_rate = cost.dram_rates(tb.layer_group)
    busy = dict(stage.time)
    for c, v in stage.dram.items():  # activations in DRAM are held for every micro-batch in flight
        if per_mb_rate[c]:
            busy[v] = per_mb_rate[c] / (stage.in_flight if c == "activations" else 1.0) * GB / tb.dram_bandwidth
    t = lm.continuous(f"T[{stage.label}]", lm.vars[tmax].ub, scale=build.time_scale)  # TMAX's bound
    row = {t: 1.0}
    add_expr(row, busy, -1.0)
    add_expr(row, stage.transfers, -1.0)
    lm.add(row, ">=", 0.0, scale=build.time_scale, name=f"time{stage.key}")
    if any(stage.transfers.values()) and tb.pp_transfer != "blocking":
        row = {tmax: 1.0, add_exposed(build, f"EPP[{stage.label}]", stage.transfers, busy): -1.0}
        add_expr(row, busy, -1.0)
        lm.add(row, ">=", 0.0, scale=FINE, name=f"steady{stage.key}")
    else:  # no transfers, or transfers the stage waits for (DeepSpeed's pipeline engine): T itself
        lm.add({tmax: 1.0, t: -1.0}, ">=", 0.0, scale=build.time_scale)
    return t


def _add_stage_sync(build: Build, stage: Stage, dmax: int, backward: dict[int, float], dp_rate: tuple) -> None:
    """D ≥ a stage kind's work after the pipeline: the gradient reduction (a = par·slope + intercept)
    in buckets of β layers beside the last backward (`backward`: one layer's): the last bucket's
    share β/L exposed, the rest beside the backward of L − β layers (overlap.bucketed_exposed);
    wsync, the Adam update, DRAM traffic."""
    lm, tb = build.lm, build.tb
    _per_mb_rate, per_step_rate = cost.dram_rates(tb.layer_group)
    dp_slope, dp_icpt = dp_rate
    row = {dmax: 1.0}
    add_expr(row, stage.sync, -1.0)
    for c, v in stage.dram.items():
        if per_step_rate[c]:
            row[v] = -per_step_rate[c] * GB / tb.dram_bandwidth
    rhs = 0.0
    if tb.dp > 1:
        layers = stage.kind.layers
        beta = min(overlap.DP_BUCKET_LAYERS, layers) / layers
        add_expr(row, stage.params, -beta * dp_slope.time_s)
        rhs = beta * dp_icpt.time_s
        if beta < 1:
            comm = {i: c * dp_slope.time_s * (1 - beta) for i, c in stage.params.items()}
            back = {i: c * (layers - min(overlap.DP_BUCKET_LAYERS, layers)) for i, c in backward.items()}
            row[add_exposed(build, f"EDP[{stage.label}]", comm, back, dp_icpt.time_s * (1 - beta))] = -1.0
    lm.add(row, ">=", rhs, scale=FINE if tb.dp > 1 else build.time_scale, name=f"sync{stage.key}")
