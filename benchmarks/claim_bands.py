"""The claims of a benchmark's JSON against the committed run (their bands) and against their targets.

Band: a claim's figure may move between two runs by DEFAULT_BAND of the committed figure, or by what
the benchmark module's CLAIM_BANDS ({claim name: relative tolerance}) says; beyond that it has moved.
Two runs with one CP-SAT thread write the same figures unless a solve is stopped by its time limit,
whose incumbent depends on the machine's speed: that moved the TMAC speedups in their third or fourth
digit (docs/reproduction.md), well inside 1%.

Target: "<=" or ">=" the paper's figure where TARGETS or the claim's unit ("(target >=)") says so, the
range of the JSON's "acceptance" entry of the same name where it has one, else the paper's figure
within TARGET_TOLERANCE (DESIGN.md's validation tolerance). A claim without a paper figure has none.
"""

from __future__ import annotations

import importlib
from typing import Any

DEFAULT_BAND = 0.01  # relative: a claim that moves by more than 1% of its committed figure has moved
TARGET_TOLERANCE = 0.15  # DESIGN.md, validation data: within 15% of the published figure
MODULES = {"megatron_table1": "megatron_table1", "validation": "validate", "weak_scaling": "weak_scaling",
           "t3": "reproduce_t3", "tmac": "reproduce_tmac", "hecaton": "reproduce_hecaton"}
# claims whose paper figure is a limit, not a figure to match (benchmarks/validate.py's acceptance)
TARGETS: dict[str, dict[str, str]] = {
    "validation": {"heldout_mean_abs_error": "<=", "heldout_worst_abs_error": "<=", "fit_mean_abs_error": "<=",
                   "ranking_tau_min": ">="},
}


def bands(benchmark: str) -> dict[str, float]:
    """The benchmark module's CLAIM_BANDS (empty for a benchmark without a module here)."""
    module = MODULES.get(benchmark)
    return dict(getattr(importlib.import_module(module), "CLAIM_BANDS", {})) if module else {}


def claim_changes(benchmark: str, new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """One line per claim of `new` that moved outside its band from `old`, appeared or disappeared."""
    band_of = bands(benchmark)
    before = {c["name"]: c for c in old.get("claims", [])}
    after = {c["name"]: c for c in new.get("claims", [])}
    out = [f"{benchmark}: {n} disappeared (committed {before[n]['ours']})" for n in before if n not in after]
    out += [f"{benchmark}: {n} is new (ours {after[n]['ours']})" for n in after if n not in before]
    for name in (n for n in after if n in before):
        a, b = after[name]["ours"], before[name]["ours"]
        band = band_of.get(name, DEFAULT_BAND)
        if a == b:
            continue
        if a is None or b is None or abs(a - b) > band * abs(b):
            out.append(f"{benchmark}: {name} {a} vs committed {b} (band ±{band:.1%})")
    return out


def target(benchmark: str, claim: dict[str, Any], doc: dict[str, Any]) -> tuple[str, float | None, float | None]:
    """(description, low, high) of the claim's target; low and high None when it has none."""
    paper, unit = claim["paper"], str(claim.get("unit", ""))
    if paper is None:
        return "no paper figure", None, None
    rule = TARGETS.get(benchmark, {}).get(claim["name"])
    rule = rule or (">=" if "target >=" in unit else "<=" if "target <=" in unit else None)
    if rule == "<=":
        return f"<= {paper}", None, paper
    if rule == ">=":
        return f">= {paper}", paper, None
    band = (doc.get("acceptance") or {}).get(claim["name"])
    if isinstance(band, list) and len(band) == 2:
        return f"{band[0]}..{band[1]}", band[0], band[1]
    lo, hi = sorted((paper * (1 - TARGET_TOLERANCE), paper * (1 + TARGET_TOLERANCE)))
    return f"{paper} ±{TARGET_TOLERANCE:.0%}", lo, hi


def not_met(benchmark: str, doc: dict[str, Any]) -> list[str]:
    """One line per claim of the document that misses its target: ours against the target."""
    out = []
    for c in doc.get("claims", []):
        text, lo, hi = target(benchmark, c, doc)
        if lo is None and hi is None:
            continue
        ours = c["ours"]
        if ours is None or (lo is not None and ours < lo) or (hi is not None and ours > hi):
            out.append(f"{benchmark + ': ' + c['name']:<58} ours {ours!s:>10}  target {text}  {c.get('unit', '')}")
    return out
