"""Command-line options as `Annotated` types, the default given in each command's signature."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ...formulation.backends import BACKENDS
from ...search.space import SPACES

DEFAULT_BATCH = 512  # global batch, sequences per step, when neither --batch nor a plan gives one
DEFAULT_BACKEND = "cpsat"
DEFAULT_SPACE = "full"

PLOT_HELP = ("write the die-grid picture to this .png/.svg file and the step-time breakdown next to it "
             "as <stem>-breakdown<suffix>")

# options shared by several commands (one declaration each)
PlanArgument = Annotated[Optional[Path], typer.Argument(
    help="a mapping (plan) JSON/YAML file; omit to build a Megatron mapping")]
ModelOption = Annotated[Optional[str], typer.Option("--model", "-m", help="model preset or YAML/config.json path")]
HardwareOption = Annotated[Optional[str], typer.Option("--hw", help="hardware preset or YAML path")]
PlanBatchOption = Annotated[Optional[int], typer.Option(
    "--batch", help="global batch, sequences per step (default: the plan's, else 512)")]
PlanSeqOption = Annotated[Optional[int], typer.Option(
    "--seq", help="sequence length (default: the plan's, else the model's)")]
BatchOption = Annotated[int, typer.Option("--batch", help="global batch, sequences per step")]
SeqOption = Annotated[Optional[int], typer.Option("--seq", help="sequence length (default: the model's)")]

# hardware overrides
NodesOption = Annotated[Optional[int], typer.Option("--nodes", help="nodes of a GPU cluster (grid rows)")]
RowsOption = Annotated[Optional[int], typer.Option("--rows", help="override the grid rows")]
ColsOption = Annotated[Optional[int], typer.Option(
    "--cols", help="override the grid columns (GPUs per node of a cluster)")]
SramBytesOption = Annotated[Optional[float], typer.Option("--sram-bytes", help="override the SRAM per die, bytes")]

# a Megatron-LM mapping built from flags
TpOption = Annotated[Optional[int], typer.Option("--tp", help="tensor-parallel size (default 1)")]
PpOption = Annotated[Optional[int], typer.Option("--pp", help="pipeline stages (default 1)")]
DpOption = Annotated[Optional[int], typer.Option(
    "--dp", help="data-parallel replicas (default: usable dies / (tp*pp))")]
MicroBatchOption = Annotated[Optional[int], typer.Option("--micro-batch", help="sequences per micro-batch (default 1)")]
RecomputeOption = Annotated[Optional[str], typer.Option("--recompute", help="none | selective | full (default full)")]
SequenceParallelOption = Annotated[bool, typer.Option("--sequence-parallel", help="Megatron sequence parallelism")]
FlashAttentionOption = Annotated[bool, typer.Option(
    "--flash-attention", help="fused FlashAttention kernels: no s x s tensor stored (default: a plan's, else off)")]

# solving
SpaceOption = Annotated[str, typer.Option("--space", help=f"strategy space: {' | '.join(SPACES)}")]
BackendOption = Annotated[str, typer.Option("--backend", help=f"solver: {' | '.join(BACKENDS)}")]
ThreadsOption = Annotated[Optional[int], typer.Option("--threads", help="solver threads (default min(8, CPUs))")]

# output
FlatJsonOption = Annotated[bool, typer.Option("--json", help="print one flat JSON object")]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON object")]
PlotOption = Annotated[Optional[Path], typer.Option("--plot", help=PLOT_HELP)]
PlanOutOption = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="save the plan (mapping, report, …) as JSON")]
