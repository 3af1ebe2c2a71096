"""`meshmap` — the command line (typer + rich).

Commands: `presets`, `evaluate`, `solve`, `export`, `check`, `compare`, `explore`, `reproduce`. `evaluate` and `solve`
take `--plot PATH` (.png or .svg): the die-grid picture at PATH and the step-time breakdown next to
it as <stem>-breakdown<suffix>. Every error is one line on stderr (`error: ...`) and
exit code 2, never a traceback. `--json` prints one flat JSON object on stdout.

One module per command group: presets, solving (evaluate, solve, check), export, explore, compare,
reproduce; common (errors, option checks, output), options, plans, reports and progress are shared.
"""

from __future__ import annotations

import typer

from . import compare, explore, export, presets, reproduce, solving
from .common import OneLineErrors
from .progress import _SolveBar  # noqa: F401 - importable from optimizer.tools.cli with app and main

app = typer.Typer(
    cls=OneLineErrors,
    name="meshmap",
    help="Provably optimal mapping of LLM training onto wafer-scale chips, chiplet packages and GPU clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command()(presets.presets)
app.command()(solving.evaluate)
app.command()(solving.solve)
app.command()(export.export)
app.command()(solving.check)
app.command()(explore.explore)
app.command()(compare.compare)
app.command()(reproduce.reproduce)


def main() -> None:  # pragma: no cover - `python -m optimizer.tools.cli`
    app()
