"""The LP screening of an outer point's inner model (optimizer/search/screen.py): one LP per DRAM
subset with the tier variables fixed. Its bound must never exceed the subset's integer optimum,
an integral LP optimum must be the subset's optimum, and the restriction to the subsets left must
allow exactly those subsets."""

import itertools
import math
import random

import hw
import models
from optimizer.formulation.backends import solve_model, solve_relaxation
from optimizer.formulation.inner import build_inner
from optimizer.formulation.tiers import restrict_tiers, tiers_fixed
from optimizer.search.points import _probe, _tables
from optimizer.search.screen import LP_MARGIN, screen_point
from optimizer.search.space import OuterPoint, get_space

SMALL = models.ModelConfig(name="small", layers=4, hidden=1024, heads=16, vocab=8192, seq_len=1024)
WORK = models.Workload(model=SMALL, global_batch=8, seq_len=1024)


def _inner(point: OuterPoint, sram: float):
    h = hw.load("hecaton-chiplet", rows=1, cols=2, sram_bytes=sram)
    sp = get_space("full")
    pr = _probe(WORK, h, sp, point.shape, point.micro_batch)
    tb = _tables(point, pr, WORK, h, sp)
    return build_inner(tb, sp.recompute_allowed(tb.graph, point.recompute_policy), h.die.memory_bytes,
                       sp.offload_classes(h))


def _subsets(classes):
    return [c for k in range(len(classes) + 1) for c in itertools.combinations(classes, k)]


def test_lp_bound_never_exceeds_the_integer_optimum_of_its_subset():
    """For every DRAM subset of two points (1F1B and layer-wise, ZeRO 0 and 3), LP ≤ MIP."""
    checked = 0
    for point in (OuterPoint(1, 1, (1, 2), 1, 0, 1, None, 1), OuterPoint(1, 2, (1, 1), 1, 3, 1, None, 2)):
        inner = _inner(point, 1.5e8)
        for sub in _subsets(list(inner.H)):
            with tiers_fixed(inner, sub):
                lp = solve_relaxation(inner.model, 30)
                mip = solve_model(inner.model, "cpsat", 30)
            assert (lp.status == "infeasible") <= (mip.status == "infeasible")
            if mip.status == "optimal":
                checked += 1
                assert lp.objective * (1 - LP_MARGIN) <= mip.objective * (1 + 1e-9)
    assert checked >= 4


def test_integral_lp_optima_are_the_subsets_optima():
    inner = _inner(OuterPoint(1, 1, (1, 2), 1, 0, 1, None, 1), 4e9)
    left, exact = screen_point(inner, [(-math.inf, sub) for sub in _subsets(list(inner.H))], None, math.inf)
    for objective, values in exact:
        sub = tuple(c for c, i in inner.H.items() if values[i] > 0.5)
        with tiers_fixed(inner, sub):
            mip = solve_model(inner.model, "cpsat", 30)
        assert math.isclose(mip.objective, objective, rel_tol=1e-6)
    assert left or exact


def test_restriction_allows_exactly_the_subsets_left():
    """The fixed bounds and no-good rows of restrict_tiers admit a tier assignment iff it is one
    of the chosen subsets (checked on every assignment of the four classes, for random choices)."""
    rng = random.Random(7)
    for _ in range(20):
        inner = _inner(OuterPoint(1, 1, (1, 2), 1, 0, 1, None, 1), 1.5e8)
        classes = list(inner.H)
        everything = _subsets(classes)
        chosen = rng.sample(everything, rng.randint(1, len(everything)))
        n_rows = len(inner.model.rows)
        restrict_tiers(inner, chosen)
        cuts = inner.model.rows[n_rows:]
        for sub in everything:
            h = {i: float(c in sub) for c, i in inner.H.items()}
            in_bounds = all(inner.model.vars[i].lb <= x <= inner.model.vars[i].ub for i, x in h.items())
            rows_ok = all(sum(k * h[i] for i, k in r.coeffs.items()) <= r.rhs + 1e-9 for r in cuts)
            assert (in_bounds and rows_ok) == (sub in chosen), (sub, chosen)
