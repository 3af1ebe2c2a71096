"""Solve a LinearModel with CP-SAT, CBC (PuLP), HiGHS or SCIP (OR-Tools' linear solver wrapper).

CP-SAT needs integers: each continuous variable is counted in integer units of 1/var.scale
(1 ns for times), each row is multiplied by its scale and rounded, and the objective is counted
in 1/objective_scale units (1 ns). The rounding error of one coefficient is at most half a unit.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from .model import LinearModel, Result

BACKENDS = ("cpsat", "cbc", "highs", "scip")
MIP_GAP = 1e-9
ROUND_TOL = 1e-7  # CP-SAT: largest relative rounding error of an inequality's coefficient, when reachable
INT_LIMIT = 2 ** 61  # CP-SAT: bound on |Σ coefficient · variable| of a row


class Stop:
    """The solves running in this process, stopped together when a search is interrupted (Ctrl-C:
    search/interrupt.py). A stopped solver returns as at its time limit: its incumbent and bound.
    CBC runs as a child process that this cannot reach (a terminal's Ctrl-C reaches it itself)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Callable[[], object]] = set()
        self.requested = False

    def request(self) -> None:
        """Stop every running solve, and every later one at once, until clear()."""
        with self._lock:
            self.requested = True
            for stop in list(self._running):
                stop()

    def clear(self) -> None:
        self.requested = False

    @contextmanager
    def running(self, stop: Callable[[], object]) -> Iterator[None]:
        """While inside, request() calls stop() (e.g. CpSolver.StopSearch)."""
        with self._lock:
            self._running.add(stop)
            if self.requested:
                stop()
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(stop)


STOP = Stop()


def run_stoppable(solve: Callable, stop: Callable[[], object], *args):
    """solve(*args), a solver's search that STOP.request() ends by calling stop() (e.g. CpSolver's
    Solve and StopSearch). Called from the main thread, the search runs in a worker thread, so
    that the main thread waits where a signal handler can run (a solver inside its C++ search
    holds the thread that called it until it returns)."""
    with STOP.running(stop):
        if threading.current_thread() is not threading.main_thread():
            return solve(*args)
        ex = ThreadPoolExecutor(1)
        try:
            return ex.submit(solve, *args).result()
        finally:
            ex.shutdown(wait=False)  # a second Ctrl-C leaves at once, not after the solve


def solve_model(model: LinearModel, backend: str, time_limit_s: float, threads: int = 1) -> Result:
    """The model solved by `backend` within time_limit_s seconds on `threads` threads."""
    if backend == "cpsat":
        return _cpsat(model, time_limit_s, threads)
    if backend == "cbc":
        return _pulp(model, time_limit_s, threads)
    if backend in ("highs", "scip"):
        return _mpsolver(model, backend, time_limit_s, threads)
    raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")


def _cpsat(model: LinearModel, time_limit_s: float, threads: int) -> Result:
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    m = cp_model.CpModel()
    xs = []
    xs_bounds = []
    for v in model.vars:
        lo, hi = (int(v.lb), int(v.ub)) if v.integer else (int(math.floor(v.lb * v.scale)), int(math.ceil(v.ub * v.scale)))
        xs.append(m.NewIntVar(lo, hi, v.name))
        xs_bounds.append(max(abs(lo), abs(hi)))
    for row in model.rows:
        ks, rhs = _integer_row(model, row, xs_bounds)
        lin = sum(k * xs[i] for i, k in ks.items()) if ks else 0
        if row.sense == "<=":
            m.Add(lin <= int(math.floor(rhs + 1e-9)))
        elif row.sense == ">=":
            m.Add(lin >= int(math.ceil(rhs - 1e-9)))
        else:
            m.Add(lin == int(round(rhs)))
    obj = []
    for i, c in model.objective.items():
        var = model.vars[i]
        k = int(round(c * model.objective_scale / (var.scale if not var.integer else 1.0)))
        if k:
            obj.append(k * xs[i])
    m.Minimize(sum(obj))
    for i, val in model.hint.items():
        var = model.vars[i]
        m.AddHint(xs[i], int(round(val if var.integer else val * var.scale)))
    s = cpsat_solver()
    s.parameters.max_time_in_seconds = max(time_limit_s, 0.01)
    s.parameters.num_workers = max(1, threads)
    s.parameters.relative_gap_limit = 0.0
    s.parameters.absolute_gap_limit = 0.0
    st = run_stoppable(s.Solve, s.StopSearch, m)
    wall = time.perf_counter() - t0
    if st == cp_model.INFEASIBLE:
        return Result("infeasible", None, None, None, wall)
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return Result("timeout", None, None, s.BestObjectiveBound() / model.objective_scale + model.objective_const
                      if st == cp_model.UNKNOWN and s.BestObjectiveBound() > -1e30 else None, wall)
    vals = [float(s.Value(x)) / (1.0 if v.integer else v.scale) for x, v in zip(xs, model.vars)]
    objective = s.ObjectiveValue() / model.objective_scale + model.objective_const
    bound = s.BestObjectiveBound() / model.objective_scale + model.objective_const
    return Result("optimal" if st == cp_model.OPTIMAL else "feasible", vals, objective, bound, wall)


def cpsat_solver():
    """A CP-SAT solver with the presolve step that can certify a wrong optimum switched off.

    OR-Tools 9.15's inclusion detection in presolve (ProcessAtMostOneAndLinear; google/or-tools
    issue 5293) proved an inner model "optimal" at 84.989 s where a 84.953 s solution exists
    (Llama2-70B on tmac-wafer, dp 8, 2×4 group, ZeRO-3, layer-wise k = 8; HiGHS and CP-SAT with
    that step off agree on 84.953 s, test_backends_agree_where_cpsat_presolve_misproved).
    presolve_inclusion_work_limit = 0 skips only that step; the rest of presolve stays on.
    Search with run_stoppable(solver.Solve, solver.StopSearch, model) so that an interrupt stops it."""
    from ortools.sat.python import cp_model

    s = cp_model.CpSolver()
    s.parameters.presolve_inclusion_work_limit = 0
    s.parameters.catch_sigint_signal = False  # Ctrl-C is the search's to handle (Stop), not the solver's
    return s


def _integer_row(model: LinearModel, row, bounds: list[int]) -> tuple[dict[int, int], float]:
    """A row's integer coefficients and right-hand side for CP-SAT. An inequality is refined by
    powers of 10 (up to 1e6) until every coefficient rounds within ROUND_TOL of its value, as long
    as no partial sum can overflow 64-bit integers."""
    raw = {}
    for i, c in row.coeffs.items():
        var = model.vars[i]
        raw[i] = c * row.scale / (var.scale if not var.integer else 1.0)
    refine = 1
    if row.sense != "==":
        while refine < 1e6 and any(abs(round(k * refine) - k * refine) > ROUND_TOL * abs(k * refine)
                                   for k in raw.values()):
            nxt = refine * 10
            if sum(abs(k) * nxt * bounds[i] for i, k in raw.items()) + abs(row.rhs * row.scale * nxt) > INT_LIMIT:
                break
            refine = nxt
    ks = {i: int(round(k * refine)) for i, k in raw.items()}
    return {i: k for i, k in ks.items() if k}, row.rhs * row.scale * refine


def _pulp(model: LinearModel, time_limit_s: float, threads: int) -> Result:
    import pulp

    t0 = time.perf_counter()
    p = pulp.LpProblem("meshmap", pulp.LpMinimize)
    xs = [pulp.LpVariable(f"v{i}", lowBound=v.lb, upBound=v.ub, cat="Binary" if v.integer and v.lb == 0 and v.ub == 1
                          else ("Integer" if v.integer else "Continuous")) for i, v in enumerate(model.vars)]
    p += pulp.lpSum(c * xs[i] for i, c in model.objective.items()) + model.objective_const
    for k, row in enumerate(model.rows):
        e = pulp.lpSum(c * xs[i] for i, c in row.coeffs.items())
        if row.sense == "<=":
            p += (e <= row.rhs, f"r{k}")
        elif row.sense == ">=":
            p += (e >= row.rhs, f"r{k}")
        else:
            p += (e == row.rhs, f"r{k}")
    solver = pulp.PULP_CBC_CMD(msg=0, timeLimit=max(1, int(math.ceil(time_limit_s))), gapRel=MIP_GAP,
                               gapAbs=0.0, threads=threads)
    st = p.solve(solver)
    wall = time.perf_counter() - t0
    status = pulp.LpStatus[st]
    if status == "Infeasible":
        return Result("infeasible", None, None, None, wall)
    if status != "Optimal" or any(x.varValue is None for x in xs):
        return Result("timeout", None, None, None, wall)
    vals = [float(x.varValue) for x in xs]
    obj = model.value(vals)
    # CBC through PuLP reports no bound; within the time limit and gap 1e-9 it proved optimality
    return Result("optimal", vals, obj, obj, wall)


def solve_relaxation(model: LinearModel, time_limit_s: float) -> Result:
    """The linear relaxation of the model (every integer variable continuous), solved by HiGHS:
    "optimal" with its objective, a lower bound on the model's optimum (up to HiGHS' tolerances),
    or "infeasible", which proves the model infeasible."""
    return _mpsolver(model, "highs", time_limit_s, 1, relax=True)


def _mpsolver(model: LinearModel, backend: str, time_limit_s: float, threads: int, relax: bool = False) -> Result:
    from ortools.linear_solver import pywraplp

    t0 = time.perf_counter()
    s = pywraplp.Solver.CreateSolver(backend.upper())
    if s is None:
        raise RuntimeError(f"OR-Tools was built without the {backend} solver")
    s.SuppressOutput()
    if backend == "highs":  # HiGHS prints its banner and warnings itself (a --json answer must stay clean), and
        # by default drops coefficients under 1e-9, which rows in seconds have (0.1 ns terms)
        s.SetSolverSpecificParametersAsString("output_flag=false\nsmall_matrix_value=1e-12\n")
    inf = s.infinity()
    xs = [s.IntVar(v.lb, v.ub, v.name) if v.integer and not relax else s.NumVar(v.lb, v.ub if v.ub < 1e30 else inf, v.name)
          for v in model.vars]
    for row in model.rows:
        lo, hi = (-inf, row.rhs) if row.sense == "<=" else ((row.rhs, inf) if row.sense == ">=" else (row.rhs, row.rhs))
        ct = s.RowConstraint(lo, hi, row.name)
        for i, c in row.coeffs.items():
            ct.SetCoefficient(xs[i], c)
    obj = s.Objective()
    for i, c in model.objective.items():
        obj.SetCoefficient(xs[i], c)
    obj.SetOffset(model.objective_const)
    obj.SetMinimization()
    s.SetTimeLimit(int(min(max(time_limit_s, 0.01), 1e7) * 1000))  # ms; no limit given: 1e7 s
    s.SetNumThreads(max(1, threads))
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(params.RELATIVE_MIP_GAP, MIP_GAP)
    st = run_stoppable(s.Solve, s.InterruptSolve, params)
    wall = time.perf_counter() - t0
    if st == pywraplp.Solver.INFEASIBLE:
        return Result("infeasible", None, None, None, wall)
    if st not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return Result("timeout", None, None, None, wall)
    vals = [x.solution_value() for x in xs]
    bound = obj.BestBound() if st == pywraplp.Solver.FEASIBLE else obj.Value()
    return Result("optimal" if st == pywraplp.Solver.OPTIMAL else "feasible", vals, obj.Value(), bound, wall)
