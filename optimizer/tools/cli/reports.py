"""What `evaluate` and `solve` print and draw: the report and solution tables, a mapping in words,
and the --plot pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

import hw

from ...model.mapping import Mapping, Report
from ...search.solve import Solution
from .common import _check_picture_path, _console, _fits_markup, _fmt_opt, _gap_text, _gb, _num, _si, _status_markup


def report_dict(rep: Report) -> dict[str, Any]:
    """The Report as one flat JSON object: scalar fields at top level plus its dicts."""
    return rep.model_dump(mode="json")


def print_report(rep: Report, title: str = "") -> None:
    t = Table(title=title or "evaluate", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("step time", _num(rep.step_time_s, "s"))
    t.add_row("tokens/s", f"{rep.tokens_per_s:,.0f}")
    t.add_row("MFU", f"{100 * rep.mfu:.1f} %")
    t.add_row("TFLOP/s per device", f"{rep.tflops_per_device:,.1f}")
    t.add_row("energy", _si(rep.energy_j, "J"))
    t.add_row("peak memory / capacity",
              f"{_gb(rep.peak_memory_bytes)} / {_gb(rep.memory_capacity_bytes)}")
    t.add_row("fits", _fits_markup(rep.fits))
    t.add_row("devices", str(rep.devices))
    t.add_section()
    for k, v in rep.memory.items():
        t.add_row(f"memory.{k}", _gb(v))
    t.add_section()
    for k, v in rep.breakdown.items():
        t.add_row(f"breakdown.{k}", _num(v, "s"))
    if rep.energy:
        t.add_section()
        for k, v in rep.energy.items():
            t.add_row(f"energy.{k}", _si(v, "J"))
    _console().print(t)


DIM_NAMES = {  # models/graph.py's loop dimensions
    "b": "batch", "s": "seq", "z": "key seq", "h": "hidden", "k": "contracted hidden", "n": "output hidden",
    "a": "heads", "g": "kv heads", "d": "head dim", "f": "ffn", "v": "vocab",
    "e": "experts", "c": "rows per expert", "r": "shared-expert ffn",  # models/moe.py
}


def _dim(d: str) -> str:
    return f"{d} ({DIM_NAMES[d]})" if d in DIM_NAMES else d


def _split_text(split: tuple[Optional[str], Optional[str]], shape: tuple[int, int]) -> str:
    """One op's split on its r x c tensor group, in words."""
    r, c = shape
    a, b = split
    if r * c == 1 or (a is None and b is None):
        return "replicated"
    if a == b or r == 1 or c == 1:  # one dim over the whole group
        d = a if (a == b or c == 1) else b
        if d is None:
            return "replicated"
        return f"{_dim(d)} over all {r * c} dies"
    return f"rows: {_dim(a) if a else 'replicated'} x cols: {_dim(b) if b else 'replicated'}"


def _schedule_text(mp: Mapping) -> str:
    """1f1b, interleaved v=<chunks> or layerwise k=<micro-batches per group>."""
    if mp.schedule == "interleaved":
        return f"interleaved v={mp.virtual_stages}"
    if mp.schedule == "layerwise":
        return f"layerwise k={mp.layer_group}"
    return mp.schedule


def _mapping_text(mp: Mapping) -> str:
    """A mapping's degrees in one line: pp, dp, tensor group, micro-batch, ZeRO, schedule."""
    sched = _schedule_text(mp)
    return (f"pp {mp.pp}, dp {mp.dp}, tp {mp.tp_shape[0]}x{mp.tp_shape[1]}, micro-batch {mp.micro_batch}, "
            f"ZeRO {mp.zero_stage}, {sched}")


def print_solution(sol: Solution, title: str) -> None:
    """The solve table: status, objective, bound, gap, time, points; degrees; per-op splits."""
    t = Table(title=title, show_header=True, min_width=len(title) + 4)
    t.add_column("solve")
    t.add_column("value", justify="right")
    t.add_row("status", _status_markup(sol.status))
    t.add_row("objective_s", _fmt_opt(sol.objective_s, "s"))
    t.add_row("bound_s", _fmt_opt(sol.bound_s, "s"))
    if sol.objective != "time":  # energy (J) or edp (J·s): the gap is on that objective
        unit = {"energy": "J", "edp": "J·s"}.get(sol.objective, "")
        t.add_row(f"{sol.objective} (objective)", _fmt_opt(sol.objective_value, unit))
        t.add_row(f"{sol.objective} bound", _fmt_opt(sol.bound_value, unit))
    t.add_row("gap", _gap_text(sol.gap))
    t.add_row("solve_time_s", _num(sol.solve_time_s, "s"))
    t.add_row("points solved / total", f"{sol.points_solved} / {sol.points_total}")
    t.add_row("backend / space", f"{sol.backend} / {sol.space}")
    mp = sol.mapping
    if mp is not None:
        t.add_section()
        t.add_row("pp", str(mp.pp))
        t.add_row("dp", str(mp.dp))
        t.add_row("tp_shape", f"{mp.tp_shape[0]}x{mp.tp_shape[1]}")
        t.add_row("micro_batch", str(mp.micro_batch))
        t.add_row("zero_stage", str(mp.zero_stage))
        t.add_row("schedule", _schedule_text(mp))
        if mp.layers_per_stage is not None and mp.pp > 1:
            t.add_row("layers_per_stage", ", ".join(str(x) for x in mp.layers_per_stage))
    con = _console()
    con.print(t)
    if mp is not None and mp.ops:
        o = Table(title=f"per-op split on the {mp.tp_shape[0]}x{mp.tp_shape[1]} tensor group")
        o.add_column("op")
        o.add_column("split")
        o.add_column("recompute")
        for name, ch in mp.ops.items():
            o.add_row(name, _split_text(ch.split, mp.tp_shape), "yes" if ch.recompute else "no")
        con.print(o)


def _plot_paths(plot: Optional[Path]) -> Optional[tuple[Path, Path]]:
    """(grid picture, breakdown picture) for --plot PATH, checked before any work is done."""
    if plot is None:
        return None
    _check_picture_path(plot)
    return plot, plot.with_name(f"{plot.stem}-breakdown{plot.suffix}")


def _write_plots(paths: Optional[tuple[Path, Path]], mapping: Optional[Mapping], machine: hw.Hardware,
                 rep: Optional[Report]) -> list[str]:
    """Write the grid and breakdown pictures of --plot; the paths written (none without a mapping)."""
    if paths is None:
        return []
    if mapping is None or rep is None:
        typer.echo(f"note: no mapping; {paths[0]} not written", err=True)
        return []
    from ..pictures import breakdown_picture, grid_picture

    return [str(grid_picture(mapping, machine, paths[0])), str(breakdown_picture(rep, paths[1]))]


def _say_plots(written: list[str]) -> None:
    if written:
        typer.echo(f"pictures written: {' and '.join(written)}")
