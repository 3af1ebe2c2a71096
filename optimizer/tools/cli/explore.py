"""`explore`: sweep a hardware template under an area/power budget, solve every design, and show the
Pareto front of throughput, energy per step and area."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich import box
from rich.table import Table

import models

from ...formulation.backends import BACKENDS
from ...search.space import SPACES
from .common import (EXIT_INTERRUPTED, UsageError, _check_choice, _check_count, _check_picture_path,
                     _check_time_limit, _console, _echo_json, _require, _shows_progress, _status_markup,
                     _workload_json, guarded)
from .options import (DEFAULT_BACKEND, DEFAULT_BATCH, DEFAULT_SPACE, BackendOption, BatchOption, JsonOption,
                      ModelOption, SeqOption, SpaceOption)
from .progress import _ExploreBar

if TYPE_CHECKING:
    from ..explore import Budget, Template

# the swept hardware fields, each a comma-separated list
RowsList = Annotated[Optional[str], typer.Option("--rows", help="grid rows to try, e.g. 4,8 (default: the base's)")]
ColsList = Annotated[Optional[str], typer.Option("--cols", help="grid columns to try, e.g. 4,8 (default: the base's)")]
SramBytesList = Annotated[Optional[str], typer.Option(
    "--sram-bytes", help="SRAM per die to try, bytes, e.g. 1.28e8,2.56e8")]
LinkBandwidthList = Annotated[Optional[str], typer.Option(
    "--link-bandwidth", help="die-to-die link bandwidths to try, bytes/s per direction")]
DramBandwidthList = Annotated[Optional[str], typer.Option(
    "--dram-bandwidth", help="DRAM port bandwidths to try, bytes/s (every port)")]
SramAreaOption = Annotated[Optional[float], typer.Option(
    "--sram-mm2-per-gb", help="die area per GB of SRAM, mm² (default: die area fixed; 240 = TSMC N5 estimate)")]
ExecutorOption = Annotated[Optional[str], typer.Option(
    "--executor", help="serial | pool | ray (default: ray with --ray-address, else pool)")]
RayAddressOption = Annotated[Optional[str], typer.Option(
    "--ray-address", help="a Ray cluster's address (runs on Ray)")]

EXPLORE_FLAGS = {"base": "--hw", "rows": "--rows", "cols": "--cols", "sram_bytes": "--sram-bytes",
                 "link_bandwidth": "--link-bandwidth", "dram_bandwidth": "--dram-bandwidth",
                 "sram_mm2_per_gb": "--sram-mm2-per-gb"}


@guarded
def explore(
    model: ModelOption = None,
    hardware: Annotated[Optional[str], typer.Option("--hw", help="base hardware preset or YAML path")] = None,
    batch: BatchOption = DEFAULT_BATCH,
    seq: SeqOption = None,
    rows: RowsList = None,
    cols: ColsList = None,
    sram_bytes: SramBytesList = None,
    link_bandwidth: LinkBandwidthList = None,
    dram_bandwidth: DramBandwidthList = None,
    sram_mm2_per_gb: SramAreaOption = None,
    area_budget: Annotated[Optional[float], typer.Option("--area-budget", help="Σ die area budget, mm²")] = None,
    power_budget: Annotated[Optional[float], typer.Option("--power-budget", help="Σ die power budget, W")] = None,
    space: SpaceOption = DEFAULT_SPACE,
    backend: BackendOption = DEFAULT_BACKEND,
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds for each design's solve")] = 60.0,
    executor: ExecutorOption = None,
    workers: Annotated[int, typer.Option("--workers", help="processes of the pool (or CPUs of a local Ray)")] = 2,
    threads: Annotated[int, typer.Option("--threads", help="solver threads per worker")] = 1,
    ray_address: RayAddressOption = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="write the Pareto front picture to this .png/.svg file")] = None,
    json_out: JsonOption = False,
) -> None:
    """Sweep a hardware template (grid, SRAM, link and DRAM bandwidth) under an area/power budget,
    solve every design, and show the Pareto front of throughput, energy per step and area."""
    from ..explore import explore as explore_designs, pareto

    _require(model, "--model")
    _require(hardware, "--hw", what="the base hardware: a preset name")
    executor = _checked_executor(executor, ray_address)
    _check_choice("--backend", backend, BACKENDS)
    _check_choice("--space", space, SPACES)
    _check_time_limit(time_limit)
    for flag, v in (("--workers", workers), ("--threads", threads), ("--batch", batch), ("--seq", seq)):
        _check_count(flag, v)
    if plot is not None:
        _check_picture_path(plot)
    fields = {"base": hardware, "rows": _number_list(rows, "--rows", True), "cols": _number_list(cols, "--cols", True),
              "sram_bytes": _number_list(sram_bytes, "--sram-bytes"),
              "link_bandwidth": _number_list(link_bandwidth, "--link-bandwidth"),
              "dram_bandwidth": _number_list(dram_bandwidth, "--dram-bandwidth"), "sram_mm2_per_gb": sram_mm2_per_gb}
    template, budget, designs = _designs(fields, area_budget, power_budget)
    work = models.Workload(model=models.load(model), global_batch=batch, seq_len=seq)
    within = sum(ok for *_, ok in designs)
    # the sweep's settings: explore()'s keywords, and fields of --json
    settings = {"space": space, "backend": backend, "executor": executor, "workers": workers,
                "threads_per_worker": threads, "time_limit_s": time_limit}
    try:
        with _ExploreBar(enabled=_shows_progress(json_out), total=within) as bar:
            points = explore_designs(template, work, budget, ray_address=ray_address, progress=bar, **settings)
    except ImportError as err:  # executor "ray" without Ray installed
        raise UsageError(str(err)) from None
    front = pareto(points)
    on_front = {id(p) for p in front}
    written = str(_explore_plot(points, plot)) if plot is not None else None
    base = template.base_hardware()

    if json_out:
        data = {**_workload_json(work, base), **settings, "area_budget_mm2": area_budget,
                "power_budget_w": power_budget, "designs": len(designs), "over_budget": len(designs) - within,
                "points": [{"design": p.label(), **p.model_dump(mode="json"), "pareto": id(p) in on_front}
                           for p in points],
                "pareto": [i for i, p in enumerate(points) if id(p) in on_front]}
        if written:
            data["plot"] = written
        _echo_json(data)
    else:
        _print_points(points, on_front, f"{work.model.name} (batch {work.global_batch}, seq {work.seq_len}) on "
                                        f"{base.name} variants, space {space}")
        typer.echo(_solved_line(len(points), len(designs), within, area_budget, power_budget, settings))
        if front:
            typer.echo("Pareto front (throughput ↑, energy ↓, area ↓): " + "; ".join(p.label() for p in front))
        else:
            typer.echo("Pareto front: empty (no design has a mapping)")
        if written:
            typer.echo(f"picture written: {written}")
    if len(points) < within or any(p.status == "interrupted" for p in points):  # stopped by Ctrl-C
        raise typer.Exit(EXIT_INTERRUPTED)


def _solved_line(solved: int, designs: int, within: int, area_budget: Optional[float],
                 power_budget: Optional[float], settings: dict[str, Any]) -> str:
    """How many designs were solved, how many over the budget were skipped, and how they were run."""
    skipped = designs - within
    budget_text = ", ".join(x for x in (f"area ≤ {area_budget:,.0f} mm²" if area_budget else "",
                                        f"power ≤ {power_budget:,.0f} W" if power_budget else "") if x)
    return (f"{solved} of {designs} designs solved"
            + (f"; {skipped} over the budget ({budget_text}) skipped" if skipped else "")
            + f"; executor {settings['executor']}, {settings['workers']} worker(s), "
              f"{settings['threads_per_worker']} solver thread(s) each")


def _checked_executor(executor: Optional[str], ray_address: Optional[str]) -> str:
    """--executor, by default ray with --ray-address and pool without."""
    from ..explore import EXECUTORS

    if executor is None:
        executor = "ray" if ray_address is not None else "pool"
    _check_choice("--executor", executor, EXECUTORS)
    if ray_address is not None and executor != "ray":
        raise UsageError(f"--ray-address runs on Ray; it cannot be used with --executor {executor}")
    return executor


def _number_list(text: Optional[str], flag: str, integer: bool = False) -> Optional[list]:
    """'4,8' -> [4, 8]; '1.28e8, 2.56e8' -> [128000000.0, 256000000.0]; None stays None."""
    if text is None:
        return None
    items = [x.strip() for x in text.split(",")]
    kind = "whole numbers" if integer else "numbers"
    try:
        values = [int(x) if integer else float(x) for x in items]
    except ValueError:
        raise UsageError(f"{flag}: expected comma-separated {kind} such as "
                         f"{'4,8' if integer else '1.28e8,2.56e8'}, got {text!r}") from None
    return values


def _designs(fields: dict[str, Any], area_budget: Optional[float], power_budget: Optional[float]
             ) -> tuple[Template, Budget, list]:
    """The template of the swept fields, the budget, and every design of the template (variants())."""
    from ..explore import Budget, Template, variants

    try:
        template = Template(**fields)
        budget = Budget(area_mm2=area_budget, power_w=power_budget)
        return template, budget, variants(template, budget)
    except ValueError as err:  # pydantic's and hw's errors name the field: name the flag instead
        from pydantic import ValidationError

        from hw.loader import format_validation_error

        msg = format_validation_error(err, "explore option") if isinstance(err, ValidationError) else str(err)
        raise UsageError(_explore_error(msg)) from None


def _explore_error(msg: str) -> str:
    """A template/budget validation message with the command-line flags named instead of the fields."""
    for field, flag in EXPLORE_FLAGS.items():
        msg = msg.replace(f"{field}: ", f"{flag}: ", 1)
    return msg.replace("area_mm2: ", "--area-budget: ").replace("power_w: ", "--power-budget: ")


def _print_points(points: list, on_front: set[int], title: str) -> None:
    """The table of solved designs, ★ on the Pareto front."""
    # compact enough for an 80-column terminal; --json has every field (bound_s, mfu, the mapping, …)
    t = Table(title=title, show_header=True, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
              collapse_padding=True, show_edge=False,
              caption="★ = on the Pareto front; gap = (step time − proven bound) / bound")
    for col in ("design", "dies", "mm²", "kW", "status", "step s", "tokens/s", "J/step", "gap", "★"):
        t.add_column(col, justify="left" if col in ("design", "status") else "right", no_wrap=True)
    for p in points:
        t.add_row(p.label(), str(p.dies), f"{p.area_mm2:,.0f}", f"{p.power_w / 1e3:,.3g}",
                  _status_markup(p.status), "-" if p.step_time_s is None else f"{p.step_time_s:.4g}",
                  "-" if p.tokens_per_s is None else f"{p.tokens_per_s:,.0f}",
                  "-" if p.energy_j is None else f"{p.energy_j:.4g}",
                  "-" if p.gap is None else f"{100 * p.gap:.2g}%", "★" if id(p) in on_front else "")
    _console().print(t)


def _explore_plot(points: list, plot: Path) -> Path:
    from ..pictures import pareto_picture

    return pareto_picture(points, plot)
