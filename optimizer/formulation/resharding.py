"""The resharding between neighbouring operators: per edge a pair variable Z[edge, o_p, o_c] for
each producer/consumer option pair (the pair's exact conversion cost), tied to both ops' choices,
and RC[edge], the conversion redone when the consumer is recomputed (= pair cost · R)."""

from __future__ import annotations

from dataclasses import dataclass

from .build import Build
from .model import add_expr


@dataclass
class Resharding:
    edges: list  # the point's edges (Tables.edges)
    Z: dict  # edge -> {(o_p, o_c): pair variable}
    time: dict  # edge -> expr of its per-use time (without the recompute part)
    rc: dict  # edge -> RC variable, where the consumer may be recomputed

    def group_time(self, where: str) -> dict[int, float]:
        """Time of one use of every edge of a group: pair costs plus recompute conversions."""
        e_sum: dict[int, float] = {}
        for e in (x for x in self.edges if x.where == where):
            add_expr(e_sum, self.time[e])
            if e in self.rc:
                e_sum[self.rc[e]] = e_sum.get(self.rc[e], 0.0) + 1.0
        return e_sum


def add_resharding(build: Build) -> Resharding:
    """Pair variables with margins for every edge, and RC where a conversion may be redone."""
    out = Resharding(build.tb.edges, {}, {}, {})
    for e in out.edges:
        out.Z[e], out.time[e], fwd_expr = _add_pairs(build, e)
        rc = _add_recompute_conversion(build, e, fwd_expr)
        if rc is not None:
            out.rc[e] = rc
    return out


def _add_pairs(build: Build, e) -> tuple[dict, dict[int, float], dict[int, float]]:
    """Z[e, o_p, o_c] with Σ_o_c Z = the producer's choice of o_p and Σ_o_p Z = the consumer's
    choice of o_c. Returns the pairs {(o_p, o_c): Z}, the expression of the edge's per-use time and
    that of its forward conversion's time."""
    lm, tb = build.lm, build.tb
    prod, cons = tb.graph.op(e.producer), tb.graph.op(e.consumer)
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
    for op_ in tb.options(prod):
        row = {zmap[(op_, oc_)]: 1.0 for oc_ in tb.options(cons)}
        add_expr(row, build.sel[prod.name][op_], -1.0)
        lm.add(row, "==", 0.0, scale=1.0)
    for oc_ in tb.options(cons):
        row = {zmap[(op_, oc_)]: 1.0 for op_ in tb.options(prod)}
        add_expr(row, build.sel[cons.name][oc_], -1.0)
        lm.add(row, "==", 0.0, scale=1.0)
    return zmap, expr, fwd_expr


def _add_recompute_conversion(build: Build, e, fwd_expr: dict[int, float]) -> int | None:
    """RC[e] ≥ the forward conversion's time − big·(1 − consumer recomputed), for an edge the
    consumer does not save; None where no conversion can be redone."""
    if build.tb.saved_by(e) or not build.may_recompute(e.consumer):
        return None
    big = max(fwd_expr.values(), default=0.0)
    if big <= 0:
        return None
    rc = build.lm.continuous(f"RC[{e.tensor}->{e.consumer}:{e.where}]", big)
    row = {rc: 1.0}
    add_expr(row, fwd_expr, -1.0)
    add_expr(row, build.recomputed(e.consumer), -big)
    build.lm.add(row, ">=", -big)
    return rc
