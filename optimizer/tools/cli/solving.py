"""`evaluate` (score a mapping), `solve` (find the best one with a proven bound) and `check` (how far
a mapping is from the optimum)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

import hw
import models

from ...formulation.backends import BACKENDS
from ...model.evaluate import evaluate as evaluate_mapping
from ...search.solve import OBJECTIVES, Solution, plain_explanation
from ...search.solve import solve as solve_workload
from ...search.space import SPACES
from .common import (EXIT_INTERRUPTED, _check_choice, _check_count, _check_directory, _check_time_limit, _console,
                     _echo_json, _fits_markup, _fmt_opt, _gap_text, _gb, _num, _require, _shows_progress,
                     _status_markup, _workload_json, _workload_title, guarded)
from .options import (DEFAULT_BACKEND, DEFAULT_BATCH, DEFAULT_SPACE, BackendOption, BatchOption, ColsOption,
                      DpOption, FlashAttentionOption, FlatJsonOption, HardwareOption, MicroBatchOption,
                      ModelOption, NodesOption, PlanArgument, PlanBatchOption, PlanOutOption, PlanSeqOption,
                      PlotOption, PpOption, RecomputeOption, RowsOption, SeqOption, SequenceParallelOption,
                      SpaceOption, SramBytesOption, ThreadsOption, TpOption)
from .plans import _hardware, _hw_overrides, _mapping_and_workload, plan_context
from .progress import _SolveBar
from .reports import _mapping_text, _plot_paths, _say_plots, _write_plots, print_report, print_solution, report_dict

if TYPE_CHECKING:
    from ..check import CheckResult


@guarded
def evaluate(
    plan: PlanArgument = None,
    model: ModelOption = None,
    hardware: HardwareOption = None,
    batch: PlanBatchOption = None,
    seq: PlanSeqOption = None,
    nodes: NodesOption = None,
    rows: RowsOption = None,
    cols: ColsOption = None,
    sram_bytes: SramBytesOption = None,
    tp: TpOption = None,
    pp: PpOption = None,
    dp: DpOption = None,
    micro_batch: MicroBatchOption = None,
    recompute: RecomputeOption = None,
    sequence_parallel: SequenceParallelOption = False,
    flash_attention: FlashAttentionOption = False,
    out: PlanOutOption = None,
    json_out: FlatJsonOption = False,
    plot: PlotOption = None,
) -> None:
    """Score a mapping: a plan file, or a Megatron-LM configuration built from --tp/--pp/--dp/…

    A plan saved by `meshmap solve --out` records its model, hardware (with overrides), batch and
    sequence length; those are the defaults here, and any option given wins. --out saves the
    scored plan in the same format (status "evaluated"), for `check`, `export` and `evaluate`.
    """
    plot_paths = _plot_paths(plot)
    if out is not None:
        _check_directory("--out", out)
    overrides = _hw_overrides(nodes, rows, cols, sram_bytes)
    mapping, work, machine = _mapping_and_workload(plan, model, hardware, batch, seq, overrides, tp, pp, dp,
                                                   micro_batch, recompute, sequence_parallel, flash_attention)
    title = mapping.name or (plan.name if plan is not None else "")
    rep = evaluate_mapping(mapping, work, machine)
    if out is not None:
        _write_plan(out, {"mapping": mapping.model_dump(mode="json"), "report": report_dict(rep),
                          "status": "evaluated", **plan_context(plan, model, hardware, overrides, work)})
    written = _write_plots(plot_paths, mapping, machine, rep)
    if json_out:
        data = {**report_dict(rep), **_workload_json(work, machine)}
        if written:
            data["plots"] = written
        _echo_json(data)
    else:
        print_report(rep, title=f"{work.model.name} on {machine.name}: {title}")
        if out is not None:
            typer.echo(f"plan saved to {out}")
        _say_plots(written)


# ------------------------------------------------------------------------------------------ solve

@guarded
def solve(
    model: ModelOption = None,
    hardware: HardwareOption = None,
    batch: BatchOption = DEFAULT_BATCH,
    seq: SeqOption = None,
    flash_attention: FlashAttentionOption = False,
    space: SpaceOption = DEFAULT_SPACE,
    backend: BackendOption = DEFAULT_BACKEND,
    objective: Annotated[str, typer.Option("--objective", help=f"what to minimise: {' | '.join(OBJECTIVES)}")] = "time",
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds for the whole solve")] = 60.0,
    threads: ThreadsOption = None,
    nodes: NodesOption = None,
    rows: RowsOption = None,
    cols: ColsOption = None,
    sram_bytes: SramBytesOption = None,
    out: PlanOutOption = None,
    json_out: FlatJsonOption = False,
    plot: PlotOption = None,
) -> None:
    """Find the best mapping with a proven lower bound; an infeasible problem is an answer (exit 0)."""
    _require(model, "--model")
    _require(hardware, "--hw")
    _check_choice("--backend", backend, BACKENDS)
    _check_choice("--space", space, SPACES)
    _check_choice("--objective", objective, OBJECTIVES)
    _check_time_limit(time_limit)
    _check_count("--threads", threads)
    _check_count("--batch", batch)
    _check_count("--seq", seq)
    if out is not None:
        _check_directory("--out", out)
    overrides = _hw_overrides(nodes, rows, cols, sram_bytes)
    plot_paths = _plot_paths(plot)

    work = models.Workload(model=models.load(model), global_batch=batch, seq_len=seq, flash_attention=flash_attention)
    machine = _hardware(hardware, overrides)
    with _SolveBar(enabled=_shows_progress(json_out)) as bar:
        sol = solve_workload(work, machine, space=space, backend=backend, objective=objective,
                             time_limit_s=time_limit, threads=threads, progress=bar)

    context = plan_context(None, model, hardware, overrides, work)
    summary = _solve_summary(sol, objective)
    mapping = sol.mapping.model_dump(mode="json") if sol.mapping is not None else None
    report = report_dict(sol.report) if sol.report is not None else None
    if out is not None:
        _save_plan(out, sol, {"mapping": mapping, "report": report, **summary, **context})

    explanation = plain_explanation(sol.explanation, sol.status) if mapping is None else ""
    written = _write_plots(plot_paths, sol.mapping, machine, sol.report)
    if json_out:
        data = {**(report or {}), **summary, **_workload_json(work, machine), "mapping": mapping}
        if mapping is None:
            data["explanation"] = explanation
        if written:
            data["plots"] = written
        _echo_json(data)
    elif mapping is None:
        typer.echo(_no_mapping_line(sol, explanation, objective))
    else:
        print_solution(sol, title=_workload_title(work, machine))
        print_report(sol.report, title=f"{sol.mapping.name or 'solution'} (evaluate)")
        if out is not None:
            typer.echo(f"plan saved to {out}; score it again with `meshmap evaluate {out}`")
        _say_plots(written)
    _exit_if_interrupted(sol.status)


def _exit_if_interrupted(status: str) -> None:
    """A search stopped by Ctrl-C has printed (and saved) its best so far: exit 130 as the shell expects."""
    if status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)


def _solve_summary(sol: Solution, objective: str) -> dict[str, Any]:
    """How the solve went, as the plan file and --json record it."""
    return {"status": sol.status, "objective_s": sol.objective_s, "bound_s": sol.bound_s, "gap": sol.gap,
            "solve_time_s": sol.solve_time_s, "points_solved": sol.points_solved,
            "points_total": sol.points_total, "backend": sol.backend, "space": sol.space,
            "objective": objective, "objective_value": sol.objective_value, "bound_value": sol.bound_value}


def _save_plan(out: Path, sol: Solution, plan: dict[str, Any]) -> None:
    """Write the plan of --out, or say why there is none."""
    if sol.mapping is None:
        typer.echo(f"note: no mapping ({sol.status}); {out} not written", err=True)
    else:
        _write_plan(out, plan)


def _write_plan(out: Path, plan: dict[str, Any]) -> None:
    """A plan file (mapping, report and what it was scored on) as `evaluate`, `check` and `export` read it."""
    out.write_text(json.dumps(plan, indent=2) + "\n")


def _no_mapping_line(sol: Solution, explanation: str, objective: str) -> str:
    """The answer when there is no mapping: the status, why, and the lower bound if one is proven."""
    line = f"{sol.status}: {explanation or 'no mapping found'}"
    if sol.bound_s is not None:
        line += f" (lower bound {_num(sol.bound_s, 's')})"
    elif sol.bound_value is not None:
        line += f" (lower bound {sol.bound_value:.6g} {'J' if objective == 'energy' else 'J·s'})"
    return line


# ------------------------------------------------------------------------------------------ check

@guarded
def check(
    plan: PlanArgument = None,
    model: ModelOption = None,
    hardware: HardwareOption = None,
    batch: PlanBatchOption = None,
    seq: PlanSeqOption = None,
    nodes: NodesOption = None,
    rows: RowsOption = None,
    cols: ColsOption = None,
    sram_bytes: SramBytesOption = None,
    tp: TpOption = None,
    pp: PpOption = None,
    dp: DpOption = None,
    micro_batch: MicroBatchOption = None,
    recompute: RecomputeOption = None,
    sequence_parallel: SequenceParallelOption = False,
    flash_attention: FlashAttentionOption = False,
    space: Annotated[str, typer.Option(
        "--space", help=f"strategy space to compare with: {' | '.join(SPACES)}")] = DEFAULT_SPACE,
    backend: BackendOption = DEFAULT_BACKEND,
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds for the solve")] = 60.0,
    threads: ThreadsOption = None,
    json_out: FlatJsonOption = False,
) -> None:
    """How far a mapping is from optimal: its step time, the space's optimum, the proven bound, the gap.

    The mapping is a plan file (one saved by `meshmap solve --out` records its model, hardware,
    batch and sequence length) or a Megatron-LM configuration built from --tp/--pp/--dp/…
    """
    from ..check import check as check_mapping

    _check_choice("--backend", backend, BACKENDS)
    _check_choice("--space", space, SPACES)
    _check_time_limit(time_limit)
    _check_count("--threads", threads)
    overrides = _hw_overrides(nodes, rows, cols, sram_bytes)
    mapping, work, machine = _mapping_and_workload(plan, model, hardware, batch, seq, overrides, tp, pp, dp,
                                                   micro_batch, recompute, sequence_parallel, flash_attention)

    with _SolveBar(enabled=_shows_progress(json_out)) as bar:
        res = check_mapping(mapping, work, machine, space=space, backend=backend, time_limit_s=time_limit,
                            threads=threads, progress=bar)

    if json_out:
        _echo_json(_check_json(res, work, machine))
    else:
        _print_check(res, res.mapping.name or (plan.name if plan is not None else "given"),
                     _workload_title(work, machine))
        for note in res.notes:
            typer.echo(f"note: {note}", err=True)
    _exit_if_interrupted(res.status)


def _check_json(res: CheckResult, work: models.Workload, machine: hw.Hardware) -> dict[str, Any]:
    """check()'s result as one flat JSON object: the mapping's report, then the comparison."""
    return {**report_dict(res.report), "optimum_s": res.optimum_s, "bound_s": res.bound_s, "gap": res.gap,
            "speedup_possible": res.speedup_possible, "status": res.status, "fits": res.fits,
            "space": res.space, "backend": res.backend, "solve_time_s": res.solve_time_s,
            "notes": list(res.notes), **_workload_json(work, machine),
            "mapping": res.mapping.model_dump(mode="json"),
            "optimum_mapping": res.optimum_mapping.model_dump(mode="json") if res.optimum_mapping else None,
            "same_degrees_s": res.same_degrees_s, "same_degrees_status": res.same_degrees_status,
            "same_degrees_mapping": (res.same_degrees_mapping.model_dump(mode="json")
                                     if res.same_degrees_mapping else None)}


def _print_check(res: CheckResult, mapping_label: str, title: str) -> None:
    """The check table: the mapping and its score, then the space's optimum, bound and gap."""
    t = Table(title=title, show_header=True, min_width=len(title) + 4)
    t.add_column("check")
    t.add_column("value", justify="right")
    t.add_row("mapping", mapping_label)
    t.add_row("  degrees", _mapping_text(res.mapping))
    t.add_row("step time", _num(res.step_time_s, "s"))
    t.add_row("fits", _fits_markup(res.fits))
    t.add_row("peak memory / capacity",
              f"{_gb(res.report.peak_memory_bytes)} / {_gb(res.report.memory_capacity_bytes)}")
    t.add_section()
    t.add_row("status", _status_markup(res.status))
    label = "optimum of" if res.status == "optimal" else "best found in"
    t.add_row(f"{label} space {res.space}", _fmt_opt(res.optimum_s, "s"))
    if res.optimum_mapping is not None:
        t.add_row("  degrees", _mapping_text(res.optimum_mapping))
    t.add_row("bound", _fmt_opt(res.bound_s, "s"))
    gap = res.gap if res.gap is None or abs(res.gap) > 1e-9 else 0.0
    t.add_row("gap to bound", _gap_text(gap))
    t.add_row("possible speedup", "-" if res.speedup_possible is None else f"{res.speedup_possible:.3f}x")
    if res.same_degrees_status is not None:
        same = (_fmt_opt(res.same_degrees_s, "s") if res.same_degrees_s is not None
                else f"[red]{res.same_degrees_status}[/red]: none fits" if res.same_degrees_status == "infeasible"
                else res.same_degrees_status)
        t.add_row("fastest with the same degrees", same)
    t.add_row("solve time", _num(res.solve_time_s, "s"))
    t.add_row("backend", res.backend)
    _console().print(t)
