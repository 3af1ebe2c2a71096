"""The pipeline's stages as the inner model sees them: per group of ops (one layer, the edges
between two layers, the pre and post ops) linear expressions of time, parameters and weight
syncs (Groups), and per stage kind (layers, first?, last?) their sums over its ops (Stage)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import cost
from ..model.tables import StageKind
from .build import Build
from .model import add_expr
from .resharding import Resharding


@dataclass
class Groups:
    """Linear expressions per group of ops: "block" (one layer), "wrap" (the edges from one layer
    to the next; time only), "pre" and "post" (the ops before and after the layers)."""

    time: dict[str, dict]  # one use's time (s)
    params: dict[str, dict]  # parameters on one die
    wsync: dict[str, dict]  # weight-gradient all-reduces (s)
    activations: dict[str, dict]  # saved activations of one micro-batch (GB): "block", "post"
    op_params: dict[str, dict]  # op -> its parameters on one die
    p2p: dict[int, float]  # one stage boundary's pipeline transfers per micro-batch (s, all v chunks)


@dataclass
class Stage:
    """One stage kind's expressions per die, and the DRAM variables of its classes."""

    kind: StageKind
    key: tuple  # (layers, first?, last?)
    count: int  # stages of this kind
    in_flight: float  # micro-batches in flight
    time: dict[int, float]  # one micro-batch's time, pipeline transfers left out (s)
    transfers: dict[int, float]  # this kind's pipeline transfers per micro-batch, each alone (s)
    params: dict[int, float]  # parameters on one die of this stage
    # per op on the die, its parameters: a class kept in DRAM still needs its working piece of the
    # largest op on the die
    working: list
    sync: dict[int, float]  # weight-grad all-reduces + Adam update (s; the exposed dp sync comes in its row)
    act: dict[int, float]  # saved activations of one micro-batch (GB)
    dram: dict = field(default_factory=dict)  # tensor class -> its DRAM variable (GB)

    @property
    def label(self) -> str:
        return ','.join(str(int(x)) for x in self.key)


def group_times(build: Build, rs: Resharding) -> dict[str, dict]:
    """Per-layer block time and per-op pieces: the time of one use of each group, its ops and its
    edges (pair costs plus recompute conversions)."""
    g = build.tb.graph
    layer = build.ops_expr(g.block, lambda c: c.fwd_s + c.bwd_s + 2 * c.stats.time_s,
                           lambda c: c.fwd_s + c.stats.time_s)
    add_expr(layer, rs.group_time("block"))
    wrap = rs.group_time("wrap")
    pre = build.ops_expr(g.pre, _end_op_time)
    add_expr(pre, rs.group_time("pre"))
    post = build.ops_expr(g.post, _end_op_time)
    add_expr(post, rs.group_time("post"))
    return {"block": layer, "wrap": wrap, "pre": pre, "post": post}


def _end_op_time(c) -> float:
    """Pre/post ops: compute, split-reduction all-reduces and ZeRO-3 gathers (not prefetched)."""
    return c.fwd_s + c.bwd_s + 2 * c.stats.time_s + 2 * c.gather.time_s


def layer_backward(build: Build) -> dict[int, float]:
    """One layer's backward compute, recomputation included (s)."""
    return build.ops_expr(build.tb.graph.block, lambda c: c.bwd_s, lambda c: c.fwd_s)


def group_sums(build: Build, field_fn) -> dict[str, dict]:
    """Σ of a per-choice coefficient over the ops of "block", "pre" and "post"."""
    g = build.tb.graph
    return {"block": build.ops_expr(g.block, field_fn), "pre": build.ops_expr(g.pre, field_fn),
            "post": build.ops_expr(g.post, field_fn)}


def group_parameters(build: Build) -> tuple[dict[str, dict], dict[str, dict]]:
    """The parameters on one die per group and per op, a tied head's embedding with the head."""
    tb, g = build.tb, build.tb.graph
    params = group_sums(build, lambda c: c.params)
    op_params = {o.name: build.op_expr(o, lambda c: c.params) for o in g.block + g.pre + g.post}
    for opt, ex in build.sel["lm_head"].items():
        add_expr(params["post"], ex, tb.tied_head_params(opt))
        add_expr(op_params["lm_head"], ex, tb.tied_head_params(opt))
    return params, op_params


def pipeline_transfer(build: Build) -> dict[int, float]:
    """One stage boundary's pipeline transfers per micro-batch (s), in the block output's layout."""
    p2p: dict[int, float] = {}
    for opt, ex in build.sel["add2"].items():
        add_expr(p2p, ex, build.tb.p2p(opt).time_s * build.tb.virtual)
    return p2p


def stage_kinds(build: Build, groups: Groups) -> list[Stage]:
    """Each stage kind's sums of the groups over its ops."""
    tb, g = build.tb, build.tb.graph
    counts: dict = {}
    for s, L in enumerate(tb.layers_per_stage):
        key = (L, s == 0, s == tb.pp - 1)
        counts[key] = counts.get(key, 0) + 1
    upd_per_param = cost.optimizer_update_time(1.0, tb.dp, tb.zero_stage, tb.hw.die)
    stages = []
    for kind in tb.stage_kinds:
        first, last = kind.first, kind.last
        key = (kind.layers, first, last)
        transfers: dict[int, float] = {}
        add_expr(transfers, groups.p2p, (0 if first else 1) + (0 if last else 1))
        params = _add_over_stage({}, groups.params, kind)
        working = [groups.op_params[o.name] for o in g.block + (g.pre if first else ()) + (g.post if last else ())]
        sync: dict[int, float] = {}
        add_expr(sync, params, upd_per_param)
        _add_over_stage(sync, groups.wsync, kind)
        stages.append(Stage(kind, key, counts[key], tb.in_flight(kind.index), _add_over_stage({}, groups.time, kind),
                            transfers, params, working, sync, _add_over_stage({}, groups.activations, kind)))
    return stages


def _add_over_stage(out: dict[int, float], parts: dict[str, dict], kind: StageKind) -> dict[int, float]:
    """out += Σ over a stage kind's ops of `parts` (those it has): one layer's ("block") times the
    kind's layers, the edges between layers ("wrap") once fewer on the first stage, the pre ops
    on the first stage, the post ops on the last. Returns out."""
    add_expr(out, parts["block"], kind.layers)
    if "wrap" in parts:
        add_expr(out, parts["wrap"], kind.layers - 1 if kind.first else kind.layers)
    if kind.first and "pre" in parts:
        add_expr(out, parts["pre"])
    if kind.last and "post" in parts:
        add_expr(out, parts["post"])
    return out
