"""An outer point's inner model screened by linear relaxations before its integer solve.

With its tier variables free, the inner model's LP relaxation is weak: the big-M rows that split
a tensor class between the die and DRAM (formulation/memory.py) let a fractional H[c] keep most
of a class on neither side. With H fixed to one DRAM subset those rows are tight, and the LP bound
is close to the integer optimum (e.g. Llama2-7B on wse3: 14.971 s against 14.982 s). So each DRAM
subset that can fit gets one LP; a subset whose LP reaches the incumbent (or that is infeasible)
is dropped, and the integer solve runs on the subsets left (formulation/tiers.py)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from hw.schema import Hardware
from models.schema import Workload

from ..formulation.backends import solve_relaxation
from ..formulation.energy import modeled
from ..formulation.inner import Inner, build_inner
from ..formulation.tiers import restrict_tiers, tiers_fixed
from ..model.tables import Tables
from .points import REL_TOL, _mapping, _Probe, _tables
from .space import OuterPoint, Space

# assumption: relative allowance for HiGHS' LP tolerances (primal and dual feasibility 1e-7) before
# an LP optimum is taken as a lower bound
LP_MARGIN = 1e-6
INTEGRALITY = 1e-6  # an LP value this close to an integer counts as that integer


@dataclass
class Screened:
    """An outer point ready for its integer solve: its inner model (restricted to the DRAM subsets
    left), tables, bound (model units), the exact optima of the subsets whose LP optimum was
    integral (candidates: (objective, mapping, modeled step time)) and whether subsets are left."""

    inner: Inner
    tb: Tables
    lb: float
    candidates: list = field(default_factory=list)
    solve: bool = True


def prepared_inner(pt: OuterPoint, pr: _Probe, fitting: list | None, incumbent: float | None, lb: float,
                   work: Workload, hw: Hardware, sp: Space, objective: str, deadline: float) -> Screened | None:
    """An outer point about to be solved, for step time screened by LP relaxations (screen_point),
    which may lift its bound `lb`, solve some DRAM subsets exactly and leave none to solve. None:
    the point has no placement."""
    tb = _tables(pt, pr, work, hw, sp)
    if tb is None:
        return None
    inner = build_inner(tb, sp.recompute_allowed(tb.graph, pt.recompute_policy), hw.die.memory_bytes,
                        sp.offload_classes(hw), energy=objective != "time")
    if objective != "time":
        return Screened(inner, tb, lb)
    if fitting is None:  # no cheap bounds kept: every subset of the classes the model may move
        fitting = [(-math.inf, sub) for sub in sp.offload_subsets(hw)]
    left, exact = screen_point(inner, fitting, incumbent, deadline)
    candidates = [(obj, _mapping(pt, tb, inner.choices(vals), sp, inner.offload(vals)),
                   modeled(inner.time_objective, vals)) for obj, vals in exact]
    return Screened(inner, tb, max(lb, left[0][0]) if left else lb, candidates, bool(left))


def screen_point(inner: Inner, fitting: list[tuple[float, tuple[str, ...]]], incumbent: float | None,
                 deadline: float) -> tuple[list[tuple[float, tuple[str, ...]]], list[tuple[float, list[float]]]]:
    """One LP per DRAM subset of `fitting` with the tier variables fixed: (the subsets left for the
    integer solve with their LP bounds, least first; the exact optima (objective, values) of the
    subsets whose LP optimum is integral). `fitting`: (cheap bound, subset) pairs; a subset whose
    cheap bound or LP reaches the incumbent, whose LP reaches an exact optimum, or whose LP is
    infeasible is left out; `inner` is restricted to the subsets left."""
    left, exact = [], []
    cut = incumbent * (1 - REL_TOL) if incumbent is not None else math.inf
    for sub in [off for cheap, off in fitting if cheap < cut] if inner.H else [()]:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            left.append((-math.inf, sub))
            continue
        with tiers_fixed(inner, sub):
            res = solve_relaxation(inner.model, remaining)
        if res.status == "infeasible":
            continue
        if res.status != "optimal":
            left.append((-math.inf, sub))
            continue
        ints = [round(x) if v.integer else x for x, v in zip(res.values, inner.model.vars)]
        if all(abs(x - r) <= INTEGRALITY for x, r in zip(res.values, ints)):
            exact.append((res.objective, ints))
        else:
            left.append((res.objective * (1 - LP_MARGIN), sub))
    best = min([incumbent] * (incumbent is not None) + [obj for obj, _ in exact], default=math.inf)
    left = sorted(x for x in left if x[0] < best * (1 - REL_TOL))
    if left:
        restrict_tiers(inner, [sub for _, sub in left])
    return left, exact
