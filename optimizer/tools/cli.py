"""`meshmap` — the command line (typer + rich).

Commands: `presets`, `evaluate`, `solve`, `export`, `check`, `compare`, `explore`, `reproduce`. `evaluate` and `solve`
take `--plot PATH` (.png or .svg): the die-grid picture at PATH and the step-time breakdown next to
it as <stem>-breakdown<suffix>. Every error is one line on stderr (`error: ...`) and
exit code 2, never a traceback. `--json` prints one flat JSON object on stdout.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
import yaml
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

import hw
import models
from models.graph import RECOMPUTE_POLICIES

from .. import baselines
from ..model.evaluate import evaluate as evaluate_mapping
from ..formulation.backends import BACKENDS
from ..model.mapping import Mapping, Report
from ..search.solve import OBJECTIVES, Solution, plain_explanation
from ..search.solve import Progress as SolveProgress
from ..search.solve import solve as solve_workload
from ..search.space import SPACES

EXIT_ERROR = 2


def _click_exception(name: str) -> type:
    """A click exception class as typer raises it (recent typer vendors its own click)."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    raise ImportError(name)


ClickException = _click_exception("ClickException")
ClickUsageError = _click_exception("UsageError")
NoArgsIsHelpError = getattr(sys.modules[ClickUsageError.__module__], "NoArgsIsHelpError", ())


class OneLineErrors(TyperGroup):
    """Click's own usage errors (bad option value, unknown command, …) as one stderr line, exit 2."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as err:  # `meshmap` alone: show the help
            text = err.ctx.get_help() if err.ctx is not None else ""  # typer's rich help prints itself
            if text:
                typer.echo(text, err=True)
            sys.exit(EXIT_ERROR)
        except ClickException as err:
            msg = err.format_message()
            ctx = getattr(err, "ctx", None)
            if isinstance(err, ClickUsageError) and ctx is not None:
                msg += f" (see `{ctx.command_path} --help`)"
            typer.echo("error: " + " ".join(msg.split()), err=True)
            sys.exit(EXIT_ERROR)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(EXIT_ERROR)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="meshmap",
    help="Provably optimal mapping of LLM training onto wafer-scale chips, chiplet packages and GPU clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class UsageError(ValueError):
    """A bad combination of command-line options."""


def fail(message: str) -> None:
    """Print one line `error: ...` to stderr and exit with code 2."""
    line = " ".join(str(message).split()) or "unknown error"
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(EXIT_ERROR)


def guarded(fn: Callable) -> Callable:
    """Run a command body so that any error becomes one stderr line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except (ValueError, OSError, KeyError) as err:  # ConfigError and pydantic errors are ValueErrors
            if isinstance(err, OSError) and err.filename:
                msg = f"{err.strerror or err}: {err.filename}"
            elif isinstance(err, KeyError):
                msg = f"missing key {err}"
            else:
                msg = str(err)
            fail(msg)
        except Exception as err:  # noqa: BLE001 - the CLI contract: never a traceback
            fail(f"{type(err).__name__}: {err}")

    return wrapper


def _console() -> Console:
    return Console()


def _gb(x: float) -> str:
    return f"{x / 1e9:,.2f} GB"


def _bytes(x: float) -> str:
    """Bytes with a decimal prefix: 440 MB, 80 GB, 2.4 PB."""
    for div, unit in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(x) >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.0f} B"


def _si(x: float, unit: str) -> str:
    """A value with an SI prefix: 536.8 kJ, 2.1 MJ."""
    for div, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:,.4g} {prefix}{unit}"
    return _num(x, unit)


def _num(x: float, unit: str = "") -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        s = f"{x:.4g}"
    else:
        s = f"{x:,.4f}".rstrip("0").rstrip(".") if isinstance(x, float) else f"{x:,}"
    return f"{s} {unit}".rstrip()


# ---------------------------------------------------------------------------------------- presets

def _hw_row(name: str) -> dict[str, Any]:
    h = hw.load(name)
    return {
        "name": name,
        "topology": h.topology.kind,
        "grid": f"{h.rows}x{h.cols}",
        "dies": h.num_dies,
        "bf16_tflops_per_die": h.die.peak_flops.get("bf16", max(h.die.peak_flops.values())) / 1e12,
        "memory_bytes_per_die": h.die.memory_bytes,
        "dram_bytes": h.dram_capacity,
        "description": " ".join(h.description.split()),
    }


def _model_row(name: str) -> dict[str, Any]:
    m = models.load(name)
    return {
        "name": name,
        "params": models.parameter_count(m),
        "layers": m.layers,
        "hidden": m.hidden,
        "heads": m.heads,
        "kv_heads": m.n_kv_heads,
        "ffn": m.ffn_size,
        "vocab": m.vocab,
        "seq_len": m.seq_len,
        "activation": m.activation,
    }


@app.command()
@guarded
def presets(
    json_out: bool = typer.Option(False, "--json", help="print one JSON object instead of tables"),
) -> None:
    """List the hardware and model presets."""
    hw_rows = [_hw_row(n) for n in hw.presets()]
    model_rows = [_model_row(n) for n in models.presets()]
    if json_out:
        typer.echo(json.dumps({"hardware": hw_rows, "models": model_rows}, indent=2))
        return
    t = Table(title="hardware presets  (hw.load(name); TFLOP/s: bf16 dense peak)")
    for col, just in (("name", "left"), ("topology", "left"), ("grid", "right"), ("dies", "right"),
                      ("TFLOP/s", "right"), ("memory/die", "right"), ("DRAM", "right")):
        t.add_column(col, justify=just, no_wrap=col == "name")
    for r in hw_rows:
        t.add_row(r["name"], r["topology"], r["grid"], str(r["dies"]), f"{r['bf16_tflops_per_die']:,.1f}",
                  _bytes(r["memory_bytes_per_die"]), _bytes(r["dram_bytes"]) if r["dram_bytes"] else "-")
    m = Table(title="model presets  (models.load(name))")
    for col in ("name", "params", "layers", "hidden", "heads", "kv heads", "seq len"):
        m.add_column(col, justify="left" if col == "name" else "right", no_wrap=col == "name")
    for r in model_rows:
        m.add_row(r["name"], f"{r['params'] / 1e9:,.2f} B", str(r["layers"]), str(r["hidden"]), str(r["heads"]),
                  str(r["kv_heads"]), str(r["seq_len"]))
    con = _console()
    con.print(t)
    con.print(m)


# --------------------------------------------------------------------------------------- evaluate

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
    t.add_row("fits", "[green]yes[/green]" if rep.fits else "[red]no[/red]")
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


def _hw_overrides(nodes: Optional[int] = None, rows: Optional[int] = None, cols: Optional[int] = None,
                  sram_bytes: Optional[float] = None) -> dict[str, Any]:
    """The hardware overrides the user gave (only those), each checked to be > 0."""
    given = {"nodes": nodes, "rows": rows, "cols": cols, "sram_bytes": sram_bytes}
    out: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            continue
        if not (value > 0) or (isinstance(value, float) and not math.isfinite(value)):
            raise UsageError(f"--{key.replace('_', '-')} must be > 0, got {value}")
        out[key] = value
    if "nodes" in out and "rows" in out:
        raise UsageError("give either --nodes or --rows (both set the grid rows), not both")
    return out


def _hardware(name: str, overrides: dict[str, Any]) -> hw.Hardware:
    return hw.load(name, **overrides)


def _read_plan_context(path: Path) -> dict[str, Any]:
    """What a plan file saved by `meshmap solve --out` records besides the mapping (model, hw, batch, …).

    A bare mapping file records nothing: {}. Call after Mapping.load, which reports unreadable files.
    """
    try:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict) or "mapping" not in data or "pp" in data:
        return {}
    return data


PLOT_HELP = ("write the die-grid picture to this .png/.svg file and the step-time breakdown next to it "
             "as <stem>-breakdown<suffix>")


# options shared by several commands (one declaration each)
MODEL_OPT = typer.Option(None, "--model", "-m", help="model preset or YAML/config.json path")
HW_OPT = typer.Option(None, "--hw", help="hardware preset or YAML path")
PLAN_BATCH_OPT = typer.Option(None, "--batch", help="global batch, sequences per step (default: the plan's, else 512)")
PLAN_SEQ_OPT = typer.Option(None, "--seq", help="sequence length (default: the plan's, else the model's)")
BATCH_OPT = typer.Option(512, "--batch", help="global batch, sequences per step")
SEQ_OPT = typer.Option(None, "--seq", help="sequence length (default: the model's)")
NODES_OPT = typer.Option(None, "--nodes", help="nodes of a GPU cluster (grid rows)")
ROWS_OPT = typer.Option(None, "--rows", help="override the grid rows")
COLS_OPT = typer.Option(None, "--cols", help="override the grid columns (GPUs per node of a cluster)")
SRAM_OPT = typer.Option(None, "--sram-bytes", help="override the SRAM per die, bytes")
TP_OPT = typer.Option(None, "--tp", help="tensor-parallel size (default 1)")
PP_OPT = typer.Option(None, "--pp", help="pipeline stages (default 1)")
DP_OPT = typer.Option(None, "--dp", help="data-parallel replicas (default: usable dies / (tp*pp))")
MICRO_BATCH_OPT = typer.Option(None, "--micro-batch", help="sequences per micro-batch (default 1)")
RECOMPUTE_OPT = typer.Option(None, "--recompute", help="none | selective | full (default full)")
SEQUENCE_PARALLEL_OPT = typer.Option(False, "--sequence-parallel", help="Megatron sequence parallelism")
FLASH_OPT = typer.Option(False, "--flash-attention",
                         help="fused FlashAttention kernels: no s x s tensor stored (default: a plan's, else off)")
JSON_OPT = typer.Option(False, "--json", help="print one flat JSON object")
PLOT_OPT = typer.Option(None, "--plot", help=PLOT_HELP)
BACKEND_OPT = typer.Option("cpsat", "--backend", help=f"solver: {' | '.join(BACKENDS)}")
THREADS_OPT = typer.Option(None, "--threads", help="solver threads (default min(8, CPUs))")
PLAN_ARG = typer.Argument(None, help="a mapping (plan) JSON/YAML file; omit to build a Megatron mapping")


def _plot_paths(plot: Optional[Path]) -> Optional[tuple[Path, Path]]:
    """(grid picture, breakdown picture) for --plot PATH, checked before any work is done."""
    if plot is None:
        return None
    from .pictures import SUFFIXES

    if plot.suffix.lower() not in SUFFIXES:
        got = f"'{plot.suffix}'" if plot.suffix else "no suffix"
        raise UsageError(f"--plot: the file name must end in .png or .svg (got {got})")
    if not plot.parent.is_dir():
        raise UsageError(f"--plot: directory {plot.parent} does not exist")
    return plot, plot.with_name(f"{plot.stem}-breakdown{plot.suffix}")


def _write_plots(paths: Optional[tuple[Path, Path]], mapping: Optional[Mapping], machine: hw.Hardware,
                 rep: Optional[Report]) -> list[str]:
    """Write the grid and breakdown pictures of --plot; the paths written (none without a mapping)."""
    if paths is None:
        return []
    if mapping is None or rep is None:
        typer.echo(f"note: no mapping; {paths[0]} not written", err=True)
        return []
    from .pictures import breakdown_picture, grid_picture

    return [str(grid_picture(mapping, machine, paths[0])), str(breakdown_picture(rep, paths[1]))]


def _say_plots(written: list[str]) -> None:
    if written:
        typer.echo(f"pictures written: {' and '.join(written)}")


@app.command()
@guarded
def evaluate(
    plan: Optional[Path] = PLAN_ARG,
    model: Optional[str] = MODEL_OPT,
    hardware: Optional[str] = HW_OPT,
    batch: Optional[int] = PLAN_BATCH_OPT,
    seq: Optional[int] = PLAN_SEQ_OPT,
    nodes: Optional[int] = NODES_OPT,
    rows: Optional[int] = ROWS_OPT,
    cols: Optional[int] = COLS_OPT,
    sram_bytes: Optional[float] = SRAM_OPT,
    tp: Optional[int] = TP_OPT,
    pp: Optional[int] = PP_OPT,
    dp: Optional[int] = DP_OPT,
    micro_batch: Optional[int] = MICRO_BATCH_OPT,
    recompute: Optional[str] = RECOMPUTE_OPT,
    sequence_parallel: bool = SEQUENCE_PARALLEL_OPT,
    flash_attention: bool = FLASH_OPT,
    json_out: bool = JSON_OPT,
    plot: Optional[Path] = PLOT_OPT,
) -> None:
    """Score a mapping: a plan file, or a Megatron-LM configuration built from --tp/--pp/--dp/…

    A plan saved by `meshmap solve --out` records its model, hardware (with overrides), batch and
    sequence length; those are the defaults here, and any option given wins.
    """
    plot_paths = _plot_paths(plot)
    overrides = _hw_overrides(nodes, rows, cols, sram_bytes)
    mapping, work, machine = _mapping_and_workload(plan, model, hardware, batch, seq, overrides, tp, pp, dp,
                                                   micro_batch, recompute, sequence_parallel, flash_attention)
    title = mapping.name or (plan.name if plan is not None else "")
    rep = evaluate_mapping(mapping, work, machine)
    written = _write_plots(plot_paths, mapping, machine, rep)
    if json_out:
        out = {**report_dict(rep), "model": work.model.name, "hw": machine.name,
               "global_batch": work.global_batch, "seq_len": work.seq_len}
        if written:
            out["plots"] = written
        typer.echo(json.dumps(out, indent=2))
    else:
        print_report(rep, title=f"{work.model.name} on {machine.name}: {title}")
        _say_plots(written)


# ------------------------------------------------------------------------------------------ solve

DIM_NAMES = {  # models/graph.py's loop dimensions
    "b": "batch", "s": "seq", "z": "key seq", "h": "hidden", "k": "contracted hidden", "n": "output hidden",
    "a": "heads", "g": "kv heads", "d": "head dim", "f": "ffn", "v": "vocab",
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


def _fmt_opt(x: Optional[float], unit: str = "") -> str:
    return "-" if x is None else _num(x, unit)


def print_solution(sol: Solution, title: str) -> None:
    """The solve table: status, objective, bound, gap, time, points; degrees; per-op splits."""
    t = Table(title=title, show_header=True, min_width=len(title) + 4)
    t.add_column("solve")
    t.add_column("value", justify="right")
    colour = {"optimal": "green", "feasible": "yellow", "timeout": "yellow"}.get(sol.status, "red")
    t.add_row("status", f"[{colour}]{sol.status}[/{colour}]")
    t.add_row("objective_s", _fmt_opt(sol.objective_s, "s"))
    t.add_row("bound_s", _fmt_opt(sol.bound_s, "s"))
    if sol.objective != "time":  # energy (J) or edp (J·s): the gap is on that objective
        unit = {"energy": "J", "edp": "J·s"}.get(sol.objective, "")
        t.add_row(f"{sol.objective} (objective)", _fmt_opt(sol.objective_value, unit))
        t.add_row(f"{sol.objective} bound", _fmt_opt(sol.bound_value, unit))
    t.add_row("gap", "-" if sol.gap is None else f"{100 * sol.gap:.4g} %")
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


class _Bar:
    """A transient rich progress bar on stderr (a no-op when disabled): `verb`, the bar, done/total,
    then `fields_text` with its task fields."""

    verb, fields_text, fields = "", "", {}

    def __init__(self, enabled: bool, total: Optional[int] = None) -> None:
        self.enabled, self.total = enabled, total
        self.progress: Optional[Progress] = None
        self.task: Any = None

    def __enter__(self) -> "_Bar":
        if self.enabled:
            self.progress = Progress(SpinnerColumn(), TextColumn(self.verb), BarColumn(bar_width=16),
                                     MofNCompleteColumn(), TextColumn(self.fields_text), TimeElapsedColumn(),
                                     console=Console(stderr=True), transient=True)
            self.progress.__enter__()
            self.task = self.progress.add_task(self.verb, total=self.total, **self.fields)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


class _SolveBar(_Bar):
    """Fed by solve()'s progress callback: outer points solved, incumbent, bound."""

    verb, fields = "solving", {"incumbent": "-", "bound": "-"}
    fields_text = "points  best {task.fields[incumbent]}  bound {task.fields[bound]}"

    def __call__(self, p: SolveProgress) -> None:
        if self.progress is not None:
            self.progress.update(self.task, total=p.total, completed=p.solved,
                                 incumbent=_fmt_opt(p.incumbent_s, "s"), bound=_fmt_opt(p.bound_s, "s"))


@app.command()
@guarded
def solve(
    model: Optional[str] = MODEL_OPT,
    hardware: Optional[str] = HW_OPT,
    batch: int = BATCH_OPT,
    seq: Optional[int] = SEQ_OPT,
    flash_attention: bool = FLASH_OPT,
    space: str = typer.Option("full", "--space", help=f"strategy space: {' | '.join(SPACES)}"),
    backend: str = BACKEND_OPT,
    objective: str = typer.Option("time", "--objective", help=f"what to minimise: {' | '.join(OBJECTIVES)}"),
    time_limit: float = typer.Option(60.0, "--time-limit", help="seconds for the whole solve"),
    threads: Optional[int] = THREADS_OPT,
    nodes: Optional[int] = NODES_OPT,
    rows: Optional[int] = ROWS_OPT,
    cols: Optional[int] = COLS_OPT,
    sram_bytes: Optional[float] = SRAM_OPT,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="save the plan (mapping, report, …) as JSON"),
    json_out: bool = JSON_OPT,
    plot: Optional[Path] = PLOT_OPT,
) -> None:
    """Find the best mapping with a proven lower bound; an infeasible problem is an answer (exit 0)."""
    if model is None:
        raise UsageError("--model is required (a preset name; see `meshmap presets`)")
    if hardware is None:
        raise UsageError("--hw is required (a preset name; see `meshmap presets`)")
    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if space not in SPACES:
        raise UsageError(f"--space must be one of {', '.join(SPACES)}; got {space!r}")
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if not (time_limit > 0) or not math.isfinite(time_limit):
        raise UsageError(f"--time-limit must be a finite number of seconds > 0, got {time_limit}")
    if threads is not None and threads <= 0:
        raise UsageError(f"--threads must be > 0, got {threads}")
    if batch <= 0:
        raise UsageError(f"--batch must be > 0, got {batch}")
    if seq is not None and seq <= 0:
        raise UsageError(f"--seq must be > 0, got {seq}")
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--out: directory {out.parent} does not exist")
    overrides = _hw_overrides(nodes, rows, cols, sram_bytes)
    plot_paths = _plot_paths(plot)

    work = models.Workload(model=models.load(model), global_batch=batch, seq_len=seq, flash_attention=flash_attention)
    machine = _hardware(hardware, overrides)
    with _SolveBar(enabled=not json_out and sys.stderr.isatty()) as bar:
        sol = solve_workload(work, machine, space=space, backend=backend, objective=objective,
                             time_limit_s=time_limit, threads=threads, progress=bar)

    context = {"model": model, "hw": hardware, "hw_overrides": overrides,
               "global_batch": work.global_batch, "seq_len": work.seq_len, "flash_attention": work.flash_attention}
    summary = {"status": sol.status, "objective_s": sol.objective_s, "bound_s": sol.bound_s, "gap": sol.gap,
               "solve_time_s": sol.solve_time_s, "points_solved": sol.points_solved,
               "points_total": sol.points_total, "backend": sol.backend, "space": sol.space,
               "objective": objective, "objective_value": sol.objective_value, "bound_value": sol.bound_value}
    mapping = sol.mapping.model_dump(mode="json") if sol.mapping is not None else None
    report = report_dict(sol.report) if sol.report is not None else None

    if out is not None:
        if mapping is None:
            typer.echo(f"note: no mapping ({sol.status}); {out} not written", err=True)
        else:
            plan = {"mapping": mapping, "report": report, **summary, **context}
            out.write_text(json.dumps(plan, indent=2) + "\n")

    explanation = plain_explanation(sol.explanation, sol.status) if mapping is None else ""
    written = _write_plots(plot_paths, sol.mapping, machine, sol.report)
    if json_out:
        data = {**(report or {}), **summary, "model": work.model.name, "hw": machine.name,
                "global_batch": work.global_batch, "seq_len": work.seq_len, "mapping": mapping}
        if mapping is None:
            data["explanation"] = explanation
        if written:
            data["plots"] = written
        typer.echo(json.dumps(data, indent=2))
        return
    title = f"{work.model.name} on {machine.name}, batch {work.global_batch}, seq {work.seq_len}"
    if mapping is None:
        line = f"{sol.status}: {explanation or 'no mapping found'}"
        if sol.bound_s is not None:
            line += f" (lower bound {_num(sol.bound_s, 's')})"
        elif sol.bound_value is not None:
            line += f" (lower bound {sol.bound_value:.6g} {'J' if objective == 'energy' else 'J·s'})"
        typer.echo(line)
        return
    print_solution(sol, title=title)
    print_report(sol.report, title=f"{sol.mapping.name or 'solution'} (evaluate)")
    if out is not None:
        typer.echo(f"plan saved to {out}; score it again with `meshmap evaluate {out}`")
    _say_plots(written)


# ----------------------------------------------------------------------------------------- export

EXPORT_FORMATS = ("megatron", "deepspeed", "trace")


def _plan_workload(plan: Path, model: Optional[str], hardware: Optional[str], batch: Optional[int],
                   seq: Optional[int], overrides: dict[str, Any], flash_attention: bool = False
                   ) -> tuple[Mapping, models.Workload, hw.Hardware]:
    """The mapping of a plan file and its workload and hardware: what the plan records, options win."""
    mapping = Mapping.load(plan)
    ctx = _read_plan_context(plan)
    model = model if model is not None else ctx.get("model")
    if hardware is None:
        hardware = ctx.get("hw")
        plan_overrides = ctx.get("hw_overrides") or {}
        if not isinstance(plan_overrides, dict):
            raise UsageError(f"plan file {plan}: hw_overrides must be a mapping, got {plan_overrides!r}")
        if "nodes" in overrides:  # --nodes and --rows both set the grid rows: the option given wins
            plan_overrides = {k: v for k, v in plan_overrides.items() if k != "rows"}
        if "rows" in overrides:
            plan_overrides = {k: v for k, v in plan_overrides.items() if k != "nodes"}
        overrides = {**plan_overrides, **overrides}
    hint = " or a plan file saved by `meshmap solve --out`"
    if model is None:
        raise UsageError(f"--model is required (a preset name; see `meshmap presets`){hint}")
    if hardware is None:
        raise UsageError(f"--hw is required (a preset name; see `meshmap presets`){hint}")
    batch = batch if batch is not None else ctx.get("global_batch", 512)
    seq = seq if seq is not None else ctx.get("seq_len")
    if not isinstance(batch, int) or batch <= 0:
        raise UsageError(f"--batch must be > 0, got {batch}")
    if seq is not None and (not isinstance(seq, int) or seq <= 0):
        raise UsageError(f"--seq must be > 0, got {seq}")
    flash = flash_attention or ctx.get("flash_attention", False)
    if not isinstance(flash, bool):
        raise UsageError(f"plan file {plan}: flash_attention must be true or false, got {flash!r}")
    work = models.Workload(model=models.load(str(model)), global_batch=batch, seq_len=seq, flash_attention=flash)
    return mapping, work, _hardware(str(hardware), overrides)


def _mapping_and_workload(plan: Optional[Path], model: Optional[str], hardware: Optional[str],
                          batch: Optional[int], seq: Optional[int], overrides: dict[str, Any],
                          tp: Optional[int], pp: Optional[int], dp: Optional[int], micro_batch: Optional[int],
                          recompute: Optional[str], sequence_parallel: bool, flash_attention: bool = False
                          ) -> tuple[Mapping, models.Workload, hw.Hardware]:
    """The mapping to score — a plan file, or Megatron-LM's built from --tp/--pp/--dp/… — with its
    workload and hardware (`evaluate` and `check`)."""
    if recompute is not None and recompute not in RECOMPUTE_POLICIES:
        raise UsageError(f"--recompute must be one of {', '.join(RECOMPUTE_POLICIES)}; got {recompute!r}")
    megatron_flags = {"--tp": tp, "--pp": pp, "--dp": dp, "--micro-batch": micro_batch, "--recompute": recompute}
    given = [k for k, v in megatron_flags.items() if v is not None] + (["--sequence-parallel"] if sequence_parallel else [])
    if plan is not None and given:
        raise UsageError(f"give either a plan file or {', '.join(given)}, not both")
    if plan is not None:
        return _plan_workload(plan, model, hardware, batch, seq, overrides, flash_attention)
    if model is None:
        raise UsageError("--model is required (a preset name; see `meshmap presets`) or a plan file")
    if hardware is None:
        raise UsageError("--hw is required (a preset name; see `meshmap presets`) or a plan file")
    batch = batch if batch is not None else 512
    if batch <= 0:
        raise UsageError(f"--batch must be > 0, got {batch}")
    if seq is not None and seq <= 0:
        raise UsageError(f"--seq must be > 0, got {seq}")
    for flag, v in (("--tp", tp), ("--pp", pp), ("--dp", dp), ("--micro-batch", micro_batch)):
        if v is not None and v <= 0:
            raise UsageError(f"{flag} must be > 0, got {v}")
    work = models.Workload(model=models.load(model), global_batch=batch, seq_len=seq, flash_attention=flash_attention)
    machine = _hardware(hardware, overrides)
    tp_, pp_ = tp or 1, pp or 1
    dp_ = dp if dp is not None else machine.num_dies // (tp_ * pp_)
    if dp_ <= 0:
        raise UsageError(f"tp x pp = {tp_ * pp_} exceeds the {machine.num_dies} usable dies of {machine.name}")
    mapping = baselines.megatron(work, machine, tp=tp_, pp=pp_, dp=dp_, micro_batch=micro_batch or 1,
                                 recompute=recompute or "full", sequence_parallel=sequence_parallel)
    return mapping, work, machine


@app.command()
@guarded
def export(
    plan: Path = typer.Argument(..., help="a mapping (plan) JSON/YAML file, e.g. saved by `meshmap solve --out`"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=f"{' | '.join(EXPORT_FORMATS)}"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write to this file instead of stdout"),
    model: Optional[str] = MODEL_OPT,
    hardware: Optional[str] = HW_OPT,
    batch: Optional[int] = PLAN_BATCH_OPT,
    seq: Optional[int] = PLAN_SEQ_OPT,
    nodes: Optional[int] = NODES_OPT,
    rows: Optional[int] = ROWS_OPT,
    cols: Optional[int] = COLS_OPT,
    sram_bytes: Optional[float] = SRAM_OPT,
) -> None:
    """Export a plan: Megatron-LM arguments, a DeepSpeed config JSON, or a Chrome/Perfetto trace of one step.

    A plan saved by `meshmap solve --out` records its model, hardware, batch and sequence length;
    a mapping Megatron-LM or DeepSpeed cannot express is an error naming the op or field.
    """
    from . import export as exporters

    if fmt is None:
        raise UsageError(f"--format is required: {' | '.join(EXPORT_FORMATS)}")
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}")
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--out: directory {out.parent} does not exist")
    mapping, work, machine = _plan_workload(plan, model, hardware, batch, seq,
                                            _hw_overrides(nodes, rows, cols, sram_bytes))
    if fmt == "megatron":
        import shlex

        text = shlex.join(exporters.megatron_args(mapping, work, machine))
        typer.echo(f"note: launch {mapping.devices} processes; Megatron-LM derives data parallel {mapping.dp} "
                   f"= world size / (tp {mapping.tp} x pp {mapping.pp})", err=True)
        for caveat in exporters.megatron_caveats(mapping, work, machine):
            typer.echo(f"note: {caveat}", err=True)
    elif fmt == "deepspeed":
        text = json.dumps(exporters.deepspeed_config(mapping, work, machine), indent=2)
    else:
        text = json.dumps(exporters.chrome_trace(mapping, work, machine))
    if out is None:
        typer.echo(text)
        return
    out.write_text(text + "\n")
    tail = "; open it in https://ui.perfetto.dev" if fmt == "trace" else ""
    typer.echo(f"{fmt} export written to {out}{tail}")


# ------------------------------------------------------------------------------------------ check

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


@app.command()
@guarded
def check(
    plan: Optional[Path] = PLAN_ARG,
    model: Optional[str] = MODEL_OPT,
    hardware: Optional[str] = HW_OPT,
    batch: Optional[int] = PLAN_BATCH_OPT,
    seq: Optional[int] = PLAN_SEQ_OPT,
    nodes: Optional[int] = NODES_OPT,
    rows: Optional[int] = ROWS_OPT,
    cols: Optional[int] = COLS_OPT,
    sram_bytes: Optional[float] = SRAM_OPT,
    tp: Optional[int] = TP_OPT,
    pp: Optional[int] = PP_OPT,
    dp: Optional[int] = DP_OPT,
    micro_batch: Optional[int] = MICRO_BATCH_OPT,
    recompute: Optional[str] = RECOMPUTE_OPT,
    sequence_parallel: bool = SEQUENCE_PARALLEL_OPT,
    flash_attention: bool = FLASH_OPT,
    space: str = typer.Option("full", "--space", help=f"strategy space to compare with: {' | '.join(SPACES)}"),
    backend: str = BACKEND_OPT,
    time_limit: float = typer.Option(60.0, "--time-limit", help="seconds for the solve"),
    threads: Optional[int] = THREADS_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """How far a mapping is from optimal: its step time, the space's optimum, the proven bound, the gap.

    The mapping is a plan file (one saved by `meshmap solve --out` records its model, hardware,
    batch and sequence length) or a Megatron-LM configuration built from --tp/--pp/--dp/…
    """
    from .check import check as check_mapping

    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if space not in SPACES:
        raise UsageError(f"--space must be one of {', '.join(SPACES)}; got {space!r}")
    if not (time_limit > 0) or not math.isfinite(time_limit):
        raise UsageError(f"--time-limit must be a finite number of seconds > 0, got {time_limit}")
    if threads is not None and threads <= 0:
        raise UsageError(f"--threads must be > 0, got {threads}")
    overrides = _hw_overrides(nodes, rows, cols, sram_bytes)
    mapping, work, machine = _mapping_and_workload(plan, model, hardware, batch, seq, overrides, tp, pp, dp,
                                                   micro_batch, recompute, sequence_parallel, flash_attention)

    with _SolveBar(enabled=not json_out and sys.stderr.isatty()) as bar:
        res = check_mapping(mapping, work, machine, space=space, backend=backend, time_limit_s=time_limit,
                            threads=threads, progress=bar)

    if json_out:
        data = {**report_dict(res.report), "optimum_s": res.optimum_s, "bound_s": res.bound_s, "gap": res.gap,
                "speedup_possible": res.speedup_possible, "status": res.status, "fits": res.fits,
                "space": res.space, "backend": res.backend, "solve_time_s": res.solve_time_s,
                "notes": list(res.notes), "model": work.model.name, "hw": machine.name,
                "global_batch": work.global_batch, "seq_len": work.seq_len,
                "mapping": res.mapping.model_dump(mode="json"),
                "optimum_mapping": res.optimum_mapping.model_dump(mode="json") if res.optimum_mapping else None,
                "same_degrees_s": res.same_degrees_s, "same_degrees_status": res.same_degrees_status,
                "same_degrees_mapping": (res.same_degrees_mapping.model_dump(mode="json")
                                         if res.same_degrees_mapping else None)}
        typer.echo(json.dumps(data, indent=2))
        return

    title = f"{work.model.name} on {machine.name}, batch {work.global_batch}, seq {work.seq_len}"
    t = Table(title=title, show_header=True, min_width=len(title) + 4)
    t.add_column("check")
    t.add_column("value", justify="right")
    t.add_row("mapping", res.mapping.name or (plan.name if plan is not None else "given"))
    t.add_row("  degrees", _mapping_text(res.mapping))
    t.add_row("step time", _num(res.step_time_s, "s"))
    t.add_row("fits", "[green]yes[/green]" if res.fits else "[red]no[/red]")
    t.add_row("peak memory / capacity",
              f"{_gb(res.report.peak_memory_bytes)} / {_gb(res.report.memory_capacity_bytes)}")
    t.add_section()
    colour = {"optimal": "green", "feasible": "yellow", "timeout": "yellow"}.get(res.status, "red")
    t.add_row("status", f"[{colour}]{res.status}[/{colour}]")
    label = "optimum of" if res.status == "optimal" else "best found in"
    t.add_row(f"{label} space {res.space}", _fmt_opt(res.optimum_s, "s"))
    if res.optimum_mapping is not None:
        t.add_row("  degrees", _mapping_text(res.optimum_mapping))
    t.add_row("bound", _fmt_opt(res.bound_s, "s"))
    gap = res.gap if res.gap is None or abs(res.gap) > 1e-9 else 0.0
    t.add_row("gap to bound", "-" if gap is None else f"{100 * gap:.4g} %")
    t.add_row("possible speedup", "-" if res.speedup_possible is None else f"{res.speedup_possible:.3f}x")
    if res.same_degrees_status is not None:
        same = (_fmt_opt(res.same_degrees_s, "s") if res.same_degrees_s is not None
                else f"[red]{res.same_degrees_status}[/red]: none fits" if res.same_degrees_status == "infeasible"
                else res.same_degrees_status)
        t.add_row("fastest with the same degrees", same)
    t.add_row("solve time", _num(res.solve_time_s, "s"))
    t.add_row("backend", res.backend)
    _console().print(t)
    for note in res.notes:
        typer.echo(f"note: {note}", err=True)


# ---------------------------------------------------------------------------------------- explore

EXPLORE_FLAGS = {"base": "--hw", "rows": "--rows", "cols": "--cols", "sram_bytes": "--sram-bytes",
                 "link_bandwidth": "--link-bandwidth", "dram_bandwidth": "--dram-bandwidth",
                 "sram_mm2_per_gb": "--sram-mm2-per-gb"}


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


def _explore_error(msg: str) -> str:
    """A template/budget validation message with the command-line flags named instead of the fields."""
    for field, flag in EXPLORE_FLAGS.items():
        msg = msg.replace(f"{field}: ", f"{flag}: ", 1)
    return msg.replace("area_mm2: ", "--area-budget: ").replace("power_w: ", "--power-budget: ")


class _ExploreBar(_Bar):
    """Fed by explore()'s progress callback: designs solved and the last one's outcome."""

    verb, fields, fields_text = "exploring", {"last": "-"}, "designs  last {task.fields[last]}"

    def __call__(self, done: int, total: int, point: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total, last=f"{point.label()}: {point.status}")


@app.command()
@guarded
def explore(
    model: Optional[str] = MODEL_OPT,
    hardware: Optional[str] = typer.Option(None, "--hw", help="base hardware preset or YAML path"),
    batch: int = BATCH_OPT,
    seq: Optional[int] = SEQ_OPT,
    rows: Optional[str] = typer.Option(None, "--rows", help="grid rows to try, e.g. 4,8 (default: the base's)"),
    cols: Optional[str] = typer.Option(None, "--cols", help="grid columns to try, e.g. 4,8 (default: the base's)"),
    sram_bytes: Optional[str] = typer.Option(None, "--sram-bytes", help="SRAM per die to try, bytes, e.g. 1.28e8,2.56e8"),
    link_bandwidth: Optional[str] = typer.Option(None, "--link-bandwidth",
                                                 help="die-to-die link bandwidths to try, bytes/s per direction"),
    dram_bandwidth: Optional[str] = typer.Option(None, "--dram-bandwidth",
                                                 help="DRAM port bandwidths to try, bytes/s (every port)"),
    sram_mm2_per_gb: Optional[float] = typer.Option(
        None, "--sram-mm2-per-gb", help="die area per GB of SRAM, mm² (default: die area fixed; 240 = TSMC N5 estimate)"),
    area_budget: Optional[float] = typer.Option(None, "--area-budget", help="Σ die area budget, mm²"),
    power_budget: Optional[float] = typer.Option(None, "--power-budget", help="Σ die power budget, W"),
    space: str = typer.Option("full", "--space", help=f"strategy space: {' | '.join(SPACES)}"),
    backend: str = BACKEND_OPT,
    time_limit: float = typer.Option(60.0, "--time-limit", help="seconds for each design's solve"),
    executor: Optional[str] = typer.Option(None, "--executor",
                                           help="serial | pool | ray (default: ray with --ray-address, else pool)"),
    workers: int = typer.Option(2, "--workers", help="processes of the pool (or CPUs of a local Ray)"),
    threads: int = typer.Option(1, "--threads", help="solver threads per worker"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="a Ray cluster's address (runs on Ray)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="write the Pareto front picture to this .png/.svg file"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Sweep a hardware template (grid, SRAM, link and DRAM bandwidth) under an area/power budget,
    solve every design, and show the Pareto front of throughput, energy per step and area."""
    from .explore import EXECUTORS, Budget, Template, explore as explore_designs, pareto, variants

    if model is None:
        raise UsageError("--model is required (a preset name; see `meshmap presets`)")
    if hardware is None:
        raise UsageError("--hw is required (the base hardware: a preset name; see `meshmap presets`)")
    if executor is None:
        executor = "ray" if ray_address is not None else "pool"
    if executor not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if ray_address is not None and executor != "ray":
        raise UsageError(f"--ray-address runs on Ray; it cannot be used with --executor {executor}")
    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if space not in SPACES:
        raise UsageError(f"--space must be one of {', '.join(SPACES)}; got {space!r}")
    if not (time_limit > 0) or not math.isfinite(time_limit):
        raise UsageError(f"--time-limit must be a finite number of seconds > 0, got {time_limit}")
    for flag, v in (("--workers", workers), ("--threads", threads), ("--batch", batch)):
        if v <= 0:
            raise UsageError(f"{flag} must be > 0, got {v}")
    if seq is not None and seq <= 0:
        raise UsageError(f"--seq must be > 0, got {seq}")
    if plot is not None:
        from .pictures import SUFFIXES

        if plot.suffix.lower() not in SUFFIXES:
            raise UsageError(f"--plot: the file name must end in .png or .svg (got {plot.suffix or 'no suffix'!r})")
        if not plot.parent.is_dir():
            raise UsageError(f"--plot: directory {plot.parent} does not exist")
    fields = {"base": hardware, "rows": _number_list(rows, "--rows", True), "cols": _number_list(cols, "--cols", True),
              "sram_bytes": _number_list(sram_bytes, "--sram-bytes"),
              "link_bandwidth": _number_list(link_bandwidth, "--link-bandwidth"),
              "dram_bandwidth": _number_list(dram_bandwidth, "--dram-bandwidth"), "sram_mm2_per_gb": sram_mm2_per_gb}
    try:
        template = Template(**fields)
        budget = Budget(area_mm2=area_budget, power_w=power_budget)
        designs = variants(template, budget)
    except ValueError as err:  # pydantic's and hw's errors name the field: name the flag instead
        from pydantic import ValidationError

        from hw.loader import format_validation_error

        msg = format_validation_error(err, "explore option") if isinstance(err, ValidationError) else str(err)
        raise UsageError(_explore_error(msg)) from None
    work = models.Workload(model=models.load(model), global_batch=batch, seq_len=seq)
    within = sum(ok for *_, ok in designs)
    try:
        with _ExploreBar(enabled=not json_out and sys.stderr.isatty(), total=within) as bar:
            points = explore_designs(template, work, budget, executor=executor, workers=workers,
                                     ray_address=ray_address, time_limit_s=time_limit, space=space,
                                     threads_per_worker=threads, backend=backend, progress=bar)
    except ImportError as err:  # executor "ray" without Ray installed
        raise UsageError(str(err)) from None
    front = pareto(points)
    on_front = {id(p) for p in front}
    written = str(_explore_plot(points, plot)) if plot is not None else None

    if json_out:
        data = {"model": work.model.name, "hw": template.base_hardware().name, "global_batch": work.global_batch,
                "seq_len": work.seq_len, "space": space, "backend": backend, "executor": executor,
                "workers": workers, "threads_per_worker": threads, "time_limit_s": time_limit,
                "area_budget_mm2": area_budget, "power_budget_w": power_budget, "designs": len(designs),
                "over_budget": len(designs) - within,
                "points": [{"design": p.label(), **p.model_dump(mode="json"), "pareto": id(p) in on_front}
                           for p in points],
                "pareto": [i for i, p in enumerate(points) if id(p) in on_front]}
        if written:
            data["plot"] = written
        typer.echo(json.dumps(data, indent=2))
        return

    base = template.base_hardware()
    title = (f"{work.model.name} (batch {work.global_batch}, seq {work.seq_len}) on {base.name} variants, "
             f"space {space}")
    # compact enough for an 80-column terminal; --json has every field (bound_s, mfu, the mapping, …)
    t = Table(title=title, show_header=True, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
              collapse_padding=True, show_edge=False,
              caption="★ = on the Pareto front; gap = (step time − proven bound) / bound")
    for col in ("design", "dies", "mm²", "kW", "status", "step s", "tokens/s", "J/step", "gap", "★"):
        t.add_column(col, justify="left" if col in ("design", "status") else "right", no_wrap=True)
    for p in points:
        colour = {"optimal": "green", "feasible": "yellow", "timeout": "yellow"}.get(p.status, "red")
        t.add_row(p.label(), str(p.dies), f"{p.area_mm2:,.0f}", f"{p.power_w / 1e3:,.3g}",
                  f"[{colour}]{p.status}[/{colour}]", "-" if p.step_time_s is None else f"{p.step_time_s:.4g}",
                  "-" if p.tokens_per_s is None else f"{p.tokens_per_s:,.0f}",
                  "-" if p.energy_j is None else f"{p.energy_j:.4g}",
                  "-" if p.gap is None else f"{100 * p.gap:.2g}%", "★" if id(p) in on_front else "")
    con = _console()
    con.print(t)
    skipped = len(designs) - within
    budget_text = ", ".join(x for x in (f"area ≤ {area_budget:,.0f} mm²" if area_budget else "",
                                        f"power ≤ {power_budget:,.0f} W" if power_budget else "") if x)
    typer.echo(f"{len(points)} of {len(designs)} designs solved"
               + (f"; {skipped} over the budget ({budget_text}) skipped" if skipped else "")
               + f"; executor {executor}, {workers} worker(s), {threads} solver thread(s) each")
    if front:
        typer.echo("Pareto front (throughput ↑, energy ↓, area ↓): " + "; ".join(p.label() for p in front))
    else:
        typer.echo("Pareto front: empty (no design has a mapping)")
    if written:
        typer.echo(f"picture written: {written}")


def _explore_plot(points: list, plot: Path) -> Path:
    from .pictures import pareto_picture

    return pareto_picture(points, plot)


# ---------------------------------------------------------------------------------------- compare

@app.command()
@guarded
def compare(
    model: str = typer.Option(..., "--model", "-m", help="model preset or YAML/config.json path"),
    hardware: str = typer.Option(..., "--hw", help="hardware preset or YAML path"),
    batch: int = BATCH_OPT,
    seq: Optional[int] = SEQ_OPT,
    nodes: Optional[int] = NODES_OPT,
    rows: Optional[int] = ROWS_OPT,
    cols: Optional[int] = COLS_OPT,
    sram_bytes: Optional[float] = SRAM_OPT,
    offload: bool = typer.Option(True, "--offload/--no-offload",
                                 help="let each peer's heuristic keep tensor classes in DRAM when that makes it fit"),
    solve_spaces: bool = typer.Option(False, "--solve", help="also solve each peer's space at its heuristic's "
                                      "degrees, each peer's space and the full space"),
    backend: str = BACKEND_OPT,
    time_limit: float = typer.Option(30.0, "--time-limit", help="seconds per solve (with --solve)"),
    threads: Optional[int] = THREADS_OPT,
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """The peers side by side: the mapping each one's own heuristic picks (Megatron-LM, DeepSpeed,
    AccPar, Hecaton) scored by the same cost model; with --solve also the best mapping of each peer's
    space at its heuristic's degrees (its inner choices free: can those degrees fit?), of each peer's
    space and of the full space, with status and bound."""
    from .check import same_degrees
    from ..search.space import get_space

    if batch <= 0:
        raise UsageError(f"--batch must be > 0, got {batch}")
    if seq is not None and seq <= 0:
        raise UsageError(f"--seq must be > 0, got {seq}")
    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if not (time_limit > 0) or not math.isfinite(time_limit):
        raise UsageError(f"--time-limit must be a finite number of seconds > 0, got {time_limit}")
    work = models.Workload(model=models.load(model), global_batch=batch, seq_len=seq)
    machine = _hardware(hardware, _hw_overrides(nodes, rows, cols, sram_bytes))
    entries: list[dict[str, Any]] = []
    for name in baselines.HEURISTICS:
        kw = {"offload": offload and bool(machine.dram_ports)}
        try:
            mp = baselines.heuristic(name, work, machine, **kw)
        except ValueError as err:  # the peer cannot express a mapping for this machine
            entries.append({"name": name, "kind": "heuristic", "error": " ".join(str(err).split())})
            continue
        entries.append({"name": name, "kind": "heuristic", "mapping": mp, "report": evaluate_mapping(mp, work, machine)})
    if solve_spaces:
        # each peer's space at its heuristic's own degrees (inner choices free), then each whole space
        jobs = [(e["name"], "degrees", same_degrees(e["mapping"], get_space(e["name"])))
                for e in entries if e.get("mapping") is not None] + [(sp, "space", sp) for sp in SPACES]
        for name, kind, sp in jobs:
            with _SolveBar(enabled=not json_out and sys.stderr.isatty()) as bar:
                sol = solve_workload(work, machine, space=sp, backend=backend, time_limit_s=time_limit,
                                     threads=threads, progress=bar)
            entries.append({"name": name, "kind": kind, "mapping": sol.mapping, "report": sol.report,
                            "status": sol.status, "bound_s": sol.bound_s, "gap": sol.gap,
                            "error": None if sol.report else sol.explanation})
    fitting = [e["report"].step_time_s for e in entries if e.get("report") is not None and e["report"].fits]
    fastest = min(fitting, default=None)

    if json_out:
        rows_out = []
        for e in entries:
            row = {k: v for k, v in e.items() if k not in ("mapping", "report")}
            if e.get("report") is not None:
                row.update(report_dict(e["report"]))
                row["mapping"] = e["mapping"].model_dump(mode="json")
                row["slowdown_vs_fastest"] = (e["report"].step_time_s / fastest) if fastest else None
            rows_out.append(row)
        typer.echo(json.dumps({"model": work.model.name, "hw": machine.name, "global_batch": work.global_batch,
                               "seq_len": work.seq_len, "offload": offload, "fastest_fitting_s": fastest,
                               "rows": rows_out}, indent=2))
        return

    title = f"{work.model.name} on {machine.name}, batch {work.global_batch}, seq {work.seq_len}"
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
                  "[green]yes[/green]" if rep.fits else "[red]no[/red]", e.get("status", "fixed"))
    console = _console()
    console.width = max(console.width, 110)  # one line per peer
    console.print(t)
    for e in entries:
        if e.get("report") is None and e.get("error"):
            typer.echo(f"note: {e['name']}{'' if e['kind'] == 'heuristic' else ' ' + e['kind']}: {e['error']}", err=True)


def _compact_mapping(mp: Mapping) -> str:
    """pp, dp, tensor group, micro-batch, ZeRO stage and the classes in DRAM (w g o a) in one short cell."""
    text = f"p{mp.pp} d{mp.dp} t{mp.tp_shape[0]}x{mp.tp_shape[1]} mb{mp.micro_batch} z{mp.zero_stage}"
    if mp.virtual_stages > 1:
        text += f" v{mp.virtual_stages}"
    if mp.offload:
        text += " DRAM:" + "".join(c[0] for c in mp.offload)
    return text


# -------------------------------------------------------------------------------------- reproduce

REPRODUCTIONS = {"megatron_table1": "megatron_table1.py", "validation": "validate.py", "weak_scaling": "weak_scaling.py",
                 "t3": "reproduce_t3.py", "tmac": "reproduce_tmac.py", "hecaton": "reproduce_hecaton.py",
                 "solver_speed": "solver_speed.py", "solver_matrix": "solver_matrix.py", "explore": "explore_speed.py", "all": "reproduce_all.py"}


def _benchmarks_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "benchmarks"


@app.command()
@guarded
def reproduce(
    name: str = typer.Argument("all", help=f"which: {' | '.join(REPRODUCTIONS)}"),
    list_only: bool = typer.Option(False, "--list", help="list the reproductions and exit"),
) -> None:
    """Rerun a reproduction benchmark; it prints paper figures beside ours and writes
    benchmarks/results/<name>.json (and its figure). Needs the source checkout (benchmarks/)."""
    import subprocess

    if list_only:
        for key, script in REPRODUCTIONS.items():
            typer.echo(f"{key:16s} benchmarks/{script}")
        return
    if name not in REPRODUCTIONS:
        raise UsageError(f"unknown reproduction {name!r}; allowed: {', '.join(REPRODUCTIONS)}")
    script = _benchmarks_dir() / REPRODUCTIONS[name]
    if not script.exists():
        raise UsageError(f"benchmarks/{REPRODUCTIONS[name]} not found: `meshmap reproduce` runs from a source "
                         f"checkout of meshmap installed with pip install -e")
    code = subprocess.call([sys.executable, str(script)], cwd=script.parent.parent)
    if code:
        fail(f"benchmarks/{REPRODUCTIONS[name]} exited with code {code}")


def main() -> None:  # pragma: no cover - `python -m optimizer.tools.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
