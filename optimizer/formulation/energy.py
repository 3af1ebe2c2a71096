"""The energy of one step as a linear expression over an inner model's variables, mirroring
evaluate.assemble's call of cost.energy term by term (docs/cost-model.md, sections 11 and 12).

    E = F_exec·flop_j + memory_traffic·(sram_byte_j, or dram_byte_j on HBM dies)
        + link_byte_hops·link_byte_hop_j + dram_bytes·(dram_byte_j + dram_hops·link_byte_hop_j)
        + static_w·devices·step_time

Every part but the static one is linear in the choice variables: Y and X carry the FLOPs, the
compute and collective bytes and byte-hops of their op (with the recompute multipliers) and its
share of the per-step syncs (gradient reduction and weight-gradient all-reduces, linear in the
parameters), Z the conversions of its edge, V the bytes a fused near-memory reduction saves, the
DRAM variables their port traffic and its mesh hops. A conversion done again because the consumer
is recomputed (an edge it does not save) is a product of Z and the recompute flag: an auxiliary
RE[edge] ≥ Σ Z·joules − big·(1 − recompute) carries it (like RC does for time), pushed down by
the objective. The static part is static_w·devices times the step-time expression of the model
(T, TMAX, D), which the objective then pushes down as long as static_w > 0.

CP-SAT counts the energy objective in integer units of static_w·devices·(1 ns or 1 ps)/v — the
unit in which the step-time variables are counted, so the static part is exact — unless that
would put an upper bound of the energy beyond 1e18 units, in which case the unit is coarsened to
(upper bound)/1e18 (and likewise when static_w = 0). Every other coefficient is rounded to the
nearest unit: at most half a unit per chosen variable.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import cost
from ..model.tables import Tables
from .inner import GB, Inner
from .model import add_expr

MAX_UNITS = 1e18  # CP-SAT: the energy's upper bound in integer units, at most (int64 holds 9.2e18)


@dataclass
class _Prices:
    """Joules of one step per unit of its terms, over the dies they run on."""

    per_stage: int  # dies of one stage
    mem_j: float  # per main-memory byte (DRAM on HBM dies, else SRAM)
    link_j: float  # per byte-hop on the links
    dram_j: float  # per DRAM port byte, its mesh hops to the port included
    static: float  # W of all dies' static power
    per_param: float  # the gradient reduction, per parameter of a die
    const: float  # the gradient reduction's intercept


def _prices(tb: Tables) -> _Prices:
    hw = tb.hw
    en = hw.energy
    t = tb.shape[0] * tb.shape[1]
    dp, pp = tb.dp, tb.pp
    per_stage = dp * t  # dies of one stage
    mem_j = en.dram_byte_j if hw.die.hbm_bytes is not None else en.sram_byte_j
    link_j = en.link_byte_hop_j
    dram_j = en.dram_byte_j + tb.dram_hops * link_j
    static = en.static_w * pp * dp * t

    # per step, after the pipeline: gradient reduction across replicas (linear in the parameters;
    # byte-hops over all stages' rings, each stage counted 1/pp), priced per parameter of a die
    dp_bytes = tb.dp_sync_bytes(1.0)
    dp_slope, dp_icpt = tb.dp_sync_rate()
    per_param = per_stage * mem_j * dp_bytes + link_j * dp_slope.byte_hops / pp
    const = link_j * dp_icpt.byte_hops if dp > 1 else 0.0
    return _Prices(per_stage, mem_j, link_j, dram_j, static, per_param, const)


def _put(coeffs: dict[int, float], i: int, c: float) -> None:
    coeffs[i] = coeffs.get(i, 0.0) + c


def energy_expression(inner: Inner, tb: Tables) -> tuple[dict[int, float], float]:
    """(coefficients, constant) of the step's energy in joules. Adds the auxiliary RE variables
    (and their rows) to inner.model."""
    pr = _prices(tb)
    m, v = tb.m, tb.virtual
    coeffs: dict[int, float] = {}
    _add_choices(coeffs, inner, tb, pr)
    _add_edges(coeffs, inner, tb, pr)
    # fused collectives with near-memory reduction: the bytes they save
    uses = _edge_uses(tb)
    for (e, role, o_p, o_c, r, mode), i in inner.V.items():
        saving = tb.overlap_saving_bytes(e, o_p, o_c, role, mode)
        if saving:
            mult = 2 if (role == "fwd" and tb.saved_by(e) and r == 1) else 1
            _put(coeffs, i, -uses[e.where] * m * pr.per_stage * pr.mem_j * mult * saving)
    # pipeline transfers: one activation forward and one gradient back per boundary, micro-batch, chunk
    if tb.pp > 1:
        for opt, ex in inner.sel["add2"].items():
            c = m * (pr.per_stage * pr.mem_j * 2 * (tb.pp - 1) * v * tb.p2p_bytes(opt) +
                     pr.link_j * 2 * v * tb.p2p(opt).byte_hops)
            for i, w in ex.items():
                _put(coeffs, i, w * c)
    # DRAM port traffic (DRAM variables in GB; activations hold every micro-batch in flight)
    per_micro_batch, per_step = cost.dram_rates(tb.layer_group)
    for _kind, count, in_flight, dram in inner.dram:
        for c, i in dram.items():
            per_mb = per_micro_batch.get(c, 0.0) / (in_flight if c == "activations" else 1.0)
            _put(coeffs, i, count * pr.per_stage * GB * pr.dram_j * (m * per_mb + per_step.get(c, 0.0)))
    # static power over the step
    if pr.static:
        for i, c in inner.time_objective.items():
            _put(coeffs, i, pr.static * c)
    # the aux variables (scale 1.0 placeholder) are counted in the objective's unit: set below
    return {i: c for i, c in coeffs.items() if c != 0.0}, pr.const


def _add_choices(coeffs: dict[int, float], inner: Inner, tb: Tables, pr: _Prices) -> None:
    """Y and X: their op's FLOPs, compute and collective bytes and byte-hops per micro-batch (with
    the recompute multipliers) and its share of the per-step syncs, over all stages."""
    g, en = tb.graph, tb.hw.energy
    dp, m = tb.dp, tb.m
    layers = sum(tb.layers_per_stage)
    per_stage, mem_j, link_j = pr.per_stage, pr.mem_j, pr.link_j
    for (name, opt, r), i in inner.Y.items():
        oc = tb.option_cost(g.op(name), opt)
        per_mb = per_stage * (en.flop_j * oc.flops * (1 + g.op(name).backward_factor + r) +
                              mem_j * (oc.mem_bytes * (1 + g.op(name).backward_factor + r) +
                                       (oc.stats_bytes + oc.gather_bytes) * (2 + r)))
        hops = dp * link_j * (oc.fwd_comm.byte_hops + oc.bwd_comm.byte_hops + r * oc.fwd_comm.byte_hops)
        step = oc.params * pr.per_param + per_stage * mem_j * oc.wsync_bytes + dp * link_j * oc.wsync.byte_hops
        _put(coeffs, i, layers * (m * (per_mb + hops) + step))
    for (name, opt), i in inner.X.items():
        oc = tb.option_cost(g.op(name), opt)
        per_mb = per_stage * (en.flop_j * (1 + g.op(name).backward_factor) * oc.flops +
                              mem_j * ((1 + g.op(name).backward_factor) * oc.mem_bytes +
                                       2 * (oc.stats_bytes + oc.gather_bytes)))
        hops = dp * link_j * (oc.fwd_comm.byte_hops + oc.bwd_comm.byte_hops)
        params = oc.params + (tb.tied_head_params(opt) if name == "lm_head" else 0.0)
        step = params * pr.per_param + per_stage * mem_j * oc.wsync_bytes + dp * link_j * oc.wsync.byte_hops
        _put(coeffs, i, m * (per_mb + hops) + step)


def _edge_uses(tb: Tables) -> dict[str, int]:
    """Uses per step of each edge group, over all stages."""
    layers = sum(tb.layers_per_stage)
    return {"block": layers, "wrap": layers - 1, "pre": 1, "post": 1}


def _add_edges(coeffs: dict[int, float], inner: Inner, tb: Tables, pr: _Prices) -> None:
    """Z: the conversions of its edge, each use of the edge; RE[edge] where the consumer may be
    recomputed (an auxiliary variable and its row, added to inner.model)."""
    lm = inner.model
    dp, m = tb.dp, tb.m
    uses = _edge_uses(tb)
    recomputable = {n for (n, _o, r) in inner.Y if r == 1}
    for e in tb.edges:
        n = uses[e.where]
        if n <= 0:
            continue
        saved = tb.saved_by(e)
        k = 2 if saved else 1
        again: dict[int, float] = {}  # the forward conversion once more (consumer recomputed)
        for (o_p, o_c), i in inner.Z[e].items():
            ec = tb.edge_cost(e, o_p, o_c)
            fwd = m * (pr.per_stage * pr.mem_j * ec.fwd_conv.mem_bytes + dp * pr.link_j * ec.fwd.byte_hops)
            grad = m * (pr.per_stage * pr.mem_j * ec.grad_conv.mem_bytes + dp * pr.link_j * ec.grad.byte_hops)
            _put(coeffs, i, n * (k * fwd + grad))
            if fwd:
                again[i] = n * fwd
        if not saved and e.consumer in recomputable and again:
            big = max(again.values())
            aux = lm.continuous(f"RE[{e.tensor}->{e.consumer}:{e.where}]", big, scale=1.0)
            row = {aux: 1.0}
            add_expr(row, again, -1.0)
            for (name, _opt, r), i in inner.Y.items():
                if name == e.consumer and r == 1:
                    row[i] = row.get(i, 0.0) - big
            lm.add(row, ">=", -big, scale=1.0, name=f"RE[{e.tensor}->{e.consumer}]")
            _put(coeffs, aux, 1.0)


def energy_unit(inner: Inner, tb: Tables, coeffs: dict[int, float], const: float) -> float:
    """CP-SAT integer units per joule of the energy objective (see the module docstring)."""
    en = tb.hw.energy
    static = en.static_w * tb.pp * tb.dp * tb.shape[0] * tb.shape[1]
    top = max(inner.upper(coeffs) + max(const, 0.0), 1e-30)
    scale = inner.time_scale * tb.virtual / static if static > 0 else MAX_UNITS / top
    return min(scale, MAX_UNITS / top)


def minimize_energy(inner: Inner, tb: Tables) -> tuple[dict[int, float], float]:
    """Make the inner model minimize the step's energy (J); returns the expression. The auxiliary
    variables and rows are counted in the objective's unit."""
    lm = inner.model
    coeffs, const = energy_expression(inner, tb)
    scale = energy_unit(inner, tb, coeffs, const)
    for i, var in enumerate(lm.vars):
        if var.name.startswith("RE["):
            var.scale = scale
    for row in lm.rows:
        if row.name.startswith("RE["):
            row.scale = scale
    lm.minimize(coeffs, const)
    lm.objective_scale = scale
    return coeffs, const


def modeled(expr: dict[int, float], values: list[float], const: float = 0.0) -> float:
    """The value of a linear expression at a solution."""
    return const + sum(c * values[i] for i, c in expr.items())


__all__ = ["energy_expression", "energy_unit", "minimize_energy", "modeled"]
