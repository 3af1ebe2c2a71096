"""What every command shares: the error contract (one line on stderr, exit code 2), checks of option
values, and the JSON, table and number formatting of the output."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

import hw
import models

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


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
        if rv == EXIT_INTERRUPTED:  # Ctrl-C (typer turns a KeyboardInterrupt into exit 130 too): leave
            sys.stdout.flush()      # at once, without waiting for a solver thread to return
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        sys.exit(rv if isinstance(rv, int) else 0)


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


# ------------------------------------------------------------------------------------ option checks

def _require(value: Any, flag: str, alternative: str = "", what: str = "a preset name") -> None:
    """A UsageError when a needed option is missing: `--hw is required (a preset name; …)<alternative>`."""
    if value is None:
        raise UsageError(f"{flag} is required ({what}; see `meshmap presets`){alternative}")


def _check_choice(flag: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise UsageError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")


def _check_count(flag: str, value: Any, required: bool = False) -> None:
    """A whole number > 0, or None unless required (a plan file's value may be anything)."""
    if value is None and not required:
        return
    if not isinstance(value, int) or value <= 0:
        raise UsageError(f"{flag} must be > 0, got {value}")


def _check_time_limit(time_limit: float) -> None:
    if not (time_limit > 0) or not math.isfinite(time_limit):
        raise UsageError(f"--time-limit must be a finite number of seconds > 0, got {time_limit}")


def _check_directory(flag: str, path: Path) -> None:
    """The directory a file is to be written in exists."""
    if not path.parent.is_dir():
        raise UsageError(f"{flag}: directory {path.parent} does not exist")


def _check_picture_path(plot: Path) -> None:
    """--plot names a .png or .svg file in an existing directory (checked before any work is done)."""
    from ..pictures import SUFFIXES

    if plot.suffix.lower() not in SUFFIXES:
        got = f"'{plot.suffix}'" if plot.suffix else "no suffix"
        raise UsageError(f"--plot: the file name must end in .png or .svg (got {got})")
    _check_directory("--plot", plot)


# ------------------------------------------------------------------------------------------ output

def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _shows_progress(json_out: bool) -> bool:
    """A progress bar goes to a terminal's stderr, never beside --json."""
    return not json_out and sys.stderr.isatty()


def _workload_json(work: models.Workload, machine: hw.Hardware) -> dict[str, Any]:
    return {"model": work.model.name, "hw": machine.name, "global_batch": work.global_batch,
            "seq_len": work.seq_len}


def _workload_title(work: models.Workload, machine: hw.Hardware) -> str:
    return f"{work.model.name} on {machine.name}, batch {work.global_batch}, seq {work.seq_len}"


def _console() -> Console:
    return Console()


def _status_markup(status: str) -> str:
    """A solve status coloured: optimal green, feasible or timeout yellow, anything else red."""
    colour = {"optimal": "green", "feasible": "yellow", "timeout": "yellow"}.get(status, "red")
    return f"[{colour}]{status}[/{colour}]"


def _fits_markup(fits: bool) -> str:
    return "[green]yes[/green]" if fits else "[red]no[/red]"


def _gap_text(gap: Optional[float]) -> str:
    return "-" if gap is None else f"{100 * gap:.4g} %"


def _gb(x: float) -> str:
    return f"{x / 1e9:,.2f} GB"


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


def _fmt_opt(x: Optional[float], unit: str = "") -> str:
    return "-" if x is None else _num(x, unit)
