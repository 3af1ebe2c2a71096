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

EXPORT_FORMATS = ("megatron", "deepspeed", "trace")


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
    """Export a plan: Megatron-LM arguments, a DeepSpeed config JSON, or a Chrome/Perfetto trace of one step.

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
    typer.echo(f"{fmt} export written to {out}{tail}")


def _export_text(fmt: str, mapping: Mapping, work: models.Workload, machine: hw.Hardware) -> str:
    """The export in format fmt; Megatron-LM's launch notes and caveats go to stderr."""
    from .. import export as exporters

    if fmt == "megatron":
        import shlex

        text = shlex.join(exporters.megatron_args(mapping, work, machine))
        typer.echo(f"note: launch {mapping.devices} processes; Megatron-LM derives data parallel {mapping.dp} "
                   f"= world size / (tp {mapping.tp} x pp {mapping.pp})", err=True)
        for caveat in exporters.megatron_caveats(mapping, work, machine):
            typer.echo(f"note: {caveat}", err=True)
        return text
    if fmt == "deepspeed":
        return json.dumps(exporters.deepspeed_config(mapping, work, machine), indent=2)
    return json.dumps(exporters.chrome_trace(mapping, work, machine))
