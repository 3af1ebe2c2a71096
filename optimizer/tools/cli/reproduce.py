"""`reproduce`: rerun a reproduction benchmark of the source checkout's benchmarks/."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import UsageError, fail, guarded

REPRODUCTIONS = {"megatron_table1": "megatron_table1.py", "validation": "validate.py", "weak_scaling": "weak_scaling.py",
                 "t3": "reproduce_t3.py", "tmac": "reproduce_tmac.py", "hecaton": "reproduce_hecaton.py",
                 "solver_speed": "solver_speed.py", "solver_matrix": "solver_matrix.py", "explore": "explore_speed.py",
                 "evaluate_speed": "evaluate_speed.py", "validate_exports": "validate_exports.py",
                 "all": "reproduce_all.py"}


def _benchmarks_dir() -> Path:
    """benchmarks/ of the source checkout: beside optimizer/."""
    return Path(__file__).resolve().parents[3] / "benchmarks"


@guarded
def reproduce(
    name: Annotated[str, typer.Argument(help=f"which: {' | '.join(REPRODUCTIONS)}")] = "all",
    list_only: Annotated[bool, typer.Option("--list", help="list the reproductions and exit")] = False,
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
