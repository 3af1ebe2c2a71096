"""`export`: a plan as Megatron-LM arguments, a DeepSpeed config or a Chrome/Perfetto trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

import hw
import models

from ...model.mapping import Mapping
from .common import UsageError, _check_choice, _check_directory, guarded
from .options import (ColsOption, HardwareOption, ModelOption, NodesOption, PlanBatchOption, PlanSeqOption,
                      RowsOption, SramBytesOption)
from .plans import _hw_overrides, _plan_workload

EXPORT_FORMATS = ("megatron", "launch", "deepspeed", "trace")


@guarded
def export(
    plan: Annotated[Path, typer.Argument(
        help="a mapping (plan) JSON/YAML file, e.g. saved by `meshmap solve --out`")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help=f"{' | '.join(EXPORT_FORMATS)}")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write to this file instead of stdout")] = None,
    model: ModelOption = None,
    hardware: HardwareOption = None,
    batch: PlanBatchOption = None,
    seq: PlanSeqOption = None,
    nodes: NodesOption = None,
    rows: RowsOption = None,
    cols: ColsOption = None,
    sram_bytes: SramBytesOption = None,
) -> None:
    """Export a plan: Megatron-LM arguments (with --out, its torchrun launch script beside them), the
    launch script alone, a DeepSpeed config JSON, or a Chrome/Perfetto trace of one step.

    A plan saved by `meshmap solve --out` records its model, hardware, batch and sequence length;
    a mapping Megatron-LM or DeepSpeed cannot express is an error naming the op or field.
    """
    if fmt is None:
        raise UsageError(f"--format is required: {' | '.join(EXPORT_FORMATS)}")
    _check_choice("--format", fmt, EXPORT_FORMATS)
    if out is not None:
        _check_directory("--out", out)
    mapping, work, machine = _plan_workload(plan, model, hardware, batch, seq,
                                            _hw_overrides(nodes, rows, cols, sram_bytes))
    text = _export_text(fmt, mapping, work, machine)
    if out is None:
        typer.echo(text)
        return
    out.write_text(text + "\n")
    tail = "; open it in https://ui.perfetto.dev" if fmt == "trace" else ""
    if fmt == "megatron":
        script = launch_path(out)
        _write_script(script, _exporters().launch_script(mapping, work, machine))
        tail = f"; its launch script: {script}"
    elif fmt == "launch":
        out.chmod(0o755)
    typer.echo(f"{fmt} export written to {out}{tail}")


def launch_path(flags: Path) -> Path:
    """Where `export --format megatron --out FLAGS` writes the launch script: beside FLAGS, named
    after it (args.txt -> args_launch.sh)."""
    return flags.with_name(f"{flags.stem}_launch.sh")


def _write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _exporters():
    from .. import export

    return export


def _export_text(fmt: str, mapping: Mapping, work: models.Workload, machine: hw.Hardware) -> str:
    """The export in format fmt; launch notes and caveats go to stderr."""
    ex = _exporters()
    if fmt in ("megatron", "launch"):
        import shlex

        text = shlex.join(ex.megatron_args(mapping, work, machine))
        if fmt == "launch":
            text = ex.launch_script(mapping, work, machine).rstrip("\n")
        how = " (--format launch writes the torchrun script)" if fmt == "megatron" else ""
        typer.echo(f"note: launch {mapping.devices} processes{how}; Megatron-LM derives data parallel {mapping.dp} "
                   f"= world size / (tp {mapping.tp} x pp {mapping.pp})", err=True)
        for caveat in ex.megatron_caveats(mapping, work, machine):
            typer.echo(f"note: {caveat}", err=True)
        return text
    if fmt == "deepspeed":
        text = json.dumps(ex.deepspeed_config(mapping, work, machine), indent=2)
        for note in ex.deepspeed_notes(mapping, work, machine):
            typer.echo(f"note: {note}", err=True)
        return text
    return json.dumps(ex.chrome_trace(mapping, work, machine))
