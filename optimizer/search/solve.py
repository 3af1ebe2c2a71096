"""solve(): outer enumeration of degrees with valid lower bounds, inner MILP/CP-SAT per point.

Every outer point gets a cheap lower bound (each op at its fastest option, no communication, no
recompute, the pipeline formula applied to that) and a memory lower bound (each term at its
least). Points are taken best bound first. A point reaching the front of the queue first has its
bound tightened by a Lagrangian relaxation of its memory row (_lagrangian_bound, with split
reductions and the ZeRO-3 gathers at their least) and goes back in the queue; the next time it
reaches the front its placement is solved and the relaxation redone with the gathers on it; if
that leaves it below the incumbent (or none exists), the relaxation also prices resharding
(_resharding_bound) and its best joint choice seeds a primal heuristic (_relaxed_mapping), and
the point goes back again; when it comes out after that its inner model is screened by one LP per
DRAM subset (screen.py: subsets the LP proves no better are dropped, integral LP optima taken as
exact; a lifted bound sends the point back once more) and solved on the subsets left with the
incumbent as a cutoff, so "infeasible" proves it cannot do better. Once the next bound is no
better than the incumbent the search stops, and the incumbent is proven optimal. The reported bound is the least of the bounds
of points left unsolved and of the inner solvers' own bounds, so it is honest under a time limit.

An outer point's probe, tables and inner solves are in points.py, its cheap bounds in bounds.py,
the Lagrangian and resharding bounds with the primal heuristic in lagrangian.py.
"""

from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, ConfigDict

from hw import loader as hw_loader
from hw.loader import ConfigError
from hw.schema import Hardware
from models.schema import Workload

from . import infeasible, interrupt
from ..model.evaluate import evaluate
from ..formulation.backends import BACKENDS
from ..model.mapping import Mapping, Report
from .bounds import _bounds, _Dominance, _energy_floor, _machine_objective_bound, _memory_need, _point_bound, _Tiers
from .lagrangian import (PRIMAL_MIN_GAIN, PRIMAL_SHARE, _block_comm, _gathers, _lagrangian_bound, _layer_comm,
                         _relaxations, _relaxed_mapping, _resharding_bound)
from .points import (REL_TOL, _InnerPool, _PointResult, _Probe, _solve_edp, _solve_time_or_energy, _tables,
                     probed_points)
from .screen import Screened, prepared_inner
from .space import OuterPoint, Space, get_space

OBJECTIVES = ("time", "energy", "edp")
# (assumption, from measurement: it lifted GPT-3 175B's points on tmac-wafer by 0.2-1%)
ENUMERATION_SHARE = 0.5  # of the time limit, at most, spent enumerating and bounding outer points


class Solution(BaseModel):
    """The answer of solve().

    objective "time": objective_s is the solver's step time, bound_s a proven lower bound on it,
    gap = (report.step_time_s − bound_s)/bound_s; objective_value = objective_s, bound_value =
    bound_s. objective "energy" (J of one step) or "edp" (J·s, energy × step time):
    objective_value is the solver's value of that objective, bound_value a proven lower bound on
    it, gap = (the report's energy_j, or energy_j × step_time_s, − bound_value)/bound_value;
    objective_s is then the chosen mapping's step time as the solver modeled it (exact when the
    hardware has static power, which makes the energy push the time variables down; with
    static_w = 0 it may lie above evaluate's) and bound_s is None."""

    model_config = ConfigDict(frozen=True)

    status: str  # optimal | feasible | infeasible | timeout | interrupted (Ctrl-C: the best so far and its bound)
    mapping: Mapping | None = None
    report: Report | None = None
    objective_s: float | None = None
    bound_s: float | None = None
    gap: float | None = None
    solve_time_s: float = 0.0
    explanation: str = ""
    reasons: tuple[str, ...] = ()  # infeasible: the reasons (infeasible.py), the binding one first
    points_total: int = 0
    points_solved: int = 0
    points_pruned: int = 0
    backend: str = "cpsat"
    space: str = "full"
    objective: str = "time"
    objective_value: float | None = None  # s ("time"), J ("energy") or J·s ("edp")
    bound_value: float | None = None  # proven lower bound on objective_value


def plain_explanation(explanation: str, status: str) -> str:
    """A solver explanation on one line, without its leading '<status>: ' (callers add their own)."""
    text = " ".join(explanation.split())
    prefix = f"{status}:"
    return text[len(prefix):].strip() if text.lower().startswith(prefix) else text


@dataclass
class Progress:
    """What a long solve reports as it goes (for a progress bar)."""

    solved: int = 0
    total: int = 0
    incumbent_s: float | None = None
    bound_s: float | None = None
    extra: dict = field(default_factory=dict)


def _check_args(space: str, backend: str, objective: str, time_limit_s: float) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective {objective!r} is not supported; allowed: {', '.join(OBJECTIVES)}")
    if not (time_limit_s > 0):
        raise ConfigError(f"time_limit_s must be > 0, got {time_limit_s}")
    get_space(space)


@dataclass
class _Found:
    """The search's results so far: the incumbent (objective, mapping, modeled step time), inner
    solves run, bounds left open by solves that did not finish, whether any ran out of time."""

    objective: str
    total: int
    progress: Callable[[Progress], None] | None
    best: tuple[float, Mapping, float] | None = None
    solved: int = 0
    open_bounds: list[float] = field(default_factory=list)
    timed_out: bool = False
    interrupted: bool = False  # stopped by Ctrl-C (interrupt.py)

    def offer(self, cand: tuple[float, Mapping, float]) -> None:
        if self.best is None or cand[0] < self.best[0]:
            self.best = cand

    def absorb(self, results: list[tuple[float, "_PointResult"]]) -> None:
        """Take finished inner solves in, each with its point's bound lb, and report progress."""
        for lb, res in results:
            self.solved += 1
            for cand in res.candidates:
                self.offer(cand)
            self.open_bounds.extend(res.open_bounds)
            self.timed_out = self.timed_out or res.timed_out
            if not self.progress:
                continue
            best = self.best
            if self.objective == "time":
                self.progress(Progress(self.solved, self.total, best[0] if best else None, lb))
            else:
                self.progress(Progress(self.solved, self.total, best[2] if best else None, None,
                                       {"objective": self.objective, "incumbent": best[0] if best else None,
                                        "bound": lb}))


def _refine(key: int, pt: OuterPoint, pr: _Probe, stage: dict, fitting_of: dict, work: Workload, hw: Hardware,
            sp: Space, objective: str, backend: str, found: _Found, deadline: float, threads: int) -> float | None:
    """The next bound of a point that reached the front (None: it cannot be solved). Tightened
    lazily: first the separable Lagrangian bound; the next time, the same on the point's
    placement and, unless that reaches the incumbent, the one that prices resharding, whose best
    joint choice seeds a primal heuristic (found.offer takes its mappings)."""
    done = stage.get(key, 0)
    stage[key] = done + 1
    if done == 0:  # gathers at their least: no placement solved yet
        comm = _layer_comm(pr, _gathers(pt, pr, work, hw, None))
        return _lagrangian_bound(_relaxations(pt, pr, work, hw, sp, fitting_of[key], comm))
    tb = _tables(pt, pr, work, hw, sp)
    if tb is None:  # no placement: the point cannot be solved
        fitting_of.pop(key)
        return None
    comm = _layer_comm(pr, _gathers(pt, pr, work, hw, tb))
    relaxed = _relaxations(pt, pr, work, hw, sp, fitting_of[key], comm)
    refined = _lagrangian_bound(relaxed)
    block = _block_comm(pr)
    best = found.best
    target = best[0] if best is not None and objective == "time" else float("inf")  # seconds
    if block is not None and refined < target:
        refined = max(refined, _resharding_bound(relaxed, block, target))
        # its options may give a better incumbent, worth a solve where the bound leaves room
        if refined < target * (1 - PRIMAL_MIN_GAIN) and objective != "edp":
            for cand in _relaxed_mapping(pt, tb, relaxed, block, hw, sp, objective, best[0] if best else None,
                                         backend, PRIMAL_SHARE * (deadline - time.perf_counter()), threads):
                found.offer(cand)
    return refined


def solve(work: Workload, hardware: Hardware | str, space: str | Space = "full", backend: str = "cpsat",
          objective: str = "time", time_limit_s: float = 60.0, threads: int | None = None,
          progress: Callable[[Progress], None] | None = None) -> Solution:
    """The best mapping of `work` on `hardware` inside `space`, with a proven lower bound.

    objective: "time" (step time, s), "energy" (J of one step, evaluate()'s energy_j) or "edp"
    (energy_j × step_time_s). See Solution for what objective_s, bound_s, gap mean for each;
    "edp" walks each outer point's energy/time Pareto front (_solve_edp, at most EDP_MAX_SOLVES
    inner solves per point)."""
    _check_args(space, backend, objective, time_limit_s)
    hw = hw_loader.load(hardware) if isinstance(hardware, str) else hardware
    sp = get_space(space)
    threads = threads or min(8, os.cpu_count() or 1)
    t0 = time.perf_counter()
    with interrupt.stop_on_sigint():
        queue = _enumerate(work, hw, sp, objective, t0, time_limit_s)
        found = _Found(objective, queue.total, progress)
        _search(queue, found, work, hw, sp, backend, t0 + time_limit_s, threads)
        # a Ctrl-C that came after the search had its answer leaves that answer as it is
        found.interrupted = interrupt.requested() and (found.timed_out or queue.enumeration_cut
                                                        or bool(found.open_bounds))
    return infeasible.with_skipped(_solution(queue, found, work, hw, sp, backend, time.perf_counter() - t0), sp, work)


@dataclass
class _Queue:
    """The outer points bounded, best bound first (heap: (bound on the objective, key, point)), what
    their bounds are made of, and what the enumeration saw for an infeasible answer's reasons."""

    objective: str
    static_w: float  # W of static power per die
    heap: list = field(default_factory=list)
    probes: dict = field(default_factory=dict)  # (shape, micro-batch) -> the probe of the points enumerated
    time_lbs: dict[int, float] = field(default_factory=dict)  # point key -> its step-time lower bound
    floors: dict[int, float] = field(default_factory=dict)  # point key -> its energy floor (objectives other than time)
    # point key -> the DRAM subsets that can fit, with their cheap bounds
    fitting_of: dict[int, list] = field(default_factory=dict)
    screened: dict[int, Screened] = field(default_factory=dict)  # point key -> its screened inner model, requeued
    ev: infeasible.Evidence = field(default_factory=infeasible.Evidence)
    # the points bounded, for an infeasible answer's reasons
    seen: list[tuple[OuterPoint, _Probe]] = field(default_factory=list)
    total: int = 0
    pruned_mem: int = 0
    enumeration_cut: bool = False  # outer points left unenumerated (bounded by the machine-wide bound)

    def push(self, key: int, pt: OuterPoint) -> None:
        """Queue point `key` at the objective's bound made of its step-time bound and energy floor."""
        heapq.heappush(self.heap, (_point_bound(self.objective, self.time_lbs[key], self.floors[key],
                                                self.static_w * pt.dies), key, pt))


def _enumerate(work: Workload, hw: Hardware, sp: Space, objective: str, t0: float, time_limit_s: float) -> _Queue:
    """Every outer point of the space given its cheap bounds (_bounds) and queued, but those that no
    choice of tiers fits; the enumeration stops at ENUMERATION_SHARE of the time limit."""
    queue = _Queue(objective, hw.energy.static_w)
    tiers, ev = _Tiers.of(sp, hw), queue.ev
    dead_family = None  # degrees whose layer-wise group no longer fits (space.layer_groups ascend)
    dominance = _Dominance(work, hw, sp)
    for pt, pr in probed_points(work, hw, sp):
        if interrupt.requested() or (queue.total % 256 == 0
                                     and time.perf_counter() - t0 > ENUMERATION_SHARE * time_limit_s):
            queue.enumeration_cut = True
            break
        queue.probes[(pt.shape, pt.micro_batch)] = pr
        queue.total += 1
        key = queue.total
        family = (pt.pp, pt.dp, pt.shape, pt.micro_batch, pt.zero_stage, pt.virtual, pt.recompute_policy)
        if pt.layer_group > 1 and family == dead_family:  # a smaller group of these degrees did not fit
            queue.pruned_mem += 1
            continue
        res, dead_top = dominance.bounds(pt, pr, work, hw, sp, tiers)
        for seen, (_lb, mem, spill, _f) in ([dead_top] if dead_top else []) + ([(pt, res)] if res else []):
            queue.seen.append((seen, pr))
            if mem < ev.least:
                ev.least, ev.least_point = mem, seen
            ev.least_spill = min(ev.least_spill, spill)
        if res is None:  # its family's member with the most dp and ZeRO fits on no die
            queue.pruned_mem += 1
            continue
        lb, mem, spill, fitting = res
        if lb == float("inf"):  # no choice of tiers fits this point
            queue.pruned_mem += 1
            dead_family = family if pt.layer_group > 1 else None  # larger groups only hold more
            continue
        queue.time_lbs[key] = lb
        queue.fitting_of[key] = fitting
        queue.floors[key] = _energy_floor(pt, pr, work, hw) if objective != "time" else 0.0
        queue.push(key, pt)
    return queue


def _search(queue: _Queue, found: _Found, work: Workload, hw: Hardware, sp: Space, backend: str, deadline: float,
            threads: int) -> None:
    """Points taken best bound first until the next bound is no better than the incumbent or time
    runs out: a point's first two turns at the front tighten its bound (_refine) and queue it
    again; its third solves its inner model (on the pool, beside the search; EDP in this thread)."""
    objective, heap = queue.objective, queue.heap
    stage: dict[int, int] = {}  # point key -> bounds applied so far (1: Lagrangian, 2: placed, with resharding)
    pool = _InnerPool(threads if objective != "edp" else 1)
    try:
        while heap:
            found.absorb(pool.done())
            best = found.best
            lb, key, pt = heap[0]
            if best is not None and lb >= best[0] * (1 - REL_TOL):
                break
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or interrupt.requested():
                found.timed_out = True
                break
            if stage.get(key, 0) >= 2 and pool.full():  # the point needs a worker: wait for one
                found.absorb(pool.done(wait=True))
                continue
            heapq.heappop(heap)
            pr = queue.probes[(pt.shape, pt.micro_batch)]
            if stage.get(key, 0) < 2:
                refined = _refine(key, pt, pr, stage, queue.fitting_of, work, hw, sp, objective, backend, found,
                                  deadline, threads)
                if refined is not None:
                    queue.time_lbs[key] = max(queue.time_lbs[key], refined)
                    queue.push(key, pt)
                continue
            built = queue.screened.pop(key, None) or prepared_inner(
                pt, pr, queue.fitting_of.pop(key, None), found.best[0] if found.best else None, lb, work, hw, sp,
                objective, deadline)
            if built is None:
                continue
            if not built.solve:  # the LPs settled it: exact optima, or none beats the incumbent
                found.absorb([(lb, _PointResult(candidates=built.candidates))])
                continue
            for cand in built.candidates:
                found.offer(cand)
            best, inner, tb, lb = found.best, built.inner, built.tb, built.lb
            built.candidates = []
            if stage[key] == 2 and heap and lb > heap[0][0]:  # the LP bound lifted it past the next point: requeue
                stage[key] = 3
                queue.screened[key] = built
                queue.time_lbs[key] = max(queue.time_lbs[key], lb)
                queue.push(key, pt)
                continue
            incumbent = best[0] if best is not None else None
            if objective == "edp":
                found.absorb([(lb, _solve_edp(inner, tb, pt, sp, work, hw, lb, incumbent, backend, deadline, threads))])
            else:
                pool.submit(lb, _solve_time_or_energy, inner, tb, pt, sp, objective, lb, incumbent, backend, remaining)
        found.absorb(pool.done(wait_all=True))
    finally:
        pool.close()


def _solution(queue: _Queue, found: _Found, work: Workload, hw: Hardware, sp: Space, backend: str,
              elapsed: float) -> Solution:
    """The answer from where the search stopped: its incumbent scored by evaluate(), with the
    least bound of the points left unsolved (and the machine-wide bound for those never
    enumerated); without one, a timeout, or the reasons no point fits."""
    objective = queue.objective
    best, solved, open_bounds, timed_out = found.best, found.solved, found.open_bounds, found.timed_out
    stopped = "interrupted" if found.interrupted else "timeout"
    unexplored = [h[0] for h in queue.heap]
    if queue.enumeration_cut:
        timed_out = True
        unexplored.append(_machine_objective_bound(objective, work, hw))
    is_time = objective == "time"
    common = dict(solve_time_s=elapsed, points_total=queue.total, points_solved=solved, backend=backend,
                  space=sp.name, objective=objective)
    if best is None:
        if timed_out or (unexplored and not queue.heap == []):
            bound = min(unexplored + open_bounds) if (unexplored or open_bounds) else None
            why = ("interrupted before a feasible mapping was found" if found.interrupted
                   else "no feasible mapping found within the time limit")
            return Solution(status=stopped, bound_s=bound if is_time else None, bound_value=bound,
                            explanation=why, **common)
        queue.ev.solved = solved
        reasons, text = infeasible.explain(_evidence(queue.ev, queue.seen, work, hw, sp), hw, work, sp.name)
        return Solution(status="infeasible", points_pruned=queue.pruned_mem, reasons=reasons, explanation=text, **common)
    obj, mp, model_s = best
    cand = [obj] + open_bounds + (unexplored if timed_out else [])
    bound = min(cand)
    report = evaluate(mp, work, hw)
    optimal = not timed_out and not open_bounds
    status = "optimal" if optimal else ("feasible" if not timed_out else stopped)
    value = {"time": report.step_time_s, "energy": report.energy_j,
             "edp": report.energy_j * report.step_time_s}[objective]
    bound = bound if not optimal else obj
    gap = (value - bound) / bound if bound > 0 else 0.0
    return Solution(status=status, mapping=mp, report=report, objective_s=obj if is_time else model_s,
                    bound_s=bound if is_time else None, gap=max(gap, 0.0), points_pruned=queue.total - solved,
                    objective_value=obj, bound_value=bound, **common)


def _evidence(ev: infeasible.Evidence, seen: list, work: Workload, hw: Hardware, sp: Space) -> infeasible.Evidence:
    """ev completed for an infeasible answer: the class split of the least-memory point, the least
    need had every op split evenly (and which dimensions do not divide that point's group), and
    the least need on the defect-free grid when the grid has defects. Arithmetic only. In a
    restricted space (a peer's) the even split is not asked: its least need stands for it."""
    tiers = _Tiers.of(sp, hw)
    for pt, pr in seen:
        if pt == ev.least_point:
            _need, ev.least_parts = _memory_need(pt, pr, work, sp, tiers)
        if sp.name != "full":  # a peer's space restricts the options beyond divisibility: no even split
            continue
        even, parts = _memory_need(pt, pr, work, sp, tiers, even=True)
        if even < ev.even:
            ev.even, ev.even_parts, ev.even_point = even, parts, pt
            ev.undivided = infeasible.undivided_dimensions(pr.tables.graph.sizes, pt.shape)
    if sp.name != "full":
        ev.even, ev.even_parts, ev.even_point = ev.least, ev.least_parts, ev.least_point
    if hw.defects:
        clean = hw.model_copy(update={"defects": []})
        ev.clean_least = min((_bounds(pt, pr, work, clean, sp, tiers)[1] for pt, pr in probed_points(work, clean, sp)),
                             default=float("inf"))
    return ev
