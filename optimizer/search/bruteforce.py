"""Exhaustive enumeration of a strategy space, scored by the evaluator: the solver's check on
small spaces, and the baseline of the speed benchmark (with a measured per-mapping cost)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from math import prod

from hw.schema import Hardware
from models.schema import Workload

from ..model import cost
from ..model.evaluate import assemble, finish_stages, in_dram_bytes
from ..model.stage import score_stages
from ..model.mapping import OpChoice
from .points import _mapping, _tables, probed_points
from .solve import OBJECTIVES
from .space import OuterPoint, Space, get_space
from ..model.tables import default_groups


@dataclass
class BruteForce:
    best_s: float | None
    best_point: OuterPoint | None
    best_choices: dict | None
    best_offload: tuple[str, ...]
    evaluated: int
    space_size: int
    seconds: float  # spent building and scoring the evaluated mappings (counting the rest not included)
    objective: str = "time"
    best_value: float | None = None  # the winner's objective: s, J (energy) or J·s (edp), by evaluate()


def _choices(tb, sp: Space, pt: OuterPoint) -> list[tuple[str, list[OpChoice]]]:
    rec = sp.recompute_allowed(tb.graph, pt.recompute_policy)
    out = []
    for o in tb.graph.block + tb.graph.pre + tb.graph.post:
        flags = rec.get(o.name, (False,))
        # the overlap modes of an option whose mode can change nothing (not a GEMM, or no reduction
        # after it on any edge) score alike: only "sequential" is enumerated for it
        out.append((o.name, [OpChoice(split=opt, recompute=r, overlap=md) for opt in tb.options(o) for r in flags
                             for md in (tb.modes if tb.mode_matters(o, opt) else ("sequential",))]))
    return out


def space_size(work: Workload, hw: Hardware, space: str | Space = "full") -> int:
    """Number of complete mappings (outer point × every op's choice) in the space."""
    sp = get_space(space)
    count = _Counter(sp, hw)
    return sum(count(pt, pr) for pt, pr in probed_points(work, hw, sp))


class _Counter:
    """Complete mappings at one outer point: the choices depend on the group shape, the
    micro-batch and the recompute policy only (counted once per such key, from the probe's
    tables), times the DRAM tier subsets; 0 if the point's groups cannot be placed."""

    def __init__(self, sp: Space, hw: Hardware):
        self.sp, self.hw, self.cache, self.placeable = sp, hw, {}, {}
        self.offloads = len(sp.offload_subsets(hw))

    def __call__(self, pt: OuterPoint, pr) -> int:
        where = (pt.pp, pt.dp, pt.shape)
        if where not in self.placeable:
            self.placeable[where] = default_groups(self.hw, *where) is not None  # place_groups's fallback
        if not self.placeable[where]:
            return 0
        key = (pt.shape, pt.micro_batch, pt.recompute_policy)
        if key not in self.cache:
            self.cache[key] = prod(len(c) for _, c in _choices(pr.tables, self.sp, pt)) * self.offloads
        return self.cache[key]


def score(tb, ch: dict[str, OpChoice], offload: tuple[str, ...] = ()) -> tuple[float, bool]:
    """(step time, fits?) of one complete choice at the tables' outer point: the most loaded die
    within its memory and everything kept in DRAM within the ports' capacity."""
    stages = finish_stages(score_stages(tb, ch, offload), tb.virtual)
    pipe = cost.pipeline_time([st.time_s for st in stages], tb.m, tb.virtual)
    on_die = max(sum(st.memory.values()) for st in stages)
    in_dram = in_dram_bytes(stages, tb)
    return pipe + max(st.sync_s for st in stages), on_die <= tb.hw.die.memory_bytes and in_dram <= tb.hw.dram_capacity


def brute_force(work: Workload, hw: Hardware, space: str | Space = "full", limit: int | None = None,
                objective: str = "time") -> BruteForce:
    """Score every mapping of the space (or the first `limit`); the one that fits with the least
    objective wins: step time ("time"), or evaluate()'s energy_j ("energy") or energy_j ×
    step_time_s ("edp") of the complete mapping."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    sp = get_space(space)
    t0 = time.perf_counter()
    best: tuple[float, OuterPoint, dict, tuple[str, ...]] | None = None
    n = size = 0
    offloads = sp.offload_subsets(hw)
    count = _Counter(sp, hw)
    scored: float | None = None
    for pt, pr in probed_points(work, hw, sp):
        size += count(pt, pr)
        if limit is not None and n >= limit:  # the sample is done: only count the rest
            if scored is None:
                scored = time.perf_counter() - t0
            continue
        tb = _tables(pt, pr, work, hw, sp)
        if tb is None:
            continue
        names, lists = zip(*_choices(tb, sp, pt))
        for off in offloads:
            for combo in itertools.product(*lists):
                if limit is not None and n >= limit:
                    break
                ch = dict(zip(names, combo))
                t, fits = score(tb, ch, off)
                n += 1
                if not fits:
                    continue
                value = t
                if objective != "time":
                    mp = _mapping(pt, tb, {k: (c.split, c.recompute, c.overlap) for k, c in ch.items()}, sp, off)
                    rep = assemble(mp, work, hw, tb)
                    value = rep.energy_j * (rep.step_time_s if objective == "edp" else 1.0)
                if best is None or value < best[4]:
                    best = (t, pt, ch, off, value)
    return BruteForce(best[0] if best else None, best[1] if best else None, best[2] if best else None,
                      best[3] if best else (), n, size, scored if scored is not None else time.perf_counter() - t0,
                      objective,
                      best[4] if best else None)
