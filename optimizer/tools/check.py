"""check(): how far a given mapping is from the optimum of a strategy space.

The given mapping — an `optimizer.Mapping`, a mapping or plan file (JSON/YAML), or a Megatron-LM
description `{"tp", "pp", "dp", "micro_batch", "recompute", "sequence_parallel"}` — is scored by
the referee, `optimizer.evaluate`; the space is searched by `optimizer.solve`, which returns its
best mapping and a proven lower bound on the space's optimum. The gap is the given mapping's step
time over that bound: gap = (step_time_s - bound_s) / bound_s, so 0 means provably optimal.

Beside it, a second solve keeps the given mapping's degrees — pipeline stages, data-parallel
replicas, tensor group, micro-batch, ZeRO stage, schedule — and frees its inner choices (each
operator's partition and recomputation, the tensor classes in DRAM): how fast those degrees can
go, and whether they can fit at all. It splits the gap between the inner choices and the degrees,
and for a mapping that does not fit it is the answer to "what would it take to run".
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from hw import loader as hw_loader
from hw.loader import ConfigError
from hw.schema import Hardware
from models.graph import RECOMPUTE_POLICIES
from models.schema import Workload

from .. import baselines
from ..model.evaluate import evaluate
from ..model.mapping import Mapping, Report
from ..model.layout import even_chunks
from ..search import interrupt
from ..search.solve import Progress, plain_explanation, solve
from ..search.space import OuterPoint, Space, get_space

DESCRIPTION_KEYS = ("tp", "pp", "dp", "micro_batch", "recompute", "sequence_parallel", "virtual_stages")
REL_TOL = 1e-9
SAME_DEGREES_SHARE = 0.25  # of check()'s time limit: the solve at the given mapping's own degrees


class CheckResult(BaseModel):
    """A given mapping next to the optimum of a space. Seconds; gap and speedup are ratios."""

    model_config = ConfigDict(frozen=True)

    mapping: Mapping                      # the given mapping (a Megatron description, built)
    step_time_s: float                    # evaluate() of the given mapping
    report: Report                        # its full report: memory, energy, breakdown
    fits: bool                            # does the given mapping fit memory (report.fits)
    optimum_s: float | None = None        # step time of the solver's best mapping (None: none found)
    optimum_mapping: Mapping | None = None
    optimum_report: Report | None = None
    bound_s: float | None = None          # proven lower bound on the space's optimum (Solution.bound_s)
    status: str                           # the solve's status: optimal | feasible | timeout | infeasible | interrupted
    gap: float | None = None              # (step_time_s - bound_s) / bound_s
    speedup_possible: float | None = None  # step_time_s / optimum_s
    space: str = "full"
    backend: str = "cpsat"
    solve_time_s: float = 0.0
    explanation: str = ""                 # the solver's, when it found no mapping
    same_degrees_s: float | None = None   # the fastest mapping with the given degrees (inner choices free)
    same_degrees_mapping: Mapping | None = None
    same_degrees_status: str | None = None  # that solve's status (None: not run)
    same_degrees_explanation: str = ""    # why no mapping with those degrees fits, when none does
    notes: tuple[str, ...] = ()           # what to know when reading the numbers (does not fit, …)


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"mapping.{key} must be an integer > 0, got {value!r}")
    return value


def from_description(desc: dict, work: Workload, hw: Hardware) -> Mapping:
    """The Megatron-LM mapping of a description {"tp", "pp", "dp", "micro_batch", "recompute",
    "sequence_parallel"} (defaults 1, 1, usable dies / (tp·pp), 1, "full", False)."""
    unknown = [k for k in desc if k not in DESCRIPTION_KEYS]
    if unknown:
        raise ConfigError(f"mapping.{unknown[0]}: unknown key of a Megatron description; allowed: "
                          f"{', '.join(DESCRIPTION_KEYS)} (pass an optimizer.Mapping or a file for anything else)")
    tp = _positive_int("tp", desc.get("tp", 1))
    pp = _positive_int("pp", desc.get("pp", 1))
    micro_batch = _positive_int("micro_batch", desc.get("micro_batch", 1))
    virtual = _positive_int("virtual_stages", desc.get("virtual_stages", 1))
    if desc.get("dp") is None:
        dp = hw.num_dies // (tp * pp)
        if dp <= 0:
            raise ConfigError(f"mapping.tp x mapping.pp = {tp * pp} exceeds the {hw.num_dies} usable dies "
                              f"of {hw.name}")
    else:
        dp = _positive_int("dp", desc["dp"])
    recompute = desc.get("recompute", "full")
    if recompute not in RECOMPUTE_POLICIES:
        raise ConfigError(f"mapping.recompute must be one of {', '.join(RECOMPUTE_POLICIES)}; got {recompute!r}")
    sp = desc.get("sequence_parallel", False)
    if not isinstance(sp, bool):
        raise ConfigError(f"mapping.sequence_parallel must be true or false, got {sp!r}")
    try:
        return baselines.megatron(work, hw, tp=tp, pp=pp, dp=dp, micro_batch=micro_batch, recompute=recompute,
                                  sequence_parallel=sp, virtual_stages=virtual)
    except ConfigError as err:
        raise ConfigError(f"mapping: {err}") from None


def _resolve(mapping: Any, work: Workload, hw: Hardware) -> Mapping:
    if isinstance(mapping, Mapping):
        return mapping
    if isinstance(mapping, (str, os.PathLike)):
        return Mapping.load(Path(mapping))
    if isinstance(mapping, dict):
        return from_description(mapping, work, hw)
    raise ConfigError(f"mapping must be an optimizer.Mapping, a path to a mapping/plan JSON or YAML file, or a "
                      f"Megatron description dict; got {type(mapping).__name__}")


def same_degrees(mapping: Mapping, space: Space) -> Space:
    """`space` at the outer point of `mapping` only: its pp, dp, tensor group, micro-batch, ZeRO stage
    schedule and layer layout, with each recomputation policy the space enumerates; the per-operator partition,
    recomputation and DRAM classes stay the solver's (as far as `space` allows)."""
    layout = mapping.layers_per_chunk
    if layout is None and mapping.layers_per_stage is not None:
        layout = even_chunks(tuple(mapping.layers_per_stage), mapping.virtual_stages)
    return dataclasses.replace(space, points=tuple(
        OuterPoint(mapping.pp, mapping.dp, mapping.tp_shape, mapping.micro_batch, mapping.zero_stage,
                   mapping.virtual_stages, policy, mapping.layer_group, layout) for policy in space.recompute_policies))


def check(mapping: Mapping | str | os.PathLike | dict, work: Workload, hw: Hardware | str,
          space: str | Space = "full", backend: str = "cpsat", time_limit_s: float = 60,
          threads: int | None = None, progress: Callable[[Progress], None] | None = None,
          with_same_degrees: bool = True) -> CheckResult:
    """Score `mapping`, solve `space` for its optimum and bound, and report the gap between them.

    with_same_degrees: first solve `space` at the mapping's own degrees (same_degrees()), with
    SAME_DEGREES_SHARE of time_limit_s; the whole check stays within time_limit_s (seconds)."""
    if not isinstance(work, Workload):
        raise ConfigError(f"work must be a models.Workload, got {type(work).__name__}")
    if isinstance(hw, (str, os.PathLike)):
        hw = hw_loader.load(str(hw))
    elif not isinstance(hw, Hardware):
        raise ConfigError(f"hw must be an hw.Hardware or a preset name / YAML path, got {type(hw).__name__}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0):
        raise ConfigError(f"threads must be an integer > 0, got {threads!r}")

    given = _resolve(mapping, work, hw)
    rep = evaluate(given, work, hw)
    sp = space if isinstance(space, Space) else get_space(space)
    t0, same = time.perf_counter(), None
    with interrupt.stop_on_sigint():  # Ctrl-C: both solves answer with what they have
        if with_same_degrees:
            same = solve(work, hw, space=same_degrees(given, sp), backend=backend, objective="time",
                         time_limit_s=SAME_DEGREES_SHARE * time_limit_s, threads=threads)
        left = max(time_limit_s - (time.perf_counter() - t0), (1 - SAME_DEGREES_SHARE) * time_limit_s)
        sol = solve(work, hw, space=sp, backend=backend, objective="time", time_limit_s=left,
                    threads=threads, progress=progress)

    t = rep.step_time_s
    bound = sol.bound_s
    optimum = sol.report.step_time_s if sol.report is not None else None
    gap = (t - bound) / bound if bound is not None and bound > 0 else None
    notes: list[str] = []
    if not rep.fits:
        notes.append(f"the given mapping does not fit: it needs {rep.peak_memory_bytes / 1e9:.2f} GB on its most "
                     f"loaded die, {hw.name} has {rep.memory_capacity_bytes / 1e9:.2f} GB per die"
                     + (f" (and {rep.dram_stored_bytes / 1e9:.1f} GB in DRAM of {rep.dram_capacity_bytes / 1e9:.1f})"
                        if rep.dram_stored_bytes > rep.dram_capacity_bytes else "")
                     + "; its step time is reported, but it cannot run")
    if bound is not None and t < bound * (1 - REL_TOL) and rep.fits:
        notes.append(f"the given mapping is faster than the proven bound of space {sol.space!r}: it lies outside "
                     f"that space (check it against a larger one)")
    elif optimum is not None and t < optimum * (1 - REL_TOL) and rep.fits:
        notes.append(f"the given mapping is faster than the best mapping the solver found ({sol.status}); "
                     f"a longer time limit may find better")
    if optimum is None:
        why = plain_explanation(sol.explanation, sol.status)
        notes.append(f"no mapping of space {sol.space!r} found ({sol.status})" + (f": {why}" if why else ""))
    elif sol.status != "optimal":
        notes.append(f"the solve stopped with status {sol.status!r}: the optimum lies between the bound and "
                     f"the best mapping found")
    same_s = same.report.step_time_s if same is not None and same.report is not None else None
    if same is not None and not rep.fits:
        if same_s is not None:
            notes.append(f"with the same degrees, the fastest mapping that fits takes {same_s:.6g} s per step "
                         f"({same_s / t:.3g}x the given step time; partitions, recomputation and DRAM classes "
                         f"chosen by the solver, status {same.status})")
        elif same.status == "infeasible":
            notes.append("no mapping with the same degrees fits: " + plain_explanation(same.explanation, same.status))

    return CheckResult(
        mapping=given, step_time_s=t, report=rep, fits=rep.fits, optimum_s=optimum,
        optimum_mapping=sol.mapping, optimum_report=sol.report, bound_s=bound, status=sol.status, gap=gap,
        speedup_possible=t / optimum if optimum else None, space=sol.space, backend=sol.backend,
        solve_time_s=sol.solve_time_s, explanation=sol.explanation, notes=tuple(notes),
        same_degrees_s=same_s, same_degrees_mapping=same.mapping if same is not None else None,
        same_degrees_status=same.status if same is not None else None,
        same_degrees_explanation=same.explanation if same is not None and same_s is None else "",
    )


__all__ = ["check", "CheckResult", "from_description", "same_degrees"]
