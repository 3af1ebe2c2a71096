"""`compare`: each peer's own heuristic mapping scored by the same cost model and, with --solve, the
optimum of each peer's space (at its heuristic's degrees, and whole) and of the full space."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.table import Table

import hw
import models

from ... import baselines
from ...formulation.backends import BACKENDS
from ...model.evaluate import evaluate as evaluate_mapping
from ...model.mapping import Mapping
from ...search.solve import solve as solve_workload
from ...search.space import SPACES
from .common import (_check_choice, _check_count, _check_time_limit, _console, _echo_json, _fits_markup, _gb,
                     _num, _shows_progress, _si, _workload_json, _workload_title, guarded)
from .options import (DEFAULT_BACKEND, DEFAULT_BATCH, BackendOption, BatchOption, ColsOption, HardwareOption,
                      JsonOption, ModelOption, NodesOption, RowsOption, SeqOption, SramBytesOption, ThreadsOption)
from .plans import _hardware, _hw_overrides
from .progress import _SolveBar
from .reports import report_dict


@guarded
def compare(
    model: ModelOption,
    hardware: HardwareOption,
    batch: BatchOption = DEFAULT_BATCH,
    seq: SeqOption = None,
    nodes: NodesOption = None,
    rows: RowsOption = None,
    cols: ColsOption = None,
    sram_bytes: SramBytesOption = None,
    offload: Annotated[bool, typer.Option(
        "--offload/--no-offload",
        help="let each peer's heuristic keep tensor classes in DRAM when that makes it fit")] = True,
    solve_spaces: Annotated[bool, typer.Option("--solve", help="also solve each peer's space at its heuristic's "
                                               "degrees, each peer's space and the full space")] = False,
    backend: BackendOption = DEFAULT_BACKEND,
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds per solve (with --solve)")] = 30.0,
    threads: ThreadsOption = None,
    json_out: JsonOption = False,
) -> None:
    """The peers side by side: the mapping each one's own heuristic picks (Megatron-LM, DeepSpeed,
    AccPar, Hecaton) scored by the same cost model; with --solve also the best mapping of each peer's
    space at its heuristic's degrees (its inner choices free: can those degrees fit?), of each peer's
    space and of the full space, with status and bound."""
    _check_count("--batch", batch)
    _check_count("--seq", seq)
    _check_choice("--backend", backend, BACKENDS)
    _check_time_limit(time_limit)
    work = models.Workload(model=models.load(model), global_batch=batch, seq_len=seq)
    machine = _hardware(hardware, _hw_overrides(nodes, rows, cols, sram_bytes))
    entries = _heuristic_entries(work, machine, offload)
    if solve_spaces:
        entries += _solved_entries(entries, work, machine, backend, time_limit, threads, json_out)
    fitting = [e["report"].step_time_s for e in entries if e.get("report") is not None and e["report"].fits]
    fastest = min(fitting, default=None)

    if json_out:
        _echo_json({**_workload_json(work, machine), "offload": offload, "fastest_fitting_s": fastest,
                    "rows": [_entry_json(e, fastest) for e in entries]})
        return
    _print_compare(entries, fastest, _workload_title(work, machine))
    for e in entries:
        if e.get("report") is None and e.get("error"):
            typer.echo(f"note: {e['name']}{'' if e['kind'] == 'heuristic' else ' ' + e['kind']}: {e['error']}", err=True)


def _heuristic_entries(work: models.Workload, machine: hw.Hardware, offload: bool) -> list[dict[str, Any]]:
    """Each peer's own heuristic mapping and its report, or the error saying why it has none."""
    entries: list[dict[str, Any]] = []
    for name in baselines.HEURISTICS:
        kw = {"offload": offload and bool(machine.dram_ports)}
        try:
            mp = baselines.heuristic(name, work, machine, **kw)
        except ValueError as err:  # the peer cannot express a mapping for this machine
            entries.append({"name": name, "kind": "heuristic", "error": " ".join(str(err).split())})
            continue
        entries.append({"name": name, "kind": "heuristic", "mapping": mp, "report": evaluate_mapping(mp, work, machine)})
    return entries


def _solved_entries(heuristics: list[dict[str, Any]], work: models.Workload, machine: hw.Hardware, backend: str,
                    time_limit: float, threads: Optional[int], json_out: bool) -> list[dict[str, Any]]:
    """The solves of --solve, with status and bound."""
    from ..check import same_degrees
    from ...search.space import get_space

    # each peer's space at its heuristic's own degrees (inner choices free), then each whole space
    jobs = [(e["name"], "degrees", same_degrees(e["mapping"], get_space(e["name"])))
            for e in heuristics if e.get("mapping") is not None] + [(sp, "space", sp) for sp in SPACES]
    entries = []
    for name, kind, sp in jobs:
        with _SolveBar(enabled=_shows_progress(json_out)) as bar:
            sol = solve_workload(work, machine, space=sp, backend=backend, time_limit_s=time_limit,
                                 threads=threads, progress=bar)
        entries.append({"name": name, "kind": kind, "mapping": sol.mapping, "report": sol.report,
                        "status": sol.status, "bound_s": sol.bound_s, "gap": sol.gap,
                        "error": None if sol.report else sol.explanation})
    return entries


def _entry_json(entry: dict[str, Any], fastest: Optional[float]) -> dict[str, Any]:
    """One row of --json: the entry's fields, its report flat, its mapping and its slowdown."""
    row = {k: v for k, v in entry.items() if k not in ("mapping", "report")}
    if entry.get("report") is not None:
        row.update(report_dict(entry["report"]))
        row["mapping"] = entry["mapping"].model_dump(mode="json")
        row["slowdown_vs_fastest"] = (entry["report"].step_time_s / fastest) if fastest else None
    return row


def _print_compare(entries: list[dict[str, Any]], fastest: Optional[float], title: str) -> None:
    t = Table(title=title, box=box.SIMPLE_HEAD)
    for col, just in (("peer", "left"), ("mapping", "left"), ("step", "right"), ("vs best", "right"),
                      ("energy", "right"), ("peak mem", "right"), ("fits", "left"), ("status", "left")):
        t.add_column(col, justify=just)
    for e in entries:
        label = e["name"] + {"heuristic": "", "space": " space", "degrees": " degrees"}[e["kind"]]
        rep = e.get("report")
        if rep is None:
            t.add_row(label, "-", "-", "-", "-", "-", "-", e.get("status", "error"))
            continue
        ratio = f"{rep.step_time_s / fastest:.2f}x" if fastest else "-"
        t.add_row(label, _compact_mapping(e["mapping"]),
                  _num(rep.step_time_s, "s"), ratio, _si(rep.energy_j, "J"), _gb(rep.peak_memory_bytes),
                  _fits_markup(rep.fits), e.get("status", "fixed"))
    console = _console()
    console.width = max(console.width, 110)  # one line per peer
    console.print(t)


def _compact_mapping(mp: Mapping) -> str:
    """pp, dp, tensor group, micro-batch, ZeRO stage and the classes in DRAM (w g o a) in one short cell."""
    text = f"p{mp.pp} d{mp.dp} t{mp.tp_shape[0]}x{mp.tp_shape[1]} mb{mp.micro_batch} z{mp.zero_stage}"
    if mp.virtual_stages > 1:
        text += f" v{mp.virtual_stages}"
    if mp.offload:
        text += " DRAM:" + "".join(c[0] for c in mp.offload)
    return text
