"""`presets`: the hardware and model presets, as tables or one JSON object."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

import hw
import models

from .common import _console, _echo_json, guarded


def _bytes(x: float) -> str:
    """Bytes with a decimal prefix: 440 MB, 80 GB, 2.4 PB."""
    for div, unit in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(x) >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.0f} B"


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


@guarded
def presets(
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")] = False,
) -> None:
    """List the hardware and model presets."""
    hw_rows = [_hw_row(n) for n in hw.presets()]
    model_rows = [_model_row(n) for n in models.presets()]
    if json_out:
        _echo_json({"hardware": hw_rows, "models": model_rows})
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
