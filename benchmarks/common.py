"""Shared helpers for the benchmarks: write `benchmarks/results/<name>.json` in the format of DESIGN.md.

    {"benchmark": name,
     "versions": {"meshmap", "ortools", "pulp", "python"},
     "rows": [...],
     "claims": [{"name", "paper", "ours", "unit"}, ...],
     ...extra}

Floats are rounded to 6 significant digits and keys are sorted, so a re-run writes the same
file unless a number changed (timings, where a benchmark records them, are the exception).
"""

from __future__ import annotations

import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIGNIFICANT_DIGITS = 6


def versions() -> dict[str, str]:
    """Versions of meshmap, the solver libraries and Python that produced a result."""
    out = {}
    for key, dist in (("meshmap", "meshmap"), ("ortools", "ortools"), ("pulp", "PuLP")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    out["python"] = platform.python_version()
    return out


def round_sig(x: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """x rounded to `digits` significant digits (non-finite values unchanged)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def clean(value: Any) -> Any:
    """A JSON-ready copy: floats rounded, tuples/sets as lists, pydantic models dumped, keys as str."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return round_sig(value)
    if hasattr(value, "model_dump"):
        return clean(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [clean(v) for v in sorted(value)]
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return clean(value.item())
    raise TypeError(f"cannot write {type(value).__name__} to a benchmark result")


def claim(name: str, paper: float, ours: float, unit: str) -> dict[str, Any]:
    """One paper figure next to ours (a ratio N for 'N×', a fraction for a percentage)."""
    return {"name": name, "paper": paper, "ours": ours, "unit": unit}


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Lay out, write (creating the results folder) and close a matplotlib figure; return path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def write_result(name: str, rows: Iterable[Mapping[str, Any]], claims: Iterable[Mapping[str, Any]],
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write benchmarks/results/<name>.json and return its path."""
    claims = [dict(c) for c in claims]
    for c in claims:
        missing = {"name", "paper", "ours", "unit"} - set(c)
        if missing:
            raise ValueError(f"claim {c.get('name', '?')!r} lacks {', '.join(sorted(missing))}")
    doc: dict[str, Any] = dict(extra or {})
    for key in ("benchmark", "versions", "rows", "claims"):
        if key in doc:
            raise ValueError(f"extra must not override {key!r}")
    doc.update(benchmark=name, versions=versions(), rows=list(rows), claims=claims)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(clean(doc), indent=2, sort_keys=True) + "\n")
    return path


__all__ = ["RESULTS_DIR", "claim", "clean", "round_sig", "versions", "write_result"]
